"""Review h141: a settled ``run_async`` future holds its result once, not twice.

Each read of a future gets its own copy (``ActorFuture._by_value``). A writer's result is
pickled as its method returns and read back for the caller; the future kept both, the object
read back and the pickle, from settling on: every unread future of a large result held about
twice its size. It now holds the pickle alone, and each read (the first too) unpickles its own
copy; still one pickle per result, made by the batch.
"""

from __future__ import annotations

import concurrent.futures
import tracemalloc
from typing import Any

import pytest
from garbage import full_collection

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

#: the size of one result's payload
SIZE = 8 * 1024 * 1024


@vc.virtual_actor
class Large:
    def __init__(self) -> None:
        self.n = 0

    def blob(self) -> dict[str, Any]:
        self.n += 1
        return {"n": self.n, "blob": bytes(SIZE)}

    def listed(self) -> list[int]:
        self.n += 1
        return [self.n]

    @vc.virtual_actor.readonly
    def read_blob(self) -> dict[str, Any]:
        return {"n": self.n, "blob": bytes(SIZE)}


def _held_by_settled_futures(make: Any, count: int) -> tuple[float, list[Any]]:
    """How many results' worth of memory ``count`` settled, unread futures made by ``make()``
    hold (traced between before they were made and after they settled), and the futures."""
    full_collection()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        futures = [make() for _ in range(count)]
        done, _ = concurrent.futures.wait(futures, 60)
        assert len(done) == count
        full_collection()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / (count * SIZE), futures


def test_an_unread_writer_future_holds_its_result_once(actor_store: StoreSpec) -> None:
    a = Large.get_or_create("large-writer")
    a.listed.run()  # (loaded and warm: its cache is not counted)
    copies, futures = _held_by_settled_futures(a.blob.run_async, 3)
    # Before: 2.0 (the result read back as the method returned, and the pickle it came from).
    assert copies < 1.4, f"a settled, unread future holds {copies:.2f} copies of its result"
    assert "state=finished returned dict>" in repr(futures[0])  # (its result's type, as before)
    first = futures[0].result()
    assert first["blob"] == bytes(SIZE)
    first["blob"] = b"the first reader's own"
    again = futures[0].result()
    assert again["blob"] == bytes(SIZE) and again is not first
    assert [f.result()["n"] for f in futures] == [2, 3, 4]


def test_an_unread_read_only_future_holds_its_result_once(actor_store: StoreSpec) -> None:
    a = Large.get_or_create("large-reader")
    a.listed.run()
    copies, futures = _held_by_settled_futures(a.read_blob.run_async, 3)
    assert copies < 1.4, f"a settled, unread read-only future holds {copies:.2f} copies of its result"
    first = futures[0].result()
    first["blob"] = b"the first reader's own"
    assert futures[0].result()["blob"] == bytes(SIZE)


def test_a_read_writer_future_holds_its_result_once(actor_store: StoreSpec) -> None:
    # Read, and its readers' copies let go: the future holds the pickle later reads copy from.
    # Before: the object it first handed out too (2.0).
    a = Large.get_or_create("large-read")
    a.listed.run()

    def read_once() -> Any:
        future = a.blob.run_async()
        assert future.result()["blob"] == bytes(SIZE)
        return future

    copies, futures = _held_by_settled_futures(read_once, 3)
    assert copies < 1.4, f"a read future holds {copies:.2f} copies of its result"
    assert [f.result()["n"] for f in futures] == [2, 3, 4]


def test_a_caught_result_is_pickled_once(actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    # catch_exceptions=True hands back (result, None): the writer's result, pickled once by the
    # batch. The first read pickled the pair again (the future kept a pickle of its own).
    from vactor_cloud import future as future_module

    pickled: list[object] = []
    freeze = future_module.freeze

    def counted(value: Any, *args: Any, **kwargs: Any) -> Any:
        pickled.append(value)
        return freeze(value, *args, **kwargs)

    monkeypatch.setattr(future_module, "freeze", counted)
    a = Large.get_or_create("caught-once")
    future = a.listed.options(catch_exceptions=True).run_async()
    value, error = vc.get(future)
    assert (value, error) == ([1], None)
    assert pickled == [], "the first read pickled the result again"
    value.append("the first reader's own")
    assert future.result() == ([1], None)
    assert future.result()[0] is not future.result()[0]

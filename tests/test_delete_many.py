"""``ObjectStore.delete_many`` above any backend: requests bounded, counted, a few in flight,
failures raised after every request finished; the inline fast path notices an override.

The per-backend behaviour (S3's DeleteObjects, missing keys, the keys we write) is in the
shipped conformance suite and ``test_s3_backend``.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from vactor_cloud.errors import StorageError, StorageTimeoutError
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.latency import Latency, LatencyStore


class _Watched(MemoryStore):
    """A memory store whose deletes wait a moment (``stall`` forever), or fail for chosen keys."""

    def __init__(self) -> None:
        super().__init__(f"delete-many-{uuid.uuid4().hex}")
        self.in_flight = 0
        self.most_in_flight = 0
        self.stall: set[str] = set()
        self.refuse: set[str] = set()
        self.broken: set[str] = set()

    async def _delete(self, key: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(3600 if key in self.stall else 0.001)
            if key in self.refuse:
                raise StorageError(f"{key}: refused (test)", key)
            if key in self.broken:
                raise RuntimeError(f"{key}: a bug (test)")
            await super()._delete(key)
        finally:
            self.in_flight -= 1


def _filled(keys: list[str]) -> _Watched:
    store = _Watched()
    for key in keys:
        store.put_now(key, b"x")
    store.requests.reset()
    return store


def test_a_stalled_delete_times_out_alone_naming_its_key_and_the_others_are_deleted() -> None:
    keys = [f"k/{n:02d}" for n in range(20)]
    store = _filled(keys)
    store.request_timeout = 0.2
    store.stall = {"k/07"}

    async def run() -> None:
        with pytest.raises(StorageTimeoutError) as info:
            await store.delete_many(keys)
        assert info.value.key == "k/07"
        assert info.value.write_in_flight
        assert await store.list("") == ["k/07"]

    asyncio.run(run())
    assert store.requests["delete"] == 20


def test_deletes_run_a_few_at_a_time_and_a_failure_is_raised_once_all_finished() -> None:
    keys = [f"k/{n:02d}" for n in range(40)]
    store = _filled(keys)
    store.refuse = {"k/03"}

    async def run() -> None:
        with pytest.raises(StorageError) as info:
            await store.delete_many(keys)
        assert info.value.key == "k/03"
        assert store.in_flight == 0  # nothing left running behind the error
        assert await store.list("") == ["k/03"]

    asyncio.run(run())
    assert 1 < store.most_in_flight <= 16


def test_thousands_of_keys_are_deleted_by_a_bounded_number_of_tasks_not_a_task_per_key() -> None:
    """A compaction deleting thousands of steps or task checkpoints at once: a task (and its
    coroutine) per request, all made up front behind a semaphore, held memory in proportion
    to the keys. At most ``delete_parallel`` requests in flight and no more tasks than that."""
    keys = [f"k/{n:05d}" for n in range(2000)]
    store = _filled(keys)
    most_tasks = 0
    deleting = store._delete

    async def counting(key: str) -> None:
        nonlocal most_tasks
        most_tasks = max(most_tasks, len(asyncio.all_tasks()))
        await deleting(key)

    store._delete = counting  # type: ignore[method-assign]

    async def run() -> None:
        await store.delete_many(keys)
        assert await store.list("") == []

    asyncio.run(run())
    assert store.requests["delete"] == len(keys)
    assert 1 < store.most_in_flight <= store.delete_parallel
    assert most_tasks <= store.delete_parallel + 1  # (+ the test's own)


def test_once_a_request_times_out_no_new_one_is_sent_and_the_call_ends_after_one_timeout() -> None:
    """An endpoint that stops answering in the middle of a delete of thousands of keys (a
    compaction's task checkpoints): every request waited out its own timeout, one round of
    ``delete_parallel`` after the other, so the call took (keys / 16) timeouts (an hour for
    5,000 keys at 10 s). Once a request has timed out no new one is sent: the call raises
    that timeout after the round in flight; the keys never sent are simply not deleted."""
    keys = [f"k/{n:04d}" for n in range(2000)]
    store = _filled(keys)
    store.request_timeout = 0.05
    store.stall = set(keys)

    async def run() -> None:
        with pytest.raises(StorageTimeoutError):
            await store.delete_many(keys)
        assert store.in_flight == 0

    asyncio.run(run())
    assert store.requests["delete"] <= 2 * store.delete_parallel


def test_a_bug_in_one_delete_is_raised_before_storage_errors_of_others() -> None:
    keys = ["a", "b", "c"]
    store = _filled(keys)
    store.refuse = {"a"}
    store.broken = {"c"}
    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(store.delete_many(keys))


def test_the_inline_fast_path_is_off_when_delete_many_is_overridden_or_wrapped() -> None:
    plain = MemoryStore(f"inline-{uuid.uuid4().hex}")
    assert plain.inline

    class OwnBatch(MemoryStore):
        async def _delete_many(self, keys: list[str]) -> None:
            await super()._delete_many(keys)

    assert not OwnBatch(f"inline-{uuid.uuid4().hex}").inline

    traced = MemoryStore(f"inline-{uuid.uuid4().hex}")
    original = traced.delete_many

    async def traced_delete_many(keys: list[str]) -> None:  # as a request tracer does
        await original(keys)

    traced.delete_many = traced_delete_many  # type: ignore[method-assign,assignment]
    assert not traced.inline


def test_latency_store_forwards_delete_many_to_the_wrapped_store() -> None:
    inner = _filled(["a", "b", "c"])
    store = LatencyStore(inner, Latency(0.001))

    async def run() -> None:
        await store.delete_many(["a", "b", "missing"])
        assert await inner.list("") == ["c"]

    asyncio.run(run())
    assert store.requests["delete"] == inner.requests["delete"] == 3

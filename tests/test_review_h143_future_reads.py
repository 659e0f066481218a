"""Review h143: how a settled writer future (h141: it holds its result as a pickle) hands it out.

Since h141 a writer's ``run_async`` future holds its result as the pickle it was read back
from as the method returned, and every read, the first too, unpickles its own copy. Before,
the first read got the object read back then. So the first read can now fail where it did not:
a result whose reading back depends on what changed since the method returned (its class
removed from its module by a reload, a rebuild function that reads what is gone). It failed
with the batch's own words for a result that cannot be read back ("cannot be passed by
value"), which there mean the call failed and was not applied: here it was applied, and a
caller who took it for not applied called again, applying it twice. It says so now.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

#: whether a ``Fragile`` can be rebuilt (unpickled) now
_rebuildable = threading.Event()


class Fragile:
    """Pickles; reads back only while ``_rebuildable`` is set (as a class reloaded away)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.n,))


def _rebuild(n: int) -> Fragile:
    if not _rebuildable.is_set():
        raise AttributeError("Can't get attribute 'Fragile' (the module was reloaded without it)")
    return Fragile(n)


@vc.virtual_actor
class Maker:
    def __init__(self) -> None:
        self.made = 0

    def make(self) -> Fragile:
        self.made += 1
        return Fragile(self.made)

    def listed(self) -> list[int]:
        self.made += 1
        return [self.made]

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.made


@pytest.fixture(autouse=True)
def _fragile_reads_back() -> Any:
    _rebuildable.set()
    yield
    _rebuildable.set()


def test_a_result_that_no_longer_reads_back_says_the_call_was_applied(actor_store: StoreSpec) -> None:
    m = Maker.get_or_create("fragile")
    future = m.make.run_async()
    assert future.exception(60) is None  # settled: the method returned, its result read back
    _rebuildable.clear()  # what its reading back needs is gone before the first read
    with pytest.raises(TypeError) as caught:
        future.result()
    message = str(caught.value)
    assert "was applied" in message, message
    assert "Can't get attribute 'Fragile'" in message, message  # (and why, with its cause)
    assert isinstance(caught.value.__cause__, TypeError)
    _rebuildable.set()
    assert m.count.run() == 1  # applied, once
    assert future.result().n == 1  # reads back again once it can


def test_every_way_out_of_a_settled_writer_future_hands_over_a_copy_of_its_own(
    actor_store: StoreSpec,
) -> None:
    m = Maker.get_or_create("ways-out")
    future = m.listed.run_async()
    assert list(concurrent.futures.as_completed([future], 60)) == [future]
    seen: list[Any] = []
    future.add_done_callback(lambda f: seen.append(f.result()))  # (after settling: at once)

    async def awaited() -> list[Any]:
        return [await future, await asyncio.wrap_future(future)]

    reads = [future.result(), vc.get(future), vc.get([future])[0], *asyncio.run(awaited()), *seen]
    assert all(type(read) is list and read == [1] for read in reads), reads
    assert len({id(read) for read in reads}) == len(reads)  # no two readers share one object
    paired = m.listed.options(catch_exceptions=True).run_async()
    first, again = paired.result(), vc.get(paired)
    assert first == again == ([2], None) and first[0] is not again[0]
    assert repr(future).endswith("state=finished returned list>")

"""Review h151: the guarded default executor h150 gives an async method's loop leaves no thread
behind, whatever the method does with it (runs functions in threads, raises, sets its own).

Each async call runs on a loop of its own (``asyncio.run``); the method's first
``run_in_executor(None, ...)`` (``asyncio.to_thread``) makes that loop's default executor a
``guarded_executor.GuardedExecutor``, which ``asyncio.run`` shuts down as the call ends. An executor
left running per call would leave threads behind, one more set per call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading

import pytest
from garbage import full_collection

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")

CALLS = 60


@vc.virtual_actor
class UsesThreads:
    def __init__(self) -> None:
        self.n = 0

    async def in_a_thread(self) -> int:
        self.n += await asyncio.to_thread(lambda: 1)
        return self.n

    async def raises_after_a_thread(self) -> None:
        await asyncio.to_thread(lambda: 1)
        raise ValueError("the method failed")

    async def sets_its_own_after_a_thread(self) -> int:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(lambda: 1)
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(1))
        self.n += await asyncio.to_thread(lambda: 1)
        return self.n

    @vc.virtual_actor.readonly
    async def reads_in_a_thread(self) -> int:
        return await asyncio.to_thread(lambda: self.n)


def _call(handle: vc.ActorHandle[UsesThreads], method: str) -> None:
    with contextlib.suppress(ValueError):  # (the method that raises)
        getattr(handle, method).run()


def _threads_after(handle: vc.ActorHandle[UsesThreads], method: str, calls: int) -> int:
    for _ in range(calls):
        _call(handle, method)
    full_collection()
    return threading.active_count()


@pytest.mark.parametrize(
    "method", ["in_a_thread", "raises_after_a_thread", "sets_its_own_after_a_thread", "reads_in_a_thread"]
)
def test_async_calls_that_run_functions_in_threads_leave_no_thread_behind(
    actor_store: StoreSpec, method: str
) -> None:
    handle = UsesThreads.get_or_create(f"threads-{method}")
    before = _threads_after(handle, method, 5)  # (the runtime's own threads started by now)
    after = _threads_after(handle, method, CALLS)
    assert after <= before, (before, after, [t.name for t in threading.enumerate()])

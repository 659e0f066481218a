"""Review h150: an async actor method whose function run in a thread (``asyncio.to_thread``, or
``loop.run_in_executor(None, ...)``) forks and returns in the child too.

The child's only thread is then the executor's worker: back from the function, it handed the
result to a loop the child does not have and waited for the executor's next work, for good (a
process hung for ever, never reaped by anything). Now it ends there, as a child that comes
back inside a method does (``fork_guard``: status 70, why on stderr); the parent's call
applies once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading

import pytest
from forking import reaped

import vactor_cloud as vc
from vactor_cloud.fork_guard import STATUS
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local"),
    pytest.mark.usefixtures("forked_children_reaped"),
]


@vc.virtual_actor
class ForksInAThread:
    def __init__(self) -> None:
        self.n = 0

    async def fork_in_to_thread(self) -> int:
        self.n += 1
        return await asyncio.to_thread(os.fork)

    async def fork_in_the_default_executor(self) -> int:
        self.n += 1
        return await asyncio.get_running_loop().run_in_executor(None, os.fork)

    @vc.virtual_actor.readonly
    async def fork_while_reading(self) -> int:
        return await asyncio.to_thread(os.fork)

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


@pytest.mark.parametrize("method", ["fork_in_to_thread", "fork_in_the_default_executor"])
def test_a_child_forked_in_a_writers_thread_ends_and_the_call_applies_once(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str], method: str
) -> None:
    handle = ForksInAThread.get_or_create(f"thread-{method}")
    child = getattr(handle, method).run()
    assert child > 0  # (the parent's answer)
    assert reaped(child) == STATUS, "the child did not end at the guard"
    err = capfd.readouterr().err
    assert f"{method}() of actor 'thread-{method}'" in err and "forked (os.fork())" in err, err
    assert handle.count.run() == 1


def test_a_child_forked_in_a_readers_thread_ends(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    handle = ForksInAThread.get_or_create("thread-reader")
    child = handle.fork_while_reading.run()
    assert child > 0
    assert reaped(child) == STATUS, "the child did not end at the guard"
    assert "the read-only call is the parent's" in capfd.readouterr().err


@vc.virtual_actor
class ForksInItsCoroutine:
    def __init__(self) -> None:
        self.n = 0

    async def fork_here(self) -> int:
        self.n += 1
        return os.fork()

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def test_a_child_forked_in_an_async_method_run_beside_the_callers_loop_ends_at_the_guard(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    """Called from inside ``async def`` (a loop running on the caller's thread), the method's
    coroutine runs on a helper thread of its own: the forked child's only thread, which ended
    quietly there (status 0, nothing said) rather than at the guard, as on the caller's thread."""
    handle = ForksInItsCoroutine.get_or_create("coroutine-beside-a-loop")

    async def main() -> int:
        return handle.fork_here.run()

    child = asyncio.run(main())
    assert child > 0
    assert reaped(child) == STATUS, "the child did not end at the guard"
    assert "fork_here() of actor 'coroutine-beside-a-loop'" in capfd.readouterr().err
    assert handle.count.run() == 1


@vc.virtual_actor
class KeepsItsExecutor:
    def __init__(self) -> None:
        self.n = 0

    async def thread_names(self) -> tuple[str, str]:
        first = await asyncio.to_thread(lambda: threading.current_thread().name)
        mine = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="mine")
        asyncio.get_running_loop().set_default_executor(mine)
        second = await asyncio.to_thread(lambda: threading.current_thread().name)
        return first, second

    async def own_executor_first(self) -> str:
        mine = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="mine")
        asyncio.get_running_loop().set_default_executor(mine)
        return await asyncio.to_thread(lambda: threading.current_thread().name)


def test_an_async_method_keeps_a_default_executor_it_sets(actor_store: StoreSpec) -> None:
    handle = KeepsItsExecutor.get_or_create("own-executor")
    first, second = handle.thread_names.run()
    assert first.startswith("vactor-async thread_names") and second.startswith("mine"), (first, second)
    assert handle.own_executor_first.run().startswith("mine")

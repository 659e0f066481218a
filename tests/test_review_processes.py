"""Processes that come and go: what a process leaves behind when it exits with work still running."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.context
import os
import threading
from pathlib import Path

import pytest
import review_process_workers as workers
from child_processes import run_to_end
from runtime_workers import Counter, init_from_spec

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec


def _newest_step_and_head(actor_id: str) -> tuple[int, int | None]:
    log = vc.get_runtime().core(actor_id).log

    async def read() -> tuple[int, int | None]:
        steps = await log.list_steps()
        head = await log.read_head()
        return max(steps), None if head is None else head.step

    return _sync.sync(read())


def test_a_thread_still_calling_after_the_main_thread_returned_has_every_call_applied_and_head_flushed(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    # Python lets a non-daemon thread finish after the main thread returned, but runs its exit
    # hooks first: vactor's shut the runtime down under the thread, whose next call failed with
    # RuntimeShutdownError, and whose later calls ran on a new runtime nobody shut down (HEAD
    # left behind). vactor's exit hook now waits for such threads, as Python's exit does.
    vc.shutdown()
    errors = tmp_path / "errors"
    child = process_context.Process(
        target=workers.return_leaving_a_thread_that_calls, args=(shared, "late", 5, str(errors))
    )
    assert run_to_end([child]) == [0]
    assert errors.read_text() == ""
    init_from_spec(shared)
    assert vc.get_actor("late").value.run() == 5
    newest, head = _newest_step_and_head("late")
    assert head == newest, "HEAD was not moved at exit"


def test_pool_work_still_calling_after_the_main_thread_returned_leaves_head_flushed(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    # A thread pool's workers finish their queued tasks in concurrent.futures' exit hook, after
    # vactor's: calls made there run on a runtime started after vactor's hook, which the
    # interpreter's exit (atexit) now shuts down too.
    vc.shutdown()
    errors = tmp_path / "errors"
    child = process_context.Process(
        target=workers.return_leaving_pool_work_that_calls, args=(shared, "pooled", 5, str(errors))
    )
    assert run_to_end([child]) == [0]
    init_from_spec(shared)
    # (the pool's task runs after vactor's exit hook: on a runtime started then)
    done = 5 - sum(1 for line in errors.read_text().splitlines() if "Error" in line)
    assert vc.get_actor("pooled").value.run() == done
    newest, head = _newest_step_and_head("pooled")
    assert head == newest, "HEAD was not moved at exit"


def test_a_thread_waiting_for_the_main_thread_to_stop_does_not_hang_the_exit(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext
) -> None:
    vc.shutdown()
    child = process_context.Process(
        target=workers.return_leaving_a_thread_that_waits_for_the_main_thread, args=(shared, "watched")
    )
    # (the thread gives up after a minute: a hang shows as a join timeout, not a stuck suite)
    assert run_to_end([child], timeout=45.0) == [0]
    init_from_spec(shared)
    newest, head = _newest_step_and_head("watched")
    assert head == newest, "HEAD was not moved at exit"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_handles_used_in_children_forked_while_parent_threads_call_the_actor_lose_no_call(
    shared: StoreSpec,
) -> None:
    # At each fork other threads of the parent are mid-call: its IO loop, pool and store
    # threads, and locks they hold, do not exist in the child, which must build its own.
    fork = multiprocessing.get_context("fork")
    init_from_spec(shared)
    handle = Counter.get_or_create("forked")
    stop = threading.Event()
    made = [0] * 3

    def call_until_stopped(index: int) -> None:
        while not stop.is_set():
            handle.incr.run(1)
            made[index] += 1

    callers = [threading.Thread(target=call_until_stopped, args=(i,)) for i in range(3)]
    for caller in callers:
        caller.start()
    try:
        for _ in range(3):
            children = [fork.Process(target=workers.call_through, args=(handle, 4)) for _ in range(2)]
            children.append(fork.Process(target=workers.call_through, args=(handle.incr, 4)))
            assert run_to_end(children, timeout=120.0) == [0, 0, 0]
    finally:
        stop.set()
        for caller in callers:
            caller.join(60)
    assert handle.value.run() == sum(made) + 3 * 3 * 4


def test_many_threads_using_handles_first_at_once_share_one_runtime_and_one_client(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first use of the process: every thread's call starts the runtime (from init()'s
    # settings) and the store's client on demand, at the same moment.
    init_from_spec(store_spec)
    Counter.get_or_create("first-use")
    vc.shutdown()
    store = store_spec.open()
    built: list[object] = []
    transport = getattr(store, "_transport", None)
    if transport is not None and hasattr(transport, "build_client"):
        original = type(transport).build_client

        def counted(self: object) -> object:
            client = original(self)
            built.append(client)
            return client

        monkeypatch.setattr(type(transport), "build_client", counted)
    runtimes: list[object] = []
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def first_call() -> None:
        try:
            start.wait(30)
            vc.get_actor("first-use").incr.run(1)
            runtimes.append(vc.get_runtime())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len({id(runtime) for runtime in runtimes}) == 1
    assert vc.get_actor("first-use").value.run() == 16
    if transport is not None and hasattr(transport, "build_client"):
        assert len(built) == 1
    vc.shutdown()


def test_blocking_calls_inside_a_running_event_loop_and_awaits_from_many_loops_all_apply(
    store_spec: StoreSpec,
) -> None:
    # A notebook cell or an async web handler runs on an event loop of its own: the blocking
    # API works there (it blocks that loop, not vactor's), and futures await on any loop.
    init_from_spec(store_spec)
    handle = Counter.get_or_create("in-a-loop")

    async def in_a_handler() -> list[int]:
        first = handle.incr.run(1)
        rest = await asyncio.gather(*(handle.incr.run_async(1) for _ in range(20)))
        return [first, *rest, await handle.value.run_async()]

    assert sorted(asyncio.run(in_a_handler())) == [*range(1, 22), 21]
    errors: list[BaseException] = []

    def own_loop() -> None:
        try:
            asyncio.run(in_a_handler())
        except BaseException as exc:
            errors.append(exc)

    loops = [threading.Thread(target=own_loop) for _ in range(6)]
    for thread in loops:
        thread.start()
    for thread in loops:
        thread.join(120)
    assert errors == []
    assert handle.value.run() == 21 * 7
    vc.shutdown()

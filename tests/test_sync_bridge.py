"""The sync bridge: one IO loop per process, refuses to block its own loop, survives fork."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import select
import sys
import threading
import weakref
from collections.abc import Callable

import pytest
from interrupts import Interrupted, LoopInterruptedOnce

from vactor_cloud import _sync
from vactor_cloud._sync import get_loop, in_loop_thread, submit, sync
from vactor_cloud.storage import MemoryStore


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def test_sync_runs_a_coroutine_on_the_io_loop_from_a_plain_thread() -> None:
    async def where() -> tuple[bool, asyncio.AbstractEventLoop]:
        return in_loop_thread(), asyncio.get_running_loop()

    on_loop_thread, loop = sync(where())
    assert on_loop_thread
    assert loop is get_loop()
    assert not in_loop_thread()


def test_sync_is_usable_from_many_threads_at_once() -> None:
    results: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        value = sync(_answer(), timeout=30)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [42] * 8


def test_sync_refuses_to_block_its_own_loop() -> None:
    closed: list[bool] = []

    async def nested() -> None:
        await asyncio.sleep(0)

    async def blocking_call_inside_loop() -> None:
        coro = nested()
        try:
            sync(coro)
        finally:
            # The refused coroutine is closed, not left "never awaited".
            closed.append(coro.cr_frame is None)

    with pytest.raises(RuntimeError, match="async API"):
        submit(blocking_call_inside_loop()).result(timeout=30)
    assert closed == [True]
    # The loop is still healthy afterwards.
    assert sync(_answer(), timeout=30) == 42


def test_sync_propagates_the_coroutine_exception() -> None:
    async def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        sync(fail(), timeout=30)


class _Held:
    """Stands for what a caller's frame holds (its runtime, its actor cache)."""


@pytest.mark.parametrize("eager", [False, True], ids=["task", "eager"])
def test_an_error_through_the_bridge_leaves_no_cycle_holding_the_callers_locals(eager: bool) -> None:
    """The waiter held the error, whose traceback holds the frames that hold the waiter: a
    cycle, so every error through the bridge kept its callers' locals (a runtime, its cache)
    until the next garbage collection (one test saw a runtime outlive ``vc.shutdown()`` so).
    They are freed by reference counting as soon as the caller is done with the error."""

    async def fail() -> None:
        if not eager:
            await asyncio.sleep(0)  # (suspends: the task's path)
        raise ValueError("boom")

    def caller(held: _Held) -> None:
        sync(fail(), timeout=30, eager=eager)

    gc.disable()
    try:
        held = _Held()
        ref = weakref.ref(held)
        with pytest.raises(ValueError, match="boom"):
            caller(held)
        del held
        sync(_answer(), timeout=30)  # (the loop's callback that raised it has returned)
        assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]
    finally:
        gc.enable()


def test_an_interrupt_while_waiting_cancels_the_coroutine_and_reaches_the_caller(
    ctrl_c: Callable[[threading.Event], None],
) -> None:
    """Ctrl-C during a blocking call: the work on the IO loop stops too (it used to carry
    on unseen: a commit could land after its caller had been told it was interrupted)."""
    started = threading.Event()
    outcome: list[str] = []

    async def long_io() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    ctrl_c(started)
    with pytest.raises(Interrupted):
        sync(long_io(), timeout=30)
    for _ in range(300):
        if outcome:
            break
        sync(asyncio.sleep(0.01), timeout=30)
    assert outcome == ["cancelled"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_can_use_sync_after_fork() -> None:
    # The parent's loop thread does not exist in a forked child; without the
    # at-fork reset the child's sync() would wait forever (here: time out).
    parent_loop = get_loop()
    assert sync(_answer(), timeout=30) == 42
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            store = MemoryStore("fork-child")
            version = sync(store.put("k", b"from child", mode="create"), timeout=20)
            blob = sync(store.get("k"), timeout=20)
            fresh_loop = _sync._loop is not parent_loop
            ok = blob.data == b"from child" and blob.version == version and fresh_loop
            os.write(write_end, b"ok" if ok else b"wrong")
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode()[:500])
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_end)
    ready: list[int] = []
    try:
        ready, _, _ = select.select([read_end], [], [], 60)
        report = os.read(read_end, 1024) if ready else b"<no answer from the child within 60 s>"
    finally:
        os.close(read_end)
        if not ready:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    assert report == b"ok"
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's loop is untouched by the child's reset.
    assert get_loop() is parent_loop
    assert sync(_answer(), timeout=30) == 42


def test_an_interrupt_just_after_the_start_was_queued_still_waits_for_the_coroutine_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sync(settle=)`` waits, after an interrupt, for the cancelled coroutine's ``finally``
    (``delete_actor``: its lease given back). It took the coroutine for not started when the
    interrupt landed after the start was queued, before the next line: the loop had run the
    coroutine meanwhile, and the caller went on while its ``finally`` ran (a Ctrl-C test of
    ``delete_actor`` failed 8 runs in 80 so). Here the interrupt lands there by injection."""
    loop = get_loop()

    class InterruptedAfterTheStart:
        def __getattr__(self, name: str) -> object:
            return getattr(loop, name)

        def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> object:
            handle = loop.call_soon_threadsafe(callback, *args)
            if getattr(callback, "__name__", "") in ("start", "start_eagerly"):
                assert started.wait(10), "the coroutine never started"
                raise Interrupted
            return handle

    started = threading.Event()
    stopped = threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.2)  # (a write in a finally: the lease's release)
            stopped.set()

    monkeypatch.setattr(_sync, "get_loop", InterruptedAfterTheStart)
    with pytest.raises(Interrupted):
        sync(work(), settle=10.0)
    assert stopped.is_set(), "the interrupt reached the caller before the coroutine stopped"


def _record_waits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each of ``sync``'s waits returned, in order (True: the waiter was released)."""
    answers: list[bool] = []
    real = _sync.interruptible_wait

    def recorded(*args: object, **kwargs: object) -> bool:
        answers.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return answers[-1]

    monkeypatch.setattr(_sync, "interruptible_wait", recorded)
    return answers


@pytest.mark.parametrize("eager", [False, True], ids=["task", "eager"])
def test_an_interrupt_before_the_start_was_queued_closes_the_coroutine_and_settles_at_once(
    monkeypatch: pytest.MonkeyPatch, eager: bool
) -> None:
    """Ctrl-C lands in ``sync`` as the coroutine's start is being queued, before it is: the
    coroutine never runs. It is closed (not left "never awaited"), and the settle after the
    interrupt ends as soon as the loop has seen that nothing started, rather than running out.
    Failed before (h92): the coroutine stayed unclosed, and the settle's wait ran its whole
    length (it returned False: nothing ever released the waiter)."""
    ran: list[str] = []

    async def work() -> None:
        ran.append("ran")

    loop = LoopInterruptedOnce(get_loop())
    monkeypatch.setattr(_sync, "get_loop", lambda: loop)
    waits = _record_waits(monkeypatch)
    coro = work()
    with pytest.raises(Interrupted):
        sync(coro, settle=3.0, eager=eager)
    assert loop.fired
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert waits == [True], "the settle waited its whole length for a coroutine that never ran"
    assert ran == []


def test_an_interrupt_as_the_call_is_tracked_closes_the_coroutine_and_untracks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands in ``sync`` as the call was added to its owner's ``tracker``, before the
    start was queued: the coroutine is closed and the call leaves the tracker. Failed before
    (h92): the interrupt landed before ``sync``'s ``try``: the coroutine was left unclosed
    and the call stayed in the tracker for the owner's life."""

    class InterruptedAsAdded(set[_sync._Waiter]):
        def add(self, waiter: _sync._Waiter) -> None:
            super().add(waiter)
            raise Interrupted

    async def work() -> None:
        await asyncio.sleep(0)

    tracker = InterruptedAsAdded()
    coro = work()
    with pytest.raises(Interrupted):
        sync(coro, tracker=tracker, settle=3.0)
    assert not tracker
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

"""Review h158: a mutation sweep of ``_sync.py`` (the sync bridge over the IO loop: its waits in
slices, ``wait_aside``, ``wait_futures``, ``submit``, ``until_stopped``, ``sync``'s timeout,
interrupt and owner cancel, the at-fork reset).

Table (mutation: survived ``test_sync_bridge``, ``test_review_main_thread_waits``,
``test_review_own_runtime_waits``, ``test_review_store_base_exceptions``, h145 timeout and
``test_review_cancellation``?, killed by):

* S1 ``interruptible_wait`` ignoring its end: killed, main-thread-waits
* S2 ``wait_aside`` dropping its function's error: survived; ``..._waited_aside_reaches_...``
* S3 ``wait_futures`` true once any is done: killed, own-runtime-waits (and here)
* S4 the at-fork reset keeping ``_lock``: survived; ``..._forked_while_the_loop_was_being_...``
* S5 the at-fork reset not cutting the loop off: survived (the h118 and process-lifecycle
  tests call the cut-off themselves); ``..._cuts_its_copy_of_the_io_loop_off_...``
* S6 the IO loop's thread ending after a task's ``SystemExit``: killed, store-base-exceptions
* S7 ``in_loop_thread`` always false: killed, sync-bridge
* S8 ``cancel`` not marking the call stopped: survived; ``..._owner_cancelled_before_...``
* S9 an interrupted ``submit`` not withdrawing: survived those; killed by ``test_review_pool``
* S10 ``_Handover.start`` not looking for a cancelled future: survived, equivalent (the future's
  done callback cancels the task before its first step; ``_settle`` tells the waiters)
* S11 ``_settle`` not cancelling the future of a cancelled task: survived;
  ``..._submitted_coroutine_that_ends_cancelled_...``
* S12 ``until_stopped`` not cancelling its task: survived; ``..._cancelled_until_stopped_...``
* S13 an owner's cancel at the timeout taken for the timeout: survived;
  ``..._owner_cancels_as_its_timeout_runs_out_...``
* S14 a cancelled call after the timeout not raising ``BridgeTimeout``: killed, main-thread-waits
* S15 a timed-out call left in its tracker: survived; ``..._timed_out_sync_call_raises_...``
* S16 no settle after an interrupt: killed, sync-bridge
* S17 an interrupt not withdrawing the call: killed, sync-bridge
* S18 a coroutine's own ``CancelledError`` taken for a cancel: killed, store-base-exceptions
* S19 an eager start catching ``Exception`` only: killed, store-base-exceptions (and here)
* S20 ``start`` not refusing a call cancelled before it: survived; ``..._before_it_started_...``
* S21 ``cancel`` not marking the cancel as asked: killed, main-thread-waits
* S22 ``withdraw`` of a started call closing it too: killed, sync-bridge
* S23 ``_resume`` sending where a cancel is thrown: survived; ``..._cancelled_wherever_...``
* S24 no wait for a timed-out call to stop: killed, main-thread-waits
* S25 ``wait_aside`` inline on the main thread: killed, main-thread-waits
* S26 the error kept on the waiter (a cycle): killed, sync-bridge
* S28 ``until_stopped`` answering None for a cancelled task: survived;
  ``..._raises_cancelled_error_itself_reaches_until_stopped_...``
* S29 ``sleep(0)`` in slices on the main thread: survived, equivalent (one wait of 0 s)
* S30 a refused coroutine left unclosed: killed, sync-bridge

And two defects (not mutations): Ctrl-C while ``sync`` waited for a timed-out call to stop
left the call in its owner's tracker, and Ctrl-C as it queued that call's cancel left the
coroutine running unseen: ``test_ctrl_c_while_a_timed_out_call_stops_leaves_it_out_of_its_tracker``,
``test_ctrl_c_as_a_timed_out_call_is_cancelled_still_cancels_it`` (both fixed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from typing import Any

import pytest
from forking import reaped
from interrupts import Interrupted

from vactor_cloud import _sync


class Boom(Exception):
    pass


def test_an_error_of_a_function_waited_aside_reaches_the_main_thread() -> None:
    """Mutation: ``wait_aside`` on the main thread without ``raise failed[0]``: an error of the
    join it ran on its helper thread was dropped, and the caller went on as if it returned."""
    assert threading.current_thread() is threading.main_thread()

    def fail() -> None:
        raise Boom("from the helper thread")

    with pytest.raises(Boom, match="from the helper thread"):
        _sync.wait_aside(fail, 10)


def test_a_function_waited_aside_past_its_timeout_says_so_and_carries_on() -> None:
    release = threading.Event()
    ended = threading.Event()

    def slow() -> None:
        release.wait(30)
        ended.set()

    try:
        assert _sync.wait_aside(slow, 0.05) is False
        assert not ended.is_set()
    finally:
        release.set()
    assert ended.wait(10)


def test_futures_waited_for_with_one_not_done_time_out() -> None:
    """Mutation: ``wait_futures`` answering whether any finished, not all: a subtask's writes
    (and a timer runner's deletes) were taken for done when only one was."""
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    done.set_result(1)
    pending: concurrent.futures.Future[int] = concurrent.futures.Future()
    for on_main in (True, False):
        answers: list[bool] = []
        if on_main:
            answers.append(_sync.wait_futures([done, pending], 0.05))
        else:
            thread = threading.Thread(
                target=lambda kept=answers: kept.append(_sync.wait_futures([done, pending], 0.05))
            )
            thread.start()
            thread.join(10)
        assert answers == [False]
    pending.set_result(2)
    assert _sync.wait_futures([done, pending], 10)


def test_a_wait_for_the_first_of_futures_returns_the_done_ones() -> None:
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    pending: concurrent.futures.Future[int] = concurrent.futures.Future()
    threading.Timer(0.3, lambda: done.set_result(1)).start()
    assert _sync.wait_first([done, pending]) == {done}


def test_a_cancelled_until_stopped_stops_its_coroutine_before_the_cancel_goes_on() -> None:
    """Mutation: ``until_stopped`` cancelled without cancelling its task on the IO loop: the
    coroutine (a delete) ran on after its caller heard "cancelled"."""
    stopped = threading.Event()
    started = threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    async def caller() -> bool:
        task = asyncio.ensure_future(_sync.until_stopped(work(), 10))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return stopped.is_set()

    assert asyncio.run(caller()) is True


def test_a_coroutine_that_raises_cancelled_error_itself_reaches_until_stopped_s_caller_so() -> None:
    """Mutation: ``until_stopped``'s ``finish`` taking a task that ended cancelled for a result
    (None): the caller got None from a delete that never finished."""

    async def cancelled_inside() -> int:
        await asyncio.sleep(0)
        raise asyncio.CancelledError

    async def caller() -> object:
        try:
            return await _sync.until_stopped(cancelled_inside(), 1)
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(caller()) == "cancelled"


def test_a_timed_out_sync_call_raises_bridge_timeout_and_runs_its_finally() -> None:
    finished = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            finished.set()

    tracker: set[_sync._Waiter] = set()
    with pytest.raises(_sync.BridgeTimeout):
        _sync.sync(slow(), timeout=0.05, tracker=tracker)
    assert finished.is_set()
    assert not tracker, "a timed-out call stays in its owner's tracker"


def test_ctrl_c_while_a_timed_out_call_stops_leaves_it_out_of_its_tracker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands while ``sync`` waits for a call that ran out of time to stop (its cancel's
    ``finally`` blocks): the interrupt reaches the caller, and the call leaves its owner's
    tracker. Failed before: the call stayed in the tracker (one more for every such interrupt,
    for the owner's life), since only the ends of the timeout path took it out."""
    real = _sync.interruptible_wait
    calls: list[float | None] = []

    def timed_out_then_interrupted(wait: Any, timeout: float | None, **kwargs: Any) -> bool:
        calls.append(timeout)
        if len(calls) == 1:
            return False  # the call's own timeout ran out
        if len(calls) == 2:
            raise Interrupted  # Ctrl-C while the cancelled coroutine stops
        return real(wait, timeout, **kwargs)

    async def slow() -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(_sync, "interruptible_wait", timed_out_then_interrupted)
    tracker: set[_sync._Waiter] = set()
    with pytest.raises(Interrupted):
        _sync.sync(slow(), timeout=0.05, tracker=tracker)
    assert len(calls) == 2
    assert not tracker, "the interrupted call stays in its owner's tracker"


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


@pytest.mark.parametrize("eager", [False, True], ids=["task", "eager"])
@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_base_exception_of_a_coroutine_reaches_the_sync_caller_and_the_loop_carries_on(
    kind: type[BaseException], eager: bool
) -> None:
    """Mutations: an eager start catching ``Exception`` only (a ``sys.exit()`` before the first
    suspension went out of the loop's callback: the caller waited for ever); the IO loop's thread
    ending once a task's ``SystemExit`` went out of ``run_forever`` (every later call hung)."""

    async def raises(before_suspending: bool) -> None:
        if not before_suspending:
            await asyncio.sleep(0)
        raise kind("from the coroutine")

    for before in (True, False):
        with pytest.raises(kind) as err:
            _sync.sync(raises(before), timeout=10, eager=eager)
        assert type(err.value) is kind
    assert _sync.sync(_answer(), timeout=10) == 42


@pytest.mark.parametrize("eager", [False, True], ids=["task", "eager"])
def test_a_timed_out_call_is_cancelled_wherever_it_suspended(eager: bool) -> None:
    """Mutation: ``_resume`` sending ``None`` where the task threw in its cancellation: an eager
    call that ran out of time carried on (its ``finally`` never ran), and the caller heard
    ``BridgeTimeout`` only after the 5 s it gives a cancelled call to stop."""
    finished = threading.Event()

    async def slow() -> None:
        end = time.monotonic() + 3
        try:
            while time.monotonic() < end:  # (suspending on no future: a cancel is thrown in)
                await asyncio.sleep(0)
        finally:
            finished.set()

    with pytest.raises(_sync.BridgeTimeout):
        _sync.sync(slow(), timeout=0.05, eager=eager)
    assert finished.wait(2)


def test_a_call_its_owner_cancelled_before_it_started_never_runs() -> None:
    """Mutation: ``_Waiter.start`` without ``_refuse``: a call its owner cancelled (shutdown) as
    it was tracked, before its start was queued, ran all the same (its caller got its result,
    from an owner already shut down)."""
    ran: list[str] = []

    async def work() -> str:
        ran.append("ran")
        return "ran"

    class CancelledAsAdded(set[_sync._Waiter]):
        def add(self, waiter: _sync._Waiter) -> None:
            super().add(waiter)
            _sync.cancel(self)  # (the owner shuts down just then)

    with pytest.raises(_sync.BridgeCancelled):
        _sync.sync(work(), timeout=10, tracker=CancelledAsAdded())
    assert ran == []
    assert _sync.sync(_answer(), timeout=10) == 42


def test_a_child_forked_while_the_loop_was_being_started_starts_its_own() -> None:
    """Mutation: the at-fork reset keeping the parent's ``_lock``: a child forked while another
    thread of the parent held it (starting the IO loop) found it held by a thread it does not
    have, and its first call waited for ever."""
    assert _sync.sync(_answer(), timeout=10) == 42
    with _sync._lock:  # (as a thread in ``get_loop`` holds it)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 3
            try:
                code = 0 if _sync.sync(_answer(), timeout=10) == 42 else 1
            finally:
                os._exit(code)
    assert reaped(pid, within=20) == 0


def test_a_submitted_coroutine_that_ends_cancelled_settles_its_future_cancelled() -> None:
    """Mutation: ``_Handover._settle`` without ``self.future.cancel()`` for a task that ended
    cancelled: a coroutine whose task was cancelled by someone else (or that raised
    ``CancelledError`` itself) left its future pending for ever (its ``set_result`` raised in
    the loop's callback), and whoever waited on it hung."""

    async def cancelled_inside() -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError

    future = _sync.submit(cancelled_inside())
    concurrent.futures.wait([future], 10)
    assert future.cancelled()


def test_a_forked_child_cuts_its_copy_of_the_io_loop_off_from_the_parents() -> None:
    """Mutation: the at-fork reset without ``_cut_off_from_the_parent`` (which the h118 and
    process-lifecycle tests call themselves): the child's copy of the IO loop kept the parent's
    epoll instance and self-pipe, through which it disturbed the parent's loop."""
    parents = _sync.get_loop()
    epoll = parents._selector._selector.fileno()  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            own_epoll = parents._selector._selector.fileno() != epoll  # type: ignore[attr-defined]
            pipe_closed = parents._csock.fileno() == -1  # type: ignore[attr-defined]
            code = 0 if own_epoll and pipe_closed else 1
        finally:
            os._exit(code)
    assert reaped(pid, within=20) == 0
    assert parents._csock.fileno() != -1  # type: ignore[attr-defined]
    assert _sync.sync(_answer(), timeout=10) == 42


class _LoopInterruptedAtCancel:
    """Stands for the IO loop: the second callback the main thread asks it to queue (after the
    call's start: the cancel of a call that ran out of time) is not queued, :class:`Interrupted`
    raised instead (Ctrl-C as ``call_soon_threadsafe`` was entered)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queued = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            self.queued += 1
            if self.queued == 2:
                raise Interrupted
        return self.loop.call_soon_threadsafe(callback, *args)


def test_ctrl_c_as_a_timed_out_call_is_cancelled_still_cancels_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands as ``sync`` queues the cancel of a call that ran out of time: the interrupt
    reaches the caller, the coroutine is cancelled all the same (its ``finally`` runs) and the
    call leaves its owner's tracker. Failed before: the cancel was never queued, the coroutine
    ran on unseen on the loop, and the call stayed tracked."""
    stopped = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    loop = _LoopInterruptedAtCancel(_sync.get_loop())
    monkeypatch.setattr(_sync, "get_loop", lambda: loop)
    tracker: set[_sync._Waiter] = set()
    with pytest.raises(Interrupted):
        _sync.sync(slow(), timeout=0.05, tracker=tracker)
    assert loop.queued >= 2
    assert stopped.wait(5), "the timed-out coroutine runs on after the interrupt"
    assert not tracker


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_base_exception_of_a_submitted_coroutine_reaches_its_future(kind: type[BaseException]) -> None:
    async def raises() -> None:
        await asyncio.sleep(0)
        raise kind("from the coroutine")

    error = _sync.submit(raises()).exception(10)
    assert type(error) is kind
    assert _sync.sync(_answer(), timeout=10) == 42


def test_a_call_its_owner_cancels_as_its_timeout_runs_out_says_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutation: the timeout path taking every cancelled call for its own timeout: a call its
    owner cancelled (shutdown) just as its timeout ran out raised ``BridgeTimeout``, which its
    caller took for a slow store rather than its owner's shutdown (``BridgeCancelled``)."""
    real = _sync.interruptible_wait
    tracker: set[_sync._Waiter] = set()
    calls: list[float | None] = []

    def owner_cancels_as_it_times_out(wait: Any, timeout: float | None, **kwargs: Any) -> bool:
        calls.append(timeout)
        if len(calls) == 1:
            _sync.cancel(tracker)  # (the owner shuts down just as the timeout runs out)
            return False
        return real(wait, timeout, **kwargs)

    async def slow() -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(_sync, "interruptible_wait", owner_cancels_as_it_times_out)
    with pytest.raises(_sync.BridgeCancelled):
        _sync.sync(slow(), timeout=0.05, tracker=tracker)
    assert not tracker

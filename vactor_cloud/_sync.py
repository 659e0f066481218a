"""The sync bridge: one IO thread runs an event loop; sync APIs submit coroutines to it.

The loop starts lazily, is shared by everything in the process, and is
recreated in a child after ``fork`` (the parent's loop thread does not exist
there). Calling :func:`sync` from the loop's own thread would deadlock, so it
refuses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import select
import selectors
import threading
import time
import types
from collections.abc import Callable, Collection, Coroutine, Generator
from typing import Any, TypeVar

__all__ = [
    "BridgeCancelled",
    "BridgeTimeout",
    "cancel",
    "get_loop",
    "in_loop_thread",
    "interruptible_wait",
    "sleep",
    "submit",
    "sync",
    "until_stopped",
    "wait_aside",
    "wait_first",
    "wait_futures",
]

T = TypeVar("T")

logger = logging.getLogger("vactor_cloud")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
#: the IO loop thread's ``threading.get_ident()`` (cheaper to compare than the thread object)
_thread_ident: int | None = None


#: the longest one wait of the main thread blocks in one go (:func:`interruptible_wait`)
MAIN_WAIT_SLICE = 0.25


def interruptible_wait(
    wait: Callable[..., bool], timeout: float | None, *, forever: float | None = -1
) -> bool:
    """``wait(timeout=...)`` (a lock's ``acquire``, an event's ``wait``) for up to ``timeout``
    seconds (None: no end; ``forever`` is what ``wait`` takes for that: -1 for a lock, None for
    an event); what it returned.

    On the main thread, in slices of ``MAIN_WAIT_SLICE``: Python runs signal handlers there
    (Ctrl-C's ``KeyboardInterrupt`` too) only when the thread runs Python code again. A signal
    taken by another thread (the kernel picks any thread of the process) or landing just before
    the wait's system call interrupts nothing, and its handler waited for a whole wait to end:
    as long as ``Settings.deadline``.
    """
    if threading.get_ident() != threading.main_thread().ident:
        return wait(timeout=forever if timeout is None else timeout)
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = MAIN_WAIT_SLICE if end is None else min(MAIN_WAIT_SLICE, max(end - time.monotonic(), 0.0))
        if wait(timeout=left):
            return True
        if end is not None and time.monotonic() >= end:
            return False


def sleep(seconds: float) -> None:
    """``time.sleep(seconds)``; on the main thread in slices (:func:`interruptible_wait`): a
    sleep is a wait too, which a signal another thread took does not cut short."""
    if seconds <= 0 or threading.get_ident() != threading.main_thread().ident:
        time.sleep(max(seconds, 0.0))
        return
    never = threading.Lock()
    never.acquire()
    interruptible_wait(never.acquire, seconds)


def wait_aside(fn: Callable[[], object], timeout: float | None = None, *, name: str = "vactor-wait") -> bool:
    """``fn()``, a blocking wait that cannot be sliced itself (a ``Thread.join``, an executor's
    shutdown), bounded by ``fn`` itself; whether it returned (an exception it raised is raised
    here).

    On the main thread, ``fn`` runs on a helper thread named ``name``, waited for in slices
    (:func:`interruptible_wait`) for up to ``timeout`` seconds (None: until it returns): a
    signal's handler runs meanwhile, and an interrupt leaves ``fn`` running, where one of
    ``Thread.join`` itself marks a thread still running as ended (bpo-45274). Elsewhere it is
    called here (``timeout`` unused)."""
    if threading.get_ident() != threading.main_thread().ident:
        fn()
        return True
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            failed.append(exc)
        finally:
            done.set()

    helper = threading.Thread(target=run, name=name, daemon=True)
    helper.start()
    if not interruptible_wait(done.wait, timeout, forever=None):
        return False
    helper.join()  # it has only to return
    if failed:
        raise failed[0]
    return True


def wait_futures(futures: Collection[concurrent.futures.Future[Any]], timeout: float | None = None) -> bool:
    """``concurrent.futures.wait(futures, timeout)``: whether they all finished within
    ``timeout`` seconds (None: no end). On the main thread, in slices (:func:`interruptible_wait`)."""
    return interruptible_wait(
        lambda timeout: not concurrent.futures.wait(futures, timeout).not_done, timeout, forever=None
    )


def wait_first(futures: Collection[concurrent.futures.Future[Any]]) -> set[concurrent.futures.Future[Any]]:
    """Those of ``futures`` done, once one is (``concurrent.futures.wait(futures,
    return_when=FIRST_COMPLETED)``, no end). On the main thread, in slices
    (:func:`interruptible_wait`)."""
    done: set[concurrent.futures.Future[Any]] = set()

    def some_done(timeout: float | None) -> bool:
        done.update(concurrent.futures.wait(futures, timeout, concurrent.futures.FIRST_COMPLETED).done)
        return bool(done)

    interruptible_wait(some_done, None, forever=None)
    return done


def _reset_after_fork() -> None:
    global _loop, _thread, _thread_ident, _lock
    parents, _loop = _loop, None
    _thread = None
    _thread_ident = None
    _lock = threading.Lock()
    if parents is not None:
        # After the reset: a cut-off that fails (no descriptor left for an epoll, an event loop
        # without these internals) must not leave the child waiting on the parent's loop.
        try:
            _cut_off_from_the_parent(parents)
        except Exception as exc:
            logger.debug("forked child: the parent's IO loop copy kept its kernel objects: %r", exc)


def _cut_off_from_the_parent(loop: asyncio.AbstractEventLoop) -> None:
    """(In a forked child) The child's copy of the parent's IO loop, which never runs here, shares
    two kernel objects with the parent's: its epoll instance and its self-pipe. Through them the
    child disturbed the parent: closing a transport of that loop (an aiohttp connection pool of
    the parent's, closed as it is collected here) removed the socket from the parent's epoll
    interest list (the parent's loop never heard that connection again), and scheduling on the
    loop from a thread (``call_soon_threadsafe``) woke the parent's. The copy gets an empty epoll
    instance of the child's own, and its end of the self-pipe is closed (asyncio's wake-up write
    then fails quietly). Both closes drop the child's descriptors only: the parent's stay open."""
    selector = getattr(loop, "_selector", None)
    if isinstance(selector, selectors.EpollSelector):
        shared, selector._selector = selector._selector, select.epoll()  # type: ignore[attr-defined]
        shared.close()
    wake = getattr(loop, "_csock", None)
    if wake is not None:
        wake.close()


os.register_at_fork(after_in_child=_reset_after_fork)


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's IO loop, started on first use in a daemon thread."""
    global _loop, _thread, _thread_ident
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            new_loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                ready.set()
                while True:
                    try:
                        new_loop.run_forever()
                    except BaseException as exc:
                        # asyncio lets SystemExit and KeyboardInterrupt out of the loop once the
                        # task that raised them has them as its outcome (a pickled payload or
                        # value unpickled here called sys.exit()): that task's waiter gets the
                        # exception; the loop carries on for everyone else.
                        logger.warning("vactor_cloud's IO loop carries on after %r", exc)
                        continue
                    return  # stopped on purpose (nothing in vactor_cloud does)

            thread = threading.Thread(target=run, name="vactor-io", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread, _thread_ident = new_loop, thread, thread.ident
        return _loop


def in_loop_thread() -> bool:
    """True when called from the IO loop's own thread."""
    return _thread_ident is not None and _thread_ident == threading.get_ident()


def cancel(waiters: set[_Waiter]) -> None:
    """Cancel the ``sync`` calls in ``waiters`` (a ``tracker``): each raises :class:`BridgeCancelled`
    (one whose coroutine finished first keeps its outcome)."""
    loop = _loop
    if loop is None:
        return
    for waiter in list(waiters):
        waiter.stopped = True
        loop.call_soon_threadsafe(waiter.cancel)


def submit(
    coro: Coroutine[Any, Any, T],
    *,
    future: concurrent.futures.Future[T] | None = None,
    handed: list[bool] | None = None,
) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the IO loop; a thread-safe future of its outcome (``future`` if
    given: a caller's, its callbacks registered before the hand-over). Cancelling the future
    cancels the task; the task's outcome is always taken (no "exception never retrieved").

    ``handed``: a one-item list set True as the hand-over begins. From then on the future
    settles whatever happens: ``coro`` runs, or, the hand-over cut short by an interrupt
    (Ctrl-C) or refused (the loop closed), ``coro`` is closed unrun and the future cancelled.
    A caller that takes an interrupt around this call (as it began, or just after it
    returned: either way ``submit`` seems to have raised) learns so whether the future's
    callbacks will run. (``asyncio.run_coroutine_threadsafe`` makes its future only as it
    queues the start: an interrupt just after left the caller without it, ``coro`` running.)"""
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"a coroutine object is required, not {type(coro).__name__}")
    if future is None:
        future = concurrent.futures.Future()
    loop = get_loop()
    handover = _Handover(loop, coro, future)
    if handed is not None:
        handed[0] = True  # (an interrupt lands only as a call returns or begins: in the ``try``)
    try:
        loop.call_soon_threadsafe(handover.start)
    except BaseException:
        # The start queued or not: the withdrawal, queued behind it, knows.
        try:
            loop.call_soon_threadsafe(handover.withdraw)
        except RuntimeError:  # the loop is closed: it runs nothing more
            handover.withdraw()
        raise
    return future


class _Handover:
    """A coroutine :func:`submit` hands to the loop, and the future of its outcome."""

    __slots__ = ("begun", "coro", "future", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        future: concurrent.futures.Future[Any],
    ) -> None:
        self.loop = loop
        self.coro = coro
        self.future = future
        #: started, or withdrawn: the coroutine is the loop's, or closed
        self.begun = False

    def start(self) -> None:
        """(The loop) A task runs the coroutine, unless its future was cancelled first."""
        self.begun = True
        if self.future.cancelled():
            self.coro.close()
            self.future.set_running_or_notify_cancel()  # (``concurrent.futures.wait`` hears it)
            return
        task = self.loop.create_task(self.coro)
        task.add_done_callback(self._settle)
        self.future.add_done_callback(lambda future: self._cancel(future, task))

    def withdraw(self) -> None:
        """(The loop, after the start if it was queued) The hand-over was cut short: a
        coroutine whose start was never queued is closed, its future cancelled."""
        if not self.begun:
            self.begun = True
            self.coro.close()
            self.future.cancel()
            self.future.set_running_or_notify_cancel()

    def _cancel(self, future: concurrent.futures.Future[Any], task: asyncio.Task[Any]) -> None:
        if future.cancelled():
            with contextlib.suppress(RuntimeError):  # (the loop closed: the task runs no more)
                self.loop.call_soon_threadsafe(task.cancel)

    def _settle(self, task: asyncio.Task[Any]) -> None:
        error = None if task.cancelled() else task.exception()  # (taken even if unwanted)
        if task.cancelled():
            self.future.cancel()
        # A cancelled future (by its owner, maybe first) keeps that outcome; its waiters in
        # ``concurrent.futures.wait`` hear of it only so.
        if not self.future.set_running_or_notify_cancel():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(task.result())


async def until_stopped(coro: Coroutine[Any, Any, T], settle: float) -> T:
    """Run ``coro`` on the IO loop and await it from any loop (the async ``sync(settle=)``).

    Cancelled, it cancels ``coro`` and waits for it to stop (its ``finally`` blocks run;
    ``settle`` seconds at most) before the cancel goes on: a write made after its caller heard
    "cancelled" is one nobody expects. (:func:`submit`'s future, cancelled, cancels the task
    and returns at once; ``asyncio.to_thread`` of a blocking twin leaves it running.)"""
    loop = get_loop()
    ended: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def finish(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            ended.cancel()
        elif (error := task.exception()) is not None:
            ended.set_exception(error)
        else:
            ended.set_result(task.result())

    def start() -> None:
        task = loop.create_task(coro)
        task.add_done_callback(finish)
        tasks.append(task)

    def cancel() -> None:  # (runs after ``start``: the loop runs its callbacks in order)
        tasks[0].cancel()

    loop.call_soon_threadsafe(start)
    try:
        return await asyncio.shield(asyncio.wrap_future(ended))
    except asyncio.CancelledError:
        loop.call_soon_threadsafe(cancel)
        # (Bounded: a stalled request in its ``finally`` ends later, unwaited for.)
        with contextlib.suppress(BaseException):
            await asyncio.wait([asyncio.wrap_future(ended)], timeout=settle)
        raise


class BridgeTimeout(Exception):
    """``sync(..., timeout=)`` ran out of time; the coroutine was cancelled."""


class BridgeCancelled(Exception):
    """The coroutine of a ``sync`` call was cancelled by :func:`cancel` (its owner shut down)."""


def sync(
    coro: Coroutine[Any, Any, T],
    timeout: float | None = None,
    *,
    eager: bool = False,
    tracker: set[_Waiter] | None = None,
    settle: float = 0.0,
) -> T:
    """Run ``coro`` on the IO loop and wait for its result from a plain thread.

    After ``timeout`` seconds the coroutine is cancelled and
    :class:`BridgeTimeout` raised (a ``TimeoutError`` the coroutine itself
    raised passes through as it is). An exception raised in the waiting
    thread (``KeyboardInterrupt`` at Ctrl-C) cancels the coroutine as well and
    reaches the caller.

    ``eager``: run the coroutine's first step at once on the loop rather than
    as a new task; a coroutine that never suspends (the memory store's
    requests) then costs one loop iteration instead of three. Only for
    coroutines that need no current task before their first suspension
    (``asyncio.timeout`` does).

    ``tracker``: the call is in this set while it waits, so that its owner can
    :func:`cancel` it (at shutdown); a call cancelled so raises :class:`BridgeCancelled`.

    ``settle``: after an interrupt, wait up to this long for the cancelled coroutine to stop
    (its ``finally`` blocks to run: a lease given back) before the interrupt goes on; the
    program that Ctrl-C ends would otherwise shut the runtime down under them.
    """
    if in_loop_thread():
        coro.close()
        raise RuntimeError(
            "vactor_cloud: a blocking call was made on vactor_cloud's own IO loop; "
            "use the async API (await / run_async) there"
        )
    waiter = _Waiter()
    loop: asyncio.AbstractEventLoop | None = None
    try:
        loop = get_loop()
        if tracker is not None:
            tracker.add(waiter)
        # (The loop may run the coroutine, and its writes, before this thread runs another
        # line: an interrupt landing after the start was queued still settles below.)
        loop.call_soon_threadsafe(waiter.start_eagerly if eager else waiter.start, loop, coro)
        finished = interruptible_wait(waiter.done.acquire, timeout)
    except BaseException:
        # Interrupted (Ctrl-C: KeyboardInterrupt, or a signal handler's exception), even
        # before the wait began, or refused (the loop is closed): the work stops too rather
        # than carrying on unseen on the loop. ``withdraw`` runs after the start, if the start
        # was queued (the loop runs its callbacks in order): it cancels the task; if not, it
        # closes the coroutine and releases the waiter, so that the settle ends at once.
        if tracker is not None:
            tracker.discard(waiter)
        if loop is None:
            coro.close()
            raise
        try:
            loop.call_soon_threadsafe(waiter.withdraw, coro)
        except RuntimeError:  # the loop is closed: it runs nothing more
            waiter.withdraw(coro)
        if settle > 0:
            # (in slices on the main thread: a second signal's handler runs meanwhile)
            interruptible_wait(waiter.done.acquire, settle)
        raise
    if not finished:
        # The task may finish between the timeout and the cancel: then its outcome stands.
        try:
            loop.call_soon_threadsafe(waiter.cancel)
            stopped = interruptible_wait(waiter.done.acquire, 5.0)  # (its finally blocks run)
        except BaseException:
            # Ctrl-C meanwhile (even as the cancel was being queued): it reaches the caller, the
            # call leaves the tracker, and the cancel is queued (again: a second is harmless)
            # rather than the coroutine carrying on unseen.
            if tracker is not None:
                tracker.discard(waiter)
            with contextlib.suppress(RuntimeError):  # (the loop is closed: it runs nothing more)
                loop.call_soon_threadsafe(waiter.cancel)
            raise
        if not stopped or (waiter.cancelled and not waiter.stopped):
            if tracker is not None:
                tracker.discard(waiter)
            raise BridgeTimeout(f"no result within {timeout} s")
    if tracker is not None:
        tracker.discard(waiter)
    if waiter.cancelled:
        raise BridgeCancelled("cancelled: its owner shut down")
    error, waiter.error = waiter.error, None
    if error is not None:
        # No reference cycle is left behind (the error's traceback holds this frame and the
        # loop's, which hold the waiter and the error): the error and the frames its traceback
        # holds, the caller's runtime among their locals, are freed as soon as the caller is
        # done with it, not at the next garbage collection.
        try:
            raise error
        finally:
            del error, waiter
    return waiter.value  # type: ignore[no-any-return]


class _Waiter:
    """One ``sync`` call: the task on the loop and a lock the calling thread blocks on.

    Lighter than ``run_coroutine_threadsafe``: no ``concurrent.futures.Future``
    (a condition variable taken a dozen times per call) and no chained futures;
    a commit's one trip to the loop is most of the library's CPU per commit.
    """

    __slots__ = ("asked", "begun", "cancelled", "done", "error", "stopped", "task", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False
        #: cancelled by its owner (``cancel``), not by its own timeout
        self.stopped = False
        #: its start ran, or it was withdrawn: the coroutine is the loop's, or closed
        self.begun = False
        #: its task was cancelled from here (timeout, owner, interrupt): a task that ended
        #: cancelled otherwise had its coroutine raise ``CancelledError`` itself
        self.asked = False

    def _refuse(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """Cancelled (``cancel``) before it started: it never starts."""
        if not self.stopped:
            return False
        coro.close()
        self.cancelled = True
        self.done.release()
        return True

    def start(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> None:
        self.begun = True
        if self._refuse(coro):
            return
        try:
            self.task = loop.create_task(coro)
        except BaseException as exc:  # the loop is closing
            coro.close()
            self.error = exc
            self.done.release()
            return
        self.task.add_done_callback(self.finish)

    def start_eagerly(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> None:
        self.begun = True
        if self._refuse(coro):
            return
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self.value = stop.value
            self.done.release()
            return
        except BaseException as exc:
            self.error = exc
            self.done.release()
            return
        # It suspended: a task carries on from where it stopped.
        self.task = loop.create_task(_carry_on(coro, yielded))
        self.task.add_done_callback(self.finish)

    def finish(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() and not self.asked:
            # Nobody cancelled it: the coroutine raised ``CancelledError`` (a client library
            # letting an inner cancellation out). That error is its outcome, not "cancelled"
            # (which its caller took for its owner's shutdown), as for an eager start.
            try:
                task.result()
            except BaseException as exc:
                self.error = exc
        elif task.cancelled():
            self.cancelled = True
        else:
            self.error = task.exception()
            if self.error is None:
                self.value = task.result()
        self.task = None
        self.done.release()

    def cancel(self) -> None:
        if self.task is not None:
            self.asked = True
            self.task.cancel()

    def withdraw(self, coro: Coroutine[Any, Any, Any]) -> None:
        """(The loop, after the start if it was queued) ``sync`` was interrupted: the task is
        cancelled; a coroutine whose start was never queued is closed, the waiter released."""
        if self.begun:
            self.cancel()
            return
        self.begun = True
        coro.close()
        self.cancelled = True
        self.done.release()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Drive ``coro`` on from a suspension (``yielded``), as ``await`` would have."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # thrown in by the task (a cancellation)
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def _carry_on(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    return await _resume(coro, yielded)

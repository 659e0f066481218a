"""ActorFuture: the result of ``run_async``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, TypeVar, overload

from vactor_cloud import read_room
from vactor_cloud._sync import in_loop_thread, interruptible_wait, wait_futures
from vactor_cloud.byvalue import Frozen, freeze, thaw
from vactor_cloud.runtime_scope import carry_runtime

__all__ = ["ActorFuture", "CallFuture", "Waker", "get", "install_actor_held_probe", "install_method_probe"]

T = TypeVar("T")


class ActorFuture(concurrent.futures.Future[T]):
    """A :class:`concurrent.futures.Future` that can also be awaited from any event loop.

    ``fut.result(timeout)`` blocks a thread; ``await fut`` suspends a coroutine.
    A thread that blocks on it does the call's work itself when nobody else
    is (caller runs), so waiting never depends on a free pool thread. It is waited for in
    the process that made it: a forked child's copy of one not settled at the fork raises
    ``RuntimeError``.
    """

    #: runs the call's pending work on the waiting thread: ``help(timeout)``
    _help: Callable[[float | None], None] | None = None
    #: a read-only call: a waiter that does not run it itself (``await``, a bounded wait) has it
    #: run on a thread of its own rather than leave it to the pool, which writes may keep busy
    _read_only = False
    #: the result as it was first handed out, kept by value for later readers (``_by_value``)
    _kept: Frozen | None = None
    _handed_out = False
    #: the result is ``(None, error)``, an exception ``catch_exceptions=True`` hands back as a
    #: value: handed out as a raised one is, the same exception to every reader (a copy lost
    #: its traceback and cause, or could not be read back at all)
    _caught = False
    #: the result its call's run delivers, and the pickle it was read back from (``copies_from``),
    #: until it settles: then the future holds the pickle alone (``_Pickled``)
    _pristine: tuple[object, Frozen, bool] | None = None

    def __init__(self) -> None:
        super().__init__()
        #: the process that made it: its call runs on that process's threads, waited for there only
        self._pid = os.getpid()

    def _refuse_in_a_forked_child(self) -> None:
        """``RuntimeError`` if this is a forked child's copy of a future of the parent's, not
        settled at the fork. Its call is the parent's: waited for here, the child applied it
        itself (and the parent too: twice), or waited for the parent's threads, which do not
        exist in the child."""
        if self._pid != os.getpid() and not self.done():
            raise RuntimeError(
                f"this future was made in process {self._pid}, the parent of this forked child, "
                "before its call settled: the call is the parent's to run (it may still be applied "
                "there) and cannot be waited for here. Wait for it before forking, or make the call "
                "in the child (with an idempotency key if it must apply once)"
            )

    def __reduce__(self) -> Any:
        # concurrent.futures' own refusal names only its lock ("cannot pickle '_thread.RLock'").
        raise TypeError(
            "an ActorFuture cannot be sent to another process (a multiprocessing or executor "
            "task's argument): it is this process's wait for a call made here. Send its result "
            "(fut.result()) instead, or the actor's handle: another process can make the call "
            "itself, with an idempotency key if it must apply once"
        )

    def _wait_helping(self, timeout: float | None) -> None:
        # Only an unbounded wait runs the call itself: a method body cannot be stopped half
        # way, so a waiter with a timeout that ran it would wait as long as the body takes.
        # A bounded wait leaves a writer call to the pool (a busy pool: TimeoutError, as asked).
        helper = self._help
        if helper is None or self.done() or in_loop_thread():
            return
        if timeout is None:
            helper(timeout)
        elif self._read_only and not self.running():
            # Not on this thread (a slow read would outlast the timeout), nor behind the pool.
            threading.Thread(
                target=carry_runtime(helper), args=(None,), name="vactor-read", daemon=True
            ).start()

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        # A callback is the program's code: it runs in the context of the code that registered
        # it (as asyncio's do), not in that of whichever thread settles the future. That one is
        # the library's (a pool thread of an ``own_runtime()`` scope, whose runtime a callback
        # registered outside it then used, or failed on once the scope had ended).
        super().add_done_callback(fn if isinstance(fn, Waker) else _InContext(fn))

    def _invoke_callbacks(self) -> None:
        # concurrent.futures runs done callbacks on the thread that settles the future. Here
        # that thread may hold the actor (it applied the call): a callback calling the actor
        # (``fut.add_done_callback(lambda f: h.m.run())``) waited for itself, and every later
        # call of the actor behind it. Or it is vactor's IO loop (a resume's future), where a
        # blocking call is refused and any slow callback stalls every request of the process.
        # Such callbacks run on a thread of their own; vactor's own wake-ups (``Waker``) only
        # set an event, and run at once.
        if not (_actor_held() or in_loop_thread()):
            super()._invoke_callbacks()  # type: ignore[misc]
            return
        callbacks: list[Callable[[Any], object]] = self._done_callbacks  # type: ignore[has-type]
        later = [c for c in callbacks if not isinstance(c, Waker)]
        if not later:
            super()._invoke_callbacks()  # type: ignore[misc]
            return
        self._done_callbacks = [c for c in callbacks if isinstance(c, Waker)]
        super()._invoke_callbacks()  # type: ignore[misc]
        threading.Thread(
            target=_run_callbacks,
            args=(self, later),
            name="vactor-future-callbacks",
            daemon=True,
        ).start()

    def result(self, timeout: float | None = None) -> T:
        started = time.monotonic()
        self._refuse_in_a_forked_child()
        self._wait_helping(timeout)
        return self._by_value(super().result(self._waited(timeout, started)))

    def copies_from(self, result: object, frozen: Frozen, *, read_only: bool = False) -> None:
        """(For :mod:`vactor_cloud.batch_apply`) ``result``, if it is what this future is settled with
        (or, for ``catch_exceptions=True``, ``(result, None)``), was read back from ``frozen``
        (``read_only``: the result of a read-only call, which applies nothing):
        the settled future holds ``frozen`` alone, and each read, the first too, unpickles its
        own copy of it. A writer's result is so pickled once, as its method returns, and held
        once: were the future to hold the object read back as well, every unread future of a
        large result would hold it twice. A run whose outcome is not delivered (a lost race, a retry
        answered from the table) leaves another object: ``set_result`` tells by identity."""
        if not self.done():
            self._pristine = (result, frozen, read_only)

    def set_result(self, result: T) -> None:
        pristine, self._pristine = self._pristine, None
        held: object = result
        if pristine is not None and pristine[1].data is not None:
            read_back, frozen, read_only = pristine
            if held is read_back:
                held = _Pickled(frozen, type(read_back).__name__, paired=False, read_only=read_only)
            elif type(held) is tuple and len(held) == 2 and held[0] is read_back and held[1] is None:
                # catch_exceptions=True: (result, None), each read its own pair
                held = _Pickled(frozen, "tuple", paired=True, read_only=read_only)
        super().set_result(held)  # type: ignore[arg-type]

    def set_exception(self, exception: BaseException | None) -> None:
        self._pristine = None
        super().set_exception(exception)

    def _by_value(self, value: T) -> T:
        """Each read of the result gets its own copy, as each ``ray.get`` of one reference does:
        each one (another waiter, a done callback, the same caller again) gets the result as it
        was delivered, whatever an earlier reader did to its own. A method's result is held as
        the pickle it was copied from as its method returned (``copies_from``): each read
        unpickles its copy. Any other (a read-only method's result that could not be copied,
        one answered from the idempotency table) is held as it is: the first read gets the
        object, each later one an unpickle of a pickle made at the first read (nothing for
        scalars)."""
        if isinstance(value, _Pickled):
            own: T = value.copy()
            return own
        if self._caught:
            return value
        with self._condition:
            if not self._handed_out:
                self._handed_out = True
                try:
                    # (a read-only method's result is handed over as it is: it may not pickle)
                    self._kept = freeze(value)
                except TypeError:
                    self._kept = None
                return value
            kept = self._kept
        if kept is None:
            return value  # nothing to copy it by: the object itself, as a future hands it out
        try:
            copy: T = thaw(kept)
        except TypeError:
            # It pickles but cannot be read back (a read-only method's result, never round-
            # tripped): the object itself, as the first read got it; not the copy's error.
            self._kept = None
            return value
        return copy

    def __repr__(self) -> str:
        with self._condition:
            held = self._result if self._state == _FINISHED else None
        if type(held) is _Pickled:  # (not "returned _Pickled": the result's own type)
            return f"<{type(self).__name__} at {id(self):#x} state=finished returned {held.kind}>"
        return super().__repr__()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        started = time.monotonic()
        self._refuse_in_a_forked_child()
        self._wait_helping(timeout)
        return super().exception(self._waited(timeout, started))

    def _waited(self, timeout: float | None, started: float) -> float | None:
        """What is left of ``timeout`` for the plain wait; on the main thread, having waited
        in slices (``_sync.interruptible_wait``: signal handlers run meanwhile)."""
        left = _remaining(timeout, started)
        if self.done() or threading.get_ident() != threading.main_thread().ident:
            return left
        settled = interruptible_wait(
            lambda timeout: bool(concurrent.futures.wait((self,), timeout).done), left, forever=None
        )
        return left if settled else 0.0

    def __await__(self) -> Generator[Any, None, T]:
        # Not asyncio.wrap_future: it copies the outcome into an asyncio future, which refuses
        # StopIteration (the await would then hang). Here the awaiting coroutine is only woken,
        # and reads the outcome itself.
        self._refuse_in_a_forked_child()
        if not self.done() and self._help is not None and _method_running():
            # Awaited in an async actor method, which runs to completion on its caller's thread,
            # on an event loop of its own: as a blocking wait there would, do the call's work
            # here if nobody is (caller runs). Left to the pool, methods doing so on the pool
            # waited for calls queued behind them.
            self._wait_helping(None)
        if not self.done():
            loop = asyncio.get_running_loop()
            if self._read_only and self._help is not None:
                # A read-only call waits for no write: on the pool, it waited behind whatever
                # filled it (slow writer methods of any actor). The awaiting loop's executor
                # runs it too; whichever thread starts it first runs it, the other does nothing.
                with contextlib.suppress(RuntimeError):  # the loop's executor is shut down
                    loop.run_in_executor(None, carry_runtime(self._wait_helping), None).add_done_callback(
                        _retrieve
                    )
            waiter: asyncio.Future[None] = loop.create_future()

            def wake(_: object) -> None:
                with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                    loop.call_soon_threadsafe(_wake, waiter)

            self.add_done_callback(Waker(wake))
            try:
                yield from waiter.__await__()
            except asyncio.CancelledError:
                self.cancel()  # as wrap_future: a call not started yet is cancelled with its awaiter
                raise
        if self.cancelled():
            raise asyncio.CancelledError
        error = concurrent.futures.Future.exception(self, 0)
        if isinstance(error, StopIteration):
            # As PEP 479 does for generators: StopIteration cannot cross an await.
            raise RuntimeError(
                "the call raised StopIteration, which cannot be raised through an await; it is this "
                "error's __cause__ (fut.result() raises it as it is)"
            ) from error
        return self._by_value(concurrent.futures.Future.result(self, 0))


class _Pickled:
    """A writer's result as its settled future holds it: the pickle its caller's copy was read
    back from as the method returned (``ActorFuture.copies_from``), of which each read
    unpickles a copy of its own; ``paired``: ``catch_exceptions=True``'s ``(result, None)``;
    ``read_only``: a read-only call's result (the call applied nothing)."""

    __slots__ = ("frozen", "kind", "paired", "read_only")

    def __init__(self, frozen: Frozen, kind: str, *, paired: bool, read_only: bool = False) -> None:
        self.frozen = frozen
        #: the result's type name, for the future's ``repr``
        self.kind = kind
        self.paired = paired
        self.read_only = read_only

    def copy(self) -> Any:
        # It read back once as the method returned: TypeError here only for a pickle whose
        # reading depends on what changed since (a class removed from its module by a reload).
        # Not thaw's own words, which in the batch mean a call failed and not applied.
        try:
            value = thaw(self.frozen)
        except TypeError as exc:
            if self.read_only:
                raise TypeError(
                    f"the read-only call returned a {self.kind}, read back as the method "
                    "returned; reading this read's copy of it back fails now (something its "
                    f"unpickling needs changed since): call it again for a result read now "
                    f"({exc.__cause__!r})"
                ) from exc
            raise TypeError(
                f"the call was applied and returned a {self.kind}, read back as the method "
                "returned; reading this read's copy of it back fails now (something its "
                f"unpickling needs changed since): do not call again for it ({exc.__cause__!r})"
            ) from exc
        return (value, None) if self.paired else value


class Waker:
    """A done callback of vactor's own that only wakes a waiter: run at once by whichever
    thread settles the future (user callbacks may be moved to a thread of their own)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], object]) -> None:
        self.fn: Callable[[Any], object] = fn

    def __call__(self, future: Any) -> None:
        self.fn(future)


class _InContext:
    """A done callback of the program's, run in the context its registration was made in."""

    __slots__ = ("context", "fn")

    def __init__(self, fn: Callable[[Any], object]) -> None:
        self.fn = fn
        self.context = contextvars.copy_context()

    def __call__(self, future: Any) -> None:
        # (The read the settling thread runs in stays its own: a read the callback makes
        # inside it, on its thread, is nested in it, ``read_room`` rule 3.)
        self.context.run(_in_read, read_room.current_read(), self.fn, future)


def _in_read(read: read_room.Read | None, fn: Callable[[Any], object], future: Any) -> None:
    with read_room.within(read):
        fn(future)


def _run_callbacks(future: ActorFuture[Any], callbacks: list[Callable[[Any], object]]) -> None:
    for callback in callbacks:
        try:
            callback(future)
        except BaseException:  # no caller here to take a SystemExit: logged, as an error is
            logging.getLogger("concurrent.futures").exception("exception calling callback for %r", future)


#: whether this thread holds an actor (applies its writes); installed by :mod:`vactor_cloud.core`
_held_probes: list[Callable[[], bool]] = []


def _actor_held() -> bool:
    return bool(_held_probes) and _held_probes[0]()


def install_actor_held_probe(probe: Callable[[], bool]) -> None:
    """(For :mod:`vactor_cloud.core`) Tell ``ActorFuture`` how to know this thread holds an actor."""
    _held_probes[:] = [probe]


#: whether an actor method runs on this thread; installed by :mod:`vactor_cloud.batch` (which
#: imports this module, so the import goes one way)
_probes: list[Callable[[], bool]] = []


def _method_running() -> bool:
    return bool(_probes) and _probes[0]()


def install_method_probe(probe: Callable[[], bool]) -> None:
    """(For :mod:`vactor_cloud.batch`) Tell ``ActorFuture`` how to know an actor method runs here."""
    _probes[:] = [probe]


def _retrieve(job: asyncio.Future[None]) -> None:
    # The call's outcome goes to its future; an error of the helping itself is logged, not lost.
    if not job.cancelled() and job.exception() is not None:
        logging.getLogger("vactor_cloud").error(
            "running an awaited read-only call failed", exc_info=job.exception()
        )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_PENDING, _RUNNING, _CANCELLED, _FINISHED = "PENDING", "RUNNING", "CANCELLED", "FINISHED"


class CallFuture(concurrent.futures.Future[T]):
    """The future of a blocking ``run()``: internal, never handed to user code.

    The same states and methods as :class:`concurrent.futures.Future`, on one
    plain lock instead of a condition variable (whose Python-level enter and
    exit a warm commit paid seven times). Not for ``concurrent.futures.wait``
    or ``as_completed``, which reach into the stdlib's internals.
    """

    def __init__(self) -> None:  # no super().__init__(): no condition variable
        self._lock = threading.Lock()
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done_callbacks: list[Callable[[concurrent.futures.Future[T]], object]] = []
        self._event: threading.Event | None = None

    def done(self) -> bool:
        return self._state in (_CANCELLED, _FINISHED)

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return self._state == _RUNNING

    def cancel(self) -> bool:
        with self._lock:
            if self._state == _CANCELLED:
                return True
            if self._state != _PENDING:
                return False
            self._state = _CANCELLED
            event, callbacks = self._event, self._done_callbacks
            self._done_callbacks = []
        self._notify(event, callbacks)
        return True

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == _CANCELLED:
                return False
            if self._state != _PENDING:
                raise RuntimeError(f"Future in unexpected state: {self._state}")
            self._state = _RUNNING
            return True

    def set_result(self, result: T) -> None:
        with self._lock:
            if self._state in (_CANCELLED, _FINISHED):
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = _FINISHED
            event, callbacks = self._event, self._done_callbacks
            self._done_callbacks = []
        if event is not None or callbacks:
            self._notify(event, callbacks)

    def set_exception(self, exception: BaseException | None) -> None:
        with self._lock:
            if self._state in (_CANCELLED, _FINISHED):
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._exception = exception
            self._state = _FINISHED
            event, callbacks = self._event, self._done_callbacks
            self._done_callbacks = []
        self._notify(event, callbacks)

    def _notify(
        self, event: threading.Event | None, callbacks: list[Callable[[concurrent.futures.Future[T]], object]]
    ) -> None:
        if event is not None:
            event.set()
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logging.getLogger("concurrent.futures").exception("exception calling callback for %r", self)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        with self._lock:
            if self._state not in (_CANCELLED, _FINISHED):
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            logging.getLogger("concurrent.futures").exception("exception calling callback for %r", self)

    def _wait(self, timeout: float | None) -> None:
        if self._state in (_CANCELLED, _FINISHED):
            return
        with self._lock:
            if self._state in (_CANCELLED, _FINISHED):
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not interruptible_wait(event.wait, timeout, forever=None):
            raise concurrent.futures.TimeoutError()

    def result(self, timeout: float | None = None) -> T:
        self._wait(timeout)
        if self._state == _CANCELLED:
            raise concurrent.futures.CancelledError()
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                del self  # (no cycle: the traceback holds this frame, the future its exception)
        return self._result  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        if self._state == _CANCELLED:
            raise concurrent.futures.CancelledError()
        return self._exception

    def __repr__(self) -> str:
        return f"<CallFuture at {id(self):#x} state={self._state.lower()}>"


def _remaining(timeout: float | None, started: float) -> float | None:
    if timeout is None:
        return None
    return max(0.0, timeout - (time.monotonic() - started))


@overload
def get(futures: concurrent.futures.Future[T], *, timeout: float | None = None) -> T: ...


@overload
def get(futures: Iterable[concurrent.futures.Future[T]], *, timeout: float | None = None) -> list[T]: ...


@overload  # futures of several types (a checker infers none common to them): results of any type
def get(futures: Iterable[concurrent.futures.Future[Any]], *, timeout: float | None = None) -> list[Any]: ...


def get(futures: Any, *, timeout: float | None = None) -> Any:
    """Wait for one future (its result) or a list of them (a list of results), like ``ray.get``.

    ``timeout`` bounds the whole wait; ``TimeoutError`` when it passes. The
    exception a call raised is re-raised here.
    """
    if isinstance(futures, concurrent.futures.Future):
        return futures.result(_waited_plain(futures, timeout))
    if isinstance(futures, str | bytes | Mapping) or not isinstance(futures, Iterable):
        raise TypeError(
            "vc.get() takes a future (what run_async() returns) or a list of futures, "
            f"got {type(futures).__name__}"
        )
    items = list(futures)
    for index, item in enumerate(items):
        if not isinstance(item, concurrent.futures.Future):
            raise TypeError(
                "vc.get() takes a future (what run_async() returns) or a list of futures, "
                f"got a {type(futures).__name__} whose item {index} is a {type(item).__name__}"
            )
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    for future in items:
        # Waiting on each in turn lets this thread help with the work (see ActorFuture).
        left = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
        try:
            future.exception(_waited_plain(future, left))
        except concurrent.futures.TimeoutError:
            not_done = sum(1 for f in items if not f.done())
            raise TimeoutError(
                f"{not_done} of {len(items)} calls did not finish within {timeout} s"
            ) from None
    return [f.result() for f in items]


def _waited_plain(future: concurrent.futures.Future[Any], timeout: float | None) -> float | None:
    """What is left of ``timeout`` for ``future``'s own wait. An ``ActorFuture`` waits in slices
    on the main thread itself (and may run its call here); another future (an executor's) is
    waited for here, in slices there (``_sync.wait_futures``)."""
    if isinstance(future, ActorFuture | CallFuture) or future.done():
        return timeout
    started = time.monotonic()
    if not wait_futures((future,), timeout):
        return 0.0
    return _remaining(timeout, started)

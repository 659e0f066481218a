"""What a runtime has going on, and how it runs it: trips to the IO loop and the pools, each a
piece of work that shutdown waits for.

:class:`RuntimeWork` counts the pieces (pool tasks, trips to the IO loop, background
coroutines, actors a thread holds) and lets ``close`` wait until they are done.
:class:`WorkRunner` is the part of :class:`~vactor_cloud.actor_runtime.Runtime` (a mixin, the
base of its parts ``Creator`` and ``Closer``) that runs work and begins and ends its pieces:
:meth:`~WorkRunner.run` and :meth:`~WorkRunner.bounded` on the IO loop (bounded by
``Settings.deadline``), :meth:`~WorkRunner.spawn` on a pool, :meth:`~WorkRunner.background`
and :meth:`~WorkRunner.keep` left running; and the errors that say the runtime shut down. The
fields it uses are the runtime's (set by ``Runtime.__init__``), declared at the top of the
class.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from vactor_cloud import _sync, counters
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import RuntimeShutdownError, StorageTimeoutError
from vactor_cloud.runtime_scope import carry_runtime
from vactor_cloud.storage._base import OPERATION, OperationTrouble

if TYPE_CHECKING:
    from vactor_cloud.settings import Settings
    from vactor_cloud.storage import ObjectStore
    from vactor_cloud.worker_pool import WorkerPool

__all__ = ["RuntimeWork", "WorkRunner"]

T = TypeVar("T")


class RuntimeWork:
    """What a runtime has going on: pool tasks, trips to the IO loop, background coroutines,
    actors a thread holds. Shutdown waits until it is all done (:meth:`wait_done`).

    Each piece is a token with the thread it runs on (``None``: not on a thread yet, or on
    the IO loop); a thread never waits for its own (``shutdown()`` from inside a method).
    """

    def __init__(self) -> None:
        self._done = threading.Condition(threading.Lock())
        self._items: dict[int, int | None] = {}
        self._tokens = itertools.count()
        #: threads in :meth:`wait_done` (shutdown): only then does an end notify (the warm path
        #: begins and ends a piece per batch: a lock and a notify each cost it about 5 %)
        self._waiting = 0

    def token(self) -> int:
        """A token for a piece of work not begun yet: taken before a ``try`` whose ``except``
        ends it, and begun inside (``begin(token=)``), no interrupt (Ctrl-C) leaves it begun
        and unended. (Begun before the ``try``, one landing as ``begin`` returned did.)"""
        return next(self._tokens)

    def begin(self, ident: int | None = None, *, token: int | None = None) -> int:
        if token is None:
            token = next(self._tokens)
        self._items[token] = ident  # (one dict store: atomic; wait_done reads under the lock)
        return token

    def runs_on(self, token: int, ident: int) -> None:
        with self._done:
            if token in self._items:
                self._items[token] = ident

    def end(self, token: int, *_: object) -> None:
        self._items.pop(token, None)
        # A waiter counted itself before it looked at ``_items``, under the lock it waits with:
        # either it saw this pop, or it is counted here and woken.
        if self._waiting:
            with self._done:
                self._done.notify_all()

    def _others(self) -> int:
        me = threading.get_ident()
        return sum(1 for ident in list(self._items.values()) if ident != me)

    def wait_done(self, until: float) -> int:
        """Wait until only this thread's own work is left, at most until ``until`` (monotonic);
        how many pieces of other threads' work are left."""
        with self._done:
            self._waiting += 1
            try:
                while True:
                    left = self._others()
                    remaining = until - time.monotonic()
                    if not left or remaining <= 0:
                        return left
                    _sync.interruptible_wait(self._done.wait, remaining, forever=None)
            finally:
                self._waiting -= 1

    def working(self) -> _Working:
        """``with work.working():`` this thread's piece of work, begun and ended."""
        return _Working(self)


class _Working:
    """(:meth:`RuntimeWork.working`: a class, not a generator: it is on every batch's path.)"""

    __slots__ = ("_token", "_work")

    def __init__(self, work: RuntimeWork) -> None:
        self._work = work
        self._token = -1

    def __enter__(self) -> None:
        # (An interrupt landing as ``begin`` returns raises from here: ``__exit__`` is not
        # called, so the piece is ended here; see ``RuntimeWork.token``.)
        self._token = token = self._work.token()
        try:
            self._work.begin(threading.get_ident(), token=token)
        except BaseException:
            self._work.end(token)
            raise

    def __exit__(self, *exc: object) -> None:
        self._work.end(self._token)


class WorkRunner:
    """A runtime as the runner of its work: on the IO loop, on its pools, in the background;
    each piece begun and ended in :class:`RuntimeWork`, so that ``close`` waits for it."""

    if TYPE_CHECKING:
        # Of the runtime (vactor_cloud.actor_runtime.Runtime, set by its __init__).
        settings: Settings
        store: ObjectStore
        executor: WorkerPool
        read_executor: WorkerPool
        stopped: bool
        _eager: bool
        _work: RuntimeWork
        _in_flight: set[Any]
        _background: set[Future[Any]]
        _tasks: set[asyncio.Future[Any]]
        _cut: weakref.WeakSet[asyncio.Future[Any]]

    # -- the cores' environment -----------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], *, hint: str = "", settle: float = 0.0) -> T:
        """Run ``coro`` on the IO loop and wait for it, at most ``Settings.deadline`` seconds
        (then ``StorageTimeoutError``, ending with ``hint``: what to do about it). Interrupted
        (Ctrl-C), wait up to ``settle`` seconds for the cancelled ``coro`` to stop."""
        deadline = self.settings.deadline
        if self.stopped:
            coro.close()
            raise self._stopped_error()
        token = self._work.token()
        handed = False
        operation = OperationTrouble()
        entered: contextvars.Token[OperationTrouble | None] | None = None
        try:
            self._work.begin(threading.get_ident(), token=token)  # (in the ``try``: ``RuntimeWork.token``)
            # The requests of ``coro`` are this operation's: the loop runs it in a copy of this
            # thread's context (``call_soon_threadsafe``), which ``OPERATION`` is set in.
            entered = OPERATION.set(operation)
            handed = True  # (``sync`` has ``coro`` from here: it runs it or closes it)
            return _sync.sync(
                coro, timeout=deadline, eager=self._eager, tracker=self._in_flight, settle=settle
            )
        except _sync.BridgeCancelled:
            raise self._stopped_error() from None
        except _sync.BridgeTimeout:
            raise self._deadline_error(hint, operation) from None
        except asyncio.CancelledError:
            # Raised by ``coro`` itself (nobody cancelled its task here): shutdown's, if it
            # cancelled what ``coro`` awaited; else a store request's own, which goes on up.
            if self.stopped:
                raise self._stopped_error() from None
            raise
        except BaseException:
            if not handed:  # (interrupted, Ctrl-C, as the piece of work was begun)
                coro.close()
            raise
        finally:
            if entered is not None:
                OPERATION.reset(entered)
            self._work.end(token)

    async def bounded(self, coro: Coroutine[Any, Any, T], *, hint: str = "") -> T:
        """On the IO loop: await ``coro``, at most ``Settings.deadline`` seconds (as :meth:`run`
        bounds a thread's wait; for async twins and I/O started now and waited for later).

        It is work of this runtime, as :meth:`run`'s is: ``close`` waits for it (and cancels
        its task past its timeout). An async twin the shutdown did not wait for went on
        sending requests to a store its runtime had closed, its task only the loop knew.
        Refused once the runtime stopped (``RuntimeShutdownError``), as :meth:`run` is."""
        if self.stopped:
            coro.close()
            raise self._stopped_error()
        token = self._work.begin()
        task = asyncio.current_task()
        mine = task is not None and task not in self._tasks
        if mine and task is not None:
            self._tasks.add(task)
        scope = asyncio.timeout(self.settings.deadline)
        operation = OperationTrouble()
        entered = OPERATION.set(operation)  # (in this task's context: its requests, its tasks')
        try:
            async with scope:
                return await coro
        except TimeoutError:
            if not scope.expired():
                raise  # the operation's own (a request's StorageTimeoutError)
            raise self._deadline_error(hint, operation) from None
        except asyncio.CancelledError:
            if task is not None and task in self._cut:  # (as ``run`` says, cut off the same way)
                raise self._stopped_error() from None
            raise
        finally:
            OPERATION.reset(entered)
            self._work.end(token)
            if mine and task is not None:
                self._tasks.discard(task)

    def keep(self, task: asyncio.Future[Any]) -> None:
        """(IO loop) ``task``, started by work of this runtime and left to end by itself (a
        delete's clean-up), is work of the runtime until it ends: ``close`` waits for it and
        cancels it past its timeout, and it is referenced until then. Handed over once the
        runtime has stopped (by work that close cut off, which ends after it), it is cancelled
        at once: a stopped runtime makes no request."""
        if self.stopped:
            self._cut.add(task)
            task.cancel()
            return
        token = self._work.begin()
        self._tasks.add(task)

        def ended(done: asyncio.Future[Any]) -> None:
            self._tasks.discard(done)
            self._work.end(token)

        task.add_done_callback(ended)

    def _cancel_tasks(self) -> None:
        """(IO loop) Past close's timeout: the tasks of :meth:`bounded` and :meth:`keep` stop
        (an async twin's caller hears ``RuntimeShutdownError``, as a ``run`` cut off does)."""
        for task in list(self._tasks):
            self._cut.add(task)
            task.cancel()

    def _deadline_error(self, hint: str, operation: OperationTrouble) -> StorageTimeoutError:
        deadline = self.settings.deadline
        # What the operation's requests (or the store's others) met meanwhile, when the store
        # saw something fail: an endpoint answering 503 or SlowDown until the deadline is not
        # "stalled or unreachable". The warning logged says it too.
        trouble = self.store.trouble_meanwhile(deadline, operation)
        why = (
            ": the store was too slow, kept failing, or is unreachable" if trouble is None else f"; {trouble}"
        )
        counters.deadline_timeout(self.store.describe(), deadline, why)
        return StorageTimeoutError(
            f"an operation on {self.store.describe()} did not finish within {deadline:g} s "
            f"(Settings.deadline){why}" + (f"; {hint}" if hint else ""),
        )

    def spawn(
        self,
        fn: Callable[[], None],
        on_shutdown: Callable[[BaseException], None] | None = None,
        *,
        read: bool = False,
    ) -> None:
        """Run ``fn`` on the pool (``read``: the read-only calls' pool). ``on_shutdown(error)``:
        settles what ``fn`` would have, if the runtime shuts down before ``fn`` starts (or has
        shut down already)."""
        token = self._work.token()
        # (Whose task it is, taken before ``carry_runtime`` wraps it: the wrapper of a core's
        # drain has no ``__self__``, and a drain the pool refused under ``own_runtime()`` left
        # the core's queued calls unsettled, their callers waiting for good.)
        owner = getattr(fn, "__self__", None)
        fn = carry_runtime(fn)

        def run() -> None:
            self._work.runs_on(token, threading.get_ident())
            fn()

        def done(task: Future[None]) -> None:
            self._work.end(token)
            if on_shutdown is not None and task.cancelled():  # (shutdown's, before it started)
                on_shutdown(self._shutdown_error())

        queued = [False]
        try:
            self._work.begin(token=token)  # (in the ``try``: see ``RuntimeWork.token``)
            # (``done`` registered before the task is queued: registered after, an interrupt in
            # between lost it, and shutdown waited its whole timeout for the task's token.)
            (self.read_executor if read else self.executor).submit(run, when_done=done, queued=queued)
        except BaseException as exc:
            if not queued[0]:
                # Refused, or interrupted (Ctrl-C) before the task was queued, or withdrawn: it
                # never runs, and shutdown waited its whole timeout for its piece of work. (One
                # queued, the interrupt taken just after ``submit`` returned, runs: its ``done``
                # ends the piece; ended here, shutdown went on while the task ran.)
                self._work.end(token)
            if not isinstance(exc, RuntimeError):
                raise
            # The runtime (or the interpreter) has shut down.
            error = self._shutdown_error()
            if on_shutdown is not None:
                on_shutdown(error)
            if isinstance(owner, ActorCore):
                self._fail_queued(owner, error)
            return

    def waiting_for_others(self) -> contextlib.AbstractContextManager[None]:
        """Around a long wait for another process (a poster's wait for the lease holder's fold,
        up to ``commit_timeout``): a pool thread waiting so does not count against
        ``max_workers`` meanwhile, so that the pool runs the work queued behind it (on an idle
        thread, or one it starts; see ``WorkerPool.waiting``). With every pool thread so kept
        (as many contended actors as threads, a holder that did not fold), a ``run_async`` call
        that nobody ran itself (``await``, a wait with a timeout) waited until a poster's
        ``commit_timeout``. On another thread (a caller running its call): nothing."""
        return self.executor.waiting()

    def working(self) -> contextlib.AbstractContextManager[None]:
        """Around a thread's hold of an actor (a drain, a lease holder's folds): shutdown
        waits for it to end."""
        return self._work.working()

    def _stopped_error(self) -> RuntimeShutdownError:
        return RuntimeShutdownError(
            f"the vactor_cloud runtime on {self.store.describe()} was shut down (vc.shutdown(), or "
            "init() again) while this operation ran: its storage request was not made, or was "
            "cancelled; retry it (the next call starts a new runtime)"
        )

    def shutdown_error(self) -> RuntimeShutdownError:
        return self._shutdown_error()

    def step_put_refused_error(self) -> RuntimeShutdownError:
        """A call whose body ran, its step put refused because the runtime stopped meanwhile."""
        return RuntimeShutdownError(
            f"the vactor_cloud runtime on {self.store.describe()} was shut down (vc.shutdown(), or "
            "init() again) while this call ran, before its step was written: it was not applied "
            "(what its method did outside the actor's state, its sub-tasks' side effects, was done); "
            "retry it (the next call starts a new runtime)"
        )

    def _shutdown_error(self) -> RuntimeShutdownError:
        return RuntimeShutdownError(
            f"the vactor_cloud runtime on {self.store.describe()} was shut down (vc.shutdown(), or "
            "init() again) before this call started: it was not applied; retry it (the next call "
            "starts a new runtime)"
        )

    @staticmethod
    def _fail_queued(core: ActorCore, error: BaseException) -> None:
        """Fail ``core``'s queued calls that no thread has started (they never will)."""
        with core._mutex:
            queue = core._queue
            calls = list(queue) if queue else []
            if queue:
                queue.clear()
            # (Its queued drain, if any, was cancelled or refused: the next submit queues one,
            # which the pool refuses in turn, failing that call at once rather than leaving it.)
            core._drain_queued = False
        for call in calls:
            if call.claim():
                call.deliver(Outcome(False, error))

    def background(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the IO loop (shutdown waits for it; refused once the runtime stopped)."""
        if self.stopped:
            coro.close()
            refused: Future[T] = Future()
            refused.set_exception(self._stopped_error())
            return refused
        token = self._work.token()
        future: Future[T] = Future()
        handed = [False]
        try:
            # (Begun in the ``try``: see ``RuntimeWork.token``. The future's callbacks are registered
            # before the hand-over: registered after, an interrupt in between lost them.)
            self._work.begin(token=token)
            future.add_done_callback(functools.partial(self._background_ended, token))
            self._background.add(future)
            _sync.submit(coro, future=future, handed=handed)
        except BaseException:
            if not handed[0]:
                # Interrupted (Ctrl-C) before the hand-over began: it never runs. (Once it
                # began, ``coro`` runs or is closed by ``submit``, its future settling either
                # way: ended here, shutdown went on while ``coro`` ran.)
                coro.close()
                self._background_ended(token, future)
            raise
        return future

    def _background_ended(self, token: int, future: Future[Any]) -> None:
        self._background.discard(future)
        self._work.end(token)

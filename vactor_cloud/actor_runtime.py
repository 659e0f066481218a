"""One process's runtime on one store (:class:`Runtime`): the store, settings, a bounded cache
of actor cores, HEAD flushing.

The runtime is what a core's :class:`~vactor_cloud.core.CoreEnv` asks for:
the IO loop (every trip to it bounded by ``Settings.deadline``), a small
pool for ``run_async``, class bodies loaded from storage, HEAD moves and
the cache's byte accounting. It knows nothing of handles, events or history.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import os
import pickle
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, wait
from typing import Any, TypeVar

from vactor_cloud import _sync, counters, keys
from vactor_cloud.actor_objects import retry_pause
from vactor_cloud.batch import PendingCall, summarize
from vactor_cloud.bytecode import BYTECODE
from vactor_cloud.byvalue import Frozen, freeze_arguments, thaw_arguments
from vactor_cloud.core import ActorCore, CommitHook
from vactor_cloud.creation import Creation, CreationTurns
from vactor_cloud.dedup import Outcome
from vactor_cloud.definition import ActorDefinition, with_fresh_defaults
from vactor_cloud.deletion import is_deleted
from vactor_cloud.errors import (
    ActorDefinitionError,
    ActorNotFoundError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    ReentrantCallError,
    RuntimeShutdownError,
    StorageTimeoutError,
)
from vactor_cloud.fork_guard import end_a_forked_child, forks_now
from vactor_cloud.head_flusher import HeadFlusher
from vactor_cloud.ids import validate_actor_id
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import ClassRef
from vactor_cloud.poster import Posted
from vactor_cloud.posting import PostSender
from vactor_cloud.read_room import ReadRoom
from vactor_cloud.runtime_scope import carry_runtime
from vactor_cloud.settings import Settings
from vactor_cloud.state import capture_state, dumps_state
from vactor_cloud.storage import MemoryStore, ObjectStore, open_store
from vactor_cloud.storage._base import OPERATION, OperationTrouble
from vactor_cloud.worker_pool import WorkerPool

logger = logging.getLogger("vactor_cloud")

T = TypeVar("T")


class _Work:
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
    """(:meth:`_Work.working`: a class, not a generator: it is on every batch's path.)"""

    __slots__ = ("_token", "_work")

    def __init__(self, work: _Work) -> None:
        self._work = work
        self._token = -1

    def __enter__(self) -> None:
        # (An interrupt landing as ``begin`` returns raises from here: ``__exit__`` is not
        # called, so the piece is ended here; see ``_Work.token``.)
        self._token = token = self._work.token()
        try:
            self._work.begin(threading.get_ident(), token=token)
        except BaseException:
            self._work.end(token)
            raise

    def __exit__(self, *exc: object) -> None:
        self._work.end(self._token)


def _check_key_room(store: ObjectStore) -> None:
    """``ValueError`` unless ``store`` holds keys as long as the longest vactor_cloud writes: refused
    up front, before any object, not at the first event sent to an actor with a long id."""
    room = store.max_key_bytes
    if room is not None and room < keys.LONGEST_KEY:
        raise ValueError(
            f"{store.describe()}: keys under this prefix can be at most {room} bytes (S3 and GCS take "
            f"object keys of up to 1,024 bytes, the prefix included), but vactor_cloud writes keys of "
            f"up to {keys.LONGEST_KEY} bytes (actors/<id>/inbox/<event_id> with ids at their limit of "
            f"255 bytes each); shorten the prefix by {keys.LONGEST_KEY - room} bytes or more"
        )


class Runtime:
    """One process's view of one storage root (the :class:`~vactor_cloud.core.CoreEnv` of its cores)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: ObjectStore = (
            settings.storage
            if isinstance(settings.storage, ObjectStore)
            else open_store(settings.storage, **settings.storage_options)
        )
        _check_key_room(self.store)
        # The in-process memory store cannot stall: its requests are bounded by the
        # operation deadline alone, and (needing no timeout task) run eagerly on the loop.
        self.store.request_timeout = None if type(self.store) is MemoryStore else settings.timeout
        self._eager = self.store.request_timeout is None
        self.loop = _sync.get_loop()
        #: calls made with ``run_async`` (and a lease holder's folds): ``max_workers`` at once,
        #: plus one per thread waiting for another process's fold (``waiting_for_others``)
        self.executor = WorkerPool(settings.max_workers, "vactor-call")
        #: read-only calls made with ``run_async`` run on a pool of their own: on the writers' pool
        #: they waited behind whatever filled it (slow writer methods, puts, a holder's folds)
        self.read_executor = WorkerPool(settings.max_workers, "vactor-read")
        self.read_room = ReadRoom(settings.max_read_bytes)
        #: who posts for this runtime's actors (one sender per process in each post cursor)
        self.post_sender = PostSender()
        #: by actor id, our newest post not yet known applied, whatever became of its core
        #: (a small record: a post given up on keeps no arguments; see ``Poster._outstanding``)
        self.pending_posts: dict[str, Posted] = {}
        self.heads = HeadFlusher(settings.head_interval, settings.head_lag_steps, settings.head_max_delay)
        #: actor cores, least recently used first
        self._cores: OrderedDict[str, ActorCore] = OrderedDict()
        #: cores evicted while still referenced (a caller between ``core()`` and queueing on it, a
        #: future, a running read): taken back rather than doubled, so that one process never has
        #: two cores of one actor racing each other (out of submission order, bodies re-run)
        self._evicted: weakref.WeakValueDictionary[str, ActorCore] = weakref.WeakValueDictionary()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        #: class bodies loaded from storage, by "sha/name" (a body is named by the steps naming it)
        self._classes: dict[str, ActorDefinition] = {}
        #: creations of one id in this process run one at a time (``__init__`` once)
        self._turns = CreationTurns()
        #: creations started by ``create_nowait`` that have not settled yet
        self._creations: dict[str, Creation] = {}
        #: by actor id, the key of a delete that ended without an answer (an error, a timeout,
        #: a cancel): the next delete of the actor here without a key of its own uses it, so
        #: it says False if that one committed (``deletion.delete``'s ``key``)
        self.delete_keys: dict[str, str] = {}
        self._pid = os.getpid()
        #: set as ``close`` begins: waits that poll this runtime (``wait_for_event``, a poster's,
        #: a lease holder's) end, and no commit attempt starts
        self.closed = False
        #: set once ``close`` has waited for what was running: no storage request is made any more
        self.stopped = False
        #: what is running (``close`` waits for it), and the trips to the IO loop in flight
        self._work = _Work()
        self._in_flight: set[Any] = set()
        #: background coroutines running (cancelled if shutdown's wait for them runs out)
        self._background: set[Future[Any]] = set()
        #: tasks on the IO loop running this runtime's work outside ``run`` (``bounded``,
        #: ``keep``); changed on the loop only
        self._tasks: set[asyncio.Future[Any]] = set()
        #: those close cancelled past its timeout
        self._cut: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()
        #: set once ``close`` has finished (a second ``close`` waits for the first)
        self._closed = threading.Event()
        #: set when the close in progress ends, finished or interrupted (Ctrl-C): a ``close``
        #: waiting for it then takes over what is left; None while no close runs
        self._closer: threading.Event | None = None

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
            self._work.begin(threading.get_ident(), token=token)  # (in the ``try``: ``_Work.token``)
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
            self._work.begin(token=token)  # (in the ``try``: see ``_Work.token``)
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
            # (Begun in the ``try``: see ``_Work.token``. The future's callbacks are registered
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

    def head_moved(self, core: ActorCore, *, lazy: bool = False) -> None:
        # Once stopped (a call still running when shutdown stopped waiting committed): dropped.
        # HEAD is a hint; a move flushed later would write to a store its user may have deleted.
        if not self.stopped:
            self.heads.mark(core, lazy=lazy)

    def weigh(self, core: ActorCore, weight: int) -> None:
        # The core's weight is set here, under the lock that evictions and take-backs hold: set
        # by the core before this lock, an eviction in between subtracted the new weight where
        # only the old had been added, and the change was then dropped (no longer cached); two
        # threads reweighing at once each added their change from the same old weight. Either
        # moved the byte count away from what the cache holds, for the process's life.
        with self._lock:
            delta, core._weight = weight - core._weight, weight
            if self._cores.get(core.actor_id) is not core:
                return
            self._cached_bytes += delta
            if self._cached_bytes > self.settings.max_cache_bytes:
                self._evict()

    def _evict(self) -> None:
        """Drop idle actors, least recently used first, until within both limits (lock held)."""
        settings = self.settings
        # At most 1024 looked at: when everything old is busy, try again on the next access.
        for actor_id in list(itertools.islice(self._cores, 1024)):
            if (
                len(self._cores) <= settings.max_cached_actors
                and self._cached_bytes <= settings.max_cache_bytes
            ):
                return
            core = self._cores[actor_id]
            if core.idle:
                del self._cores[actor_id]
                self._evicted[actor_id] = core
                counters.evicted(actor_id)
                self._cached_bytes -= core._weight

    def in_cache(self, core: ActorCore) -> bool:
        with self._lock:
            return self._cores.get(core.actor_id) is core

    def cached(self) -> tuple[int, int]:
        """(actors, bytes) held in the cache now."""
        with self._lock:
            return len(self._cores), self._cached_bytes

    def _inbox(self, core: ActorCore) -> CommitHook:
        # A weak reference: a core and its inbox must not form a cycle, or an evicted
        # actor's state would wait for the cycle collector instead of going at once.
        ref = weakref.ref(core)

        def request_commit(call: PendingCall) -> None:
            alive = ref()
            if alive is not None:
                alive.submit(call)

        def known_step() -> int:
            alive = ref()
            record = None if alive is None else alive.record
            return -1 if record is None else record.step

        return ActorInbox(core.log, self.settings, request_commit, known_step)

    def core(self, actor_id: str) -> ActorCore:
        """This process's core of ``actor_id`` (created, or reloaded after an eviction, on demand)."""
        with self._lock:
            core = self._cores.get(actor_id)
            if core is not None:
                self._cores.move_to_end(actor_id)
                return core
        validate_actor_id(actor_id)
        with self._lock:
            core = self._cores.get(actor_id)
            if core is None:
                core = self._evicted.pop(actor_id, None)
                if core is None:
                    core = ActorCore(self, actor_id, self._inbox)
                else:
                    self._cached_bytes += core._weight
                self._cores[actor_id] = core
                if (
                    len(self._cores) > self.settings.max_cached_actors
                    or self._cached_bytes > self.settings.max_cache_bytes
                ):
                    self._evict()
            return core

    def log(self, actor_id: str) -> ActorLog:
        return self.core(actor_id).log

    async def stored_class(self, log: ActorLog, ref: ClassRef) -> ActorDefinition:
        """The class body ``ref`` loaded from storage (cached per process)."""
        found = self._classes.get(f"{ref.sha}/{ref.name}")
        if found is not None:
            return found
        if not self.settings.load_classes_from_storage:
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, which this process cannot import, "
                "and loading class bodies from storage is disabled (load_classes_from_storage=False): "
                "make the class importable here"
            )
        try:
            body, bytecode = await _read_class_body(log, ref)
        except NotFoundError as exc:
            # The store's own words name a key the user never wrote: say whose body it is.
            raise NotFoundError(
                f"{exc}: the class body of actor {log.actor_id!r} ({ref.name}) is missing from "
                f"storage (deleted by a lifecycle rule, or not copied with the steps); this "
                "process cannot load the class without it: import the class's module in this "
                "process (a process that imports it stores the body again with its first commit "
                "to the actor)",
                exc.key,
            ) from exc
        if bytecode is not None and BYTECODE is not None and bytecode != BYTECODE:
            # (never unpickled: run by another Python, its code crashed CPython or ran wrongly)
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, whose class body stored in "
                f"actors/{log.actor_id}/class/{ref.sha} holds the bytecode of {bytecode}, not of this "
                f"process's {BYTECODE}: another Python version runs it wrongly or crashes on it, so "
                "it is not loaded: import (or define) the class in this process (a process that has "
                f"the class never loads its body), or call the actor from a {bytecode} process"
            )
        try:
            # Off the loop, on its default executor (short blocking work only: the local store's
            # file calls), not on the run_async pool: methods on that pool loading a class waited
            # for a pool thread their like held, until the deadline.
            raw = await asyncio.get_running_loop().run_in_executor(None, pickle.loads, body)
        except Exception as exc:
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, whose class body stored in "
                f"actors/{log.actor_id}/class/{ref.sha} cannot be loaded here ({type(exc).__name__}: "
                f"{exc}); it may be stored by reference (see docs/security.md): import the class's "
                "module in this process"
            ) from exc
        definition = ActorDefinition.from_stored(raw, ref.name)
        self._classes[f"{ref.sha}/{ref.name}"] = definition
        return definition

    # -- actors ------------------------------------------------------------------------
    def load(self, actor_id: str) -> ActorCore:
        """The existing actor's core, loaded; ``ActorNotFoundError`` if there is none
        (``ActorDeletedError`` if it was deleted)."""
        core = self.core(actor_id)
        record = core.record
        if record is None or core.definition is None or is_deleted(record):
            self.run(core.ensure_exists())
        return core

    async def load_async(self, actor_id: str) -> ActorCore:
        core = self.core(actor_id)
        await core.ensure_exists()
        return core

    def create(
        self, definition: ActorDefinition, actor_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[ActorCore, bool]:
        """The actor, created with ``cls(*args, **kwargs)`` if it does not exist (on this thread).

        True with it when this call created it. The arguments are copied first (by value,
        as a method call's are): ``__init__`` never gets the caller's own objects, and an
        argument that cannot be copied is refused here with ``TypeError``. An existing actor
        of another class: ``ActorDefinitionError``.
        """
        return self._create(definition, actor_id, freeze_arguments(args, kwargs))

    def _create(self, definition: ActorDefinition, actor_id: str, frozen: Frozen) -> tuple[ActorCore, bool]:
        if self.closed:  # (a creation started by a waiter after shutdown began: not started)
            raise self._shutdown_error()
        with self._work.working():  # (shutdown waits for a creation running, ``__init__`` too)
            return self._create_now(definition, actor_id, frozen)

    def _create_now(
        self, definition: ActorDefinition, actor_id: str, frozen: Frozen
    ) -> tuple[ActorCore, bool]:
        core = self.core(actor_id)
        while True:
            looked = self._turns.ended
            with contextlib.suppress(ActorNotFoundError):  # (and deleted: created again)
                self.run(core.ensure_exists())
                _check_class(actor_id, core.definition, definition)
                return core, False
            with self._turns.turn(actor_id, looked) as ours:
                if ours:
                    return self._create_here(core, definition, actor_id, frozen)

    def _create_here(
        self, core: ActorCore, definition: ActorDefinition, actor_id: str, frozen: Frozen
    ) -> tuple[ActorCore, bool]:
        """Run ``__init__`` and commit step 0 (this process's one creation of ``actor_id`` now)."""
        args, kwargs = thaw_arguments(frozen)
        init_args = ", ".join(
            [summarize(a) for a in args] + [f"{k}={summarize(v)}" for k, v in kwargs.items()]
        )
        # A mutable default of __init__ fresh for each creation, as for any method (FreshDefaults).
        # (getattr: mypy refuses __init__ read from a class object)
        init = getattr(definition.cls, "__init__")  # noqa: B009
        args, kwargs = with_fresh_defaults(init, args, kwargs)
        forks = forks_now()
        try:
            instance = definition.cls(*args, **kwargs)
        finally:
            _end_a_child_forked_in_init(forks, actor_id, definition)
        try:
            state = dumps_state(
                capture_state(instance),
                definition.serializer,
                restore=definition.restores,
                actor=(actor_id, definition.cls),
            )
        finally:
            _end_a_child_forked_in_init(forks, actor_id, definition, "__getstate__ (or its state's pickling)")
        created = self.run(core.create(definition, state, init_args[:200]))
        if created:
            # (A delete of the id here left in doubt is settled: the actor this made is new, and
            # the next delete here without a key means it, not that one.)
            self.delete_keys.pop(actor_id, None)
            logger.info(
                'Workflow job created. [id="%s", storage_url="%s"]. Type: virtual actor %s.',
                actor_id,
                self.store.describe(),
                definition.name,
            )
        else:
            # Another creator won the race: its actor may be of another class (the core did
            # not take ours for it then). Decided by the stored step, never by a shared field
            # another thread may be changing.
            # (The step it loaded, not ``core.record``: another thread may drop that cache.)
            stored = self.run(core.ensure_exists()).class_ref.name
            if stored != definition.name:
                raise _other_class(actor_id, stored, definition)
            _check_class(actor_id, core.definition, definition)
        return core, created

    def create_nowait(
        self, definition: ActorDefinition, actor_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Creation | None:
        """Start :meth:`create` on a pool thread unless the actor exists; return at once (Ray's way).

        See :meth:`creating` for what calls do until it commits. The arguments are copied
        here, before this returns (later changes to them do not reach the actor). Returns the
        creation (this one, or one of this process's already pending), None if the actor exists.
        """
        frozen = freeze_arguments(args, kwargs)
        with contextlib.suppress(ActorNotFoundError):
            core = self.load(actor_id)
            _check_class(actor_id, core.definition, definition)
            return None
        creation = Creation(definition, self.store.describe())
        with self._lock:
            pending = self._creations.get(actor_id)
            if pending is None:
                self._creations[actor_id] = creation
        if pending is not None:
            _check_class(actor_id, pending.definition, definition)
            return pending

        def finish(error: BaseException | None) -> None:
            try:
                creation.settle(error)
            finally:  # (an interrupt in a hand-over: done all the same, or its waiters hang)
                with self._lock:
                    if self._creations.get(actor_id) is creation:
                        del self._creations[actor_id]
                creation.start = _nothing_to_start  # (lets go of the arguments: handles keep it)
                creation.done.set()

        def start() -> None:
            if not creation.claim():
                return
            error: BaseException | None = None
            try:
                self._create(definition, actor_id, frozen)
            except BaseException as exc:
                error = exc
                if not isinstance(exc, RuntimeShutdownError):
                    _say_creation_failed(actor_id, definition, exc)
            finish(error)

        def shut_down(error: BaseException) -> None:
            if creation.claim():
                finish(error)

        # The pool runs it, or whoever waits for it first (caller runs): a method on the pool
        # waiting for a creation queued behind it and its like would wait for it forever.
        creation.start = start
        self.spawn(start, on_shutdown=shut_down)
        return creation

    def creating(self, actor_id: str) -> Creation | None:
        """This process's pending creation of ``actor_id`` (``create_nowait``), if any."""
        creation = self._creations.get(actor_id)
        return None if creation is None or creation.settled else creation

    def creation_listed(self, actor_id: str) -> Creation | None:
        """This process's creation of ``actor_id`` (``create_nowait``) that has not been recorded
        in full yet: pending, or settled a moment ago (:meth:`creating` says None for that one)."""
        return self._creations.get(actor_id)

    def wait_created(self, actor_id: str, creation: Creation | None = None) -> BaseException | None:
        """Wait for this process's pending creation of ``actor_id``, if any (running it on this
        thread if no thread has started it); its exception, if it failed. ``creation``: that
        creation, looked up earlier by the caller (it may have been recorded in full since).

        ``ReentrantCallError`` when the creation runs on this thread (this is its ``__init__``, or
        one it waits for): the wait would be for itself, for good."""
        creation = creation or self._creations.get(actor_id)
        if creation is None:
            return None
        self.refuse_own_creation(actor_id, "wait for its creation")
        return creation.wait()

    def refuse_own_creation(self, actor_id: str, what: str) -> None:
        """``ReentrantCallError`` if this thread runs the creation of ``actor_id`` (see
        :meth:`wait_created`); ``what``: what the caller was about to do."""
        if self._turns.created_by_me(actor_id):
            raise ReentrantCallError(
                f"actor {actor_id!r} is being created on this thread (this is its __init__, or the "
                f"__init__ of an actor it creates): to {what} here would wait for itself. Do it "
                "after the creation, from the code that called get_or_create"
            )

    def call(self, actor_id: str, call: PendingCall) -> None:
        """Apply a write on this thread (or wait for the thread that holds the actor)."""
        self.core(actor_id).call(call)

    def _all_cores(self) -> list[ActorCore]:
        """Every core of this runtime, evicted ones still alive included."""
        with self._lock:
            return [*self._cores.values(), *self._evicted.values()]

    async def aclose(self) -> None:
        """Release folder leases, finish the inboxes' background work, flush pending HEAD
        moves and release connections (``close`` calls it once nothing else runs)."""
        cores = self._all_cores()
        try:
            with contextlib.suppress(Exception):
                await asyncio.gather(*(core.shutdown_lease() for core in cores if core.leased))
            with contextlib.suppress(Exception):
                await asyncio.gather(*(core.inbox.finish() for core in cores))
            await self.heads.stop()
            # Last, being cleanup only: deletes of applied posts still queued (a post left is
            # stale for the next folder). A stalled endpoint holds them until close runs out
            # of time; they were sent first, and cancelled so they cost the HEAD flush too,
            # and the store's close (its connections and threads stayed).
            with contextlib.suppress(Exception):
                await asyncio.gather(*(core.flush_deletes() for core in cores if core.leased))
        finally:  # (cancelled: close ran out of time) the connections are released all the same
            await self.store.close()

    def close(self, timeout: float = 30.0, *, waited: str | None = None, asked_folds: bool = False) -> None:
        """Shut down; once this returns, the runtime makes no storage request and none of its
        threads runs (within ``timeout``: see below), and every call made to it has its outcome.

        Calls that have not started fail with ``RuntimeShutdownError`` (not applied), and so
        do commit attempts that would start from now on (a retry after a lost race); a
        poster stops waiting for the lease holder's fold (``CallPendingError``: it may
        still be applied); a lease holder stops folding. What is running (a method and its
        commit attempt, a fold, a background delete or listing) is waited for, up to
        ``timeout`` seconds; past that, its storage requests in flight are cancelled and no
        new one is made (its call fails with ``RuntimeShutdownError``, or with
        ``CommitOutcomeUnknownError`` if its step's put may have landed), and a method body
        still running (which cannot be stopped) is logged. Then leases are released, HEAD
        pointers flushed (``aclose``) and the pool's threads joined, within what is left of
        ``timeout`` (at least a second each). A close interrupted half way (Ctrl-C) is
        finished by the next one (``shutdown()``, ``init()``, the exit hook). ``waited``: who
        waited how long, as the warning logged past ``timeout`` says it (None: "shutdown waited
        ``timeout`` s"; "": no warning, as after a Ctrl-C at exit, whose line said it).

        ``asked_folds`` (``shutdown()``, ``init()`` again; the exit hook waits for them before
        its close): first the folds that ``call_outcome`` queued run
        (:meth:`finish_queued_calls`), within ``timeout`` too, before the runtime refuses new
        work: a function that asks, then shuts down and is frozen has folded the post, not
        left it pending for the next ask. A Ctrl-C during that wait reaches the caller, the
        runtime closed to new work (the next close does the rest)."""
        if os.getpid() != self._pid:
            return
        until = time.monotonic() + timeout
        if asked_folds:
            try:
                self.finish_queued_calls(until, calls=False)
            except BaseException:
                with self._lock:
                    self.closed = True
                raise
        while True:
            with self._lock:
                self.closed = True
                if self._closed.is_set():
                    return
                closer = self._closer
                if closer is None:
                    mine = self._closer = threading.Event()
            if closer is None:
                break
            # Another thread closes it: returns once that close has. One that was interrupted
            # (Ctrl-C) left the runtime half closed: this close does what it left.
            if not _sync.interruptible_wait(closer.wait, max(until - time.monotonic(), 0.0), forever=None):
                return
        try:
            waited = f"shutdown waited {timeout:g} s (close(timeout))" if waited is None else waited
            self._close(max(until - time.monotonic(), 0.0), waited)
            self._closed.set()
        finally:
            with self._lock:
                self._closer = None
            mine.set()

    def finish_queued_calls(self, until: float, *, calls: bool = True) -> None:
        """Wait until no call made to this runtime is left queued (not started), at most until
        ``until`` (monotonic). The exit hook's: a script that ends with ``run_async`` calls it
        never waited for has them applied, not failed by the shutdown with nobody to hear it.
        (A call a method makes meanwhile is queued in turn, and waited for too.) So too the
        folds ``call_outcome`` queued (``ActorCore._fold_given_up_posts_soon``; one an ask left
        to the holder of the actor here is queued as it gives the actor up): a process
        that asks once and exits (a script, a function's invocation) had its fold cancelled
        before it ran, every time, and its asks said pending for good. ``calls`` False: the
        folds alone (``close(asked_folds=True)``). In a forked child, whose copy of the
        parent's runtime runs nothing, returns at once."""
        while not self.closed and os.getpid() == self._pid:
            cores = self._all_cores()
            pending = [future for core in cores for future in core.queued_futures()] if calls else []
            folding = [core.asked_fold_idle for core in cores if not core.asked_fold_idle.is_set()]
            left = until - time.monotonic()
            if not (pending or folding) or left <= 0:
                return

            def all_done(timeout: float | None, pending: list[Future[Any]] = pending) -> bool:
                return not wait(pending, timeout).not_done

            # (A pool thread waiting so, as a method that shuts down: the pool runs the fold.)
            with self.waiting_for_others():
                _sync.interruptible_wait(all_done if pending else folding[0].wait, left, forever=None)

    def queued_calls(self) -> list[tuple[str, str]]:
        """(actor id, method) of each call made to this runtime that no thread has started."""
        return [(core.actor_id, method) for core in self._all_cores() for method in core.queued_methods()]

    def asked_folds(self) -> list[str]:
        """The actors whose fold a ``call_outcome`` queued (``ActorCore._fold_given_up_posts_soon``)
        has not ended: queued, running, or left to this process's holder of the actor (an ask
        that found it held: queued as the holder gives the actor up)."""
        return [core.actor_id for core in self._all_cores() if not core.asked_fold_idle.is_set()]

    @property
    def finished_closing(self) -> bool:
        """Whether a ``close`` has run to its end (not interrupted half way by Ctrl-C)."""
        return self._closed.is_set()

    def _close(self, timeout: float, waited: str) -> None:
        until = time.monotonic() + timeout
        error = self._shutdown_error()
        # What has not started never starts: pool tasks are cancelled (each settles what it
        # would have: see ``spawn``), queued calls failed.
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.read_executor.shutdown(wait=False, cancel_futures=True)
        cores = self._all_cores()
        for core in cores:
            self._fail_queued(core, error)
            core.wake()  # a lease holder between folds sees ``closed`` now
        # (Not on the IO loop, which what it would wait for needs: a call from there only cancels.)
        left = self._work.wait_done(until if not _sync.in_loop_thread() else 0.0)
        self.stopped = True
        if left:
            # (Named before the cancel: a fold whose request is cancelled ends at once.)
            folds = self.asked_folds()
            # Past the timeout: what still runs makes no request from now on.
            _sync.cancel(self._in_flight)
            for future in list(self._background):
                future.cancel()
            with contextlib.suppress(RuntimeError):  # (the loop closed: nothing runs on it)
                _sync.get_loop().call_soon_threadsafe(self._cancel_tasks)
            self._say_cut_off(left, waited, folds)
        with contextlib.suppress(Exception):
            _sync.sync(self.aclose(), timeout=max(until - time.monotonic(), 1.0))
        for core in cores:
            self._fail_queued(core, error)
        # The pool's idle threads end at once (the shutdown told them), a thread whose request
        # was cancelled soon after: a second at least; a method body still running keeps its
        # thread (logged above).
        joined_by = max(until, time.monotonic() + 1.0)
        threads = [*self.executor.threads(), *self.read_executor.threads()]
        join_threads([t for t in threads if t is not threading.current_thread()], joined_by)

    def _say_cut_off(self, left: int, waited: str, folds: list[str]) -> None:
        """(``_close`` past its timeout) Log the work cut off (naming ``folds``, the actors whose
        fold ``call_outcome`` queued still ran), and who waited for it how long."""
        if not waited:
            return
        named = ", ".join(repr(actor_id) for actor_id in folds[:3]) + (" and more" if len(folds) > 3 else "")
        logger.warning(
            "vactor_cloud: %s for %d piece(s) of work of the runtime on %s still running (a "
            "method body, a stalled request): their storage requests are cancelled and no new "
            "one is made%s",
            waited,
            left,
            self.store.describe(),
            f"; among them the fold call_outcome queued for {named}: the posts it would fold stay "
            "in the inbox, for call_outcome(call_id) asked again later (or a write to the actor "
            "that meets contention)"
            if folds
            else "",
        )


def join_threads(threads: list[threading.Thread], until: float | None) -> None:
    """Join ``threads``, waiting until ``until`` (monotonic; None: until they end) at most, so
    that an interrupt of the wait leaves them as they are: on the main thread (where Ctrl-C
    lands), from a helper thread, waited for in slices (``_sync.wait_aside``: a signal another
    thread took has its handler run meanwhile). CPython 3.11's ``Thread.join`` interrupted while
    the thread still runs releases that thread's state lock and marks it ended (bpo-45274's
    handling): ``is_alive()`` then said False, and a second shutdown's join returned at once, of
    a thread still running."""
    if not threads:
        return

    def join_all() -> None:
        for thread in threads:
            thread.join(None if until is None else max(until - time.monotonic(), 0.0))

    # (the helper's own joins end by ``until``; a second more for it to return)
    margin = None if until is None else max(until - time.monotonic(), 0.0) + 1.0
    _sync.wait_aside(join_all, margin, name="vactor-close-join")


#: reads of a class body that does not verify before it is taken for damaged at rest (damage
#: in transit reads whole the next time)
_CLASS_READS = 3


async def _read_class_body(log: ActorLog, ref: ClassRef) -> tuple[bytes, str | None]:
    """The verified class body ``ref`` of ``log``'s actor. One that does not verify
    ``_CLASS_READS`` times in a row is damaged at rest (truncated, altered, another class's body
    under this sha): ``IntegrityError`` saying how it gets repaired."""
    for attempt in range(_CLASS_READS):
        try:
            return await log.read_class(ref.sha)
        except FormatVersionError:
            raise  # its message already says what to do: upgrade
        except IntegrityError as exc:
            if attempt + 1 < _CLASS_READS:
                await asyncio.sleep(retry_pause(attempt))
                continue
            raise IntegrityError(
                exc.key,
                f"{exc.reason}: the class body of actor {log.actor_id!r} ({ref.name}) is damaged, "
                "forged or signed with another key, and this process cannot load the class without "
                "it: import the class's module in this process, or make one call to the actor from "
                "a process that imports it (a process with the class checks the body at its first "
                "commit to the actor and stores it again)",
            ) from exc
    raise AssertionError("unreachable")


def _other_class(actor_id: str, stored: str, requested: ActorDefinition) -> ActorDefinitionError:
    return ActorDefinitionError(
        f"actor {actor_id!r} already exists as an instance of {stored}, not {requested.name}: "
        f"get_or_create never changes an actor's class; call the existing actor with "
        f"vc.get_actor({actor_id!r}), or choose another id for a new {requested.cls.__qualname__}"
    )


def _end_a_child_forked_in_init(
    forks: int, actor_id: str, definition: ActorDefinition, part: str = "__init__"
) -> None:
    """In a child that ``__init__`` forked (``os.fork()`` there, then returned or raised in the
    child too), end the child at once (``fork_guard``), on the caller's thread as on a pool's
    (``wait_for_init=False``): the creation is the parent's, which commits step 0. Let the child
    go on and it would commit through a runtime whose threads it does not have, then return to
    its caller as though it were the parent. ``part``: the class's code that ran (the state's
    capture after ``__init__`` is the class's code too)."""
    if forks_now() == forks:
        return  # (the common case: nothing formatted)
    what = f"the {part} of actor {actor_id!r} ({definition.cls.__qualname__})"
    whose = (
        "the creation is the parent's, which commits it if its __init__ returns; this child "
        "created nothing and"
    )
    end_a_forked_child(forks, what, whose)


def _nothing_to_start() -> None:
    """(``Creation.start`` once the creation has settled.)"""


def _say_creation_failed(actor_id: str, definition: ActorDefinition, error: BaseException) -> None:
    """Log a creation ``create_nowait`` started that failed: its exception reaches the calls made
    while it was pending and ``ready()`` on the handles it gave, and nothing else; one that
    failed before any was made (or with none made) was said nowhere, and every later call
    found no actor (``ActorNotFoundError``)."""
    logger.warning(
        "vactor_cloud: the creation of actor %r (%s, get_or_create with wait_for_init=False) "
        "failed: %s: %s; calls made while it was pending, and ready() on the handles it gave, "
        "raise it; later calls find no actor",
        actor_id,
        definition.name,
        type(error).__name__,
        str(error),  # (not the error: a record kept by a handler kept its frames, and their locals)
    )


def _check_class(actor_id: str, found: ActorDefinition | None, requested: ActorDefinition) -> None:
    """``ActorDefinitionError`` if the existing actor's class is not the one asked for."""
    if found is not None and found.name != requested.name:
        raise _other_class(actor_id, found.name, requested)

"""One process's runtime on one store (:class:`Runtime`): the store, settings, a bounded cache
of actor cores, HEAD flushing.

The runtime is what a core's :class:`~vactor_cloud.core.CoreEnv` asks for:
the IO loop (every trip to it bounded by ``Settings.deadline``), a small
pool for ``run_async``, class bodies loaded from storage, HEAD moves and
the cache's byte accounting. It knows nothing of handles, events or history.

:class:`Runtime` is built of parts, each a mixin in a module of its own below this one:

* :mod:`vactor_cloud.runtime_work`: :class:`~vactor_cloud.runtime_work.WorkRunner`, the trips
  to the IO loop and the pools, each a piece of work that shutdown waits for (the base of the
  next two);
* :mod:`vactor_cloud.runtime_creation`: :class:`~vactor_cloud.runtime_creation.Creator`,
  ``get_or_create``'s creation of actors;
* :mod:`vactor_cloud.runtime_shutdown`: :class:`~vactor_cloud.runtime_shutdown.Closer`,
  ``close`` and the waits before it;
* :mod:`vactor_cloud.class_bodies`: :class:`~vactor_cloud.class_bodies.ClassBodies`, class
  bodies loaded from storage.

This module holds the runtime's fields (``__init__``) and its cache of actor cores.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from vactor_cloud import _sync, counters, keys
from vactor_cloud.batch import PendingCall
from vactor_cloud.class_bodies import ClassBodies
from vactor_cloud.core import ActorCore, CommitHook
from vactor_cloud.creation import Creation, CreationTurns
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.deletion import is_deleted
from vactor_cloud.head_flusher import HeadFlusher
from vactor_cloud.ids import validate_actor_id
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.log import ActorLog
from vactor_cloud.poster import Posted
from vactor_cloud.posting import PostSender
from vactor_cloud.read_room import ReadRoom
from vactor_cloud.runtime_creation import Creator
from vactor_cloud.runtime_shutdown import Closer
from vactor_cloud.runtime_work import RuntimeWork
from vactor_cloud.settings import Settings
from vactor_cloud.storage import MemoryStore, ObjectStore, open_store
from vactor_cloud.worker_pool import WorkerPool


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


class Runtime(Closer, Creator, ClassBodies):
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
        self._work = RuntimeWork()
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

    def call(self, actor_id: str, call: PendingCall) -> None:
        """Apply a write on this thread (or wait for the thread that holds the actor)."""
        self.core(actor_id).call(call)

    def _all_cores(self) -> list[ActorCore]:
        """Every core of this runtime, evicted ones still alive included."""
        with self._lock:
            return [*self._cores.values(), *self._evicted.values()]

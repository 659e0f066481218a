"""ActorCore: one actor as seen by this process — its cache, its write queue, its commit loop.

Who runs what (DESIGN.md §10):

* **Caller runs.** A blocking ``run()`` on an idle actor claims the actor and
  runs the commit loop on the calling thread: the method body, then the
  create-only put (awaited on the IO loop). A call made while another
  thread holds the actor waits; whoever holds it applies every queued write
  as one group commit. A waiter whose actor is released with work left
  takes it over, so progress never depends on a free pool thread: nested
  calls cannot starve. ``run_async`` hands the work to a small pool, and
  waiting on its future (``result()``, ``vc.get``) helps in the same way.
* **Reads beside writes.** A read-only call never enters the write queue:
  it probes for the newest committed step and runs at once, on a private
  copy of that state.
* **Every wait has an end.** I/O goes through :meth:`CoreEnv.run`, which
  bounds it by ``Settings.deadline``; every exception reaches the caller's
  future, ``BaseException`` included.

Guarantees (DESIGN.md §4):

* Calls submitted from this process apply in submission order; writes
  waiting in the queue are applied together and committed as one step
  (group commit). Each caller gets its own result or exception; a call that
  raises is excluded and changes nothing.
* A commit is acknowledged only after its create-only put of
  ``steps/N+1`` succeeded (or was found to have succeeded after a lost
  response). With a fresh cache that put is the only request on the path.
* A read-only call sees every commit acknowledged anywhere before it
  started (it probes ``steps/N+1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pickle
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from vactor_cloud import counters, tracing
from vactor_cloud.batch import (
    BatchResult,
    CallOptions,
    PendingCall,
    apply_batch,
    current_call,
    run_readonly,
)
from vactor_cloud.byvalue import Frozen
from vactor_cloud.dedup import DedupFields, Outcome, StepDedup, cached_bytes, safe_repr
from vactor_cloud.definition import ActorDefinition, lookup_local_class
from vactor_cloud.errors import (
    ActorBusyError,
    ActorNotFoundError,
    CallPendingError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    IntegrityError,
    ReentrantCallError,
    StorageError,
    StorageTimeoutError,
    VactorError,
)
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.log import (
    ActorLog,
    CallRecord,
    ClassRef,
    Head,
    StepCompactedError,
    StepRecord,
    StepTakenError,
    unrecordable,
)
from vactor_cloud.posting import (
    SENDER_TTL,
    Post,
    PostBox,
    PostedCall,
    PostInDoubtError,
    advance_cursor,
    applied,
    bare,
    cursor_of,
    decode_outcomes,
    encode_outcomes,
    identity,
    legacy_outcomes,
)
from vactor_cloud.settings import Settings
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timers import FIRE, TIMERS, firing_only, index_after_commit

__all__ = ["ActorCore", "CommitHook", "CoreEnv"]

logger = logging.getLogger("vactor_cloud")

T = TypeVar("T")


class CommitHook(Protocol):
    """A feature that plugs into the commit loop (external events today).

    ``wants_fold`` is asked on the committing thread and must be cheap: only
    when it says yes does the commit pay a trip to the IO loop for ``fold``.
    """

    def wants_fold(self, batch: list[PendingCall]) -> bool: ...

    async def prime(self) -> None:
        """The actor is being created by this process: look for work sent ahead of it."""
        ...

    async def fold(
        self, batch: list[PendingCall], base: StepRecord, definition: ActorDefinition
    ) -> list[PendingCall]:
        """The calls to apply: extra ones first, then ``batch`` without markers."""
        ...

    async def settle(self, batch: list[PendingCall], calls: list[PendingCall], result: BatchResult) -> None:
        """After the outcome is known (committed when ``result.state``): cleanup, marker futures."""
        ...


class CoreEnv(Protocol):
    """What an :class:`ActorCore` needs from its runtime, and nothing more."""

    store: ObjectStore
    settings: Settings

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the IO loop and wait, at most ``settings.deadline``."""
        ...

    def spawn(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a pool thread."""
        ...

    def background(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the IO loop without waiting for it (cleanup; failures are its own)."""
        ...

    async def stored_class(self, log: ActorLog, ref: ClassRef) -> ActorDefinition:
        """The class body ``ref`` loaded from storage."""
        ...

    def head_moved(self, core: ActorCore, *, lazy: bool = False) -> None:
        """``core`` committed or loaded a step its HEAD does not point at yet (``lazy``: a step
        that only fired timers; HEAD may wait longer)."""
        ...

    def weigh(self, core: ActorCore, delta: int) -> None:
        """``core``'s cached bytes changed by ``delta``."""
        ...


#: per thread: actor ids whose writer method runs on this thread while it waits for (or
#: runs) another call, outermost first (the innermost running writer is ``current_call()``)
_waiting_writers = threading.local()


def writers_on_this_thread() -> list[str]:
    """(``ActorCore.help``'s helper) Actors whose writer method runs on this thread now, outermost
    first: a call that would wait for one of them would wait for itself."""
    held = list(getattr(_waiting_writers, "stack", ()))
    running = current_call()
    if running is not None and not running.readonly:
        held.append(running.actor_id)
    return held


def call_cycle(actor_id: str) -> str | None:
    """``"a -> b -> a"`` when a writer method of ``actor_id`` runs on this thread (a call that
    would wait for that actor would wait for itself), else None."""
    held = writers_on_this_thread()
    if actor_id not in held:
        return None
    return " -> ".join([*held[held.index(actor_id) :], actor_id])


class WaitingInsideWriter:
    """(``ActorCore.help``'s helper) ``with WaitingInsideWriter():`` while this thread waits for
    (or runs) another call from inside a writer method, that writer stays on this thread's list
    (``writers_on_this_thread``)."""

    __slots__ = ("pushed",)

    def __enter__(self) -> None:
        running = current_call()
        self.pushed = running is not None and not running.readonly
        if running is not None and self.pushed:
            _waiting_writers.__dict__.setdefault("stack", []).append(running.actor_id)

    def __exit__(self, *exc: object) -> None:
        if self.pushed:
            _waiting_writers.stack.pop()


class ActorCore:
    """Per-process state of one actor. Create through ``Runtime.core(actor_id)``."""

    # Slots: a process may touch tens of thousands of actors; every byte counts.
    __slots__ = (
        "__weakref__",
        "_cycle",
        "_draining",
        "_fold_after",
        "_folded_wall",
        "_foreign_at",
        "_gather",
        "_held_until",
        "_last_commit_at",
        "_lease",
        "_lease_read_at",
        "_leases",
        "_live",
        "_load_lock",
        "_lost_at",
        "_mutex",
        "_outstanding",
        "_postbox",
        "_posted_at",
        "_put_seconds",
        "_queue",
        "_releasing",
        "_renewing",
        "_seen_at",
        "_served_at",
        "_serving",
        "_stored_classes",
        "_stored_sha",
        "_streak",
        "_waiters",
        "_wake",
        "_weight",
        "actor_id",
        "definition",
        "env",
        "head",
        "inbox",
        "log",
        "record",
        "validated_at",
    )

    def __init__(self, env: CoreEnv, actor_id: str, inbox: Callable[[ActorCore], CommitHook]) -> None:
        self.env = env
        self.actor_id = actor_id
        self.log = ActorLog(env.store, actor_id, signing_key=env.settings.signing_key)
        self.definition: ActorDefinition | None = None
        #: sha of the stored class body in use, or None when the class is local
        self._stored_sha: str | None = None
        self.record: StepRecord | None = None
        #: monotonic time at which ``record`` was last known to be the newest step
        self.validated_at = -math.inf
        #: (step, instance): the instance that produced ``record``, reused by the next commit
        self._live: tuple[int, Any] | None = None
        self.head: Head | None = None
        self._stored_classes: frozenset[str] = frozenset()
        self._mutex = threading.Lock()
        #: writes waiting for the holder; None while the actor is idle (saves memory)
        self._queue: deque[PendingCall] | None = None
        self._draining = False
        #: threads waiting for one of their calls: woken when the actor is released
        self._waiters: set[threading.Event] | None = None
        self._load_lock: asyncio.Lock | None = None
        #: when this process last lost a commit race, and how long its puts take (moving average)
        self._lost_at = -math.inf
        #: when this process last posted a batch for lost races: contended until combine_window later
        self._posted_at = -math.inf
        self._put_seconds = 0.0
        self._weight = 0
        #: contention combining (vactor_cloud.posting): created on the first post
        self._postbox: PostBox | None = None
        #: our newest post not yet known applied (later batches post too: order is kept)
        self._outstanding: _Posted | None = None
        #: the advisory folder lease (vactor_cloud.lease): the newest state of it we know (ours or
        #: another process's), until when (monotonic) we hold it, when we last folded another's post
        self._leases: LeaseStore | None = None
        self._lease: Lease | None = None
        #: when (monotonic) we last read another process's valid lease
        self._lease_read_at = -math.inf
        #: commits in a row, each soon after the one before (a hot writer), and when the last was
        self._streak = 0
        self._last_commit_at = -math.inf
        self._held_until = -math.inf
        self._foreign_at = -math.inf
        self._renewing = False
        #: our release of the folder lease, while it runs in the background
        self._releasing: Future[None] | None = None
        #: the lease holder folds others' posts from a pool thread while its callers are quiet
        self._serving = False
        self._wake: threading.Event | None = None
        #: seconds between the steps a poster sees committed (moving average): how often it polls
        self._cycle = 0.005
        #: seconds from a post of ours to the holder's record of the step that applied it (moving
        #: average, wall clocks): a poster's first look comes about then, if sooner than a cycle
        self._fold_after = 0.005
        #: when (monotonic) this process read or wrote the step it holds as ``record``
        self._seen_at = -math.inf
        #: when (monotonic) another process's fold last applied a post of ours: it folds
        self._served_at = -math.inf
        #: the lease holder's group commit: the wall time of its last fold that applied another
        #: process's post, and how long after such a fold the posts of the next one come in
        #: (moving average): the next fold lists no sooner than that, so that it gathers them
        self._folded_wall = -math.inf
        self._gather = 0.0
        self.inbox = inbox(self)

    # -- cache ---------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No queued or running writes, nobody waiting, no post of ours pending: safe to evict.

        (A core with a pending post stays: its next batch must post after it, in order.)
        """
        return not self._draining and not self._queue and not self._waiters and self._outstanding is None

    def _reweigh(self) -> None:
        record, live = self.record, self._live
        weight = cached_bytes(self.log)  # the idempotency checkpoint it keeps decoded, if any
        if record is not None:
            weight += len(record.state) + len(record.dedup) + 512
            if live is not None:
                weight += len(record.state)  # the live instance, roughly its serialized size
        delta, self._weight = weight - self._weight, weight
        if delta:
            self.env.weigh(self, delta)

    def _accept(self, record: StepRecord, validated_at: float, instance: Any = None) -> None:
        """Adopt ``record`` if it is newer than what we hold; the cache only moves forward.

        ``instance``: the live instance that produced ``record`` (our own commit), kept
        for the next commit if ``record`` is adopted.
        """
        with self._mutex:
            if self.record is None or record.step > self.record.step:
                self.record = record
                self.validated_at = validated_at
                if instance is not None:
                    self._live = (record.step, instance)
                elif self._live is not None and self._live[0] != record.step:
                    self._live = None
            elif record.step == self.record.step:
                self.validated_at = max(self.validated_at, validated_at)
        self._reweigh()

    def _invalidate(self) -> None:
        with self._mutex:
            self.record = None
            self._live = None
            self.validated_at = -math.inf
        self._reweigh()

    def _distrust(self) -> None:
        """After a failed request: the cached step stays (it is a step that was read and
        verified), but is no longer taken for the newest; the next look probes from it
        (and reads the retention watermark). Unlike ``_invalidate``, what was learned is
        kept: under frequent read faults a reload from scratch reads HEAD and walks every
        step since, and one damaged read among them started it all over (a poster waited
        out ``commit_timeout`` so, the long chaos profile at 30 % damaged reads)."""
        with self._mutex:
            self._live = None
            self.validated_at = -math.inf

    def forget(self) -> None:
        """Drop the cached step (a compaction passed it); the next call reloads."""
        self._invalidate()

    # -- loading (IO loop) ------------------------------------------------------------
    def _lock(self) -> asyncio.Lock:
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        return self._load_lock

    async def ensure_loaded(self) -> None:
        """Load the newest step (and the class, if this process lacks it). ``ActorNotFoundError``."""
        if self.record is not None and self.definition is not None:
            return
        async with self._lock():
            if self.record is not None and self.definition is not None:
                return
            started = time.monotonic()
            head = await self.log.read_head()
            definition: ActorDefinition | None = None
            if head is not None:
                record, definition = await asyncio.gather(
                    self.log.load_latest(head), self.definition_for(head.class_ref)
                )
            else:
                record = await self.log.load_latest(None)
            if record is None:
                raise ActorNotFoundError(self.actor_id, self.env.store.describe())
            if definition is None or (head is not None and record.class_ref != head.class_ref):
                definition = await self.definition_for(record.class_ref)
            self._set_definition(definition, record.class_ref)
            self.head = head
            self._accept(record, started)
            if head is None or head.step < record.step:
                self.env.head_moved(self)

    async def definition_for(self, ref: ClassRef) -> ActorDefinition:
        """The class of steps written with ``ref``: this process's own, else the stored body."""
        local = lookup_local_class(ref.name)
        if local is not None:
            return local
        return await self.env.stored_class(self.log, ref)

    def _set_definition(self, definition: ActorDefinition, ref: ClassRef) -> None:
        self.definition = definition
        self._stored_sha = None if lookup_local_class(definition.name) is definition else ref.sha

    async def _sync_definition(self, record: StepRecord) -> ActorDefinition:
        """The class to run ``record`` with: ours if we have it, else the one the step names."""
        if self.definition is None or (
            self._stored_sha is not None and self._stored_sha != record.class_ref.sha
        ):
            self._set_definition(await self.definition_for(record.class_ref), record.class_ref)
        assert self.definition is not None
        return self.definition

    def _definition_now(self, record: StepRecord) -> ActorDefinition:
        """``_sync_definition`` without a trip to the IO loop when nothing needs loading."""
        definition = self.definition
        if definition is not None and (self._stored_sha is None or self._stored_sha == record.class_ref.sha):
            return definition
        return self.env.run(self._sync_definition(record))

    async def revalidate(self) -> StepRecord:
        """Find the newest step from the cached one (one GET when nothing changed).

        A cache older than ``fresh_window`` may predate a compaction: the
        retention watermark is read *after* the probe has answered
        (``ActorLog.probe_with_watermark``), so a compaction that deleted
        steps the probe missed is always seen. Steps at or above the
        watermark are never deleted, so a probe that reached one found the newest.
        """
        await self.ensure_loaded()
        base = self.record
        assert base is not None
        started = time.monotonic()
        if started - self.validated_at > self.env.settings.fresh_window:
            newest, watermark = await self.log.probe_with_watermark(base)
            if watermark.min_step > newest.step:
                self._invalidate()
                await self.ensure_loaded()
                assert self.record is not None
                return self.record
        else:
            newest, _ = await self.log.probe_from(base)
        self._accept(newest, started)
        record = self.record
        assert record is not None
        return record if record.step >= newest.step else newest

    # -- creation (IO loop) -------------------------------------------------------------
    async def create(self, definition: ActorDefinition, state: bytes, init_args: str) -> bool:
        """Write the class body and step 0; if another creator won, attach to its actor.

        True when this call created the actor.
        """
        ref, body = definition.body()
        await asyncio.gather(self.log.put_class(ref.sha, body, ref.name), self.inbox.prime())
        self._stored_classes |= {ref.sha}
        record = StepRecord(
            step=0,
            parent=None,
            class_ref=ref,
            serializer=definition.serializer,
            state=state,
            writer=uuid.uuid4().hex,
            time=time.time(),
            calls=(CallRecord("__init__", uuid.uuid4().hex, True, time.time(), args=init_args),),
        )
        started = time.monotonic()
        created = True
        try:
            await self.log.put_step(record)
        except StepTakenError as taken:
            record = taken.winner
            started = -math.inf  # the actor may have moved on since it was created
            created = False
            if record.class_ref.name != definition.name:
                # Another class won: ours is not this actor's (the caller refuses the creation).
                # The core is shared with this process's other callers: leave it as it is.
                return False
        self._set_definition(definition, record.class_ref)
        self._accept(record, started)
        self.env.head_moved(self)
        return created

    # -- submission -------------------------------------------------------------------
    def call(self, call: PendingCall) -> None:
        """Queue a write and apply it on this thread if the actor is idle; returns when it settled."""
        self._enqueue(call)
        self.help(call.future, None)

    def submit(self, call: PendingCall) -> None:
        """Queue a write; a pool thread (or a waiter on its future) applies it."""
        self._enqueue(call)
        self.env.spawn(self._drain_from_pool)

    def _enqueue(self, call: PendingCall) -> None:
        with self._mutex:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(call)
        wake = self._wake
        if wake is not None:
            wake.set()  # a serving lease holder takes it into its next fold

    def help(self, future: Future[Any], timeout: float | None) -> None:
        """Wait until ``future`` is done, applying this actor's queued writes whenever nobody is.

        Returns early (future not done) only when ``timeout`` passed. Never waits for
        itself: if this actor's writer runs on this thread (an outer call of a cycle
        A -> B -> A), the call is withdrawn and fails with ``ReentrantCallError``. A call
        still queued (not started) after ``max(Settings.deadline, Settings.commit_timeout)``
        seconds in which the actor made no progress (its holder stuck: a method running that
        long, or a cycle of calls across threads) is withdrawn and fails with ``ActorBusyError``:
        it was not applied. A call that started is waited for: its commit is bounded.
        """
        if future.done():
            return
        if current_call() is None and not getattr(_waiting_writers, "stack", None):
            self._help(future, timeout)  # no actor method runs on this thread: nothing to refuse
            return
        cycle = call_cycle(self.actor_id)
        if cycle is not None:
            error = ReentrantCallError(
                f"a call to actor {self.actor_id!r} waits for that actor while a writer method of it "
                f"runs on this same thread (a call cycle {cycle}): it would wait for itself; it was "
                "not applied. Let the outer method do that work itself, or call the actor after "
                "its method has returned"
            )
            if not self._withdraw(future, error):
                raise error
            return
        with WaitingInsideWriter():
            self._help(future, timeout)

    def _help(self, future: Future[Any], timeout: float | None) -> None:
        """``help``'s loop (see there)."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        #: (set once this call first waits: the common caller drains at once) how long a
        #: holder may make no progress, the step it was at, and when that wait ends
        bound = progress = stalled_at = -1.0
        wake: threading.Event | None = None
        try:
            while not future.done():
                with self._mutex:
                    claimed = not self._draining and bool(self._queue)
                    if claimed:
                        self._draining = True
                    elif wake is None:
                        wake = threading.Event()
                        if self._waiters is None:
                            self._waiters = set()
                        self._waiters.add(wake)
                        future.add_done_callback(lambda _, w=wake: w.set())  # type: ignore[misc]
                if claimed:
                    self._drain(until=future)
                    continue
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    return
                step = -1 if self.record is None else self.record.step
                if bound < 0:
                    bound = max(self.env.settings.deadline, self.env.settings.commit_timeout)
                    progress, stalled_at = step, now + bound
                elif step != progress:
                    progress, stalled_at = step, now + bound
                elif now >= stalled_at:
                    busy = ActorBusyError(
                        f"actor {self.actor_id!r}: this call waited {bound:g} s "
                        "(max of Settings.deadline and commit_timeout) for the actor's writer, "
                        "held all that time by another thread without progress (a method "
                        "running that long, or a cycle of calls across threads: A -> B -> A); "
                        "it was withdrawn before it started: not applied, it can be retried"
                    )
                    if self._withdraw(future, busy):
                        return
                    stalled_at = now + bound  # it started: its batch settles it
                assert wake is not None
                wake.wait(min(remaining, stalled_at - now))
                wake.clear()
        finally:
            if wake is not None:
                with self._mutex:
                    if self._waiters is not None:
                        self._waiters.discard(wake)
                        if not self._waiters:
                            self._waiters = None

    def _withdraw(self, future: Future[Any], error: BaseException) -> bool:
        """(``help``'s helper) Take the queued, not yet started call of ``future`` out of the
        queue and fail it with ``error``: True. False when it is not queued (it runs or ran)."""
        with self._mutex:
            queue = self._queue
            found = next((c for c in queue if c.future is future), None) if queue else None
            if found is None or queue is None:
                return False
            queue.remove(found)
        if found.claim():
            found.deliver(Outcome(False, error))
        return True

    def _drain_from_pool(self) -> None:
        with self._mutex:
            if self._draining or not self._queue:
                return
            self._draining = True
        self._drain(until=None)

    def _release(self) -> bool:
        """Give the actor up; wake the waiters. True if writes are left for someone else
        (or if we hold the folder lease: a pool thread goes on folding others' posts)."""
        with self._mutex:
            self._draining = False
            left = bool(self._queue)
            if not left:
                self._queue = None
            waiters = list(self._waiters or ())
        for wake in waiters:
            wake.set()
        if not left and self._holding() and not self._serving:
            self.env.spawn(self._serve)
        return left

    def _claim_batch(self, max_batch: int) -> list[PendingCall]:
        """Take up to ``max_batch`` queued calls that no other thread has claimed."""
        batch: list[PendingCall] = []
        with self._mutex:
            queue = self._queue
            while queue and len(batch) < max_batch:
                call = queue.popleft()
                if call.claim():
                    batch.append(call)
        return batch

    def _fail_unsettled(self, batch: list[PendingCall]) -> None:
        """A call ``_commit`` returned without settling would leave its caller waiting
        forever: a defect, reported to the caller (and logged) rather than a hang."""
        left = [c for c in batch if not c.future.done()]
        if left:
            logger.error(
                "actor %r: %d call(s) left unsettled by a commit (a defect)", self.actor_id, len(left)
            )
            _fail(
                left,
                VactorError(
                    f"actor {self.actor_id!r}: the commit ended without settling this call (a defect in "
                    "vactor_cloud: please report it); the call may or may not have been applied"
                ),
            )

    def _drain(self, until: Future[Any] | None) -> None:
        """Apply queued writes batch by batch (this thread holds the actor).

        With ``until``, stop once that future is done: the caller gets its
        result without also serving every later call; what is left goes to a
        waiter or the pool.
        """
        max_batch = self.env.settings.max_batch
        while True:
            batch = self._claim_batch(max_batch)
            if not batch:
                if self._release():
                    self.env.spawn(self._drain_from_pool)
                return
            try:
                self._commit(batch)
            except BaseException as exc:
                # Not from a method (those are caught per call): an interrupt
                # reaching this thread while it waited on I/O. Nothing may hang.
                _fail(batch, exc)
                if self._release():
                    self.env.spawn(self._drain_from_pool)
                raise
            self._fail_unsettled(batch)
            if until is not None and until.done():
                if self._release():
                    self.env.spawn(self._drain_from_pool)
                return

    # -- writes (the holder's thread) ---------------------------------------------------------
    def _commit(self, batch: list[PendingCall], keys: list[str] | None = None) -> None:
        """Commit ``batch`` (may be empty: a lease holder folding others' posts only).

        Three ways, decided per batch: race for the next step (uncontended, one
        PUT); fold (we hold the folder lease: list the posts, apply them with
        our calls, commit); post and wait (another process holds the lease, or
        an earlier post of ours is pending). ``keys``: a listing of ``posts/``
        the caller just made.
        """
        env = self.env
        settings = env.settings
        attempts = 0
        give_up_at = time.monotonic() + settings.commit_timeout
        posted: _Posted | None = None
        #: we fold posted calls into our commit (we hold the folder lease)
        fold = False
        if not batch:
            fold = self._holding()
            if not fold:
                return
        elif self._outstanding is not None and not self._may_post(batch):
            # Internal calls (a timer's cancel or firing, inbox markers) cannot be posted, and
            # must not pass our pending post either: first it is applied (by us, if we fold).
            if not self._behind_our_post(batch, give_up_at):
                return
        elif self._may_post(batch) and self._contended():
            if self._outstanding is not None:
                posted = self._post(batch)  # after our pending post: order is kept
                fold = self._lease_for_fold()
            elif self._other_folds():
                posted = self._post(batch)  # another process folds: post and wait
            elif self._lease_for_fold():
                fold = True
            else:
                posted = self._post(batch)  # another process folds: post and wait
        elif time.monotonic() - self._lost_at < 1.0:
            # Contended: the previous winner would win again (it alone knows the
            # newest step at once); a short pause lets the losers' retries through.
            time.sleep(random.random() * self._put_seconds)
        transient = 0
        #: folds in a row that stopped at a post whose read was damaged
        damaged = 0
        #: our last fold carried other processes' posts and its put lost: they still wait
        others_wait = False
        while True:
            if posted is not None and not fold:
                try:
                    waited = self._wait_for_fold(posted, batch, give_up_at)
                except Exception as exc:
                    # Not a storage error (those are retried inside): our post stays and may
                    # be applied, or was (its outcomes did not load): pending, not failed.
                    counters.commit_error(self.actor_id, exc, True)
                    pending = self._pending_error(posted, batch)
                    pending.__cause__ = exc
                    _fail(batch, pending)
                    return
                if waited == "done":
                    return
                if waited == "timeout":
                    _fail(batch, self._pending_error(posted, batch))
                    return
                fold = True  # the lease was free and we took it: fold our post with the others'
            put_sent = False
            calls = batch
            folded: list[Post] = []
            try:
                if (
                    posted is not None
                    or self.record is None
                    or (
                        time.monotonic() - self.validated_at > settings.fresh_window
                        and not all(c.method == FIRE for c in batch)
                    )
                ):
                    # posted: another process may have folded our calls. A batch of timer
                    # firings alone skips the probe: its create-only put tells whether the
                    # cache was the newest step (a late put is resolved by the watermark, as
                    # any), and a FIRE that finds nothing is checked by its runner.
                    env.run(self.revalidate())
                elif time.monotonic() - self.validated_at > settings.fresh_window and (
                    self.record.step + 1 < env.run(self.log.read_gc())
                ):
                    # ...unless a compaction freed the number after our cache: the put would
                    # re-create a deleted step (a stray, then CommitOutcomeUnknownError).
                    env.run(self.revalidate())
                with self._mutex:
                    base = self.record
                    validated = self.validated_at
                    live = self._live[1] if self._live is not None and base is not None else None
                    if self._live is not None and (base is None or self._live[0] != base.step):
                        live = None
                    self._live = None
                if base is None:  # invalidated by a compaction meanwhile
                    continue
                definition = self._definition_now(base)
                if posted is not None and self._settle_if_folded(posted, batch, base):
                    return
                if fold:
                    if others_wait:
                        # Others' posts still wait for us (our put lost a race since): not
                        # idle, however long the lost put and the reload took.
                        self._foreign_at = time.monotonic()
                    if not self._holding() and not self._lease_for_fold():
                        # The lease expired mid-fold or another process took it over: it folds.
                        fold = False
                        if not batch:
                            return
                        if posted is None:
                            posted = self._post(batch)
                        continue
                    if keys is None:
                        self._gather_posts()
                        keys = self._post_keys()
                    calls, folded, stale = self._fold_posts(posted, batch, base, keys)
                    keys = None
                    others_wait = any(p.sender != self._posts().sender for p in folded)
                    if others_wait:
                        # Others' calls wait for this fold: the lease is not idle (kept even
                        # while our puts lose races to a writer that does not post yet).
                        self._foreign_at = time.monotonic()
                    if stale:
                        env.background(self._posts().delete(stale))
                    if not calls and not batch:
                        return  # nothing left to fold (a fold-only commit, posts gone meanwhile)
                    if not calls:
                        # Our post waits behind one whose read was damaged: read them again
                        # (a post still damaged after a few reads is skipped), until the deadline.
                        if time.monotonic() > give_up_at:
                            assert posted is not None
                            _fail(batch, self._pending_error(posted, batch))
                            return
                        damaged += 1
                        time.sleep(_damaged_pause(damaged))
                        continue
                hooked = self.inbox.wants_fold(calls)
                if hooked:
                    calls = env.run(self.inbox.fold(calls, base, definition))
                # The idempotency table is read only if a call carries a key (events do).
                table = (
                    env.run(
                        StepDedup(self.log, base, definition.serializer).prepare(
                            c.idempotency_key for c in calls
                        )
                    )
                    if any(c.idempotency_key is not None for c in calls)
                    else None
                )
                result = apply_batch(
                    definition, self.actor_id, base, live, calls, env, settings.dedup_window, table
                )
                if result.state is None:
                    if not folded:
                        self._settle(batch, calls, result, hooked)
                        return
                    # Posted calls that all raised: their outcomes and the cursor still commit.
                    carried = DedupFields(base.dedup, base.dedup_base)
                    result = BatchResult(result.outcomes, None, base.state, carried, [], dict(base.extra))
                assert result.state is not None
                ref = self._class_ref_for_commit(definition, base)
                extra = result.extra
                posted_part = legacy = b""
                if folded:
                    extra = advance_cursor(extra, folded, time.time())
                    outcomes = {c.call_id: o for c, o in zip(calls, result.outcomes, strict=True)}
                    posted_part = encode_outcomes(outcomes)
                    if len(posted_part) <= 2 * _CARRY_MAX:  # (a large result: not pickled twice)
                        legacy = legacy_outcomes(outcomes, _CARRY_MAX)
                record = StepRecord(
                    step=base.step + 1,
                    parent=base.step,
                    class_ref=ref,
                    serializer=definition.serializer,
                    state=result.state,
                    writer=os.urandom(16).hex(),
                    time=time.time(),
                    calls=tuple(result.calls),
                    dedup=result.dedup.data,
                    dedup_base=result.dedup.base,
                    dedup_checkpoint=result.dedup.checkpoint,
                    extra=extra,
                    posted=posted_part,
                    legacy=legacy,
                    # The parent's outcomes too, when small: a poster that reads this step
                    # first (it skipped the parent) finds its own without another GET.
                    carried=base.posted if folded and len(base.posted) <= _CARRY_MAX else b"",
                )
                put_started = time.monotonic()
                put_sent = True
                if self.log.store.inline and not record.dedup_checkpoint and not tracing.live():
                    rest = self.log.put_step_now(record)
                    if rest is not None:  # the key was taken: read it back, on the loop
                        env.run(rest)
                else:
                    env.run(
                        tracing.commit_attempt(
                            self.log.put_step(record), self.actor_id, record.step, attempts + 1
                        )
                    )
                # Timed at the put's *end*: a put can stall (network, client retries)
                # past fresh_window and land after a compaction deleted its number.
                if time.monotonic() - validated > settings.fresh_window and not env.run(
                    self.log.resolve_late_commit(record)
                ):
                    self._invalidate()
                    raise _BelowWatermarkError
            except (StepTakenError, StepCompactedError, _BelowWatermarkError) as lost:
                if isinstance(lost, StepTakenError):
                    self._accept(lost.winner, self.validated_at)
                    self._catch_up(lost.winner)
                elif isinstance(lost, StepCompactedError):
                    self._invalidate()
                self._lost_at = time.monotonic()
                attempts += 1
                counters.commit_conflict(self.actor_id, record.step, attempts)
                lost_race = (
                    not fold
                    and posted is None
                    and attempts >= settings.combine_after
                    and self._may_post(batch)
                )
                if lost_race:
                    posted = self._post(batch)  # lost races: post the batch
                    self._posted_at = time.monotonic()
                # Bounded by time as well as count: under heavy contention a
                # writer may lose many rounds in a row yet get through soon after.
                if attempts >= settings.max_commit_attempts or time.monotonic() > give_up_at:
                    if posted is not None:
                        _fail(batch, self._pending_error(posted, batch))
                    else:
                        _fail(batch, CommitConflictError(self.actor_id, attempts))
                    return
                if lost_race:
                    fold = self._lease_for_fold()  # nobody holds the lease: fold it ourselves
                if not fold or posted is None:
                    time.sleep(_backoff(attempts))
                continue
            except (StorageError, IntegrityError) as exc:
                self._distrust()
                keys = None
                if posted is not None and put_sent:
                    # Our fold's step put (it may carry our calls) may still land.
                    posted.may_land_until = time.monotonic() + settings.deadline
                # Nothing was written before the put: a transient read failure
                # (or a body damaged in transit) is retried, not reported. A posted
                # batch is always retried until the deadline: it may be applied meanwhile.
                if (posted is not None or (not put_sent and transient < _TRANSIENT_RETRIES)) and (
                    time.monotonic() < give_up_at
                ):
                    transient += 1
                    counters.transient_retry(self.actor_id, exc)
                    time.sleep(_backoff(transient + 3))
                    continue
                counters.commit_error(self.actor_id, exc, put_sent or posted is not None)
                reported: BaseException = exc
                if posted is not None:
                    reported = self._pending_error(posted, batch)
                elif put_sent and isinstance(exc, StorageTimeoutError) and not exc.write_in_flight:
                    # The deadline passed with our step's put sent: it may still land.
                    reported = StorageTimeoutError(
                        f"actor {self.actor_id!r}: the commit did not finish within the deadline after "
                        f"its write was sent; the calls may or may not have been applied ({exc})",
                        exc.key,
                        write_in_flight=True,
                    )
                _fail(batch, reported)
                return
            except Exception as exc:
                self._invalidate()
                counters.commit_error(self.actor_id, exc, put_sent)
                if posted is not None:
                    # Our post stays and another folder may apply it: not a definite failure.
                    pending = self._pending_error(posted, batch)
                    pending.__cause__ = exc
                    _fail(batch, pending)
                else:
                    _fail(batch, exc)
                return
            counters.committed(sum(len(p.calls) for p in folded) if folded else 0)
            self._accept(record, put_started, result.instance)
            self._put_seconds = 0.8 * self._put_seconds + 0.2 * (time.monotonic() - put_started)
            now = time.monotonic()
            self._seen_at = now
            self._streak = self._streak + 1 if now - self._last_commit_at < self._streak_gap() else 1
            self._last_commit_at = now
            if TIMERS in record.extra:
                self._index_timers(base, record)
            if folded:
                env.background(self._posts().delete(list(dict.fromkeys(p.key for p in folded))))
                sender = self._posts().sender
                foreign = [p for p in folded if p.sender != sender]
                if foreign:
                    self._foreign_at = time.monotonic()
                    self._learn_gather(foreign, record.time)
            if fold:
                self._renew_lease(record.step)
            self.env.head_moved(self, lazy=firing_only(record.calls))
            if posted is not None and posted.post not in folded:
                # We folded older posts only (the batch was full): ours waits for the next fold.
                self._settle([], calls, result, hooked)  # (our batch is not among ``calls``)
                continue
            if posted is not None:
                self._outstanding = None
            self._settle(batch, calls, result, hooked)
            return

    # -- contention combining (vactor_cloud.posting, vactor_cloud.lease) -------------------------
    def _behind_our_post(self, batch: list[PendingCall], give_up_at: float) -> bool:
        """Wait until our pending post is applied: True, ``batch`` may commit now (after it);
        False: ``commit_timeout`` passed first, and ``batch`` failed (nothing of it applied).

        We fold it ourselves whenever the folder lease is free (the fold applies every
        pending post, ours in its place); else the holder's folds apply it."""
        pause = 0.005
        while True:
            pending = self._outstanding
            if pending is None:
                return True
            try:
                newest = self.env.run(self.revalidate())
                if applied(newest.extra, pending.post.sender, pending.post.seq):
                    if self._outstanding is pending:
                        self._outstanding = None
                    return True
                if self._lease_for_fold():
                    self._commit([])  # fold the pending posts, ours among them
                    if self._never_applied(pending):
                        # Our fold found no post of ours to apply: it never landed (its every
                        # write failed) or expired. Nothing of it will apply: nothing to wait for.
                        if self._outstanding is pending:
                            self._outstanding = None
                        return True
                    # (Not at once again: a fold that applied nothing would list in a busy loop,
                    # past commit_timeout.)
            except (StorageError, IntegrityError) as exc:
                counters.transient_retry(self.actor_id, exc)
            if time.monotonic() >= give_up_at:
                why = (
                    f"an earlier call of this process (posted under contention, call "
                    f"{pending.post.calls[0].call_id if pending.post.calls else '?'}) is still "
                    f"pending after commit_timeout={self.env.settings.commit_timeout:g} s, and this "
                    "batch (timer or inbox calls among it) may not pass it"
                )
                _fail(batch, CommitConflictError(self.actor_id, 0, why))
                return False
            time.sleep(pause)
            pause = min(0.1, pause * 2)

    def _never_applied(self, pending: _Posted) -> bool:
        """Whether our pending post will never be applied: no write of it may land any more,
        the object is not there, and (read after that) the newest cursor has not passed it.
        (Deleted only once applied, or expired: an applied one shows in the cursor.)"""
        if time.monotonic() < pending.may_land_until:
            return False
        if self.env.run(self.env.store.head(pending.post.key)) is not None:
            return False
        newest = self.env.run(self.revalidate())
        return not applied(newest.extra, pending.post.sender, pending.post.seq)

    def _may_post(self, batch: list[PendingCall]) -> bool:
        """Posting needs calls another process can run: pickled actors, no internal markers."""
        definition = self.definition
        return (
            self.env.settings.combine
            and definition is not None
            and definition.serializer == "pickle"
            and all(c.frozen is not None for c in batch)
        )

    def _contended(self) -> bool:
        """Whether this batch combines (posts, or folds as the lease holder) instead of racing.

        Cheap and local: an actor that never lost a race here answers from memory.
        """
        now = time.monotonic()
        window = self.env.settings.combine_window
        if self._outstanding is not None or now - max(self._posted_at, self._served_at) < window:
            return True
        if self._holding():
            return True
        lease = self._lease
        if lease is None or lease.expires == 0:
            return self._hot_writer_sees_a_folder()
        if lease.holder == self._posts().sender:
            # Ours, though our margin ran out (a renewal failed or came late): take it again
            # rather than race the posters waiting for our folds. Not once we gave it up as
            # idle (held_until = -inf): its release may still be in flight, and this commit
            # races (one PUT), as an uncontended one does.
            return lease.valid() and self._held_until != -math.inf
        if not lease.valid():
            # We saw another process hold the lease: see whether it still does (one GET per
            # renewal of it, about every lease_seconds / 2; none once it was given up).
            try:
                lease = self._lease = self.env.run(self._lease_store().read())
            except (StorageError, IntegrityError):
                self._lease = None
                return False
        return lease.valid() and lease.holder != self._posts().sender

    def _hot_writer_sees_a_folder(self) -> bool:
        """A writer that keeps winning never loses a race, so it would never learn that others
        post and wait while their folder's puts lose to it. Committing back to back for
        ``_STREAK_COMMITS`` commits, it reads the lease once per ``lease_seconds / 4`` (or 16
        puts' time, if longer), in the background: held by another process = its next commit
        is contended (posts). An uncontended writer pays one GET per such interval of
        continuous commits, never one per commit, and never on a commit's path."""
        if self._streak < _STREAK_COMMITS or time.monotonic() - self._last_commit_at > self._streak_gap():
            return False
        now = time.monotonic()
        # At most once per lease_seconds / 4, and per 16 puts' time: on a slow store a GET per
        # 0.5 s would be one request more per few commits.
        every = max(0.25 * self.env.settings.lease_seconds, _HOT_READ_PUTS * self._put_seconds)
        if now - self._lease_read_at < every:
            return False
        self._lease_read_at = now
        sender = self._posts().sender

        async def look() -> None:
            # In the background, off this commit's path: the next commit sees what it found.
            try:
                lease = await self._lease_store().read()
            except (StorageError, IntegrityError):
                return
            if lease.valid() and lease.holder != sender:
                self._lease = lease
                self._lease_read_at = time.monotonic()

        self.env.background(look())
        return False

    def _streak_gap(self) -> float:
        """Commits closer than this are back to back: ``_STREAK_GAP``, or a few of our puts' time
        when puts are slow (an overloaded machine or store, where a writer that keeps winning
        would otherwise never count as hot, and a folder's commits lose to it every time)."""
        return max(_STREAK_GAP, _STREAK_PUTS * self._put_seconds)

    def _other_folds(self) -> bool:
        """Whether another process folds: its fold applied a post of ours, or it held the folder
        lease when we read it, lately (a quarter of ``lease_seconds``): post without reading
        the lease. A poster whose folder went away finds out in its wait (no step for a
        while: it reads the lease and may take it)."""
        if self._served_lately():
            return True
        lease = self._lease
        return (
            lease is not None
            and lease.valid()
            and lease.holder != self._posts().sender
            and time.monotonic() - self._lease_read_at < 0.25 * self.env.settings.lease_seconds
        )

    def _served_lately(self) -> bool:
        """Whether another process's fold applied a post of ours in the last quarter of
        ``lease_seconds``: a folder is at work (no need to read the lease to know)."""
        return time.monotonic() - self._served_at < 0.25 * self.env.settings.lease_seconds

    def _lease_store(self) -> LeaseStore:
        if self._leases is None:
            self._leases = LeaseStore(self.env.store, self.actor_id, self.env.settings.signing_key)
        return self._leases

    def _holding(self) -> bool:
        """Whether we hold the folder lease with time to spare; gives it up once idle.

        Idle: no other process's post folded for ``combine_window`` (the lease is released
        in the background, so that nobody waits for it to expire).
        """
        now = time.monotonic()
        settings = self.env.settings
        if now >= self._held_until - 0.25 * settings.lease_seconds:
            return False
        if now - self._foreign_at > settings.combine_window:
            self._give_up_lease()
            return False
        return True

    def _lease_for_fold(self) -> bool:
        """True: we hold the folder lease (taken now if it was free) and fold; False: another
        process holds it, so post and wait. One GET of the lease, and a conditional PUT to take it.

        A storage error answers False: the poster's wait looks again later.
        """
        if self._holding():
            return True
        sender = self._posts().sender
        leases = self._lease_store()
        try:
            seen = self.env.run(leases.read())
            if seen.valid() and seen.holder != sender:
                self._lease = seen
                self._lease_read_at = time.monotonic()
                return False
            started = time.monotonic()
            step = self.record.step if self.record is not None else -1
            mine = self.env.run(leases.write(seen, sender, self.env.settings.lease_seconds, step))
            if mine is None:  # another process took it first
                self._lease = self.env.run(leases.read())
                self._lease_read_at = time.monotonic()
                return False
        except (StorageError, IntegrityError) as exc:
            logger.debug("actor %r: the folder lease could not be read or taken: %s", self.actor_id, exc)
            self._lease = None
            return False
        self._lease = mine
        self._held_until = started + self.env.settings.lease_seconds
        self._foreign_at = started
        counters.count("leases_taken")
        return True

    def _renew_lease(self, step: int) -> None:
        """After a fold: extend our lease once half of it has run out (in the background)."""
        seconds = self.env.settings.lease_seconds
        if self._renewing or time.monotonic() < self._held_until - 0.5 * seconds:
            return
        lease = self._lease
        if lease is None or self._held_until == -math.inf:
            return
        self._renewing = True

        async def renew() -> None:
            try:
                started = time.monotonic()
                mine = await self._lease_store().write(lease, lease.holder, seconds, step)
                if mine is None:  # taken over (it had expired, or a clock disagrees): fold no more
                    self._held_until = -math.inf
                    self._lease = None
                elif self._held_until != -math.inf:
                    self._lease = mine
                    self._held_until = started + seconds
                else:
                    # Given up meanwhile (idle, or it neared its end): nobody folds with the
                    # lease we just extended, so release it rather than leave it to posters.
                    self._lease = mine
                    self._start_release()
            except (StorageError, IntegrityError) as exc:
                logger.debug("actor %r: renewing the folder lease failed: %s", self.actor_id, exc)
            finally:
                self._renewing = False

        self.env.background(renew())

    async def _release_lease(self) -> None:
        """Give the folder lease up (expires = 0), so that contended processes need not wait
        for it to expire. Only if the stored lease is still the one we wrote (if-match)."""
        self._held_until = -math.inf
        lease = self._lease
        if lease is None or self._postbox is None or lease.holder != self._postbox.sender:
            return
        step = self.record.step if self.record is not None else -1
        try:
            released = await self._lease_store().write(lease, lease.holder, 0.0, step)
        except (StorageError, IntegrityError) as exc:
            logger.debug("actor %r: releasing the folder lease failed: %s", self.actor_id, exc)
            released = None
        if self._lease is lease:  # (not if we took the lease again meanwhile)
            self._lease = released

    def _give_up_lease(self) -> None:
        """Fold no more with the lease, and release it in the background (unless a renewal is
        in flight: landing, it releases what it renewed)."""
        self._held_until = -math.inf
        if not self._renewing:
            self._start_release()

    def _start_release(self) -> None:
        """Release the folder lease in the background; shutdown waits for it."""
        self._releasing = self.env.background(self._release_lease())

    @property
    def leased(self) -> bool:
        """Whether this process posted or folded for this actor (it has work to finish at shutdown)."""
        return self._postbox is not None

    async def shutdown_lease(self) -> None:
        """At shutdown: release the folder lease if we hold it (or wait for a release in
        flight); finish deleting applied posts."""
        if self._held_until != -math.inf:
            await self._release_lease()
        releasing, self._releasing = self._releasing, None
        if releasing is not None and not releasing.done():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(releasing)
        if self._postbox is not None:
            await self._postbox.flush()

    def _serve(self) -> None:
        """The lease holder, on a pool thread: fold others' posts while this process's callers
        are quiet (their calls join the next fold). Ends when the lease is given up."""
        with self._mutex:
            if self._draining or self._serving:
                return
            self._draining = True
            self._serving = True
            if self._wake is None:
                self._wake = threading.Event()
            wake = self._wake
        max_batch = self.env.settings.max_batch
        #: listings in a row that found nothing: the next one waits longer (up to 10 ms)
        empty = 0
        #: fold-only commits in a row that committed nothing
        stuck = 0
        try:
            while self._holding():
                batch = self._claim_batch(max_batch)
                if batch:
                    self._commit(batch)
                    self._fail_unsettled(batch)
                    empty = 0
                    continue
                wake.clear()
                self._gather_posts(wake)
                if wake.is_set():
                    continue  # our callers have calls: they fold now
                try:
                    keys = self._post_keys()
                except (StorageError, IntegrityError):
                    keys = None
                if keys and any(_pending(self._posts(), k) for k in keys):
                    # (no cached step, after a compaction's forget(): the commit loads it)
                    before = self.record.step if self.record is not None else None
                    self._commit([], keys)
                    if self.record is None or self.record.step != before:
                        empty = stuck = 0
                        continue
                    # Nothing committed: the posts went meanwhile, or the first one waits
                    # behind a damaged read. Pause before listing and reading it again
                    # (not once the lease is given up: the loop ends).
                    stuck += 1
                    if self._holding():
                        wake.wait(_damaged_pause(stuck))
                    continue
                stuck = 0
                # About a put's time after a fold; less often while nothing comes (a LIST each).
                wake.wait(min(0.01, max(0.001, self._put_seconds) * 1.5 ** min(empty, 8)))
                empty += 1
        except Exception as exc:  # a defect or a closed store: the next caller takes over
            logger.debug("actor %r: folding for others stopped: %s", self.actor_id, exc)
        finally:
            with self._mutex:
                self._serving = False
            self._release_nearly_lapsed_lease()
            if self._release():
                self.env.spawn(self._drain_from_pool)

    def _release_nearly_lapsed_lease(self) -> None:
        """When the holder stops folding because its lease nears its end (renewed by folds
        only: nothing came for a while, though not for ``combine_window``), release the lease
        rather than let it lapse: posters would read it as held and wait for it to expire.
        Not while a renewal is in flight (it extends the lease), nor once released."""
        held_until = self._held_until
        if held_until == -math.inf:
            return
        if time.monotonic() >= held_until - 0.25 * self.env.settings.lease_seconds:
            self._give_up_lease()

    def _gather_posts(self, wake: threading.Event | None = None) -> None:
        """Group commit: a fold lists the posts no sooner than the other processes usually post
        after our previous fold (they learn their outcomes from it, then post their next batch),
        so that one step applies all of them: fewer steps, listings and reads per call. At most
        ``_GATHER_PUTS`` puts' time after that fold (``_GATHER_MAX`` seconds)."""
        if self._gather <= 0.0:
            return
        wait = self._folded_wall + self._gather - time.time()
        if wait > 0.0:
            wait = min(wait, self._gather_limit())
            if wake is None:
                time.sleep(wait)
            else:
                wake.wait(wait)

    def _gather_limit(self) -> float:
        return min(_GATHER_MAX, _GATHER_PUTS * max(self._put_seconds, 0.0005))

    def _learn_gather(self, foreign: list[Post], now: float) -> None:
        """After a fold that applied ``foreign`` posts (at wall time ``now``): how long after
        our previous fold the last of them was written, plus a put's time to land."""
        previous, self._folded_wall = self._folded_wall, now
        if now - previous > 1.0:
            return  # no fold of ours just before: nothing to measure from
        lags = [p.time - previous for p in foreign if p.time > previous]
        if not lags:
            return
        lag = min(self._gather_limit(), max(lags) + self._put_seconds)
        self._gather = 0.7 * self._gather + 0.3 * lag

    def _read_step(self, step: int) -> StepRecord | None:
        """``log.read_step``, on this thread where the store answers there (no trip to the loop)."""
        if self.log.store.inline:
            return self.log.read_step_now(step)
        return self.env.run(self.log.read_step(step))

    def _post_keys(self) -> list[str]:
        box = self._posts()
        return box.keys_now() if self.log.store.inline else self.env.run(box.keys())

    def _read_posts(self, keys: list[str]) -> list[Post]:
        box = self._posts()
        return box.read_now(keys) if self.log.store.inline else self.env.run(box.read(keys))

    def _posts(self) -> PostBox:
        if self._postbox is None:
            settings = self.env.settings
            self._postbox = PostBox(
                self.env.store, self.actor_id, settings.signing_key, names=settings.post_names
            )
        return self._postbox

    def _post(self, batch: list[PendingCall]) -> _Posted:
        """Write ``batch`` as one post; the calls are then applied by whichever commit folds it."""
        calls = tuple(
            PostedCall(
                c.method,
                c.frozen.data if c.frozen is not None and c.frozen.data is not None else _pickle_frozen(c),
                c.call_id,
                c.idempotency_key,
                c.options.name,
                c.options.metadata,
                c.options.max_retries,
            )
            for c in batch
        )
        base = self.record.step if self.record is not None else -1
        box = self._posts()
        if box.names and box.mail.key is None:
            # The store's mail key seals a post carried by its name: read (or made) once per
            # process, in the background. Until it is at hand, posts keep bare names (a
            # serverless call that posts once pays no request for a key it would not use).
            self.env.background(box.mail.load(create=True))
        post = box.prepare(calls)
        doubt = False
        try:
            if not (self.log.store.inline and box.send_now(post)):
                post = self.env.run(box.send(post))
        except StorageError as exc:
            # It may have landed unseen: from now on the batch is this post and nothing
            # else. Whoever commits our calls passes our seq in the cursor, which makes
            # the post (if it exists) stale: applied at most once either way.
            doubt = True
            if isinstance(exc, PostInDoubtError):
                post = exc.post  # under the name it may exist by (not one another's post took)
            logger.debug("actor %r: a post's write is in doubt: %s", self.actor_id, exc)
        counters.count("posted_calls", len(calls))
        posted = _Posted(post, base, time.monotonic(), doubt=doubt)
        if doubt:
            posted.may_land_until = time.monotonic() + self.env.settings.deadline
        self._outstanding = posted
        return posted

    def _wait_for_fold(self, posted: _Posted, batch: list[PendingCall], give_up_at: float) -> str:
        """A poster waits for the lease holder's fold, polling the next step.

        ``"done"``: applied, outcomes delivered; ``"fold"``: the lease was free and we
        took it (fold ourselves); ``"timeout"``: ``commit_timeout`` passed.
        """
        progress_at = time.monotonic()
        seen_step = self.record.step if self.record is not None else -1
        # The first look about one holder commit after posting (or, sooner, about when our
        # posts were folded lately: a holder that waits for posts folds one at once), then
        # less and less often.
        pause = max(0.001, min(self._cycle, 1.5 * self._fold_after + 0.001))
        first = True
        # Looks no further apart than the holder's commits (at least 50 ms): each look is a GET,
        # and on a remote store the holder's commits take longer than a few looks.
        longest = max(0.05, self._cycle)
        while True:
            now = time.monotonic()
            if now >= give_up_at:
                return "timeout"
            time.sleep(pause * (0.75 + 0.5 * random.random()))
            pause = min(longest, pause * 1.5)
            try:
                if self._poll_steps(posted, batch, skip=first):
                    return "done"
                first = False
                step = self.record.step if self.record is not None else -1
                if step != seen_step:
                    seen_step, progress_at = step, time.monotonic()
                lease = self._lease
                # No step for a long while: the holder may have given the lease up or died.
                stalled = time.monotonic() - progress_at > max(0.25, 20 * min(0.02, self._cycle))
                if stalled or ((lease is None or not lease.valid()) and not self._served_lately()):
                    if self._lease_for_fold():
                        return "fold"
                    progress_at = time.monotonic()
            except (StorageError, IntegrityError) as exc:
                counters.transient_retry(self.actor_id, exc)
                self._distrust()

    def _poll_steps(self, posted: _Posted, batch: list[PendingCall], *, skip: bool = False) -> bool:
        """Read the steps committed since our cache (a GET each, and one that misses); deliver
        our outcomes if one of them applied our post. True when delivered.

        ``skip`` (the first look after posting): the steps committed since we read our cache
        (about one per holder cycle), and the one being built when we posted (most likely
        without our post), are skipped: the first read is the step after them. The cursor is
        cumulative, so that step tells whether ours was applied by then (if so but not
        there, we walk back to the one that did); when it is not there yet, we walk back to
        the newest step.
        """
        env = self.env
        record = self.record
        if record is None or time.monotonic() - self.validated_at > env.settings.fresh_window:
            return self._settle_if_folded(posted, batch, env.run(self.revalidate()))
        post = posted.post
        if applied(record.extra, post.sender, post.seq):
            # Our cache already shows it: another thread's read (or call_outcome) moved the
            # cache past the step that applied our post. Its outcomes are there or below.
            return self._settle_if_folded(posted, batch, record)
        started = time.monotonic()
        # Steps read past ``record`` are newer than what was newest when ``record`` was
        # validated: they keep that time (a later step than the newest then is no less fresh).
        validated = self.validated_at
        current = record
        ahead = 1
        if skip and record.step == posted.base_step:
            # Where a look that overshoots costs a request, only the steps committed between
            # our look at the cache and our post (they cannot hold it); elsewhere, up to now.
            since = (started if self.log.store.inline else posted.at) - self._seen_at
            ahead = 2 + (min(_SKIP_MAX, int(since / self._cycle)) if 0 < since < _CYCLE_MAX * 8 else 0)
        if not self.log.store.inline:
            # Each look a request: skip at most one step we estimate was committed meanwhile
            # (a step we overshoot carries the outcomes of the one before it).
            return self._poll_remote(posted, batch, record, started, validated, min(ahead, 3))
        #: a step above the one we read was missing: that one is the newest
        newest = False
        for _ in range(16 + ahead):
            nxt = self._read_step(current.step + ahead)
            if nxt is None:
                if ahead > 1:
                    ahead -= 1  # not there yet: walk back to the newest step (ours, maybe)
                    newest = True
                    continue
                self._accept(current, started)  # the newest step, as of ``started``
                self._seen_at = time.monotonic()
                return False
            self._seen_at = time.monotonic()
            if nxt.time > current.time:
                # How long a commit of the holder takes (its steps' spacing, when it is busy).
                spacing = (nxt.time - current.time) / ahead
                self._cycle = 0.8 * self._cycle + 0.2 * min(_CYCLE_MAX, spacing)
            if applied(nxt.extra, post.sender, post.seq):
                self._served_at = time.monotonic()
                self._accept(nxt, validated)
                outcomes = decode_outcomes(nxt.posted, self.log.step_key(nxt.step))
                if batch and batch[0].call_id not in outcomes:
                    # Applied by a step below this one (one we skipped, or the one our cache
                    # held when another thread moved it): its outcomes are there, or carried here.
                    return self._settle_if_folded(posted, batch, nxt)
                self._deliver_posted(posted, batch, nxt, outcomes, nxt)
                return True
            if newest:
                self._accept(nxt, started)  # the newest step (the next was missing), not ours yet
                return False
            current = nxt
            ahead = 1
        self._accept(current, -math.inf)
        return self._settle_if_folded(posted, batch, env.run(self.revalidate()))  # far behind

    def _poll_remote(
        self,
        posted: _Posted,
        batch: list[PendingCall],
        record: StepRecord,
        started: float,
        validated: float,
        ahead: int,
    ) -> bool:
        """``_poll_steps`` where each look is a request: read the step we aim at, not every step.

        A step that does not show our post applied tells that no earlier one does (the cursor
        is cumulative): the steps between our cache and it need not be read. A look aims at
        the step most likely to apply our post (the first: the one after those we estimate
        were committed since our cache and the one being built when we posted); a miss
        there waits for it (a GET per look, as when nothing changed), and a second miss at
        the same step walks back one. A step that applies ours holds its outcomes, or carries
        them when its parent applied it (``StepRecord.carried``); else we walk back to them.
        """
        aim = posted.aim if posted.aim > record.step else record.step + ahead
        current = record
        for _ in range(16 + ahead):
            nxt = self._read_step(aim)
            if nxt is None:
                if aim > current.step + 1 and posted.missed == aim:
                    aim -= 1  # missing twice: we aimed too far; the one before may be ours
                    continue
                posted.aim, posted.missed = aim, aim
                if aim == current.step + 1:
                    self._accept(current, started)  # the newest step, as of ``started``
                self._seen_at = time.monotonic()
                return False
            self._seen_at = time.monotonic()
            if nxt.time > current.time and nxt.step > current.step:
                spacing = (nxt.time - current.time) / (nxt.step - current.step)
                self._cycle = 0.8 * self._cycle + 0.2 * min(_CYCLE_MAX, spacing)
            if applied(nxt.extra, posted.post.sender, posted.post.seq):
                self._served_at = time.monotonic()
                self._accept(nxt, validated)
                outcomes = decode_outcomes(nxt.posted, self.log.step_key(nxt.step))
                if batch and batch[0].call_id not in outcomes:
                    return self._settle_if_folded(posted, batch, nxt)  # carried, or walk back
                self._deliver_posted(posted, batch, nxt, outcomes, nxt)
                return True
            if nxt.step > current.step:
                self._accept(nxt, validated)
                current = nxt
            aim = nxt.step + 1
            posted.aim = aim
        self._accept(current, -math.inf)
        return self._settle_if_folded(posted, batch, self.env.run(self.revalidate()))  # far behind

    def _deliver_posted(
        self,
        posted: _Posted,
        batch: list[PendingCall],
        newest: StepRecord,
        found: Mapping[str, Outcome] | None,
        folded_in: StepRecord | None = None,
    ) -> None:
        if folded_in is not None:
            # When the holder built the step that applied our post, after we wrote it.
            after = min(_CYCLE_MAX, max(0.0, folded_in.time - posted.post.time))
            self._fold_after = 0.8 * self._fold_after + 0.2 * after
        # Each outcome loads here, ours alone (not another caller's). One that does not load
        # (its class is not here, or its bytes are malformed) fails that call alone: applied,
        # so CallPendingError with the load error as its cause (call_outcome raises it).
        for call in batch:
            try:
                outcome = (found or {}).get(call.call_id)
            except Exception as exc:
                self._remember_given_up(posted, [call])
                pending = CallPendingError(self.actor_id, [call.call_id])
                pending.__cause__ = exc
                outcome = Outcome(False, pending)
            call.deliver(outcome or Outcome(False, CommitOutcomeUnknownError(self.actor_id, newest.step)))
        if self._outstanding is posted:
            self._outstanding = None

    def _settle_if_folded(self, posted: _Posted, batch: list[PendingCall], base: StepRecord) -> bool:
        """If a commit (ours or another process's) applied our post: deliver its outcomes."""
        post = posted.post
        if not applied(base.extra, post.sender, post.seq):
            return False
        first = batch[0].call_id
        found: Mapping[str, Outcome] | None = None
        folded_in: StepRecord | None = None
        for step in range(base.step, posted.base_step, -1):
            if step in posted.passed:
                continue
            record = base if step == base.step else self._read_step(step)
            if record is None:
                break  # compacted: older steps are gone too
            outcomes = decode_outcomes(record.posted, self.log.step_key(record.step))
            if first in outcomes:
                found, folded_in = outcomes, record
            else:
                carried = decode_outcomes(record.carried, self.log.step_key(record.step))
                if first in carried:
                    found = carried  # applied by the step before (its time is not known here)
            if found is not None:
                if step != base.step and self._below_watermark(step):
                    found = folded_in = None  # a stray, not the history's: the step was compacted
                break
            posted.passed.add(step)
        self._deliver_posted(posted, batch, base, found, folded_in)
        return True

    def _below_watermark(self, step: int) -> bool:
        """Whether ``step``, just read on a walk back from a validated step, lies below the
        retention watermark: then it is no step of the history but a stray (a stalled
        writer's late put re-created a number a compaction had freed), and what it says
        must not be taken. The watermark is read *after* the step (as ``ActorLog.find_step``
        does): a compaction raises it before deleting, so a stray read before this answer
        shows below it. One request, only when a walk back found what it looked for."""
        return step < self.env.run(self.log.read_gc())

    def _pending_error(self, posted: _Posted, batch: list[PendingCall]) -> CallPendingError:
        """The caller stops waiting; remember the post so ``call_outcome`` can tell later."""
        self._remember_given_up(posted, batch)
        self._outstanding = posted  # our next batch posts too, after this one: order is kept
        return CallPendingError(self.actor_id, [c.call_id for c in batch])

    def _remember_given_up(self, posted: _Posted, calls: list[PendingCall]) -> None:
        """Keep ``posted`` for ``call_outcome`` under each call's id (the newest
        ``_GAVE_UP_MAX`` such calls of the process).

        Without its calls' arguments, nor the steps its wait walked: bounded by count, each
        entry must be small whatever they were. The post is written; what is asked of it from
        here on is its key, sender and seq (a fold applies it from the stored object, ours
        included; ``call_outcome`` walks back from the newest step)."""
        posted.passed.clear()
        if any(c.arguments or c.metadata for c in posted.post.calls):
            posted.post = replace(
                posted.post, calls=tuple(replace(c, arguments=b"", metadata=None) for c in posted.post.calls)
            )
        for call in calls:
            _GAVE_UP[(self.actor_id, call.call_id)] = posted
            while len(_GAVE_UP) > _GAVE_UP_MAX:
                _GAVE_UP.popitem(last=False)

    def call_outcome(self, call_id: str, scan: int = 1000) -> Outcome:
        """The outcome of a call posted under contention whose caller stopped waiting.

        ``CallPendingError`` while it may still be applied; ``LookupError``
        when it was not applied and never will be, or is not found among the
        newest ``scan`` steps (nor known to this process).
        """
        newest = self.env.run(self.revalidate())
        posted = _GAVE_UP.get((self.actor_id, call_id))
        #: not applied by the newest step's cursor, which no longer names our sender: it may
        #: have been applied and the entry dropped since (SENDER_TTL without a post): the
        #: steps since we posted tell
        unsure = False
        if posted is not None and not applied(newest.extra, posted.post.sender, posted.post.seq):
            if self.env.run(self.env.store.head(posted.post.key)) is not None:
                raise CallPendingError(self.actor_id, [call_id])
            newest = self.env.run(self.revalidate())  # applied just before its post was deleted?
            if not applied(newest.extra, posted.post.sender, posted.post.seq):
                if posted.post.sender in cursor_of(newest.extra):
                    self._unless_a_write_may_land(posted, call_id)
                    raise LookupError(
                        f"actor {self.actor_id!r}: call {call_id} was not applied (and never will be)"
                    )
                unsure = True
        stop = posted.base_step if posted is not None else max(-1, newest.step - scan)
        complete = True
        for step in range(newest.step, stop, -1):
            record = newest if step == newest.step else self.env.run(self.log.read_step(step))
            if record is None:
                complete = False
                break  # compacted: older steps are gone too
            found = decode_outcomes(record.posted, self.log.step_key(record.step)).get(call_id)
            if found is not None:
                if step != newest.step and self._below_watermark(step):
                    complete = False  # a stray, not the history's: the step was compacted
                    break
                return found
        if unsure and complete:  # no step since we posted applied it
            assert posted is not None
            self._unless_a_write_may_land(posted, call_id)
            raise LookupError(f"actor {self.actor_id!r}: call {call_id} was not applied (and never will be)")
        if posted is not None:  # applied, but the step that holds its result was compacted
            return Outcome(False, CommitOutcomeUnknownError(self.actor_id, -1))
        raise LookupError(f"actor {self.actor_id!r}: no posted call {call_id} among the newest {scan} steps")

    def _unless_a_write_may_land(self, posted: _Posted, call_id: str) -> None:
        """Before "never": ``CallPendingError`` while a write of ours that carries the call (the
        post, or the step put of our own fold) may still land."""
        if time.monotonic() < posted.may_land_until:
            raise CallPendingError(self.actor_id, [call_id])

    def _fold_posts(
        self, posted: _Posted | None, batch: list[PendingCall], base: StepRecord, keys: list[str]
    ) -> tuple[list[PendingCall], list[Post], list[str]]:
        """The calls of every pending post (ours as our own calls), in post order; and stale keys.

        ``posted``: our own post, if ``batch`` was posted; else ``batch`` (never posted:
        nothing of ours is pending) goes last, after the posts.

        A post the cursor has passed (its folder died before deleting it) or
        too old to apply is stale: told from its key alone, without reading it.
        """
        now = time.time()
        max_batch = self.env.settings.max_batch
        calls: list[PendingCall] = []
        folded: list[Post] = []
        stale: list[str] = []
        #: the object at our post's key may be another's post: read it like theirs
        doubt = posted is not None and posted.doubt
        if posted is None:
            # Room for our own calls, after the posts.
            max_batch = max(1, max_batch - len(batch))
            own = Post("", "", -1, 0.0, ())
        else:
            own = posted.post
        wanted: list[str] = []
        for key in keys:
            written = identity(key)
            if written is None or now - written > SENDER_TTL / 2:
                stale.append(key)  # not a post, or expired: deleted unread
            else:
                wanted.append(key)
        others = [k for k in wanted if k != own.key or doubt]
        box = self._posts()
        cached = [k for k in others if bare(k) and box.cached(k) is not None]
        read = {p.key: p for p in self._read_posts(others)} if others else {}
        # A bare name does not carry its post: after the post we read there was applied and
        # deleted, another sender's post may have drawn the name (same millisecond and random
        # part, clocks apart). One read before, now applied by the cursor, is read again rather
        # than deleted unread (rare: a post left behind, or one another folder applied first).
        again = [k for k in cached if k in read and applied(base.extra, read[k].sender, read[k].seq)]
        if again:
            box.forget(again)
            for key in again:
                del read[key]
            read.update((p.key, p) for p in self._read_posts(again))
        ours_waiting = False
        #: per sender, the newest seq this fold applies: a second copy of a post (its sender
        #: wrote it again under a new name, unsure whether the first landed) is stale like an
        #: applied one, and a copy of our own post stands for it
        folding: dict[str, int] = {}
        own_in = False
        #: the fold ended before the end of the listing (a damaged post, a full batch): an
        #: earlier post of ours may be among the posts it did not reach
        stopped = False
        for key in wanted:
            mine = key == own.key and not doubt
            post = None if mine else read.get(key)
            copy = post is not None and (post.sender, post.seq) == (own.sender, own.seq)
            if mine or copy:
                if copy and key != own.key:
                    stale.append(key)  # a copy of our post: our calls go in once, as our post
                if not own_in:
                    own_in = True
                    calls.extend(batch)
                    folded.append(own)
                    folding[own.sender] = max(own.seq, folding.get(own.sender, -1))
                continue
            if post is None:
                if self._posts().waits_for(key):
                    # Damaged (in transit, maybe): whose it is is unknown, and a sender's later
                    # posts must not pass it. Nothing after it in this fold. (Still damaged after
                    # a few folds and seconds: forged or corrupt at rest, never applied, skipped.)
                    stopped = True
                    break
                continue  # deleted meanwhile: applied after our base (this commit loses anyway)
            if applied(base.extra, post.sender, post.seq) or post.seq <= folding.get(post.sender, -1):
                stale.append(key)  # applied; its folder died (or failed) before deleting it
                continue
            if post.sender == own.sender:
                ours_waiting = True  # an earlier post of ours, still pending: it goes first
            if len(calls) + len(post.calls) > max_batch and calls:
                stopped = True
                break
            folded.append(post)
            folding[post.sender] = max(post.seq, folding.get(post.sender, -1))
            calls.extend(
                PendingCall(
                    pc.method,
                    (),
                    {},
                    False,
                    Future(),
                    pc.call_id,
                    idempotency_key=pc.idempotency_key,
                    frozen=Frozen(None, pc.arguments),
                    options=CallOptions(
                        idempotency_key=pc.idempotency_key,
                        name=_recordable_name(pc.name),
                        metadata=_recordable_metadata(pc.metadata),
                        max_retries=pc.max_retries,
                    ),
                )
                for pc in post.calls
            )
        if posted is None:
            calls.extend(batch)
            return calls, folded, stale
        if not own_in and (own.key not in wanted or doubt) and not ours_waiting and not stopped:
            # Not listed (yet, or its write failed unseen): our calls go in anyway; once the
            # cursor passes our seq the post object, if any, is stale and deleted unapplied.
            # Not when the fold stopped early: an earlier post of ours it did not reach goes
            # first (passing it would apply our calls out of order, and leave it stale).
            calls.extend(batch)
            folded.append(own)
        return calls, folded, stale

    def _settle(
        self, batch: list[PendingCall], calls: list[PendingCall], result: BatchResult, hooked: bool
    ) -> None:
        for call, outcome in zip(calls, result.outcomes, strict=True):
            call.deliver(outcome)
        if hooked:
            # The inbox looked at this commit (events folded, markers answered): it settles its part.
            try:
                self.env.run(self.inbox.settle(batch, calls, result))
            except Exception as exc:  # cleanup only: applied events are found again and skipped
                logger.warning("actor %r: inbox cleanup after a commit failed: %s", self.actor_id, exc)
                _fail(batch, exc)

    def _index_timers(self, base: StepRecord, record: StepRecord) -> None:
        """Durable timers (vactor_cloud.timers): write the due-index entries of the committed
        step's timers, after the commit, before its callers hear of it. Only actors with timers."""
        try:
            self.env.run(
                index_after_commit(
                    self.log.store,
                    self.actor_id,
                    base.extra,
                    record.extra,
                    firing_only=firing_only(record.calls),
                )
            )
        except Exception as exc:  # the step stays the truth: a later commit or a repair indexes it
            logger.warning("actor %r: could not index its timers: %s", self.actor_id, exc)

    def _catch_up(self, winner: StepRecord) -> None:
        """After losing a race, move the cache to the newest step in one probe.

        Retrying from the winner's step alone loses again whenever others
        committed meanwhile: a writer walking one step per lost put falls
        further behind and starves while the others keep committing.
        """
        started = time.monotonic()
        try:
            newest, _ = self.env.run(self.log.probe_from(winner))
        except VactorError as exc:  # the next attempt's put finds out as well
            logger.debug("actor %r: probe after a lost commit failed: %s", self.actor_id, exc)
            return
        self._accept(newest, started)

    def _class_ref_for_commit(self, definition: ActorDefinition, base: StepRecord) -> ClassRef:
        if self._stored_sha is not None:
            return base.class_ref
        ref, body = definition.body()
        if ref.sha != base.class_ref.sha and ref.sha not in self._stored_classes:
            # This process runs its own (maybe upgraded) class: store its body first
            # so that processes without the class can read the steps it writes.
            self.env.run(self.log.put_class(ref.sha, body, ref.name))
        self._stored_classes |= {ref.sha}
        return ref

    # -- reads (the caller's thread) --------------------------------------------------------
    @tracing.actor_span("vactor.read")
    def read(self, call: PendingCall) -> None:
        """Run a read-only call now, on this thread, against the newest committed step."""
        if not call.claim():
            return
        counters.count("reads")
        try:
            if call.at_step is not None:
                record = self.env.run(self.log.find_step(call.at_step))
            else:
                record = self.env.run(self.revalidate())
            definition = self._definition_now(record)
            outcome = Outcome(True, run_readonly(definition, self.actor_id, record, call, self.env))
        except BaseException as exc:
            outcome = Outcome(False, exc)
        call.deliver(outcome)

    # -- HEAD --------------------------------------------------------------------------------
    async def flush_head(self) -> None:
        record = self.record
        if record is None or (self.head is not None and self.head.step >= record.step):
            return
        self.head = await self.log.advance_head(record.step, record.class_ref, self.head)


@dataclass(slots=True)
class _Posted:
    """Our post, and the newest step we knew when we wrote it (the outcome is in a later one).

    On a remote store, the step the next look reads (``aim``) and the last step a look
    found missing (``missed``): see ``ActorCore._poll_remote``.
    """

    post: Post
    base_step: int
    #: when (monotonic) the post was written
    at: float = -math.inf
    aim: int = -1
    missed: int = -1
    #: steps read since that neither record nor carry our outcomes: a walk back to the step
    #: that applied our post goes on past them after a failed read, not from its start
    passed: set[int] = field(default_factory=set)
    #: its write ended in doubt: the object at its key may be ours, or another's post (whose
    #: name ours drew): a fold reads it before it takes it for ours
    doubt: bool = False
    #: until when (monotonic) a write that carries our calls may still land (a post or a
    #: step put of ours whose outcome is unknown): ``call_outcome`` does not say "never" before
    may_land_until: float = -math.inf


def _pending(box: PostBox, key: str) -> bool:
    """Whether the post at ``key`` gives a fold work (a post's key, not expired, not skipped as
    damaged just now): it waits for one, or it was applied and left behind, and the fold
    deletes it.

    (A post known applied used to count as no work: known only once a fold had read it, and
    then deleted by that fold. A post carried by its name is known from the listing, and one
    left behind stayed until the next fold with calls.)"""
    written = identity(key)
    return written is not None and time.time() - written <= SENDER_TTL / 2 and not box.skipped(key)


def _recordable_name(name: str | None) -> str | None:
    """A posted call's ``name`` as its step can record it (its repr if not UTF-8: a poster
    that did not check it must not fail every fold that includes its post)."""
    return name if name is None or unrecordable(name, None) is None else safe_repr(name)[:200]


def _recordable_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """A posted call's ``metadata`` as its step can record it (a stand-in naming its repr if
    it is not JSON: see ``_recordable_name``)."""
    if metadata is None or unrecordable(None, metadata) is None:
        return metadata
    return {"unrecordable_metadata": safe_repr(metadata)[:200]}


def _pickle_frozen(call: PendingCall) -> bytes:
    args, kwargs = call.arguments()
    return pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)


#: posts whose callers stopped waiting (CallPendingError), by (actor id, call id): call_outcome reads them
_GAVE_UP: OrderedDict[tuple[str, str], _Posted] = OrderedDict()
_GAVE_UP_MAX = 10_000

#: the longest holder commit interval a poster's looks adapt to (seconds; longer gaps are idle time)
_CYCLE_MAX = 0.25

#: a poster's first look skips at most this many steps it estimates were committed since its cache
_SKIP_MAX = 6

#: a hot writer: this many commits in a row, each within _STREAK_GAP seconds of the one before
_STREAK_COMMITS = 8
#: a fold copies its parent's outcomes (``StepRecord.carried``) up to this many bytes
_CARRY_MAX = 4096
#: a fold waits for the posts of the next round at most this many puts' time, and seconds
_GATHER_PUTS = 3
_GATHER_MAX = 0.05
_STREAK_GAP = 0.1
_STREAK_PUTS = 4
#: a hot writer reads the lease no more often than once per this many of its puts' time
_HOT_READ_PUTS = 16

#: transient storage errors retried before a commit's put (nothing written yet)
_TRANSIENT_RETRIES = 5


class _BelowWatermarkError(Exception):
    """Our create landed on a step number a compaction had already deleted."""


def _fail(calls: list[PendingCall], exc: BaseException) -> None:
    for call in calls:
        call.deliver(Outcome(False, exc))


def _damaged_pause(attempt: int) -> float:
    """Before reading a damaged post again: 10 ms, doubling to 100 ms (jittered). A post damaged
    in transit reads fine at once; one damaged at rest is read about twenty times over
    ``posting.DAMAGED_SECONDS`` before it is skipped, not a LIST and a GET every few ms."""
    return float(min(0.1, 0.01 * 2 ** min(attempt - 1, 4)) * (0.5 + random.random()))


def _backoff(attempt: int) -> float:
    """Jittered backoff between conflicting commit attempts (at most a few ms).

    The cap is a few round trips: a loser that sleeps much longer than the
    winner's commit cycle only falls further behind.
    """
    return float(0.001 * min(attempt, 5) * random.random())

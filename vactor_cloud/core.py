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
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from vactor_cloud import counters, tracing
from vactor_cloud.batch import PendingCall
from vactor_cloud.batch_apply import run_readonly
from vactor_cloud.committer import CommitHook
from vactor_cloud.dedup import Outcome, cached_bytes
from vactor_cloud.definition import ActorDefinition, lookup_local_class, superseded
from vactor_cloud.deletion import after_tombstone, deleted_error, forget_before_creation, is_deleted
from vactor_cloud.errors import ActorClassChangedError, ActorNotFoundError
from vactor_cloud.holding import HoldEnv, Holder
from vactor_cloud.log import ActorLog, StepTakenError
from vactor_cloud.log_records import CallRecord, ClassRef, Head, StepRecord
from vactor_cloud.post_cursor import POST_CURSOR
from vactor_cloud.read_room import Read, ReadRoom
from vactor_cloud.reentrancy import writers_on_this_thread
from vactor_cloud.timers import TIMERS

__all__ = ["ActorCore", "CommitHook", "CoreEnv"]

#: a creation on a deleted actor's id that keeps meeting new tombstones (folds on it) gives up
_CREATE_AFTER_TOMBSTONE_ATTEMPTS = 16

logger = logging.getLogger("vactor_cloud")


class CoreEnv(HoldEnv, Protocol):
    """What an :class:`ActorCore` needs from its runtime, and nothing more: what contention
    combining needs (:class:`~vactor_cloud.poster.CombiningEnv`: the store, the settings, the
    IO loop, the pool), and the following."""

    #: room for the states that read-only calls restore at once (``Settings.max_read_bytes``)
    read_room: ReadRoom

    async def stored_class(self, log: ActorLog, ref: ClassRef) -> ActorDefinition:
        """The class body ``ref`` loaded from storage."""
        ...

    def head_moved(self, core: ActorCore, *, lazy: bool = False) -> None:
        """``core`` committed or loaded a step its HEAD does not point at yet (``lazy``: a step
        that only fired timers; HEAD may wait longer)."""
        ...

    def weigh(self, core: ActorCore, weight: int) -> None:
        """``core`` holds about ``weight`` bytes now: set ``core._weight`` and count the change
        (one step under the cache's lock, so that an eviction never sees one without the other)."""
        ...

    def in_cache(self, core: ActorCore) -> bool:
        """Whether ``core`` is its actor's core in the cache: False once it was evicted (until
        a call takes it back). A lease holder that is not serves others no more."""
        ...


class ActorCore(Holder):
    """Per-process state of one actor. Create through ``Runtime.core(actor_id)``.

    Its bases hold parts of it, each with its own fields, each over the one before: contention
    combining, the poster's side (:class:`~vactor_cloud.poster.Poster`) and the folder's side
    (:class:`~vactor_cloud.folding.Folder`); the commit loop (:class:`~vactor_cloud.committer.Committer`);
    the holding of the actor, calls queued, waited for and drained (:class:`~vactor_cloud.holding.Holder`).
    Here: its cache of the newest step, loading, creation, reads, HEAD.
    """

    # Slots (and the bases' too): a process may touch tens of thousands of actors; every byte counts.
    __slots__ = (
        "__weakref__",
        "_load_failed",
        "_load_lock",
        "_load_queued",
        "_loads_begun",
        "_mutex",
        "_stored_classes",
        "_stored_sha",
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
        super().__init__()
        self.env: CoreEnv = env
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
        #: class bodies (by sha) this core stored or found stored, and when (monotonic)
        self._stored_classes: dict[str, float] = {}
        self._mutex = threading.Lock()
        self._load_lock: asyncio.Lock | None = None
        #: loads begun (IO loop), and the number and error of the last one if it failed
        self._loads_begun = 0
        self._load_failed: tuple[int, Exception] | None = None
        #: callers of ``ensure_loaded`` waiting for the load lock: a failed load is kept for them
        #: alone (its traceback holds the frames of every caller it went up through, and their
        #: locals: kept in a cached core, it held them for good)
        self._load_queued = 0
        self._weight = 0
        self.inbox = inbox(self)

    # -- cache ---------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No queued or running writes, nobody waiting: safe to evict.

        (A post of ours still pending is the runtime's to remember, not the core's: the
        actor's next batch, on whatever core, posts after it. A folder-lease holder between
        two rounds of serving others is idle too: evicted, its next round gives the lease up.)
        """
        return self._drainer is None and not self._queue and not self._waiters

    def _reweigh(self) -> None:
        record, live = self.record, self._live
        weight = cached_bytes(self.log)  # the idempotency checkpoint it keeps decoded, if any
        if record is not None:
            weight += len(record.state) + len(record.dedup) + 512
            # What a step carries beside them: folded calls' outcomes (and their copies), a new
            # idempotency checkpoint our own commit wrote, the post cursor and the timer table
            # (by entry: about the size of a cursor entry, and of a timer without payload)
            weight += len(record.posted) + len(record.carried) + len(record.legacy)
            weight += len(record.dedup_checkpoint) + sum(len(o) for _, o in record.dedup_outcomes)
            extra = record.extra
            if extra:
                cursor, timers = extra.get(POST_CURSOR), extra.get(TIMERS)
                # (what a step holds there is checked where it is read: a malformed one weighs 0)
                weight += 64 * len(cursor) if isinstance(cursor, dict) else 0
                weight += 128 * len(timers) if isinstance(timers, dict) else 0
            if live is not None:
                weight += len(record.state)  # the live instance, roughly its serialized size
        if weight != self._weight:
            self.env.weigh(self, weight)

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

    async def ensure_loaded(self) -> StepRecord:
        """Load the newest step (and the class, if this process lacks it). ``ActorNotFoundError``.

        Returns the cached step, or the one this load found: the cache itself may be dropped
        again at once by another thread (a compaction's ``forget``, a writer's failed attempt)."""
        record = self.record
        if record is not None and self.definition is not None:
            return record
        came_after = self._loads_begun
        lock = self._lock()
        self._load_queued += 1
        try:
            await lock.acquire()
        finally:
            self._load_queued -= 1
        try:
            record = self.record
            if record is not None and self.definition is not None:
                return record
            failed, self._load_failed = self._load_failed, None
            if failed is not None and failed[0] > came_after:
                # A load begun after this caller came failed: its answer is this caller's too,
                # and the next waiter's (each caller that waited behind a load of an actor whose
                # class body is damaged loaded again in its turn: three reads of the body, with
                # pauses, per caller). The first caller that came after it clears it, or the
                # last that waited for it.
                if self._load_queued:
                    self._load_failed = failed
                raise failed[1]
            self._loads_begun += 1
            number = self._loads_begun
            try:
                record = await self._load()
            except Exception as exc:
                if self._load_queued:  # (for those waiting: none other will come for it)
                    self._load_failed = (number, exc)
                raise
            self._load_failed = None
            return record
        finally:
            lock.release()

    async def _load(self) -> StepRecord:
        """``ensure_loaded``'s load itself (the caller holds the load lock)."""
        started = time.monotonic()
        head = await self.log.read_head()
        definition: ActorDefinition | None = None
        hint_failed: Exception | None = None
        #: the class HEAD names, fetched beside the steps (HEAD may name another than the
        #: newest step's, or be pulled back to that step's: then it is fetched again)
        hinted = None if head is None else head.class_ref
        if head is not None:
            (record, head), (definition, hint_failed) = await asyncio.gather(
                self.log.load_latest_and_head(head), self._hinted_definition(head.class_ref)
            )
        else:
            record = await self.log.load_latest(None)
        if record is None:
            raise ActorNotFoundError(self.actor_id, self.env.store.describe())
        if definition is None or record.class_ref != hinted:
            if hint_failed is not None and record.class_ref == hinted:
                # The newest step's own class, which the hint's fetch already failed to
                # load, after its retries: fetching it again read a damaged body six times.
                raise hint_failed
            definition = await self.definition_for(record.class_ref)
        self._set_definition(definition, record.class_ref)
        self.head = head
        self._accept(record, started)
        if head is None or head.step < record.step:
            self.env.head_moved(self)
        return record

    async def ensure_exists(self) -> StepRecord:
        """:meth:`ensure_loaded`, for a caller that needs the actor to exist: a deleted actor (its
        newest step a tombstone) raises ``ActorDeletedError``. A tombstone cached here is probed
        past first (one GET): the id may hold a new actor since."""
        record = await self.ensure_loaded()
        if is_deleted(record):
            record = await self.revalidate()
            if is_deleted(record):
                raise deleted_error(self.log, record)
        return record

    async def _hinted_definition(self, ref: ClassRef) -> tuple[ActorDefinition | None, Exception | None]:
        """The class HEAD names, or None and why this process cannot have it: HEAD is a hint (it
        may lag behind a rename, or be forged), and the newest step's class decides (raising
        here failed every load, whatever the step named). When the step names this very class,
        its load raises the error kept here rather than read the body (and retry it) again."""
        try:
            return await self.definition_for(ref), None
        except Exception as exc:
            logger.debug(
                "actor %r: the class HEAD names (%s) is not loadable here: %s", self.actor_id, ref.name, exc
            )
            return None, exc

    async def definition_for(self, ref: ClassRef) -> ActorDefinition:
        """The class of steps written with ``ref``: this process's own, else the stored body."""
        local = lookup_local_class(ref.name)
        if local is not None:
            return local
        return await self.env.stored_class(self.log, ref)

    def _set_definition(self, definition: ActorDefinition, ref: ClassRef) -> None:
        # (The class of a step may change only across a tombstone: a new actor under the id.)
        self.definition = definition
        self._stored_sha = None if lookup_local_class(definition.name) is definition else ref.sha

    async def _sync_definition(self, record: StepRecord) -> ActorDefinition:
        """The class to run ``record`` with: ours if we have it, else the one the step names."""
        if (
            self.definition is None
            or self.definition.name != record.class_ref.name  # a new actor after a tombstone
            or (self._stored_sha is not None and self._stored_sha != record.class_ref.sha)
            or superseded(self.definition)
        ):
            self._set_definition(await self.definition_for(record.class_ref), record.class_ref)
        assert self.definition is not None
        return self.definition

    def _runs(self, record: StepRecord) -> ActorDefinition | None:
        """The actor's class if it runs ``record`` as it is (nothing to load), else None."""
        definition = self.definition
        if (
            definition is not None
            and definition.name == record.class_ref.name
            and (self._stored_sha is None or self._stored_sha == record.class_ref.sha)
            and not superseded(definition)
        ):
            return definition
        return None

    def _definition_now(self, record: StepRecord) -> ActorDefinition:
        """``_sync_definition`` without a trip to the IO loop when nothing needs loading."""
        definition = self._runs(record)
        return definition if definition is not None else self.env.run(self._sync_definition(record))

    def _definition_at(self, record: StepRecord) -> ActorDefinition:
        """The class to run a read at a past step ``record`` with, the actor's left as it is:
        a step of an earlier actor under the id (another class) taught the process that the
        id held that class again (``get_or_create`` with the class it holds now raised)."""
        definition = self._runs(record)
        return definition if definition is not None else self.env.run(self.definition_for(record.class_ref))

    def definition_of_newest(self) -> ActorDefinition:
        """The class of the actor's newest step (its stored body where this process does not
        define it; a deleted actor's, its tombstone's), the actor's own left as it is."""
        return self._definition_at(self.env.run(self.revalidate()))

    async def revalidate(self) -> StepRecord:
        """Find the newest step from the cached one (one GET when nothing changed).

        A cache older than ``fresh_window`` may predate a compaction: the
        retention watermark is read *after* the probe has answered
        (``ActorLog.probe_with_watermark``), so a compaction that deleted
        steps the probe missed is always seen. Steps at or above the
        watermark are never deleted, so a probe that reached one found the newest.
        """
        base = await self._loaded_record()
        started = time.monotonic()
        if started - self.validated_at > self.env.settings.fresh_window:
            newest, watermark = await self.log.probe_with_watermark(base)
            if watermark.min_step > newest.step:
                self._invalidate()
                return await self._loaded_record()
        else:
            newest, _ = await self.log.probe_from(base)
        self._accept(newest, started)
        # (Not the cache if another thread dropped it since: a reader's probe answered all the same.)
        record = self.record
        return record if record is not None and record.step >= newest.step else newest

    async def _loaded_record(self) -> StepRecord:
        """The cached step, or the step a load of its own found. Each thread reads ``self.record``
        once and never assumes it is still set (a read failed with a bare ``AssertionError``
        so), nor waits for it to stay set: a loop that loaded until the cache held (dropped again
        by a compaction's ``forget`` or a writer's failed attempt each time) starved a read."""
        return await self.ensure_loaded()

    # -- creation (IO loop) -------------------------------------------------------------
    async def create(self, definition: ActorDefinition, state: bytes, init_args: str) -> bool:
        """Write the class body and step 0; if another creator won, attach to its actor.

        True when this call created the actor.
        """
        ref, body = definition.body()
        #: the tombstone this creation follows (a deleted actor's id), found by the load before
        tombstone = self.record if self.record is not None and is_deleted(self.record) else None

        async def prime() -> None:
            if tombstone is not None:  # (the deleted actor's applied events: not the new actor's)
                await forget_before_creation(self.log, tombstone)
            await self.inbox.prime()

        put = self.log.put_class(ref.sha, body, ref.name, definition.bytecode)
        created, _ = await asyncio.gather(put, prime())
        if created:  # (one found there may be damaged: the first commit checks it)
            self._stored_classes[ref.sha] = time.monotonic()
        for _ in range(_CREATE_AFTER_TOMBSTONE_ATTEMPTS):
            record = StepRecord(
                step=0 if tombstone is None else tombstone.step + 1,
                parent=None if tombstone is None else tombstone.step,
                class_ref=ref,
                serializer=definition.serializer,
                state=state,
                writer=uuid.uuid4().hex,
                time=time.time(),
                calls=(CallRecord("__init__", uuid.uuid4().hex, True, time.time(), args=init_args),),
                extra={} if tombstone is None else after_tombstone(tombstone),
            )
            started = time.monotonic()
            created = True
            try:
                await self.log.put_step(record)
                break
            except StepTakenError as taken:
                record = taken.winner
                started = -math.inf  # the actor may have moved on since it was created
                created = False
                if is_deleted(record) or (tombstone is None and record.step == 0):
                    # Another tombstone (a fold on the deleted actor), or a step 0 of an actor
                    # deleted since: create after the newest tombstone, if that is the newest.
                    newest, _ = await self.log.probe_from(record)
                    if is_deleted(newest):
                        tombstone = newest
                        continue
                    record = newest
                if record.class_ref.name != definition.name:
                    # Another class won: ours is not this actor's (the caller refuses the creation).
                    # The core is shared with this process's other callers: leave it as it is.
                    return False
                break
        self._set_definition(definition, record.class_ref)
        self._accept(record, started)
        self.env.head_moved(self)
        return created

    # -- reads (the caller's thread) --------------------------------------------------------
    @tracing.actor_span("vactor.read")
    def read(self, call: PendingCall, inside: Read | None = None) -> None:
        """Run a read-only call now, on this thread, against the newest committed step
        (``inside``: the read it was made in with ``run_async``, see ``read_room``)."""
        if not call.claim():
            return
        counters.count("reads")
        try:
            env = self.env
            step = call.at_step
            record = env.run(self.log.find_step(step) if step is not None else self.revalidate())
            if is_deleted(record):
                raise deleted_error(self.log, record)
            now = record.class_ref.name
            if call.for_class is not None and call.for_class != now:
                if step is None:  # (a past step's class is no news: the id's may be another now)
                    self._learn_class(record)
                raise ActorClassChangedError(self.actor_id, call.method, call.for_class, now, step)
            definition = self._definition_now(record) if step is None else self._definition_at(record)
            room = env.read_room
            writers = writers_on_this_thread()
            size = len(record.state)
            # A past step is this read's own copy of the stored state: not held while it waits
            # for room (read again once it has room; the newest step is the cache's, shared).
            again: int | None = None
            if step is not None and room.would_wait(size, inside, writers):
                again = step
                del record
            with room.taken(size, env.settings.deadline, self.actor_id, call.method, inside, writers):
                if again is not None:  # (compacted meanwhile: StepNotFoundError, as any read of it)
                    record = env.run(self.log.find_step(again))
                outcome = Outcome(True, run_readonly(definition, self.actor_id, record, call, env))
        except BaseException as exc:
            outcome = Outcome(False, exc)
        call.deliver(outcome)

    # -- HEAD --------------------------------------------------------------------------------
    async def flush_head(self) -> None:
        record = self.record
        if record is None or (self.head is not None and self.head.step >= record.step):
            return
        self.head = await self.log.advance_head(record.step, record.class_ref, self.head)

"""ActorCore: one actor as seen by this process — its cache, its queue, its commit loop.

Everything here runs on the process's IO loop (``vactor_cloud._sync``);
user methods run in the runtime's worker threads so that they may block,
call other actors, or fan out sub-tasks without stalling the loop.

Guarantees (DESIGN.md §4):

* Calls submitted from this process apply in submission order; writes
  waiting in the queue are applied together and committed as one step
  (group commit). Each caller gets its own result or exception; a call that
  raises is excluded and changes nothing.
* A commit is acknowledged only after its create-only put of
  ``steps/N+1`` succeeded (or was found to have succeeded after a lost
  response). With a fresh cache that put is the only request on the path.
* A read-only call sees every write submitted before it from this process
  and every commit acknowledged anywhere before it started (it probes
  ``steps/N+1``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from vactor_cloud.batch import PendingCall, apply_batch, run_readonly
from vactor_cloud.dedup import Outcome, StepDedup
from vactor_cloud.definition import ActorClass, lookup_local_class
from vactor_cloud.errors import (
    ActorNotFoundError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    IntegrityError,
    StorageError,
    VactorError,
)
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.log import ActorLog, CallRecord, ClassRef, Head, StepRecord, StepTakenError

if TYPE_CHECKING:
    from vactor_cloud.runtime import Runtime

__all__ = ["ActorCore"]

logger = logging.getLogger("vactor_cloud")


class ActorCore:
    """Per-process state of one actor. Create through ``Runtime.core(actor_id)``."""

    # Slots: a process may touch tens of thousands of actors; every byte counts.
    __slots__ = (
        "_draining",
        "_live",
        "_load_lock",
        "_lost_at",
        "_put_seconds",
        "_queue",
        "_stored_classes",
        "_stored_sha",
        "_tasks",
        "actor_id",
        "definition",
        "head",
        "inbox",
        "log",
        "record",
        "runtime",
        "validated_at",
    )

    def __init__(self, runtime: Runtime, actor_id: str) -> None:
        self.runtime = runtime
        self.actor_id = actor_id
        self.log = ActorLog(runtime.store, actor_id, signing_key=runtime.settings.signing_key)
        self.definition: ActorClass | None = None
        #: sha of the stored class body in use, or None when the class is local
        self._stored_sha: str | None = None
        self.record: StepRecord | None = None
        #: monotonic time at which ``record`` was last known to be the newest step
        self.validated_at = -math.inf
        self._live: tuple[int, Any] | None = None
        self.head: Head | None = None
        self._stored_classes: frozenset[str] = frozenset()
        #: calls waiting for the drain loop; None while the actor is idle (saves memory)
        self._queue: deque[PendingCall] | None = None
        self._draining = False
        self._tasks: set[asyncio.Task[Any]] | None = None
        #: external events waiting for this actor (folded into commits, see inbox.py)
        self.inbox = ActorInbox(self)
        self._load_lock: asyncio.Lock | None = None
        #: when this process last lost a commit race, and how long its puts take (moving average)
        self._lost_at = -math.inf
        self._put_seconds = 0.0

    # -- submission (any thread) -------------------------------------------------
    def submit(self, call: PendingCall) -> None:
        self.runtime.loop.call_soon_threadsafe(self._enqueue, call)

    def _enqueue(self, call: PendingCall) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(call)
        if not self._draining:
            self._draining = True
            self._spawn(self._drain())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None

    async def _drain(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            max_batch = self.runtime.settings.max_batch
            while queue:
                if queue[0].readonly:
                    call = queue.popleft()
                    if call.future.set_running_or_notify_cancel():
                        self._spawn(self._read(call))
                    continue
                batch: list[PendingCall] = []
                while queue and not queue[0].readonly and len(batch) < max_batch:
                    call = queue.popleft()
                    if call.future.set_running_or_notify_cancel():
                        batch.append(call)
                if batch:
                    await self._commit(batch)
        finally:
            self._draining = False
            if not queue:
                self._queue = None

    # -- loading -------------------------------------------------------------------
    def _lock(self) -> asyncio.Lock:
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        return self._load_lock

    async def ensure_loaded(self) -> None:
        """Load the newest step (and the class, if this process lacks it). ``ActorNotFoundError``."""
        if self.record is not None:
            return
        async with self._lock():
            if self.record is not None:
                return
            started = time.monotonic()
            self.inbox.prefetch()  # overlaps the HEAD read: no round trip of its own
            head = await self.log.read_head()
            definition: ActorClass | None = None
            if head is not None:
                record, definition = await asyncio.gather(
                    self.log.load_latest(head), self._definition_for(head.class_ref)
                )
            else:
                record = await self.log.load_latest(None)
            if record is None:
                raise ActorNotFoundError(self.actor_id, self.runtime.store.describe())
            if definition is None or (head is not None and record.class_ref != head.class_ref):
                definition = await self._definition_for(record.class_ref)
            self._set_definition(definition, record.class_ref)
            self.head = head
            self._accept(record, started)
            if head is None or head.step < record.step:
                self.runtime.heads.mark(self)

    async def _definition_for(self, ref: ClassRef) -> ActorClass:
        local = lookup_local_class(ref.name)
        if local is not None:
            return local
        return await self.runtime.stored_class(self.log, ref)

    def _set_definition(self, definition: ActorClass, ref: ClassRef) -> None:
        self.definition = definition
        self._stored_sha = None if lookup_local_class(definition.name) is definition else ref.sha

    async def _sync_definition(self, record: StepRecord) -> ActorClass:
        """The class to run ``record`` with: ours if we have it, else the one the step names."""
        if self.definition is None or (
            self._stored_sha is not None and self._stored_sha != record.class_ref.sha
        ):
            self._set_definition(await self._definition_for(record.class_ref), record.class_ref)
        assert self.definition is not None
        return self.definition

    def _accept(self, record: StepRecord, validated_at: float) -> None:
        """Adopt ``record`` if it is newer than what we hold; the cache only moves forward."""
        if self.record is None or record.step > self.record.step:
            self.record = record
            self.validated_at = validated_at
        elif record.step == self.record.step:
            self.validated_at = max(self.validated_at, validated_at)

    def _invalidate(self) -> None:
        self.record = None
        self._live = None
        self.validated_at = -math.inf

    async def revalidate(self) -> StepRecord:
        """Find the newest step from the cached one (one GET when nothing changed).

        A cache older than ``fresh_window`` may predate a compaction, so the
        retention watermark is read alongside the probe.
        """
        await self.ensure_loaded()
        assert self.record is not None
        started = time.monotonic()
        base = self.record
        if started - self.validated_at > self.runtime.settings.fresh_window:
            (newest, _), watermark = await asyncio.gather(self.log.probe_from(base), self.log.read_gc())
            if watermark > base.step:
                self._invalidate()
                await self.ensure_loaded()
                assert self.record is not None
                return self.record
        else:
            newest, _ = await self.log.probe_from(base)
        self._accept(newest, started)
        return self.record

    # -- creation --------------------------------------------------------------------
    async def create(self, definition: ActorClass, state: bytes, init_args: str) -> None:
        """Write the class body and step 0; if another creator won, attach to its actor."""
        ref, body = await asyncio.get_running_loop().run_in_executor(self.runtime.executor, definition.body)
        await self.log.put_class(ref.sha, body, ref.name)
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
        try:
            await self.log.put_step(record)
        except StepTakenError as taken:
            record = taken.winner
            started = -math.inf  # the actor may have moved on since it was created
        self._set_definition(definition, record.class_ref)
        self._accept(record, started)
        self.runtime.heads.mark(self)

    # -- writes ------------------------------------------------------------------------
    async def _commit(self, batch: list[PendingCall]) -> None:
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        attempts = 0
        give_up_at = time.monotonic() + settings.commit_timeout
        if time.monotonic() - self._lost_at < 1.0:
            # Contended: the previous winner would win again (it alone knows the
            # newest step at once); a short pause lets the losers' retries through.
            await asyncio.sleep(random.random() * self._put_seconds)
        transient = 0
        while True:
            put_sent = False
            try:
                await self.ensure_loaded()
                if time.monotonic() - self.validated_at > settings.fresh_window:
                    await self.revalidate()
                base = self.record
                assert base is not None
                validated = self.validated_at
                definition = await self._sync_definition(base)
                calls = await self.inbox.fold(batch, base, definition)
                # The idempotency table is read only if a call carries a key (events do).
                table = await StepDedup(self.log, base).prepare(c.idempotency_key for c in calls)
                live = self._live[1] if self._live is not None and self._live[0] == base.step else None
                self._live = None
                result = await loop.run_in_executor(
                    self.runtime.executor,
                    apply_batch,
                    definition,
                    self.actor_id,
                    base,
                    live,
                    calls,
                    self.runtime,
                    settings.dedup_window,
                    table,
                )
                if result.state is None:
                    self.inbox.settle(batch, calls, result)
                    return
                ref = await self._class_ref_for_commit(definition, base)
                record = StepRecord(
                    step=base.step + 1,
                    parent=base.step,
                    class_ref=ref,
                    serializer=definition.serializer,
                    state=result.state,
                    writer=uuid.uuid4().hex,
                    time=time.time(),
                    calls=tuple(result.calls),
                    dedup=result.dedup.data,
                    dedup_base=result.dedup.base,
                    dedup_checkpoint=result.dedup.checkpoint,
                )
                put_started = time.monotonic()
                put_sent = True
                clean = await self.log.put_step(record)
                # Timed at the put's *end*: a put can stall (network, client retries)
                # past fresh_window and land after a compaction deleted its number.
                if time.monotonic() - validated > settings.fresh_window and not await self._above_watermark(
                    record, clean
                ):
                    raise _BelowWatermarkError
            except (StepTakenError, _BelowWatermarkError) as lost:
                if isinstance(lost, StepTakenError):
                    self._accept(lost.winner, self.validated_at)
                    await self._catch_up(lost.winner)
                self._lost_at = time.monotonic()
                attempts += 1
                # Bounded by time as well as count: under heavy contention a
                # writer may lose many rounds in a row yet get through soon after.
                if attempts >= settings.max_commit_attempts or time.monotonic() > give_up_at:
                    _fail(batch, CommitConflictError(self.actor_id, attempts))
                    return
                await asyncio.sleep(_backoff(attempts))
                continue
            except (StorageError, IntegrityError) as exc:
                self._invalidate()
                # Nothing was written before the put: a transient read failure
                # (or a body damaged in transit) is retried, not reported.
                if not put_sent and transient < _TRANSIENT_RETRIES and time.monotonic() < give_up_at:
                    transient += 1
                    await asyncio.sleep(_backoff(transient + 3))
                    continue
                _fail(batch, exc)
                return
            except Exception as exc:
                self._invalidate()
                _fail(batch, exc)
                return
            self._accept(record, put_started)
            self._put_seconds = 0.8 * self._put_seconds + 0.2 * (time.monotonic() - put_started)
            self._live = (record.step, result.instance)
            self.inbox.settle(batch, calls, result)
            self.runtime.heads.mark(self)
            return

    async def _catch_up(self, winner: StepRecord) -> None:
        """After losing a race, move the cache to the newest step in one probe.

        Retrying from the winner's step alone loses again whenever others
        committed meanwhile: a writer walking one step per lost put falls
        further behind and starves while the others keep committing.
        """
        started = time.monotonic()
        try:
            newest, _ = await self.log.probe_from(winner)
        except VactorError as exc:  # the next attempt's put finds out as well
            logger.debug("actor %r: probe after a lost commit failed: %s", self.actor_id, exc)
            return
        self._accept(newest, started)

    async def _above_watermark(self, record: StepRecord, clean: bool) -> bool:
        """After a slow commit: is our step above the retention watermark?

        A writer stalled longer than ``fresh_window`` may have created a step
        number that a compaction deleted meanwhile. Such an object is not a
        commit: delete it and retry. If the put needed a retry (``clean`` is
        False), an earlier attempt may have committed and been compacted
        since: retrying could apply the calls twice, so the outcome is
        reported as unknown instead.
        """
        watermark = await self._read_gc_after_commit(record)
        if record.step >= watermark:
            return True
        await self.log.store.delete(self.log.step_key(record.step))
        self._invalidate()
        if not clean:
            raise CommitOutcomeUnknownError(self.actor_id, record.step)
        return False

    async def _read_gc_after_commit(self, record: StepRecord) -> int:
        """The watermark, retried: our step is already written, so failing here
        would report a commit that happened as an error (and invite a retry
        that applies it twice)."""
        for attempt in range(_TRANSIENT_RETRIES):
            try:
                return await self.log.read_gc()
            except (StorageError, IntegrityError):
                await asyncio.sleep(_backoff(attempt + 3))
        try:
            return await self.log.read_gc()
        except (StorageError, IntegrityError) as exc:
            raise CommitOutcomeUnknownError(self.actor_id, record.step) from exc

    async def _class_ref_for_commit(self, definition: ActorClass, base: StepRecord) -> ClassRef:
        if self._stored_sha is not None:
            return base.class_ref
        ref, body = definition.body()
        if ref.sha != base.class_ref.sha and ref.sha not in self._stored_classes:
            # This process runs its own (maybe upgraded) class: store its body first
            # so that processes without the class can read the steps it writes.
            await self.log.put_class(ref.sha, body, ref.name)
        self._stored_classes |= {ref.sha}
        return ref

    # -- reads ---------------------------------------------------------------------------
    async def _read(self, call: PendingCall) -> None:
        try:
            if call.at_step is not None:
                record = await self.step_at(call.at_step)
            else:
                record = await self.revalidate()
            definition = await self._sync_definition(record)
            result = await asyncio.get_running_loop().run_in_executor(
                self.runtime.executor, run_readonly, definition, self.actor_id, record, call, self.runtime
            )
        except Exception as exc:
            _fail([call], exc)
            return
        _settle([call], [Outcome(True, result)])

    async def step_at(self, step: int) -> StepRecord:
        """Step ``step``; ``StepNotFoundError`` (compacted, or not written yet) naming what remains."""
        from vactor_cloud.history import find_step

        return await find_step(self.log, step)

    # -- HEAD ------------------------------------------------------------------------------
    async def flush_head(self) -> None:
        record = self.record
        if record is None or (self.head is not None and self.head.step >= record.step):
            return
        self.head = await self.log.advance_head(record.step, record.class_ref, self.head)


#: transient storage errors retried before a commit's put (nothing written yet)
_TRANSIENT_RETRIES = 5


class _BelowWatermarkError(Exception):
    """Our create landed on a step number a compaction had already deleted."""


def _settle(calls: list[PendingCall], outcomes: list[Outcome]) -> None:
    for call, outcome in zip(calls, outcomes, strict=True):
        outcome.settle(call.future)


def _fail(calls: list[PendingCall], exc: BaseException) -> None:
    for call in calls:
        Outcome(False, exc).settle(call.future)


def _backoff(attempt: int) -> float:
    """Jittered exponential backoff between conflicting commit attempts (capped at 50 ms).

    The cap is a few round trips: a loser that sleeps much longer than the
    winner's commit cycle only falls further behind.
    """
    return float(0.001 * min(attempt, 5) * random.random())

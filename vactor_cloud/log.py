"""ActorLog: the per-actor commit protocol over an :class:`ObjectStore`.

Object layout under the store root (DESIGN.md §3)::

    actors/<id>/class/<sha256>   class body, content-addressed, create-only
    actors/<id>/steps/<N:020d>   immutable step objects, create-only; step 0 = creation
    actors/<id>/HEAD             advisory pointer to a recent step; forward-only, by if-match
    actors/<id>/gc               retention low-watermark {"min_step": M} and whose steps it deleted
    actors/<id>/dedup/<N:020d>-<token>   idempotency-table checkpoint, create-only, named by a step
    actors/<id>/dedup/outcomes/<N:020d>-<sha256>   a large recorded outcome, named by checkpoints

The step log is the truth. Writing ``steps/N+1`` with a create-only put is
the linearization point of a commit: exactly one writer can succeed. HEAD is
only a hint that lets a reader start near the end; readers always probe past
it, so a HEAD left behind by a crash costs a little latency, never
correctness. Nothing in this module knows what an actor *does*: states and
results are opaque bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from vactor_cloud import codec, counters, keys
from vactor_cloud.actor_objects import AMBIGUOUS_RETRIES, ActorObjects, retry_pause
from vactor_cloud.errors import (
    ActorNotFoundError,
    AlreadyExistsError,
    CommitOutcomeUnknownError,
    IntegrityError,
    RetryableStorageError,
    StepNotFoundError,
    StepsMissingError,
    StorageError,
)
from vactor_cloud.log_records import (
    OUTCOMES_MAGIC,
    CallRecord,
    ClassRef,
    GcWatermark,
    Head,
    LateCommit,
    StepRecord,
    classify_late_commit,
    unrecordable,
)
from vactor_cloud.storage import IfMatch

# (with the records' public names, from log_records: users import them from here too)
__all__ = [
    "OUTCOMES_MAGIC",
    "ActorLog",
    "CallRecord",
    "ClassRef",
    "GcWatermark",
    "Head",
    "LateCommit",
    "StepCompactedError",
    "StepRecord",
    "StepTakenError",
    "actor_prefix",
    "classify_late_commit",
    "missing_step_error",
    "retry_pause",
    "unrecordable",
]

actor_prefix = keys.actor_prefix

logger = logging.getLogger("vactor_cloud")


class StepTakenError(Exception):
    """Another writer committed the step we tried to write; ``winner`` is its record."""

    def __init__(self, winner: StepRecord) -> None:
        super().__init__(f"step {winner.step} was committed by writer {winner.writer}")
        self.winner = winner


class ForeignStepError(IntegrityError):
    """Our create of a step met an object that was there before it and cannot be read (forged,
    or damaged at rest), on a store whose "already exists" proves our request wrote nothing:
    our calls were certainly not applied (where our own put may have landed, the outcome is
    :class:`CommitOutcomeUnknownError` instead)."""


class StepCompactedError(Exception):
    """Another writer committed the step we tried to write, and a compaction deleted it since.

    Our calls were certainly not applied (the watermark records another
    writer at that number, or the store's "already exists" was definite):
    reload from the newest step and retry.
    """

    def __init__(self, step: int) -> None:
        super().__init__(f"step {step} was committed by another writer and compacted since")
        self.step = step


def missing_step_error(actor_id: str, step: int, watermark: int) -> IntegrityError:
    """The error for step ``step`` of ``actor_id``, missing at or above the retention
    ``watermark`` below the actor's newest step: deleted by something other than a compaction
    (which raises the watermark before it deletes, and deletes only below it)."""
    return IntegrityError(
        keys.step_key(actor_id, step),
        f"step {step} of actor {actor_id!r} is missing, at or above the retention watermark "
        f"{watermark}: it was deleted by something other than vactor_cloud (a compaction deletes only "
        "steps below the watermark, which it raises first), so the actor's history has a gap. "
        "Restore the step from a backup; history(on_damaged=...) (vactor history) lists the "
        "steps around it",
    )


class ActorLog(ActorObjects):
    """Reads and writes one actor's objects. Safe to share between tasks of one loop.

    This class holds the commit of a step (:meth:`put_step`) and the search for the newest
    step (:meth:`load_latest`, :meth:`find_step`); the reads and writes of the other objects
    are :class:`~vactor_cloud.actor_objects.ActorObjects`'.
    """

    __slots__ = ()

    def encode_step(self, record: StepRecord) -> bytes:
        """The bytes of ``record`` at its key (signed): built before its put is sent, so that a
        failure here (a ``MemoryError``, say) is one of a call never sent, not applied."""
        return record.encode(self.step_key(record.step), self.signing_key)

    async def put_step(
        self, record: StepRecord, data: bytes | None = None, *, prerequisites: bool = True
    ) -> bool:
        """Commit ``record`` with a create-only put: the linearization point.

        Returns normally when *our* object is at ``steps/N`` — including when
        the response to our put was lost and a retry (ours or the client
        library's) met our own object. Raises :class:`StepTakenError` when
        another writer's object is there. Storage errors after which the
        outcome cannot be learned propagate; the commit may or may not have
        happened.

        Returns ``True`` when the first request created the object outright,
        ``False`` when it took a retry or the step was found to be ours.

        When the object met at ``steps/N`` is gone by the time it is read back
        (a compaction passed), the ``gc`` record decides: ours (committed, then
        compacted: returns), another writer's (:class:`StepCompactedError`:
        not applied, retry), or undecidable (:class:`CommitOutcomeUnknownError`).
        ``data``: the record's bytes (:meth:`encode_step`), when already built.
        ``prerequisites``: False when the caller already put what the step names
        (:meth:`put_step_prerequisites`).
        """
        return await self._put_step(record, None, encoded=data, prerequisites=prerequisites)

    def put_step_now(self, record: StepRecord, data: bytes | None = None) -> Coroutine[Any, Any, bool] | None:
        """:meth:`put_step`'s first create, done on the calling thread through the store's
        synchronous ``put_now`` (only where ``store.inline``: the memory and local stores).

        ``None``: committed, with that one request. Otherwise the key was
        taken, or the put failed (it may have landed all the same): the
        returned coroutine finishes what :meth:`put_step` does then (read
        back, ``StepTakenError``, a retry, ...), on the IO loop. A step that
        needs a dedup checkpoint first must go through :meth:`put_step`.
        """
        assert not record.dedup_checkpoint, "a step with a dedup checkpoint goes through put_step"
        assert not record.dedup_outcomes, "a step with outcome objects goes through put_step"
        key = self.step_key(record.step)
        if data is None:
            data = self.encode_step(record)
        try:
            self.store.put_now(key, data, mode="create")
        except AlreadyExistsError:
            return self._put_step(record, data)
        except StorageError as exc:
            return self._put_step(record, data, failed=exc)
        return None

    async def put_step_prerequisites(self, record: StepRecord) -> None:
        """Put what ``record`` names that must exist before it: its idempotency checkpoint, and
        the outcome objects that checkpoint names (nothing for most steps). A failure here is of
        a step not yet sent: a committer retries it as it retries any failure before its put."""
        if record.dedup_checkpoint and record.dedup_base is not None:
            # Before the step: a committed step never names a checkpoint that is not there,
            # nor a checkpoint an outcome object.
            for name, outcome in record.dedup_outcomes:
                await self.put_dedup_outcome(name, outcome, record.serializer)
            await self.put_dedup_checkpoint(
                record.dedup_base,
                record.dedup_checkpoint,
                record.serializer,
                record.dedup_named,
                record.dedup_by_value_at_most,
            )

    async def _put_step(
        self,
        record: StepRecord,
        taken: bytes | None,
        *,
        failed: StorageError | None = None,
        encoded: bytes | None = None,
        prerequisites: bool = True,
    ) -> bool:
        """``taken``: the step's bytes, whose first create already met an existing object
        (or, with ``failed``, whose first create failed so: it may have landed); ``encoded``:
        the step's bytes, not yet sent; ``prerequisites``: False once the caller put them
        (:meth:`put_step_prerequisites`)."""
        key = self.step_key(record.step)
        data = taken if taken is not None else encoded if encoded is not None else self.encode_step(record)
        if taken is None and prerequisites:
            await self.put_step_prerequisites(record)
        last_error: StorageError | IntegrityError | None = None
        #: whether the object at our number may be our own put: not while every create of ours
        #: was answered "already exists" by a store whose answer proves it wrote nothing
        maybe_ours = failed is not None or not self.store.definite_create_conflicts
        for attempt in range(AMBIGUOUS_RETRIES):
            try:
                if attempt == 0 and failed is not None:
                    raise failed
                if attempt == 0 and taken is not None:
                    raise AlreadyExistsError(f"{key}: already exists", key)
                await self.store.put(key, data, mode="create")
                return attempt == 0
            except AlreadyExistsError:
                pass
            except StorageError as exc:
                # The request may have been applied before the error reached
                # us (a lost response). Only reading the key can tell.
                last_error = exc
                maybe_ours = True
            try:
                existing = await self.read_step(record.step)
            except (StorageError, IntegrityError) as exc:
                # Damaged in transit tells nothing either (read again, as a failed read is):
                # the step may be ours, and a commit it is must not be reported as corrupt.
                last_error = exc
                existing = None
                await asyncio.sleep(retry_pause(attempt))
                continue
            if existing is not None:
                if existing.writer == record.writer:
                    counters.lost_response_resolved(key, last_error)
                    return False
                raise StepTakenError(existing)
            # Something was at our number and is gone: a compaction passed it, or
            # it was never there (an ambiguous failure that did not land).
            if await self._compacted_step_was_ours(record, definite=last_error is None):
                return False
            await asyncio.sleep(retry_pause(attempt))
        if last_error is None:
            # Every attempt met an object that was gone when read back: only a
            # compaction racing this commit does that. Nothing tells whose it was.
            last_error = RetryableStorageError(
                f"{key}: the step was taken and deleted again while committing (a compaction ran); "
                "the call was not applied by this attempt",
                key,
            )
        if isinstance(last_error, IntegrityError) and not maybe_ours:
            # Someone else's object (a forged step, one damaged at rest): ours never landed.
            raise ForeignStepError(
                key,
                f"{last_error.reason}; it took step {record.step} before our create, so the "
                "calls were not applied: delete or restore the object (docs/security.md)",
            ) from last_error
        if isinstance(last_error, IntegrityError):
            # The step at our number never read back whole: it may be ours (committed).
            raise CommitOutcomeUnknownError(
                self.actor_id,
                record.step,
                f"step {record.step} never read back whole after its put's answer was lost "
                f"({last_error}); the calls may or may not have been applied: check the actor's "
                "state (or use an idempotency key) before retrying",
            ) from last_error
        raise last_error

    async def _compacted_step_was_ours(self, record: StepRecord, *, definite: bool) -> bool:
        """After our create met an object that is gone now: decide from the watermark.

        ``True``: the step was ours and was compacted since (committed).
        Raises :class:`StepCompactedError` when it certainly was not ours
        (the watermark records another writer, or every failure was a
        *definite* "already exists", which wrote nothing), and
        :class:`CommitOutcomeUnknownError` when nothing tells. ``False``:
        the number is above the watermark (no compaction took it): retry the create.
        """
        gc = await self._read_watermark_after_commit(record)
        if record.step >= gc.min_step:
            return False
        verdict = classify_late_commit(gc, record.step, record.writer)
        if verdict is LateCommit.COMMITTED:
            return True
        if verdict is LateCommit.NOT_COMMITTED or (definite and self.store.definite_create_conflicts):
            raise StepCompactedError(record.step)
        raise CommitOutcomeUnknownError(self.actor_id, record.step)

    async def resolve_late_commit(self, record: StepRecord) -> bool:
        """Our put of ``record`` succeeded, but late: is it a commit? (Called by a writer whose
        put completed longer than ``fresh_window`` after it validated its cache.)

        ``True``: committed, either above the watermark (the common case) or
        recorded by the compaction that deleted it since as ours. ``False``:
        not a commit; our object, created after a compaction freed the
        number, has been deleted: reload and retry. Raises
        :class:`CommitOutcomeUnknownError` when the watermark cannot tell
        (never retries: that could apply the calls twice).
        """
        gc = await self._read_watermark_after_commit(record)
        if record.step >= gc.min_step:
            return True
        verdict = classify_late_commit(gc, record.step, record.writer)
        if verdict is LateCommit.COMMITTED:
            return True
        # Below the watermark and not the commit (or maybe not): whatever sits at our
        # number is no part of the history. Remove it; the next compaction would.
        with contextlib.suppress(StorageError):
            await self.store.delete(self.step_key(record.step))
        if verdict is LateCommit.NOT_COMMITTED:
            return False
        raise CommitOutcomeUnknownError(self.actor_id, record.step)

    async def _read_watermark_after_commit(self, record: StepRecord) -> GcWatermark:
        """The watermark, retried: our step is already written, so failing here would
        report a commit that happened as an error (and invite a retry that applies it twice)."""
        for attempt in range(AMBIGUOUS_RETRIES):
            try:
                return await self.read_watermark()
            except (StorageError, IntegrityError):
                await asyncio.sleep(retry_pause(attempt))
        try:
            return await self.read_watermark()
        except (StorageError, IntegrityError) as exc:
            raise CommitOutcomeUnknownError(self.actor_id, record.step) from exc

    async def probe_from(self, record: StepRecord) -> tuple[StepRecord, int]:
        """The newest step at or after ``record``, and how many requests that took.

        Reads ``steps/N+1``, ``N+2``, ... until one is missing; after two hits
        in a row it lists once to jump to the end instead of walking, and answers
        the newest step of that listing: the newest as of the LIST, which came
        after the probe began. (Walking on from it until a miss would never end
        while another writer commits as fast as the probe reads: a folder or a
        poster behind a busy writer on a slow store chased it for seconds.)
        """
        current = record
        requests = 0
        hits = 0
        while True:
            nxt = await self.read_step(current.step + 1)
            requests += 1
            if nxt is None:
                return current, requests
            current = nxt
            hits += 1
            if hits >= 2:
                later = await self.list_steps(after=current.step)
                requests += 1
                hits = 0
                if not later:
                    return current, requests
                newest = await self.read_step(later[-1])
                requests += 1
                if newest is not None:
                    return newest, requests
                # gone since the listing (compacted meanwhile): walk on from ours

    async def find_step(self, step: int) -> StepRecord:
        """Step ``step``; :class:`StepNotFoundError` saying why it is not there.

        The error tells a compacted step (below the retention watermark or the
        oldest remaining step) from one not written yet, and names the range of
        steps that remain.
        """
        if step < 0:
            raise ValueError(f"step numbers start at 0, got {step}")
        # The watermark too: an object below it is no step of the history (a stalled writer's
        # late put re-created a freed number, deleted again by its own check, or left by a crash).
        # Read *after* the step: such an object exists only once a compaction raised the
        # watermark past it, so a later gc read sees that; read concurrently, a gc answer from
        # before the compaction could vouch for a stray read after it.
        record = await self.read_step(step)
        watermark = await self.read_gc()
        if record is not None and step >= watermark:
            return record
        oldest_keys, head = await asyncio.gather(self.list_steps(limit=1), self.read_head())
        newest = await self.load_latest(head)
        if newest is None or not oldest_keys:
            raise ActorNotFoundError(self.actor_id, self.store.describe())
        if record is None and watermark <= step <= newest.step:
            # Written by now (a step is made only on its parent): read again, then the watermark
            # (a compaction raises it before it deletes). Missing still, at or above it: not
            # compacted, nor to come, but deleted by something else.
            record = await self.read_step(step)
            watermark = await self.read_gc()
            if step >= watermark:
                if record is None:
                    raise missing_step_error(self.actor_id, step, watermark)
                return record
        oldest = max(oldest_keys[0], min(watermark, newest.step))
        compacted = step < oldest or step < watermark
        raise StepNotFoundError(self.actor_id, step, (oldest, newest.step), compacted=compacted)

    async def probe_with_watermark(self, record: StepRecord) -> tuple[StepRecord, GcWatermark]:
        """The newest step at or after ``record``, and the watermark read *after* the probe answered.

        The order matters: a compaction raises ``gc`` before it deletes. A
        probe that missed a step because it was deleted is therefore followed
        by a ``gc`` read that sees the raised watermark. Read concurrently,
        the ``gc`` answer could predate the compaction while the probe's
        postdates its deletes, and a stale cache would pass as the newest step.
        """
        newest, _ = await self.probe_from(record)
        return newest, await self.read_watermark()

    async def load_latest(self, head: Head | None) -> StepRecord | None:
        """The newest step, starting from ``head`` if given; ``None`` if the actor has no steps."""
        return (await self.load_latest_and_head(head))[0]

    async def load_latest_and_head(self, head: Head | None) -> tuple[StepRecord | None, Head | None]:
        """:meth:`load_latest`, and HEAD as it is after it: ``head``, unless it named a step past
        the newest one (see :meth:`_pull_back_head`); ``None`` when that is not known.

        :class:`StepsMissingError` when the log holds no step at or above the retention
        watermark (every step deleted while ``gc`` stayed): never ``None``, which would let
        ``get_or_create`` make the actor anew below the watermark."""
        if head is not None:
            # The watermark beside the steps (no extra round trip): HEAD moves forward only and
            # this library's compaction moves it to the newest step before raising the watermark;
            # another implementation's may leave it behind (an advisory rule). A HEAD below the
            # watermark is not used: the object at its number, if any, is no step of the history
            # (a HEAD restored or replayed onto an old step, or a late put's leftover a crash kept
            # from deleting): taken for the newest, a reader got an old state and a writer's
            # commit landed on a freed number no reader lists.
            at_head, after_head, watermark = await asyncio.gather(
                self.read_step(head.step), self.read_step(head.step + 1), self._watermark_or_none()
            )
            if watermark is None or head.step < watermark:
                if watermark is not None:
                    self._note_head_below(head.step, watermark, stray=at_head is not None)
                at_head = None  # (unreadable watermark: the listing needs none; whoever needs it says so)
            # HEAD's own step gone means a compaction passed after we read HEAD: what
            # lies past it may be a below-watermark leftover, so take the listing path.
            if at_head is not None:
                return (await self.probe_from(after_head))[0] if after_head is not None else at_head, head
            newest = await self._list_latest()
        else:
            # No HEAD (a new id, or one whose HEAD is gone): the watermark beside the listing,
            # in its round trip, tells an id that never held an actor from one whose steps
            # were deleted while its gc stayed.
            newest, watermark = await asyncio.gather(self._list_latest(), self._watermark_or_none())
        if watermark and (newest is None or newest.step < watermark):
            await self._refuse_missing_steps()
            newest = await self._list_latest()  # (the first look raced a compaction: look again)
        if head is not None and newest is not None and newest.step < head.step:
            return newest, await self._pull_back_head(head, newest)
        return newest, head

    def _note_head_below(self, step: int, watermark: int, *, stray: bool) -> None:
        """Say that HEAD names a step below the watermark: normal (debug) when that step is gone,
        as a compaction that does not move HEAD first leaves it; a warning when an object is
        still there, no step of the history (HEAD restored or replayed with it)."""
        if stray:
            logger.warning(
                "actor %r: HEAD names step %d, below the retention watermark %d, and an object is "
                "still at that number: not a step of the history (HEAD restored or replayed, or a "
                "late put's leftover); finding the newest step by listing",
                self.actor_id,
                step,
                watermark,
            )
        else:
            logger.debug(
                "actor %r: HEAD names step %d, below the retention watermark %d (left behind by a "
                "compaction that did not move it first); finding the newest step by listing",
                self.actor_id,
                step,
                watermark,
            )

    async def _refuse_missing_steps(self) -> None:
        """Raise :class:`StepsMissingError` if no step remains at or above the watermark; return
        if one does (the first look raced a compaction).

        Read in order, the watermark first: a compaction raises it only to a step that exists
        and never deletes that step, so a listing begun after the watermark was read that finds
        no step at or above it means the steps were deleted out of band. (Only on this failure
        path: a sound log never comes here.)"""
        watermark = await self.read_gc()
        if watermark == 0 or await self.list_steps(after=watermark - 1, limit=1):
            return
        below = await self.list_steps()
        raise StepsMissingError(
            self.actor_id, watermark, below[-1] if below else None, self.gc_key, self.steps_prefix
        )

    async def _watermark_or_none(self) -> int | None:
        """The watermark; ``None`` when it cannot be read now (damaged, a failed request)."""
        try:
            return await self.read_gc()
        except (StorageError, IntegrityError):
            return None

    async def _list_latest(self) -> StepRecord | None:
        steps = await self.list_steps()
        if not steps:
            return None
        # Walk back over steps deleted between the listing and the read.
        for step in reversed(steps):
            record = await self.read_step(step)
            if record is not None:
                return (await self.probe_from(record))[0]
        return None

    async def _pull_back_head(self, head: Head, newest: StepRecord) -> Head | None:
        """Move ``head``, which names a step past every step listed after it was read, back to
        ``newest``; what HEAD then holds (``None``: not known).

        HEAD moves forward only, after the step it names is committed, and the newest step is
        never deleted: a HEAD whose step is missing while no later step is listed was never a
        committed step's (forged, or restored from another copy of the store). Left there,
        every load read two missing steps and listed the log until the log grew past it. The
        move is the compare-and-swap every HEAD move makes (``IfMatch`` of the version read),
        so it never replaces a HEAD another process wrote meanwhile; a step committed after
        the listing (whose writer saw HEAD ahead and left it) is probed for, and HEAD moved on
        to it, so HEAD ends at the newest step this reader can find.
        """
        logger.warning(
            "actor %r: HEAD names step %d, past the newest step %d (forged, or restored from "
            "another copy of the store); pulling it back",
            self.actor_id,
            head.step,
            newest.step,
        )
        data = codec.encode(
            self.head_key,
            {"kind": "head", "step": newest.step, "class": newest.class_ref.to_json()},
            signing_key=self.signing_key,
        )
        try:
            version = await self.store.put(self.head_key, data, mode=IfMatch(head.version))
        except StorageError as exc:
            # Changed meanwhile (left to its writer), or not ours to write (a reader's
            # credentials may not allow it): the load goes on either way.
            logger.info("actor %r: HEAD not pulled back: %s", self.actor_id, exc)
            return None
        pulled = Head(newest.step, newest.class_ref, version)
        later, _ = await self.probe_from(newest)
        if later.step > newest.step:
            return await self.advance_head(later.step, later.class_ref, pulled)
        return pulled

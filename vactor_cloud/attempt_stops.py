"""What stopped an attempt of the commit loop of an actor core, and what comes next: a lost
race (catch up, back off, perhaps post the batch), a storage error (retried while that is
safe), shutdown, or any other exception (the batch fails, its outcome unknown once the step's
put was sent, pending once it was posted).

:class:`AttemptStops` is a part of the commit loop (``vactor_cloud.committer``): a mixin of
:class:`~vactor_cloud.core.ActorCore` over the attempt
(:class:`~vactor_cloud.step_attempt.StepAttempt`). It owns the fields in its ``__slots__``;
what it needs of the core its bases declare.
"""

from __future__ import annotations

import logging
import math
import random
import time

from vactor_cloud import counters
from vactor_cloud.batch import fail_calls
from vactor_cloud.batch_commit import AttemptNext, BatchCommit
from vactor_cloud.commit_notes import noted_sent, sent_note
from vactor_cloud.dedup import safe_repr
from vactor_cloud.deletion import is_deleted
from vactor_cloud.errors import (
    CommitConflictError,
    CommitOutcomeUnknownError,
    IntegrityError,
    RuntimeShutdownError,
    StorageError,
    StorageTimeoutError,
    VactorError,
)
from vactor_cloud.folding import doubling_pause
from vactor_cloud.log import StepCompactedError, StepRecord, StepTakenError
from vactor_cloud.step_attempt import BelowWatermarkError, StepAttempt

__all__ = ["AttemptStops"]

logger = logging.getLogger("vactor_cloud")

#: transient storage errors in a row retried before a commit's put (nothing written yet)
_TRANSIENT_RETRIES = 5


class AttemptStops(StepAttempt):
    """An actor core whose commit attempt was stopped: by a lost race (``_lost_race``), a
    storage error (``_storage_failed``), shutdown (``_stopped_by_shutdown``) or anything else
    (``_attempt_failed``)."""

    __slots__ = ("_lost_at",)

    def __init__(self) -> None:
        super().__init__()
        #: when this process last lost a commit race
        self._lost_at = -math.inf

    def _lost_race(
        self, c: BatchCommit, lost: StepTakenError | StepCompactedError | BelowWatermarkError
    ) -> AttemptNext:
        """Another writer's step took the number (or a compaction freed it): catch up and
        try again after a backoff; lost races turn into a post; give up after the bound."""
        settings = self.env.settings
        batch = c.batch
        c.transient = 0  # the store answered this attempt (see BatchCommit.transient)
        if isinstance(lost, StepTakenError):
            self._unanswered = ""
            self._accept(lost.winner, self.validated_at)
            self._catch_up(lost.winner)
            if c.put_sent and lost.winner.writer == c.earlier:
                # Our own step, from a commit stopped (Ctrl-C) or left unknown after its
                # put landed: no race lost. (Taken for one, this batch was posted and
                # folded under a lease on an actor no other process writes.)
                return "again"
        elif isinstance(lost, StepCompactedError):
            self._invalidate()
        self._lost_at = time.monotonic()
        c.attempts += 1
        # The number lost, as the exception carries it (not ``c.record``: set only once an
        # attempt builds its step, and an earlier attempt's until then).
        lost_step = lost.winner.step if isinstance(lost, StepTakenError) else lost.step
        counters.commit_conflict(self.actor_id, lost_step, c.attempts)
        caught_up = self.record
        if c.posted is None and self._refuse_unless_unsure(c, caught_up, self.validated_at) and not c.fold:
            return "done"
        batch = c.batch
        lost_race = (
            not c.fold
            and c.posted is None
            and c.attempts >= settings.combine_after
            and self._may_post(batch)
            # (lost to a delete: the next attempt fails the calls, nothing to post for)
            and not (caught_up is not None and is_deleted(caught_up))
        )
        if lost_race:
            c.posted = self._post(batch)  # lost races: post the batch
            self._posted_at = time.monotonic()
        # Bounded by time as well as count: under heavy contention a
        # writer may lose many rounds in a row yet get through soon after.
        if c.attempts >= settings.max_commit_attempts or time.monotonic() > c.give_up_at:
            if c.posted is not None:
                fail_calls(batch, self._pending_error(c.posted, batch))
            else:
                fail_calls(batch, CommitConflictError(self.actor_id, c.attempts))
            return "done"
        if lost_race:
            c.fold = self._lease_for_fold()  # nobody holds the lease: fold it ourselves
        if not c.fold or c.posted is None:
            time.sleep(_backoff(c.attempts))
        return "again"

    def _storage_failed(self, c: BatchCommit, exc: StorageError | IntegrityError) -> AttemptNext:
        """A storage error or a damaged read: retried while that is safe and time is left,
        otherwise the batch fails (pending, or with the outcome left open, if it may land)."""
        settings = self.env.settings
        batch = c.batch
        posted = c.posted
        self._distrust()
        c.keys = None
        if posted is not None and c.put_sent:
            # Our fold's step put (it may carry our calls) may still land.
            posted.may_land_until = time.monotonic() + settings.deadline
        # Nothing was written before the put: a transient read failure
        # (or a body damaged in transit) is retried, not reported, while the call is within
        # ``Settings.deadline`` (of the commit's start, or, once it lost a race, of the first
        # failure in a row: a commit contended for longer still retries a storage hiccup). A
        # stalled store ended a writer call only after up to five attempts' timeouts. A posted
        # batch is always retried until ``commit_timeout``: it may be applied meanwhile.
        if c.transient == 0:
            # (From when the failing attempt began: its first request's wait counts too.)
            c.failing_since = c.began if c.attempts == 0 else c.attempt_began
        retry_until = (
            c.give_up_at if posted is not None else min(c.give_up_at, c.failing_since + settings.deadline)
        )
        if (posted is not None or (not c.put_sent and c.transient < _TRANSIENT_RETRIES)) and (
            time.monotonic() < retry_until
        ):
            c.transient += 1
            counters.transient_retry(self.actor_id, exc)
            # 10 ms doubling to 1 s: a posted batch retries until ``commit_timeout``, and a
            # few ms apart it sent hundreds of requests a second to a store that fails fast.
            time.sleep(doubling_pause(c.transient, 1.0))
            return "again"
        counters.commit_error(self.actor_id, exc, c.put_sent, posted=posted is not None)
        reported: BaseException = exc
        if posted is not None:
            # Pending (the post may still be applied, or was), the error that stopped us as its
            # cause: a walk back that met a damaged step or a stalled store says so.
            reported = self._pending_error(posted, batch)
            reported.__cause__ = exc
        elif c.put_sent and isinstance(exc, StorageTimeoutError) and not exc.write_in_flight:
            # The deadline passed with our step's put sent: it may still land.
            reported = StorageTimeoutError(
                f"actor {self.actor_id!r}: the commit did not finish within the deadline after "
                f"its write was sent; the calls may or may not have been applied ({exc})",
                exc.key,
                write_in_flight=True,
            )
        elif not c.put_sent and isinstance(exc, StorageTimeoutError):
            # No step was sent: nothing of the calls applied. The bare error did not say so (the
            # deadline's: "stalled"), or said the opposite of a write that was not the call's:
            # a checkpoint's or an outcome object's put, its own timeout "may have been applied".
            reported = StorageTimeoutError(
                f"actor {self.actor_id!r}: the commit did not finish within the deadline before its "
                f"step's write was sent: the calls were not applied and can be retried ({exc})",
                exc.key,
                write_in_flight=False,
            )
            reported.__cause__ = exc
        elif c.put_sent and not isinstance(exc, StorageTimeoutError) and not noted_sent(exc, self.actor_id):
            # The step's put was sent, and what stopped us came after (a read back of it that
            # failed, its own answer lost): raised as it is, for what callers catch, but told
            # that the calls may have been applied (a bare "read failed" said nothing of it).
            # Not a timeout of a write (its own words say it: "may or may not have been
            # applied"; a read's was made so above).
            exc.add_note(sent_note(self.actor_id, c.record.step))
        fail_calls(batch, reported)
        return "done"

    def _stopped_by_shutdown(self, c: BatchCommit, exc: RuntimeShutdownError) -> None:
        """Shutdown stopped waiting for this attempt (its requests were cancelled), or refused
        its put. A commit error, counted as every exception that ends an attempt is
        (``outcome_unknown`` too when the put was sent)."""
        batch = c.batch
        self._invalidate()
        if c.posted is not None:
            counters.commit_error(self.actor_id, exc, c.put_sent, posted=True)  # (pending: not unknown)
            pending = self._pending_error(c.posted, batch)
            pending.__cause__ = exc
            fail_calls(batch, pending)
        elif c.put_sent:
            step = c.record.step
            unknown = CommitOutcomeUnknownError(
                self.actor_id,
                step,
                f"the runtime shut down after the write of step {step} was sent and "
                "before its answer: the calls may or may not have been applied (look at the "
                "actor, or use an idempotency key, before calling again)",
            )
            unknown.__cause__ = exc
            counters.commit_error(self.actor_id, unknown, True)
            fail_calls(batch, unknown)
        else:
            counters.commit_error(self.actor_id, exc, False)
            fail_calls(batch, exc)

    def _attempt_failed(self, c: BatchCommit, exc: Exception) -> None:
        """Any other exception (a defect, a class that will not load, a ``MemoryError`` in the
        store's client): the batch fails; its outcome is unknown if the step put was sent."""
        self._invalidate()
        counters.commit_error(self.actor_id, exc, c.put_sent, posted=c.posted is not None)
        if c.posted is not None:
            # Our post stays and another folder may apply it: not a definite failure.
            pending = self._pending_error(c.posted, c.batch)
            pending.__cause__ = exc
            fail_calls(c.batch, pending)
        elif c.put_sent and not isinstance(exc, CommitOutcomeUnknownError):
            # The put may have landed: the bare error told the caller nothing was applied.
            step = c.record.step
            unknown = CommitOutcomeUnknownError(
                self.actor_id,
                step,
                f"the write of step {step} was sent and then failed with {safe_repr(exc)}: the calls "
                "may or may not have been applied (look at the actor, or use an idempotency "
                "key, before calling again)",
            )
            unknown.__cause__ = exc
            fail_calls(c.batch, unknown)
        else:
            fail_calls(c.batch, exc)

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


def _backoff(attempt: int) -> float:
    """Jittered backoff between conflicting commit attempts (at most a few ms).

    The cap is a few round trips: a loser that sleeps much longer than the
    winner's commit cycle only falls further behind.
    """
    return float(0.001 * min(attempt, 5) * random.random())

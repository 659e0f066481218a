"""One attempt of the commit loop of an actor core: the step it builds on (revalidated when
the cache may be behind), the posts folded in as the folder lease holder, the calls applied
(or refused: a class changed, a tombstone), the next step built, and its create-only put, the
linearization point. A lost race or a failure comes out as an exception, for the loop to sort
(``vactor_cloud.attempt_stops``). Also here: the class body a step names, stored before the
steps that name it.

:class:`StepAttempt` is a part of the commit loop (``vactor_cloud.committer``): a mixin of
:class:`~vactor_cloud.core.ActorCore` over the bookkeeping after a commit
(:class:`~vactor_cloud.after_commit.AfterCommit`). It owns the fields in its ``__slots__``.
What it needs of the core is declared at the top of the class.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from vactor_cloud import tracing
from vactor_cloud.after_commit import AfterCommit
from vactor_cloud.batch import PendingCall, deliver_all, fail_calls
from vactor_cloud.batch_apply import BatchResult, apply_batch
from vactor_cloud.batch_commit import AttemptNext, BatchCommit
from vactor_cloud.dedup import DedupFields, Outcome, StepDedup
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.deletion import deleted_error, is_deleted
from vactor_cloud.errors import ActorClassChangedError, IntegrityError, RuntimeShutdownError, StorageError
from vactor_cloud.folding import damaged_pause
from vactor_cloud.log import ClassRef, ForeignStepError, StepRecord
from vactor_cloud.post_cursor import POST_CURSOR, advance_cursor
from vactor_cloud.step_outcomes import encode_outcomes, legacy_outcomes
from vactor_cloud.timers import FIRE

__all__ = ["CLASS_BODY_RECHECK", "BelowWatermarkError", "StepAttempt"]

logger = logging.getLogger("vactor_cloud")

#: seconds after which a core checks again that the class body its steps name is stored whole
#: (a lifecycle rule may delete it while a long-running writer goes on): one GET per actor
CLASS_BODY_RECHECK = 3600.0

#: a fold copies its parent's outcomes (``StepRecord.carried``) up to this many bytes
_CARRY_MAX = 4096
#: a commit that folds nothing drops the cursor's silent senders once in this many steps
_CURSOR_PRUNE_STEPS = 64


class BelowWatermarkError(Exception):
    """Our create landed on a step number (``step``) a compaction had already deleted."""

    def __init__(self, step: int) -> None:
        super().__init__(f"step {step} landed below the compaction watermark")
        self.step = step


class StepAttempt(AfterCommit):
    """An actor core attempting a commit: one attempt (``_attempt``) of a batch, from its base
    step to its step's put."""

    # ``_live`` is the core's (set with its cache of the newest step); the commit takes it
    # (used once) and leaves it here.
    __slots__ = ("_live", "_unanswered")

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore): its cache of the newest step and of
        # the class bodies known stored.
        _mutex: threading.Lock
        _live: tuple[int, Any] | None
        _stored_sha: str | None
        _stored_classes: dict[str, float]

        def _invalidate(self) -> None: ...
        def _definition_now(self, record: StepRecord) -> ActorDefinition: ...

    def __init__(self) -> None:
        super().__init__()
        #: the writer id of our step put whose answer never came (Ctrl-C stopped the commit, or
        #: its outcome stayed unknown): if it landed, the next commit meets it as its own step
        self._unanswered = ""

    def _attempt(self, c: BatchCommit) -> AttemptNext:
        """One attempt: the base step, the posts folded in, the calls applied, the step put.
        Lost races and failures come out as exceptions (``_commit_attempts`` sorts them)."""
        base, validated, live = self._attempt_base(c)
        if base is None:  # invalidated by a compaction meanwhile
            return "again"
        if c.posted is None and self._refuse_other_class(c, base, validated) and not c.fold:
            return "done"
        definition = self._definition_now(base)
        if type(live) is not definition.cls:  # (None; or the class was defined again: ``superseded``)
            live = None
        if c.posted is not None and self._settle_if_folded(c.posted, c.batch, base):
            return "done"
        if c.fold:
            folding = self._fold_into_attempt(c, base)
            if folding is not None:
                return folding
        result = self._apply_attempt(c, base, definition, live, validated)
        if isinstance(result, str):  # nothing to commit: "again" or "done"
            return result
        c.base = base
        c.result = result
        c.record = self._step_record(c, base, definition, result)
        self._put_attempt(c, c.record, validated)
        return "committed"

    def _attempt_base(self, c: BatchCommit) -> tuple[StepRecord | None, float, Any]:
        """The step this attempt builds on (revalidated first when the cache may be behind),
        when it was validated, and the live instance if it is that step's (taken: used once)."""
        env = self.env
        settings = env.settings
        if (
            c.posted is not None
            or self.record is None
            or is_deleted(self.record)  # (the id may hold a new actor since)
            or (
                time.monotonic() - self.validated_at > settings.fresh_window
                and not all(call.method == FIRE for call in c.batch)
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
        return base, validated, live

    def _fold_into_attempt(self, c: BatchCommit, base: StepRecord) -> AttemptNext | None:
        """Holding the folder lease: gather the pending posts into ``c.calls`` (``c.folded``).
        None: go on and apply them; otherwise what the attempt comes to (the lease was lost,
        nothing is left to fold, or our post waits behind a damaged one)."""
        batch = c.batch
        if c.others_wait:
            # Others' posts still wait for us (our put lost a race since): not
            # idle, however long the lost put and the reload took.
            self._foreign_at = time.monotonic()
        if not self._holding(mid_fold=True) and not self._lease_for_fold():
            # The lease expired mid-fold or another process took it over: it folds.
            c.fold = False
            if not batch:
                return "done"
            if c.posted is None:
                c.posted = self._post(batch)
            return "again"
        if c.keys is None:
            self._gather_posts()
            c.keys = self._post_keys()
        c.calls, c.folded, stale = self._fold_posts(c.posted, batch, base, c.keys)
        c.keys = None
        c.others_wait = any(p.sender != self._posts().sender for p in c.folded)
        if c.others_wait:
            # Others' calls wait for this fold: the lease is not idle (kept even
            # while our puts lose races to a writer that does not post yet).
            self._foreign_at = time.monotonic()
        if stale:
            self.env.background(self._posts().delete(stale))
        if not c.calls and not batch:
            return "done"  # nothing left to fold (a fold-only commit, posts gone meanwhile)
        if not c.calls:
            # Our post waits behind one whose read was damaged: read them again
            # (a post still damaged after a few reads is skipped), until the deadline.
            if time.monotonic() > c.give_up_at:
                assert c.posted is not None
                fail_calls(batch, self._pending_error(c.posted, batch))
                return "done"
            c.damaged += 1
            time.sleep(damaged_pause(c.damaged))
            return "again"
        c.damaged = 0  # this fold went through: a later damaged stop is the first in a row again
        return None

    def _apply_attempt(
        self, c: BatchCommit, base: StepRecord, definition: ActorDefinition, live: Any, validated: float
    ) -> BatchResult | Literal["again", "done"]:
        """Apply ``c.calls`` (events folded in by the inbox) to ``base`` (known to be the newest
        step at ``validated``). "done": nothing to commit, every call has its outcome (it raised,
        or its key's recorded one); "again": nothing to commit, but ``base`` was no longer the
        newest step, so those outcomes are not given (see ``_answers_from_newest``)."""
        env = self.env
        if is_deleted(base):
            return self._fail_on_tombstone(c, base)
        c.hooked = self.inbox.wants_fold(c.calls)
        if c.hooked:
            c.calls = env.run(self.inbox.fold(c.calls, base, definition))
        calls = c.calls
        # The idempotency table is read only if a call carries a key (events do).
        table = (
            env.run(
                StepDedup(self.log, base, definition.serializer).prepare(
                    call.idempotency_key for call in calls
                )
            )
            if any(call.idempotency_key is not None for call in calls)
            else None
        )
        c.ran = True
        result = apply_batch(
            definition, self.actor_id, base, live, calls, env, env.settings.dedup_window, table
        )
        if result.state is None:
            if not c.folded:
                if self.env.closed:
                    self._not_applied_at_shutdown(result)  # (no probe: the store is closing)
                elif not self._answers_from_newest(c, base, validated):
                    return "again"
                self._settle(c.batch, calls, result, c.hooked)
                return "done"
            # Posted calls that all raised: their outcomes and the cursor still commit.
            carried = DedupFields(base.dedup, base.dedup_base)
            result = BatchResult(result.outcomes, None, base.state, carried, [], dict(base.extra))
        return result

    def _not_applied_at_shutdown(self, result: BatchResult) -> None:
        """A call whose body met the runtime's shutdown (its ``RuntimeShutdownError``: a nested
        call's, a sub-task checkpoint's, which speak of their own operation) hears that it ran
        and was not applied, the body's error its cause: as when shutdown refuses a step put."""
        for i, outcome in enumerate(result.outcomes):
            if not outcome.ok and isinstance(outcome.value, RuntimeShutdownError):
                error = self.env.step_put_refused_error()
                error.__cause__ = outcome.value
                result.outcomes[i] = Outcome(False, error)

    def _answers_from_newest(self, c: BatchCommit, base: StepRecord, validated: float) -> bool:
        """Whether outcomes that commit nothing (calls that raised, keys answered from the
        table) may be given from ``base``. No put tells whether a cache trusted within
        ``fresh_window`` is still the newest step, and another process may have committed
        since, or deleted the actor (and made it again): the deleted actor's state and table
        answered then. So ``base`` must have been found newest after this commit began (then
        the outcomes are those of a state no older than the calls); else one probe decides,
        and a newer step means: apply the calls again on it. A batch of timer firings alone
        is exempt, as from the probe before a put (its runner checks a firing that found
        nothing)."""
        if validated >= c.began or all(call.method == FIRE for call in c.batch):
            return True
        newest = self.env.run(self.revalidate())
        return newest.step == base.step

    def _refuse_other_class(self, c: BatchCommit, record: StepRecord | None, validated: float) -> bool:
        """Fail the calls of ``c.batch`` made through a method of another class than
        ``record``'s, and drop them from the batch: the id was deleted and made again with
        another class since their handle read it (a tombstone is left to fail them as
        deleted). True when no call is left in the batch. Called before the batch is posted
        (a fold checks a posted call's class tag). A refusal commits nothing: as for a call
        that raises (``_answers_from_newest``), ``record`` (validated at ``validated``) must
        be found newest after the commit began, else one probe decides, and a newer step
        refuses nothing here (the attempt on it decides)."""
        if record is None or is_deleted(record):
            return False
        now = record.class_ref.name
        if all(call.for_class is None or call.for_class == now for call in c.batch):
            return False
        if validated < c.began and self.env.run(self.revalidate()).step != record.step:
            return False
        kept: list[PendingCall] = []
        refused: list[tuple[PendingCall, Outcome]] = []
        for call in c.batch:
            if call.for_class is None or call.for_class == now:
                kept.append(call)
            else:
                error = ActorClassChangedError(self.actor_id, call.method, call.for_class, now)
                refused.append((call, Outcome(False, error)))
        c.batch = c.calls = kept
        self._learn_class(record)
        deliver_all(refused)
        return not kept

    def _refuse_unless_unsure(self, c: BatchCommit, record: StepRecord | None, validated: float) -> bool:
        """``_refuse_other_class`` outside an attempt (before the first, after a lost race),
        where a storage error is not retried: a probe that fails refuses nothing here. The
        next attempt decides on the step it builds on (its reads retried as any), and a fold
        refuses a posted call of another class by its tag."""
        try:
            return self._refuse_other_class(c, record, validated)
        except (StorageError, IntegrityError) as exc:
            self._distrust()
            logger.debug("actor %r: the probe before a class refusal failed: %s", self.actor_id, exc)
            return False

    def _learn_class(self, record: StepRecord) -> None:
        """Take ``record``'s class for the actor's, where a call of another class was refused on
        it: else handles went on looking methods up in the old class (``runtime.load`` trusts
        a loaded class), every call through them was refused, and ``get_or_create`` with the
        old class passed its check. A class that does not load here is left to the next call
        that needs it."""
        try:
            self._definition_now(record)
        except Exception as exc:
            logger.debug("actor %r: the class of step %d did not load: %r", self.actor_id, record.step, exc)

    def _fail_on_tombstone(self, c: BatchCommit, base: StepRecord) -> BatchResult | Literal["done"]:
        """The actor was deleted (``base`` is a tombstone): nothing is applied. Every call fails
        with ``ActorDeletedError``; posts folded in are recorded so (their cursor advanced, their
        outcomes the error) in another tombstone: their posters read "deleted" there, and no
        later fold applies them. "done": nothing to commit (no post folded)."""
        error = deleted_error(self.log, base)
        outcomes = [Outcome(False, error) for _ in c.calls]
        c.hooked = False
        if not c.folded:
            deliver_all(zip(c.calls, outcomes, strict=True))
            return "done"
        carried = DedupFields(base.dedup, base.dedup_base)
        return BatchResult(outcomes, None, base.state, carried, [], dict(base.extra))

    def _step_record(
        self, c: BatchCommit, base: StepRecord, definition: ActorDefinition, result: BatchResult
    ) -> StepRecord:
        """The step ``base.step + 1`` that commits ``result`` (and the folded posts' outcomes)."""
        assert result.state is not None
        ref = self._class_ref_for_commit(definition, base)
        folded = c.folded
        extra = result.extra
        posted_part = legacy = b""
        if folded:
            extra = advance_cursor(extra, folded, time.time())
            outcomes = {call.call_id: o for call, o in zip(c.calls, result.outcomes, strict=True)}
            posted_part = encode_outcomes(outcomes)
            if len(posted_part) <= 2 * _CARRY_MAX:  # (a large result: not pickled twice)
                legacy = legacy_outcomes(outcomes, _CARRY_MAX)
        elif base.step % _CURSOR_PRUNE_STEPS == 0 and POST_CURSOR in extra:
            # Senders silent for SENDER_TTL leave the cursor at commits that fold nothing too
            # (by the rule a fold drops them by): an actor contended once, then written
            # uncontended, carried its burst's senders in every step. Every so many steps only.
            extra = advance_cursor(extra, [], time.time())
        return StepRecord(
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
            dedup_named=result.dedup.named,
            dedup_by_value_at_most=result.dedup.by_value_at_most,
            dedup_outcomes=result.dedup.outcomes,
            extra=extra,
            posted=posted_part,
            legacy=legacy,
            # The parent's outcomes too, when small: a poster that reads this step
            # first (it skipped the parent) finds its own without another GET.
            carried=base.posted if folded and len(base.posted) <= _CARRY_MAX else b"",
        )

    def _put_attempt(self, c: BatchCommit, record: StepRecord, validated: float) -> None:
        """Put ``record`` create-only: the linearization point. Returns once committed;
        a lost race or a step number below the watermark raises."""
        env = self.env
        if env.stopped:  # (the inline put below does not go through env.run)
            raise env.step_put_refused_error()
        # Encoded before the put counts as sent: an error here (a MemoryError) is of a step
        # never sent, and the call fails as not applied, not with its outcome unknown.
        data = self.log.encode_step(record)
        if record.dedup_checkpoint:
            # What the step names, put before it: a failure here is of a step never sent
            # (retried as any failure before the put), not a commit with its outcome unknown.
            env.run(self.log.put_step_prerequisites(record))
            if env.stopped:  # (stopped meanwhile: the put below would be refused, never sent)
                raise env.step_put_refused_error()
        c.put_started = time.monotonic()
        c.put_sent = True
        c.earlier, self._unanswered = self._unanswered, record.writer
        try:
            if self.log.store.inline and not record.dedup_checkpoint and not tracing.live():
                rest = self.log.put_step_now(record, data)
                if rest is not None:  # the key was taken: read it back, on the loop
                    env.run(rest)
            else:
                put = self.log.put_step(record, data, prerequisites=False)
                env.run(tracing.commit_attempt(put, self.actor_id, record.step, c.attempts + 1))
        except ForeignStepError:
            # Certainly not landed: a failure before any put, as a damaged read is.
            c.put_sent = False
            self._unanswered = c.earlier
            raise
        self._unanswered = ""
        # Timed at the put's *end*: a put can stall (network, client retries)
        # past fresh_window and land after a compaction deleted its number.
        if time.monotonic() - validated > env.settings.fresh_window and not env.run(
            self.log.resolve_late_commit(record)
        ):
            self._invalidate()
            raise BelowWatermarkError(record.step)

    def _class_ref_for_commit(self, definition: ActorDefinition, base: StepRecord) -> ClassRef:
        if self._stored_sha is not None:
            return base.class_ref
        ref, body = definition.body()
        now = time.monotonic()
        checked = self._stored_classes.get(ref.sha)
        if checked is None or now - checked > CLASS_BODY_RECHECK:
            if ref.sha != base.class_ref.sha:
                # This process runs its own (maybe upgraded) class: store its body first
                # so that processes without the class can read the steps it writes. One
                # found there already (left by an earlier run) may be damaged: checked too.
                if not self.env.run(self.log.put_class(ref.sha, body, ref.name, definition.bytecode)):
                    self.env.background(self._restore_class_body(ref, body, definition.bytecode))
            else:
                # The steps already name this body, stored by whoever wrote them; it may have
                # gone since (a lifecycle rule, a copy of the steps alone), and then every
                # step written here named a body no process without the class could load.
                # Checked (read and verified: a damaged one is replaced too) by this core at its
                # first commit and hourly, off the commit's path.
                self.env.background(self._restore_class_body(ref, body, definition.bytecode))
            self._stored_classes[ref.sha] = now
        return ref

    async def _restore_class_body(self, ref: ClassRef, body: bytes, bytecode: str | None) -> None:
        """Store the class body ``ref`` again if it is missing or damaged (one GET when it is
        sound: a HEAD found a damaged body there, and it stayed unloadable for good)."""
        try:
            fault = await self.log.restore_class(ref.sha, body, ref.name, bytecode)
        except Exception as exc:  # (checked again by a later commit)
            self._stored_classes.pop(ref.sha, None)
            logger.debug("actor %r: checking its class body %s failed: %s", self.actor_id, ref.sha, exc)
            return
        if fault is None:
            return
        logger.warning(
            "actor %r: its class body (%s, %s) was %s in storage (a lifecycle rule, a partial "
            "copy, damage at rest?): stored it again, so that processes without the class can "
            "load the actor",
            self.actor_id,
            ref.name,
            self.log.class_key(ref.sha),
            fault,
        )

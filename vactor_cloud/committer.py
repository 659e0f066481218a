"""The commit loop of an actor core: one batch of calls committed as the next step, or
settled otherwise (DESIGN.md §4; docs/protocol.md).

Each commit chooses its way per batch (race for the next step, fold as the folder lease
holder, or post and wait: ``vactor_cloud.folding``, ``vactor_cloud.poster``), then attempts
until the batch has its outcome: an attempt builds on the newest step, applies the calls and
puts the step create-only (the linearization point); what stops an attempt (a lost race, a
storage error, shutdown, a defect) says what comes next; after a commit the step is cached,
its timers indexed, HEAD moved, and each call gets its outcome.

:class:`Committer` is a part of :class:`~vactor_cloud.core.ActorCore` (a mixin, over the
folder's side); it owns the fields in its ``__slots__``. What it needs of the core is declared
at the top of the class.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vactor_cloud import counters, tracing
from vactor_cloud.batch import PendingCall, deliver_all, fail_calls
from vactor_cloud.batch_apply import BatchResult, apply_batch
from vactor_cloud.call_runtime import CallRuntime
from vactor_cloud.commit_notes import not_sent_note, noted_sent, sent_note
from vactor_cloud.dedup import DedupFields, Outcome, StepDedup, safe_repr
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.deletion import deleted_error, is_deleted
from vactor_cloud.errors import (
    ActorClassChangedError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    IntegrityError,
    RuntimeShutdownError,
    StorageError,
    StorageTimeoutError,
    VactorError,
)
from vactor_cloud.folding import Folder, damaged_pause, doubling_pause
from vactor_cloud.log import ClassRef, ForeignStepError, StepCompactedError, StepRecord, StepTakenError
from vactor_cloud.post_cursor import POST_CURSOR, advance_cursor
from vactor_cloud.post_objects import Post
from vactor_cloud.poster import CombiningEnv, Posted
from vactor_cloud.step_outcomes import encode_outcomes, legacy_outcomes
from vactor_cloud.timers import FIRE, TIMERS, firing_only, index_after_commit

__all__ = ["CLASS_BODY_RECHECK", "CommitEnv", "CommitHook", "Committer"]

logger = logging.getLogger("vactor_cloud")
#: seconds after which a core checks again that the class body its steps name is stored whole
#: (a lifecycle rule may delete it while a long-running writer goes on): one GET per actor
CLASS_BODY_RECHECK = 3600.0


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

    async def finish(self) -> None:
        """At shutdown: until its background work (listings, cleanup) has ended."""
        ...


class CommitEnv(CombiningEnv, CallRuntime, Protocol):
    """What the commit loop needs from its runtime: what contention combining needs
    (:class:`~vactor_cloud.poster.CombiningEnv`), what a call reads of its runtime
    (:class:`~vactor_cloud.call_runtime.CallRuntime`: the commit loop gives it to the calls
    it applies), and the following."""

    def head_moved(self, core: Any, *, lazy: bool = False) -> None:
        """``core`` (the actor core itself) committed a step its HEAD does not point at yet."""
        ...


class Committer(Folder):
    """An actor core as the committer: its commit loop (``_commit``), from the choice of way
    to the outcome of each call."""

    # ``_live`` is the core's (set with its cache of the newest step); the commit takes it
    # (used once) and leaves it here.
    __slots__ = ("_live", "_lost_at", "_put_seconds", "_unanswered")

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore): its runtime, its commit hook (the
        # inbox), its cache of the newest step and of the class bodies known stored.
        env: CommitEnv
        inbox: CommitHook
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
        #: when this process last lost a commit race, and how long its puts take (moving average)
        self._lost_at = -math.inf
        self._put_seconds = 0.0

    # -- writes (the holder's thread) ---------------------------------------------------------
    def _commit(self, batch: list[PendingCall], keys: list[str] | None = None) -> None:
        """Commit ``batch`` (may be empty: a lease holder folding others' posts only).

        Three ways, decided per batch: race for the next step (uncontended, one
        PUT); fold (we hold the folder lease: list the posts, apply them with
        our calls, commit); post and wait (another process holds the lease, or
        an earlier post of ours is pending). ``keys``: a listing of ``posts/``
        the caller just made.

        A done-callback of another call's future that raised a ``BaseException`` while a
        fold settled that call (logged there) is raised here once ``batch`` has its own
        outcomes, not before: our calls may still wait for their fold.
        """
        runs = self._postable_runs(batch)
        if len(runs) > 1:
            # Internal calls cannot be posted; beside them, user calls would race for the step
            # under contention (and fail after losing race after race) instead of posting.
            # Each run commits in turn, in queue order (a run behind a pending post of ours
            # waits for it: see _behind_our_post).
            for run in runs:
                self._commit(run)
            return
        raised: list[BaseException] = []
        try:
            self._commit_attempts(batch, keys, raised)
        finally:
            if raised:
                raise raised[0]

    def _commit_attempts(
        self, batch: list[PendingCall], keys: list[str] | None, raised: list[BaseException]
    ) -> None:
        """``_commit``'s loop (see there): choose the way, then attempt until ``batch`` has
        its outcome. Each attempt, or the handling of what stopped it, says what comes next:
        try again, done, or committed (then the bookkeeping after a commit)."""
        began = time.monotonic()
        c = _Commit(batch, keys, raised, began + self.env.settings.commit_timeout, began)
        try:
            if self._choose_way(c):
                self._attempt_until_settled(c)
        except BaseException as exc:
            # Interrupted (Ctrl-C, a signal handler's exception) once the batch was posted: the
            # post stays, and any process's fold may still apply it.
            if c.posted is None:
                if (
                    not c.put_sent
                    and not isinstance(exc, Exception)
                    and c.batch
                    and all(call.posted is None for call in c.batch)
                ):
                    # No step of this batch was sent (an attempt whose put went out either
                    # committed, lost definitely, or ended the commit), nor a post of it (one
                    # interrupted while it was written may have landed: ``Poster._post``):
                    # nothing applied. The drain's note said "may or may not", and a caller
                    # looked at history.
                    exc.add_note(not_sent_note(self.actor_id, c.batch))
                raise
            self._interrupted_after_posting(c.posted, c.batch)
            if not isinstance(exc, Exception):
                raise
            # Not an interrupt (a MemoryError, a defect: a storage error is handled inside):
            # pending, as an attempt's error after posting is (``_attempt_failed``). The bare
            # error told the caller its call was not applied, and a fold applied it later.
            counters.commit_error(self.actor_id, exc, False, posted=True)
            pending = self._pending_error(c.posted, c.batch)
            pending.__cause__ = exc
            fail_calls(c.batch, pending)

    def _attempt_until_settled(self, c: _Commit) -> None:
        """``_commit_attempts``'s loop: attempt until ``c.batch`` has its outcome (calls refused
        on the way leave ``c.batch``: see ``_refuse_other_class``)."""
        while True:
            batch = c.batch
            if self.env.closed:
                # Shutdown began: no attempt starts (one that ran when it began finished).
                if c.posted is not None:
                    # Pending, as when shutdown ends a wait for a fold (_wait_for_folder): not
                    # an error the commit met, not counted.
                    fail_calls(batch, self._pending_error(c.posted, batch))
                else:
                    # Failed: a commit error, as when shutdown refuses an attempt's put or
                    # stops the attempt (_stopped_by_shutdown). Calls that shutdown fails
                    # in the queue never began a commit: not counted. After an attempt that ran
                    # the bodies (its put lost a race, or failed and was retried): not
                    # "before this call started".
                    stopped = self.env.step_put_refused_error() if c.ran else self.env.shutdown_error()
                    counters.commit_error(self.actor_id, stopped, False)
                    fail_calls(batch, stopped)
                return
            if c.posted is not None and not c.fold and not self._wait_for_folder(c, c.posted):
                return
            c.put_sent = False
            c.calls = batch
            c.folded = []
            c.attempt_began = time.monotonic()
            try:
                step = self._attempt(c)
            except (StepTakenError, StepCompactedError, _BelowWatermarkError) as lost:
                step = self._lost_race(c, lost)
            except (StorageError, IntegrityError) as exc:
                step = self._storage_failed(c, exc)
            except RuntimeShutdownError as exc:
                self._stopped_by_shutdown(c, exc)
                return
            except Exception as exc:
                self._attempt_failed(c, exc)
                return
            else:
                c.transient = 0  # the store answered this attempt (see _Commit.transient)
            if step == "committed":
                step = self._after_commit(c)
            if step == "done":
                return

    def _choose_way(self, c: _Commit) -> bool:
        """Race, fold or post ``c.batch`` (sets ``c.fold`` and ``c.posted``). False: the commit
        ends before any attempt (a fold-only commit without the lease, or a batch that
        waited behind our pending post and has its outcome)."""
        self._refuse_unless_unsure(c, self.record, self.validated_at)
        batch = c.batch
        if not batch:
            c.fold = self._holding()
            if not c.fold:
                return False
        elif self._outstanding is not None and not self._may_post(batch):
            # Internal calls (a timer's cancel or firing, inbox markers) cannot be posted, and
            # must not pass our pending post either: first it is applied (by us, if we fold).
            if not self._behind_our_post(batch, c.give_up_at):
                return False
        elif self._may_post(batch) and self._contended():
            if self._outstanding is not None:
                c.posted = self._post(batch)  # after our pending post: order is kept
                c.fold = self._lease_for_fold()
            elif self._other_folds():
                c.posted = self._post(batch)  # another process folds: post and wait
            elif self._lease_for_fold():
                c.fold = True
            else:
                c.posted = self._post(batch)  # another process folds: post and wait
        elif time.monotonic() - self._lost_at < 1.0:
            # Contended: the previous winner would win again (it alone knows the
            # newest step at once); a short pause lets the losers' retries through.
            time.sleep(random.random() * self._put_seconds)
        return True

    def _wait_for_folder(self, c: _Commit, posted: Posted) -> bool:
        """Wait for another process to fold our post. False: ``c.batch`` has its outcome
        (applied, or failed as pending); True: the lease was free and we took it."""
        batch = c.batch
        try:
            waited, failed = self._wait_for_fold(posted, batch, c.give_up_at)
        except Exception as exc:
            # Not a storage error (those are retried inside): our post stays and may
            # be applied, or was (its outcomes did not load): pending, not failed.
            counters.commit_error(self.actor_id, exc, False, posted=True)
            pending = self._pending_error(posted, batch)
            pending.__cause__ = exc
            fail_calls(batch, pending)
            return False
        if waited == "done":
            return False
        if waited == "timeout":
            pending = self._pending_error(posted, batch)
            if failed is not None:  # why our outcome was not read: the last look failed
                pending.__cause__ = failed
            fail_calls(batch, pending)
            return False
        c.fold = True  # the lease was free and we took it: fold our post with the others'
        return True

    def _attempt(self, c: _Commit) -> _Next:
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

    def _attempt_base(self, c: _Commit) -> tuple[StepRecord | None, float, Any]:
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

    def _fold_into_attempt(self, c: _Commit, base: StepRecord) -> _Next | None:
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
        self, c: _Commit, base: StepRecord, definition: ActorDefinition, live: Any, validated: float
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

    def _answers_from_newest(self, c: _Commit, base: StepRecord, validated: float) -> bool:
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

    def _refuse_other_class(self, c: _Commit, record: StepRecord | None, validated: float) -> bool:
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

    def _refuse_unless_unsure(self, c: _Commit, record: StepRecord | None, validated: float) -> bool:
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

    def _fail_on_tombstone(self, c: _Commit, base: StepRecord) -> BatchResult | Literal["done"]:
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
        self, c: _Commit, base: StepRecord, definition: ActorDefinition, result: BatchResult
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

    def _put_attempt(self, c: _Commit, record: StepRecord, validated: float) -> None:
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
            raise _BelowWatermarkError(record.step)

    def _lost_race(
        self, c: _Commit, lost: StepTakenError | StepCompactedError | _BelowWatermarkError
    ) -> _Next:
        """Another writer's step took the number (or a compaction freed it): catch up and
        try again after a backoff; lost races turn into a post; give up after the bound."""
        settings = self.env.settings
        batch = c.batch
        c.transient = 0  # the store answered this attempt (see _Commit.transient)
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

    def _storage_failed(self, c: _Commit, exc: StorageError | IntegrityError) -> _Next:
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

    def _stopped_by_shutdown(self, c: _Commit, exc: RuntimeShutdownError) -> None:
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

    def _attempt_failed(self, c: _Commit, exc: Exception) -> None:
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

    def _after_commit(self, c: _Commit) -> _Next:
        """The step is committed: cache it, index its timers, clear the folded posts, renew
        the lease, move HEAD, then deliver the outcomes. "again": our own post was not
        among the folded ones and still waits for the next fold."""
        record = c.record
        folded = c.folded
        posted = c.posted
        put_started = c.put_started
        counters.committed(sum(len(p.calls) for p in folded) if folded else 0)
        self._accept(record, put_started, c.result.instance)
        self._put_seconds = 0.8 * self._put_seconds + 0.2 * (time.monotonic() - put_started)
        now = time.monotonic()
        self._seen_at = now
        self._count_commit(now)
        if TIMERS in record.extra:
            self._index_timers(c.base, record)
        if folded:
            self.env.background(self._posts().delete(list(dict.fromkeys(p.key for p in folded))))
            sender = self._posts().sender
            foreign = [p for p in folded if p.sender != sender]
            if foreign:
                self._foreign_at = time.monotonic()
                self._learn_gather(foreign, record.time)
        if c.fold:
            self._renew_lease(record.step)
        self.env.head_moved(self, lazy=firing_only(record.calls))
        if posted is not None and posted.post not in folded:
            # We folded older posts only (the batch was full): ours waits for the next fold.
            try:
                self._settle([], c.calls, c.result, c.hooked)  # (our batch is not among ``calls``)
            except BaseException as exc:  # a done-callback's (logged): after our outcomes
                c.raised.append(exc)
            return "again"
        if posted is not None:
            self._outstanding = None
        self._settle(c.batch, c.calls, c.result, c.hooked)
        return "done"

    def _settle(
        self, batch: list[PendingCall], calls: list[PendingCall], result: BatchResult, hooked: bool
    ) -> None:
        """Deliver each call of a committed step its outcome, then let the inbox settle its
        part. A done-callback raising a ``BaseException`` (futures catch ``Exception`` only)
        is logged here (on a pool thread nobody would see it) and raised once every call
        has its outcome."""
        try:
            deliver_all(zip(calls, result.outcomes, strict=True))
        except BaseException as exc:
            logger.error(
                "actor %r: a done-callback of a call's future raised %r; every call of the step "
                "has its own outcome",
                self.actor_id,
                exc,
                exc_info=exc,
            )
            raise
        finally:
            if hooked:
                # The inbox looked at this commit (events folded, markers answered): it settles its part.
                try:
                    self.env.run(self.inbox.settle(batch, calls, result))
                except Exception as exc:  # cleanup only: applied events are found again and skipped
                    logger.warning("actor %r: inbox cleanup after a commit failed: %s", self.actor_id, exc)
                    fail_calls(batch, exc)

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


#: a fold copies its parent's outcomes (``StepRecord.carried``) up to this many bytes
_CARRY_MAX = 4096
#: a commit that folds nothing drops the cursor's silent senders once in this many steps
_CURSOR_PRUNE_STEPS = 64

#: transient storage errors in a row retried before a commit's put (nothing written yet)
_TRANSIENT_RETRIES = 5


class _BelowWatermarkError(Exception):
    """Our create landed on a step number (``step``) a compaction had already deleted."""

    def __init__(self, step: int) -> None:
        super().__init__(f"step {step} landed below the compaction watermark")
        self.step = step


#: what an attempt of a commit comes to: try again, the batch has its outcome, or committed
_Next = Literal["again", "done", "committed"]


@dataclasses.dataclass(slots=True)
class _Commit:
    """One ``ActorCore._commit`` of a batch: what its attempts share.

    The fields after ``give_up_at`` that are not given a default belong to the newest
    attempt (the one that committed, when the loop gets to the bookkeeping after a commit).
    """

    batch: list[PendingCall]
    #: a listing of ``posts/`` the caller just made (used by the first fold only)
    keys: list[str] | None
    #: a done-callback's ``BaseException``, raised by ``_commit`` once the batch has its outcomes
    raised: list[BaseException]
    give_up_at: float
    #: when (monotonic) the commit began: its calls were all submitted before
    began: float
    #: lost races so far
    attempts: int = 0
    posted: Posted | None = None
    #: we fold posted calls into our commit (we hold the folder lease)
    fold: bool = False
    #: storage errors retried in a row: an attempt that ends otherwise (the store answered it:
    #: a lost race, a commit, ...) starts the count over. Before the put, at most
    #: ``_TRANSIENT_RETRIES`` in a row are retried (per attempt, not per commit: attempts are
    #: bounded by ``max_commit_attempts``), and none past ``give_up_at``.
    transient: int = 0
    #: (monotonic) since when ``transient`` has counted: the commit's start if no race was
    #: lost before, else the start of the run's first failing attempt (``Settings.deadline``
    #: bounds the run)
    failing_since: float = 0.0
    #: the writer id of the put before this attempt's, if its answer never came
    earlier: str = ""
    #: folds in a row that stopped at a post whose read was damaged
    damaged: int = 0
    #: our last fold carried other processes' posts and its put lost: they still wait
    others_wait: bool = False
    #: an attempt ran the calls' bodies (their effects outside the actor's state are done)
    ran: bool = False
    #: the newest attempt sent its step's put (False before the first attempt: an exception
    #: while the way is chosen, ``_choose_way``, is of a commit that sent no step)
    put_sent: bool = False
    #: the calls the attempt applies: the batch, or the folded posts' and ours
    calls: list[PendingCall] = dataclasses.field(init=False)
    folded: list[Post] = dataclasses.field(init=False)
    hooked: bool = dataclasses.field(init=False)
    base: StepRecord = dataclasses.field(init=False)
    result: BatchResult = dataclasses.field(init=False)
    record: StepRecord = dataclasses.field(init=False)
    put_started: float = dataclasses.field(init=False)
    #: (monotonic) when the newest attempt began
    attempt_began: float = dataclasses.field(init=False)


def _backoff(attempt: int) -> float:
    """Jittered backoff between conflicting commit attempts (at most a few ms).

    The cap is a few round trips: a loser that sleeps much longer than the
    winner's commit cycle only falls further behind.
    """
    return float(0.001 * min(attempt, 5) * random.random())

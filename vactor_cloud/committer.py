"""The commit loop of an actor core: one batch of calls committed as the next step, or
settled otherwise (DESIGN.md §4; docs/protocol.md).

Each commit chooses its way per batch (race for the next step, fold as the folder lease
holder, or post and wait: ``vactor_cloud.folding``, ``vactor_cloud.poster``), then attempts
until the batch has its outcome: an attempt builds on the newest step, applies the calls and
puts the step create-only (the linearization point); what stops an attempt (a lost race, a
storage error, shutdown, a defect) says what comes next; after a commit the step is cached,
its timers indexed, HEAD moved, and each call gets its outcome.

The loop is built in parts, each a mixin over the one before, the lowest over the folder's
side (:class:`~vactor_cloud.folding.Folder`):

* ``vactor_cloud.after_commit`` (:class:`~vactor_cloud.after_commit.AfterCommit`): the
  bookkeeping after a commit, and the delivery of each call's outcome;
* ``vactor_cloud.step_attempt`` (:class:`~vactor_cloud.step_attempt.StepAttempt`): one
  attempt, from the step it builds on to its create-only put;
* ``vactor_cloud.attempt_stops`` (:class:`~vactor_cloud.attempt_stops.AttemptStops`): what
  stopped an attempt, and what comes next;
* here, :class:`Committer`: the loop itself (``_commit``), from the choice of way to the end
  of the attempts.

What one commit's attempts share is a :class:`~vactor_cloud.batch_commit.BatchCommit`; what
the loop needs of its runtime and of its commit hook (the inbox) are the protocols of
``vactor_cloud.commit_env``, re-exported here for the core and the holder.

:class:`Committer` is a part of :class:`~vactor_cloud.core.ActorCore` (a mixin, over the
commit loop's parts above); its fields are the parts'. What each part needs of the core is
declared at the top of its class.
"""

from __future__ import annotations

import random
import time

from vactor_cloud import counters
from vactor_cloud.attempt_stops import AttemptStops
from vactor_cloud.batch import PendingCall, fail_calls
from vactor_cloud.batch_commit import BatchCommit
from vactor_cloud.commit_env import CommitEnv, CommitHook
from vactor_cloud.commit_notes import not_sent_note
from vactor_cloud.errors import IntegrityError, RuntimeShutdownError, StorageError
from vactor_cloud.log import StepCompactedError, StepTakenError
from vactor_cloud.poster import Posted
from vactor_cloud.step_attempt import BelowWatermarkError

__all__ = ["CommitEnv", "CommitHook", "Committer"]


class Committer(AttemptStops):
    """An actor core as the committer: its commit loop (``_commit``), from the choice of way
    to the outcome of each call."""

    __slots__ = ()

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
        c = BatchCommit(batch, keys, raised, began + self.env.settings.commit_timeout, began)
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

    def _attempt_until_settled(self, c: BatchCommit) -> None:
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
            except (StepTakenError, StepCompactedError, BelowWatermarkError) as lost:
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
                c.transient = 0  # the store answered this attempt (see BatchCommit.transient)
            if step == "committed":
                step = self._after_commit(c)
            if step == "done":
                return

    def _choose_way(self, c: BatchCommit) -> bool:
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

    def _wait_for_folder(self, c: BatchCommit, posted: Posted) -> bool:
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

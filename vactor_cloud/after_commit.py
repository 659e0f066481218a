"""What follows a committed step in the commit loop of an actor core: the step is cached, its
timers indexed, the folded posts cleared, the folder lease renewed, HEAD moved, and then each
call of the step gets its outcome and the inbox settles its part.

:class:`AfterCommit` is the lowest part of the commit loop (``vactor_cloud.committer``): a
mixin of :class:`~vactor_cloud.core.ActorCore` over the folder's side
(:class:`~vactor_cloud.folding.Folder`); the attempt (``vactor_cloud.step_attempt``) and the
loop build on it. It owns the fields in its ``__slots__``. What it needs of the core is
declared at the top of the class.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from vactor_cloud import counters
from vactor_cloud.batch import PendingCall, deliver_all, fail_calls
from vactor_cloud.batch_apply import BatchResult
from vactor_cloud.batch_commit import AttemptNext, BatchCommit
from vactor_cloud.commit_env import CommitEnv, CommitHook
from vactor_cloud.folding import Folder
from vactor_cloud.log import StepRecord
from vactor_cloud.timers import TIMERS, firing_only, index_after_commit

__all__ = ["AfterCommit"]

logger = logging.getLogger("vactor_cloud")


class AfterCommit(Folder):
    """An actor core after a commit: the bookkeeping of the committed step (``_after_commit``),
    and the outcomes delivered to its calls (``_settle``)."""

    __slots__ = ("_put_seconds",)

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore): its runtime, its commit hook (the
        # inbox).
        env: CommitEnv
        inbox: CommitHook

    def __init__(self) -> None:
        super().__init__()
        #: how long this process's puts take (moving average)
        self._put_seconds = 0.0

    def _after_commit(self, c: BatchCommit) -> AttemptNext:
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

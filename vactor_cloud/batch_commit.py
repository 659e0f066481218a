"""One commit of a batch as its attempts share it (:class:`BatchCommit`), and what an attempt
comes to (:data:`AttemptNext`).

The commit loop (``vactor_cloud.committer``) makes one :class:`BatchCommit` per commit; each
of its parts (``vactor_cloud.step_attempt``, ``vactor_cloud.attempt_stops``,
``vactor_cloud.after_commit``) reads and sets its fields as the attempts go on.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from vactor_cloud.batch import PendingCall
from vactor_cloud.batch_apply import BatchResult
from vactor_cloud.log import StepRecord
from vactor_cloud.post_objects import Post
from vactor_cloud.poster import Posted

__all__ = ["AttemptNext", "BatchCommit"]

#: what an attempt of a commit comes to: try again, the batch has its outcome, or committed
AttemptNext = Literal["again", "done", "committed"]


@dataclasses.dataclass(slots=True)
class BatchCommit:
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

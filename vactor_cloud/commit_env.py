"""What the commit loop of an actor core needs around it: of its runtime
(:class:`CommitEnv`) and of the feature that plugs into it, external events today
(:class:`CommitHook`: the inbox, ``vactor_cloud.inbox``).

The actor core's runtime provides the one, its inbox the other; every part of the commit loop
(``vactor_cloud.committer`` and the modules it is built of) reads them through the core.
"""

from __future__ import annotations

from typing import Any, Protocol

from vactor_cloud.batch import PendingCall
from vactor_cloud.batch_apply import BatchResult
from vactor_cloud.call_runtime import CallRuntime
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.log import StepRecord
from vactor_cloud.poster import CombiningEnv

__all__ = ["CommitEnv", "CommitHook"]


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

"""CallQueue: an actor core's queue of writes waiting for the thread that holds the actor.

A call whose future is cancelled before it started (``fut.cancel()``, an awaiter's timeout)
is never applied: a drainer that reaches it fails to claim it. It also leaves the queue as
soon as it is cancelled (:meth:`CallQueue.drop_cancelled`, from a done-callback of its
future), so that a caller that keeps timing out and calling again behind a holder that runs
long piles nothing up, arguments and all: the queue never holds more cancelled calls than
live ones (plus one). Amortized O(1) per cancellation; order of the others is kept.
"""

from __future__ import annotations

from collections import deque

from vactor_cloud.batch import PendingCall

__all__ = ["CallQueue"]


class CallQueue(deque[PendingCall]):
    """FIFO of queued calls (a :class:`collections.deque`); the core's mutex guards it."""

    __slots__ = ("_cancels",)

    def __init__(self) -> None:
        super().__init__()
        #: cancellations counted since the queue last dropped its cancelled calls
        self._cancels = 0

    def drop_cancelled(self) -> None:
        """A call's future was cancelled (the core's mutex held): drop the cancelled calls at
        either end at once, and every cancelled one once they may be half the queue.

        Each cancellation is counted once, and a full pass (its cost: the queue's length, less
        than twice the count) resets the count: amortized O(1) per cancellation. A count that
        names calls already gone (a drainer took them first) only brings a pass forward."""
        self._cancels += 1
        while self and self[-1].future.cancelled():
            self.pop()
        while self and self[0].future.cancelled():
            self.popleft()
        if 2 * self._cancels > len(self):
            kept = [call for call in self if not call.future.cancelled()]
            if len(kept) != len(self):
                self.clear()
                self.extend(kept)
            self._cancels = 0

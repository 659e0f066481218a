"""Review h165: ``CallQueue.drop_cancelled`` keeps the promises its docstring makes.

A caller that keeps timing out behind a long-running holder cancels call after call; each
cancelled call must leave the queue (arguments and all) soon enough that the queue never holds
more cancelled calls than live ones plus one, at an amortized O(1) cost per cancellation, and
the live calls keep their order. Tested on the queue itself, as the core's done-callback
drives it: a future cancelled, then ``drop_cancelled()``.
"""

from __future__ import annotations

from concurrent.futures import Future

from vactor_cloud.batch import PendingCall
from vactor_cloud.call_queue import CallQueue


class _PassCountingQueue(CallQueue):
    """A CallQueue that counts its full passes (each one rebuilds it: ``clear`` then ``extend``)."""

    __slots__ = ("passes",)

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def clear(self) -> None:
        self.passes += 1
        super().clear()


def _calls(count: int) -> list[PendingCall]:
    return [PendingCall("m", (), {}, False, Future(), str(k)) for k in range(count)]


def _cancel(queue: CallQueue, call: PendingCall) -> None:
    """What the core's done-callback does when a queued call's future is cancelled."""
    assert call.future.cancel()
    queue.drop_cancelled()


def test_cancelled_calls_in_the_middle_never_outnumber_the_live_ones_plus_one() -> None:
    """(Mutation: a full pass only once the count exceeds the whole queue's length: cancelled
    calls piled up to twice the live ones.)"""
    queue = _PassCountingQueue()
    calls = _calls(102)
    queue.extend(calls)
    for call in calls[1:-1]:  # the ends stay live: nothing is dropped at either end
        _cancel(queue, call)
        cancelled = sum(c.future.cancelled() for c in queue)
        assert cancelled <= len(queue) - cancelled + 1, (cancelled, len(queue))


def test_each_cancellation_costs_amortized_constant_time() -> None:
    """A hundred cancellations make a handful of full passes, not one each. (Mutation: the
    count not reset by a pass: every later cancellation made a full pass of the queue.)"""
    queue = _PassCountingQueue()
    calls = _calls(102)
    queue.extend(calls)
    for call in calls[1:-1]:
        _cancel(queue, call)
    assert queue.passes <= 10, queue.passes  # (each pass at least halves the queue: about log2 100)
    assert list(queue) == [calls[0], calls[-1]]


def test_a_cancelled_call_at_either_end_leaves_at_once() -> None:
    """(Mutations: the cancelled calls at the tail, or at the head, left in until a full pass.)"""
    queue = CallQueue()
    calls = _calls(10)
    queue.extend(calls)
    _cancel(queue, calls[-1])
    assert list(queue) == calls[:-1]
    _cancel(queue, calls[0])
    assert list(queue) == calls[1:-1]
    _cancel(queue, calls[5])  # in the middle: kept until a pass (amortized), counted
    _cancel(queue, calls[8])  # at the tail: it goes, and so does nothing else live
    assert [c for c in queue if not c.future.cancelled()] == [*calls[1:5], *calls[6:8]]
    assert queue[-1] is calls[7]


def test_live_calls_keep_their_order_through_every_pass() -> None:
    queue = CallQueue()
    calls = _calls(60)
    queue.extend(calls)
    live = []
    for k, call in enumerate(calls):
        if k % 3 == 1:
            _cancel(queue, call)
        else:
            live.append(call)
    for call in queue:  # what a pass has not dropped yet is a cancelled call a drainer skips
        assert call in live or call.future.cancelled()
    assert [c for c in queue if not c.future.cancelled()] == live
    assert live[0] is queue[0] and live[-1] is queue[-1]

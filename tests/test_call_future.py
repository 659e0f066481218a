"""CallFuture: the light internal future of a blocking ``run()`` behaves as a concurrent.futures.Future."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from vactor_cloud.dedup import Outcome
from vactor_cloud.future import CallFuture


def test_result_and_callbacks_in_order_and_after_the_fact() -> None:
    future: CallFuture[int] = CallFuture()
    seen: list[object] = []
    future.add_done_callback(lambda f: seen.append(("early", f.result())))
    assert not future.done() and not future.running()
    assert future.set_running_or_notify_cancel()
    assert future.running() and not future.cancel()
    future.set_result(7)
    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert future.done() and future.result() == 7 and future.exception() is None
    assert seen == [("early", 7), ("late", 7)]
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(8)


def test_an_exception_is_raised_by_result_and_returned_by_exception() -> None:
    future: CallFuture[int] = CallFuture()
    error = KeyboardInterrupt()
    future.set_exception(error)
    assert future.exception() is error
    with pytest.raises(KeyboardInterrupt):
        future.result()


def test_a_waiter_in_another_thread_is_woken_and_a_timeout_ends_the_wait() -> None:
    future: CallFuture[str] = CallFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.05)
    threading.Timer(0.05, future.set_result, args=("done",)).start()
    started = time.monotonic()
    assert future.result(timeout=10) == "done"
    assert time.monotonic() - started < 5


def test_a_cancelled_future_is_not_run() -> None:
    future: CallFuture[int] = CallFuture()
    called: list[bool] = []
    future.add_done_callback(lambda f: called.append(f.cancelled()))
    assert future.cancel() and future.cancel()
    assert not future.set_running_or_notify_cancel()
    assert called == [True]
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(1)


class _Held:
    """Stands for what a caller's frame holds (its runtime, its actor cache)."""


def _future_failed() -> Callable[[], Any]:
    future: CallFuture[int] = CallFuture()
    future.set_exception(ValueError("boom"))
    return future.result


def _outcome_failed() -> Callable[[], Any]:
    return Outcome(False, ValueError("boom")).unwrap


@pytest.mark.parametrize("make", [_future_failed, _outcome_failed], ids=["future", "outcome"])
def test_raising_a_held_exception_leaves_no_cycle_holding_the_callers_locals(
    make: Callable[[], Callable[[], Any]],
) -> None:
    """``raise self._exception`` made a cycle (the exception's traceback holds the frame that
    holds the future, which holds the exception): every caller that caught it kept its locals
    (a runtime, its cache) until the next garbage collection. Freed by reference counting now,
    once the future or outcome and the exception are dropped."""

    def caller(held: _Held, box: list[Callable[[], Any]]) -> None:
        box.pop()()  # (holds no reference to the future itself)

    gc.disable()
    try:
        held = _Held()
        ref = weakref.ref(held)
        with pytest.raises(ValueError, match="boom"):
            caller(held, [make()])
        del held
        assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]
    finally:
        gc.enable()

"""Review h231: a mutation sweep of the commit-side modules (``holding.py``, ``head_flusher.py``,
``reentrancy.py``, ``step_outcomes.py``, ``post_cursor.py``, ``core.py``).

TABLE
"""

from __future__ import annotations

import threading

import pytest
from interrupts import Interrupted, InterruptOnce
from test_review_cancellation import HANG, Gate, _entered, _hold_actor, _opened
from test_review_user_edges import Crossing

import vactor_cloud as vc
from vactor_cloud import holding
from vactor_cloud.call_queue import CallQueue
from vactor_cloud.commit_notes import started_elsewhere_note
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


# -- holding: a run() interrupted (Ctrl-C) around its wait -------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_just_after_a_run_settled_adds_no_note_that_another_thread_has_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` once its call has its outcome (applied on this thread), before
    ``run()`` returns: the interrupt reaches the caller as it is, with no note that another
    thread took the call (none did: its outcome is known)."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    settled_then_interrupted = InterruptOnce(holding.Holder.help, after=True)
    monkeypatch.setattr(holding.Holder, "help", settled_then_interrupted)
    with pytest.raises(Interrupted) as info:
        gate.add.run("applied")
    assert settled_then_interrupted.fired
    assert started_elsewhere_note("g") not in getattr(info.value, "__notes__", []), info.value.__notes__
    assert gate.applied.run() == ["applied"]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_before_a_run_was_queued_fails_it_with_no_note_that_another_thread_has_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` as its call is being queued, before it is in the queue: the call
    is failed with the interrupt (nobody will run it) and the interrupt says nothing of another
    thread; the actor's next call is applied, the interrupted one never."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    not_queued = InterruptOnce(CallQueue.append)
    monkeypatch.setattr(CallQueue, "append", not_queued)
    with pytest.raises(Interrupted) as info:
        gate.add.run("lost")
    assert not_queued.fired
    assert started_elsewhere_note("g") not in getattr(info.value, "__notes__", []), info.value.__notes__
    assert gate.add.run_async("after").result(HANG) == 1
    assert gate.applied.run() == ["after"]


@pytest.mark.usefixtures("runtime_off")
def test_a_call_withdrawn_behind_another_threads_writer_is_no_longer_listed_as_queued(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in a ``run()`` queued behind another thread's writer: the call is withdrawn
    (failed, never applied), so it leaves the queue at once: ``queued_calls()`` (what the exit
    says it abandons) does not list it while that writer still holds the actor."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    holder = _hold_actor(gate, "held")
    interrupted_wait = InterruptOnce(holding.interruptible_wait)
    monkeypatch.setattr(holding, "interruptible_wait", interrupted_wait)
    try:
        with pytest.raises(Interrupted):
            gate.add.run("lost")
        assert interrupted_wait.fired
        assert vc.get_runtime().queued_calls() == []
    finally:
        _opened["held"].set()
    holder.join(HANG)
    assert not holder.is_alive()
    assert gate.applied.run() == ["held"]


# -- reentrancy: a cycle through a future waited for inside a writer, run by the waiter -----------
@pytest.mark.usefixtures("runtime_off")
def test_a_cycle_through_a_future_the_writers_thread_runs_itself_is_named_as_on_one_thread(
    store_spec: StoreSpec,
) -> None:
    """A's writer waits (``result()``) for B's ``run_async`` call; the pool's one thread is busy,
    so the waiting thread runs B's call itself, and B calls A: a cycle on one thread, refused at
    once and named ``a -> b -> a`` (the wait lists A's writer as waiting on this thread)."""
    store_spec.init(settings=vc.Settings(storage="", max_workers=1))
    gate = Gate.get_or_create("busy")
    Crossing.get_or_create("x-a")
    Crossing.get_or_create("x-b")
    _entered["pool"], _opened["pool"] = threading.Event(), threading.Event()
    held = gate.hold.run_async("pool")
    try:
        assert _entered["pool"].wait(HANG), "the pool never ran the gate"
        with pytest.raises(vc.ReentrantCallError) as info:
            vc.get_actor("x-a").through_result.run("x-b")
    finally:
        _opened["pool"].set()
    assert held.result(HANG) == 1
    message = str(info.value)
    assert "(a call cycle x-a -> x-b -> x-a)" in message and "same thread" in message, message
    assert vc.get_actor("x-a").incr.run() == 1  # nothing of the cycle applied

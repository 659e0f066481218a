"""Hostile review of the write pool and the write queue (review-h56).

What must hold: a call interrupted (Ctrl-C) while it is being queued is either queued with its
future handed back, or not queued at all (never applied behind its caller's back, never left
without a drain); the pool runs at most ``max_workers`` tasks at once, plus one per thread that
waits for another process's fold, touches no private insides of the standard library, and lets
its extra threads go. Waits are bounded (``HANG``), never timed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from interrupts import Interrupted
from test_review_cancellation import HANG, Gate

import vactor_cloud as vc
from vactor_cloud import core as core_module
from vactor_cloud.batch import PendingCall
from vactor_cloud.call_queue import CallQueue
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


# -- 1. Ctrl-C between queueing a call and handing its future back ------------------------------
class _InterruptedQueue(CallQueue):
    """A queue whose next ``append`` (while ``armed``) queues the call, then raises
    :class:`Interrupted`: Ctrl-C handled just after the call was queued (CPython looks for
    signals when a C method such as ``deque.append`` returns)."""

    armed = False

    def append(self, call: Any) -> None:
        super().append(call)
        if type(self).armed:
            type(self).armed = False
            raise Interrupted


@pytest.fixture
def interrupted_queue(monkeypatch: pytest.MonkeyPatch) -> type[_InterruptedQueue]:
    monkeypatch.setattr(core_module, "CallQueue", _InterruptedQueue)
    _InterruptedQueue.armed = False
    return _InterruptedQueue


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_just_after_run_async_queued_its_call_leaves_it_unapplied(
    store_spec: StoreSpec, interrupted_queue: type[_InterruptedQueue]
) -> None:
    """Ctrl-C lands in ``run_async`` just after the call was queued: the caller gets the
    interrupt and no future, so the call must not be applied (nobody could see its outcome).
    Failed before: it stayed queued, and the next call's drain applied it."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    gate.add.run("before")
    interrupted_queue.armed = True
    with pytest.raises(Interrupted):
        gate.add.run_async("lost")
    assert gate.add.run_async("after").result(HANG) == 2
    assert gate.applied.run() == ["before", "after"]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_just_after_run_queued_its_call_leaves_it_unapplied(
    store_spec: StoreSpec, interrupted_queue: type[_InterruptedQueue]
) -> None:
    """The same for a blocking ``run()``: interrupted after queueing, before it began to drain
    or wait. Failed before: the call stayed queued, and the next ``run()`` applied it first."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    gate.add.run("before")
    interrupted_queue.armed = True
    with pytest.raises(Interrupted):
        gate.add.run("lost")
    assert gate.add.run("after") == 2
    assert gate.applied.run() == ["before", "after"]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_while_run_async_hands_its_drain_to_the_pool_leaves_the_actor_usable(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C lands while ``run_async`` hands the actor's drain to the pool (inside the pool's
    ``submit``, before the task is queued). The interrupted call is not applied; the next
    ``run_async``, waited for with a timeout (which runs nothing itself), is applied; and
    shutdown has no piece of work left to wait for. Failed before: the call stayed queued and
    the actor's "a drain is queued" flag stayed set with no drain: later calls were never run
    by the pool (the wait ran out), and shutdown waited its whole timeout for the lost task."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    gate.add.run("before")
    runtime = vc.get_runtime()
    real = runtime.executor.submit
    armed = [True]

    def interrupted_submit(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if armed and threading.current_thread() is threading.main_thread():
            armed.clear()
            raise Interrupted
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(runtime.executor, "submit", interrupted_submit)
    with pytest.raises(Interrupted):
        gate.add.run_async("lost")
    assert not armed
    try:
        assert gate.add.run_async("after").result(HANG / 4) == 2
        assert gate.applied.run() == ["before", "after"]
    finally:
        with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
            runtime.close(timeout=2.0)
    assert not [r for r in caplog.records if "still running" in r.getMessage()]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_as_run_takes_the_actor_leaves_the_actor_to_the_next_call(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` just after its thread took the idle actor (as its drainer),
    before it began to drain. The call is not applied, and the actor is given up: the next call
    applies at once. Failed before: the actor stayed held, for good, by a drain that never ran:
    the next call on this thread was refused as a call cycle (``ReentrantCallError``), and one on
    another thread waited until ``ActorBusyError``."""
    store_spec.init(settings=vc.Settings(storage="", deadline=5.0, commit_timeout=5.0))
    gate = Gate.get_or_create("g")
    gate.add.run("before")
    real = core_module.ActorCore._drain
    armed = [True]

    def interrupted_drain(self: Any, *args: Any, **kwargs: Any) -> Any:
        if armed and threading.current_thread() is threading.main_thread():
            armed.clear()
            raise Interrupted
        return real(self, *args, **kwargs)

    monkeypatch.setattr(core_module.ActorCore, "_drain", interrupted_drain)
    with pytest.raises(Interrupted):
        gate.add.run("lost")
    assert not armed
    assert gate.add.run("after") == 2
    assert gate.applied.run() == ["before", "after"]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_as_a_drain_claims_its_batch_fails_the_batch_and_gives_the_actor_up(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands while a drain claims its batch (a call claimed, the batch not yet handed to
    the commit). The interrupted call fails with the interrupt (its future is settled: not left
    running forever), is not applied, and the actor is given up. Failed before: the claimed calls
    were never settled and the actor stayed held, so the next call waited until ``ActorBusyError``."""
    store_spec.init(settings=vc.Settings(storage="", deadline=5.0, commit_timeout=5.0))
    gate = Gate.get_or_create("g")
    gate.add.run("before")
    real = PendingCall.claim
    armed = [True]
    claimed: list[PendingCall] = []

    def interrupted_claim(self: PendingCall) -> bool:
        won = real(self)
        if won and armed and threading.current_thread() is threading.main_thread():
            armed.clear()
            claimed.append(self)
            raise Interrupted
        return won

    monkeypatch.setattr(PendingCall, "claim", interrupted_claim)
    with pytest.raises(Interrupted):
        gate.add.run("lost")
    assert not armed
    (call,) = claimed
    assert call.future.done()
    assert isinstance(call.future.exception(0), Interrupted)
    assert gate.add.run("after") == 2
    assert gate.applied.run() == ["before", "after"]

"""``shutdown()`` in a process whose ``call_outcome`` queued the background fold (review h196).

A function's handler asks once (pending: the ask queued the fold of the post nobody folds),
then calls ``vc.shutdown()`` before it returns, and its sandbox is frozen or killed: no exit
hook runs. The shutdown cancelled the queued fold, as it fails the calls not started, so such a
function never folded the post: asked by one invocation after another, pending for good. The
shutdown now lets the queued fold run first, within its own budget, as the exit hook does.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
from interrupts import Interrupted, InterruptOnce
from test_combining import HANG, init_switchable
from test_review_h178_orphaned_post import give_up_at_the_first_lost_race, give_up_on_me_1
from test_review_h179_given_up_fold import (
    ask_once,
    asked_and_held,
    closing_in_the_background,
    folded_once_by_a_new_runtime,
)
from test_review_h181_one_shot_asks import ask_once_in_a_process
from test_review_h189_exit_budget import _store_with_a_post_nobody_folds

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


def test_a_process_that_asks_then_shuts_down_and_is_frozen_has_folded_the_post(shared: StoreSpec) -> None:
    """Asked, then ``shutdown()``, then ended without its exit hook: the post was folded by
    then (applied once), and the next process's ask has the outcome at once."""
    call_id = _store_with_a_post_nobody_folds(shared)
    assert ask_once_in_a_process(shared, call_id, end="shutdown") == "pending"
    shared.init()
    assert vc.get_actor("a").applied.run() == ["me/0", "other/1"], "the shutdown dropped the fold"
    vc.shutdown()
    assert ask_once_in_a_process(shared, call_id, end="shutdown") == "2"


def _given_up_on_one_pool_thread(spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """``me/1`` given up on (``give_up_on_me_1``) on a runtime with one pool thread: the log
    handle and the call's id."""
    init_switchable(spec, max_workers=1)
    give_up_at_the_first_lost_race(monkeypatch)
    return give_up_on_me_1()


@pytest.mark.usefixtures("runtime_off")
def test_a_close_that_cancels_the_queued_ask_fold_says_it_ended(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask's fold is queued behind the one pool thread (a task that waits); a close
    cancels it: the core says its fold ended (``asked_fold_idle``, what the exit hook's wait
    for queued folds waits on, from another thread), and ``asked_folds()`` names none."""
    log, call_id = _given_up_on_one_pool_thread(store_spec, monkeypatch)
    runtime = vc.get_runtime()
    gate = threading.Event()
    runtime.spawn(functools.partial(gate.wait, HANG))  # type: ignore[arg-type]  # (the one pool thread, held)
    try:
        ask_once(call_id)
        assert runtime.asked_folds() == ["a"]  # (queued, not started: the pool is busy)
        stopping = closing_in_the_background(runtime)
        assert runtime.core("a").asked_fold_idle.wait(HANG), "the cancelled fold still reads as queued"
        assert runtime.asked_folds() == []
    finally:
        gate.set()
    stopping.join(HANG)
    assert not stopping.is_alive(), "the close did not end"
    folded_once_by_a_new_runtime(store_spec, log, call_id)


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_while_shutdown_waits_for_the_ask_fold_reaches_the_caller_and_closes_it_to_new_work(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask's fold is held at its start; ``shutdown()`` waits for it, and a Ctrl-C lands
    there: the interrupt reaches the caller, the runtime refuses new work from then on (the
    fold, let go, requests nothing), and the next ``shutdown()`` finishes the close."""
    init_switchable(store_spec)
    log, call_id, held = asked_and_held(monkeypatch)
    runtime = vc.get_runtime()
    interrupt = InterruptOnce(_sync.interruptible_wait)
    monkeypatch.setattr(_sync, "interruptible_wait", interrupt)
    with pytest.raises(Interrupted):
        vc.shutdown()
    assert interrupt.fired
    assert runtime.closed, "interrupted, the runtime still took new work"
    assert not runtime.finished_closing
    held.let_go()
    vc.shutdown()
    assert runtime.finished_closing, "the next shutdown did not finish the close"
    folded_once_by_a_new_runtime(store_spec, log, call_id)


@pytest.mark.usefixtures("runtime_off")
def test_a_pool_task_that_shuts_down_with_the_ask_fold_queued_behind_it_has_the_fold_run(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one pool thread runs a task that calls ``shutdown()`` (as a method may); the ask's
    fold is queued behind it: the shutdown's wait lets the pool run the fold on another thread
    (else it waited its whole budget for a task queued behind itself, then cancelled it)."""
    log, call_id = _given_up_on_one_pool_thread(store_spec, monkeypatch)
    asked, stopped = threading.Event(), threading.Event()

    def stop() -> None:
        assert asked.wait(HANG), "the test never asked"
        vc.shutdown()
        stopped.set()

    vc.get_runtime().spawn(stop)
    ask_once(call_id)  # (its fold queued behind ``stop``)
    asked.set()
    assert stopped.wait(HANG), "the pool task's shutdown did not end"
    init_switchable(store_spec)
    assert log.applied.run() == ["me/0", "me/1"], "the shutdown cancelled the fold queued behind it"

"""``shutdown()`` in a process whose ``call_outcome`` queued the background fold (review h196).

A function's handler asks once (pending: the ask queued the fold of the post nobody folds),
then calls ``vc.shutdown()`` before it returns, and its sandbox is frozen or killed: no exit
hook runs. The shutdown cancelled the queued fold, as it fails the calls not started, so such a
function never folded the post: asked by one invocation after another, pending for good. The
shutdown now lets the queued fold run first, within its own budget, as the exit hook does.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading

import pytest
from interrupts import Interrupted, InterruptOnce
from test_call_edges import Acct, _hold
from test_combining import HANG, init_switchable
from test_review_h178_orphaned_post import ask_until_known, give_up_at_the_first_lost_race, give_up_on_me_1
from test_review_h179_given_up_fold import ask_once, asked_and_held, closing_in_the_background
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


@pytest.mark.usefixtures("runtime_off")
def test_a_close_that_cancels_the_queued_ask_fold_says_it_ended(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask's fold is queued behind the one pool thread (a method that waits); a close
    cancels it: the core says its fold ended (``asked_fold_idle``, what the exit hook's wait
    for queued folds waits on, from another thread), and ``asked_folds()`` names none."""
    init_switchable(store_spec, max_workers=1)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    Acct.get_or_create("busy")
    _, gate = _hold("busy")  # the one pool thread
    runtime = vc.get_runtime()
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
    init_switchable(store_spec)
    assert ask_until_known(call_id)[0] == 2  # (the next runtime's ask folds it)
    assert log.applied.run() == ["me/0", "me/1"]


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
    init_switchable(store_spec)
    assert ask_until_known(call_id)[0] == 2
    assert log.applied.run() == ["me/0", "me/1"]


#: set by the test once the ask queued its fold behind :class:`ShutsDown`'s ``stop``
_ASKED = threading.Event()


@vc.virtual_actor
class ShutsDown:
    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        """Once the test asked, shut the runtime down from this method (on the pool's thread)."""
        assert sys.modules[__name__]._ASKED.wait(HANG), "the test never asked"
        self.stops += 1
        vc.shutdown()


@pytest.mark.usefixtures("runtime_off")
def test_a_method_that_shuts_down_with_the_ask_fold_queued_behind_it_has_the_fold_run(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pool thread runs a method that calls ``shutdown()``; the ask's fold is queued
    behind it: the shutdown's wait lets the pool run the fold on another thread (else it waited
    its whole budget for a task queued behind itself, then cancelled it)."""
    init_switchable(store_spec, max_workers=1)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    monkeypatch.setattr(sys.modules[__name__], "_ASKED", threading.Event())
    stopped = ShutsDown.get_or_create("stopper").stop.run_async()
    ask_once(call_id)
    _ASKED.set()
    concurrent.futures.wait([stopped], HANG)
    assert stopped.done(), "the method's shutdown did not end"
    init_switchable(store_spec)
    assert log.applied.run() == ["me/0", "me/1"], "the shutdown cancelled the fold queued behind it"

"""A ``call_outcome`` ask while this process holds the actor (review h201).

The ask answers pending for another process's post (its poster gone), and queues no fold
while this process holds the actor: a drain of its own calls, a round of serving, or the
ask's fold task. An ordinary drain commits with one ``PUT`` and does not list the inbox, so
the post stayed unfolded once the drain gave the actor up, and the exit hook
(``Runtime.finish_queued_calls``) waited for nothing. The ask is remembered, and the fold
queued when the actor is given up; the exit hook waits for it. A round of serving whose
listing began after the ask settles it: the exit hook does not wait for serving to end.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from test_combining import HANG, foreign_box, init_switchable, post_adds, wait_for
from test_delete_actor import HeldStepPut
from test_review_h179_given_up_fold import HeldFoldTask
from test_review_h198_ask_fold_window import _exits_once_the_post_is_folded

import vactor_cloud as vc
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import CallPendingError
from vactor_cloud.testing.lanes import StoreSpec

#: This process's own threads and the order of their steps: memory and local suffice.
pytestmark = [pytest.mark.vactor_lanes("memory", "local"), pytest.mark.usefixtures("runtime_off")]


def _their_post_and_a_held_drain(store_spec: StoreSpec) -> tuple[OrderLog, HeldStepPut, str]:
    """Actor ``a`` at ``me/0``; another process's post ``f/0`` (its poster gone) in the inbox.
    The log, the store (its next step put held once armed), and the post's call id."""
    init_switchable(store_spec)
    runtime = vc.get_runtime()
    held = HeldStepPut(runtime.store)
    runtime.store = held  # (before any core exists: the actor's log uses it)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    return log, held, theirs


def _drain_me_1_held(log: OrderLog, held: HeldStepPut) -> object:
    """``me/1`` drained by a pool thread, its step put held (uncontended: no listing)."""
    held.hold()
    future = log.add.run_async("me/1")
    assert held.held.wait(HANG), "the drain never reached its step put"
    return future


def test_an_ask_while_this_process_drains_a_call_of_its_own_is_folded_before_the_exit(
    store_spec: StoreSpec,
) -> None:
    log, held, theirs = _their_post_and_a_held_drain(store_spec)
    future = _drain_me_1_held(log, held)
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    assert vc.get_runtime().asked_folds() == ["a"], "the ask said pending and the exit hook waits for nothing"
    held.release.set()
    assert future.result(HANG) == 2  # type: ignore[attr-defined]
    _exits_once_the_post_is_folded(log)
    assert vc.get_runtime().asked_folds() == []


def test_a_fold_task_that_finds_a_drain_holding_the_actor_is_queued_again_when_it_ends(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask queued its task; a drain of ours took the actor before it started: the task
    leaves the post to the drain, which does not list the inbox."""
    log, held, theirs = _their_post_and_a_held_drain(store_spec)
    task = HeldFoldTask(monkeypatch)
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    assert task.started.wait(HANG), "the ask queued no fold"
    future = _drain_me_1_held(log, held)
    task.let_go()  # it finds the actor held, and ends
    assert vc.get_runtime().asked_folds() == ["a"], "the task's end said idle with the post left"
    held.release.set()
    assert future.result(HANG) == 2  # type: ignore[attr-defined]
    _exits_once_the_post_is_folded(log)


def test_an_ask_left_to_a_drain_that_ends_once_another_process_folds_is_not_waited_for(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drain gives the actor up once another process is known to fold (its lease read
    lately): no fold is queued, and the exit hook waits for none (it waited out its budget)."""
    log, held, theirs = _their_post_and_a_held_drain(store_spec)
    future = _drain_me_1_held(log, held)
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    assert vc.get_runtime().asked_folds() == ["a"]
    monkeypatch.setattr(ActorCore, "_other_folds", lambda core: True)
    held.release.set()
    assert future.result(HANG) == 2  # type: ignore[attr-defined]
    assert wait_for(lambda: vc.get_runtime().asked_folds() == []), "the exit hook waits for no fold"


class PausedServingRound:
    """Once armed (``arm``), the next round of serving pauses before its listing
    (``_gather_posts``) until ``resumed``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.paused = threading.Event()
        self.resumed = threading.Event()
        gather = ActorCore._gather_posts

        def paused(core: ActorCore, wake: Any = None) -> None:
            if wake is not None and self.armed:
                self.armed = False
                self.paused.set()
                assert self.resumed.wait(HANG), "the test never resumed the round"
                # (Taken: a round armed later pauses until the test resumes it in turn. Left set,
                # the next round paused and went on at once: it listed and folded while the test
                # looked at what the round before had left.)
                self.resumed.clear()
            gather(core, wake)

        monkeypatch.setattr(ActorCore, "_gather_posts", paused)

    def arm(self) -> None:
        self.paused.clear()
        self.resumed.clear()
        self.armed = True


def _serving_paused_before_a_listing(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process holds the lease of ``a`` (``me/0``, then ``me/1`` lost its race and folded)
    and serves it for longer than the test (``combine_window``); a round paused before its
    listing. The paused round's control, and the log."""
    init_switchable(store_spec, combine_window=3600.0, lease_seconds=600.0)
    serving = PausedServingRound(monkeypatch)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # loses its race: takes the lease and folds; its rounds of serving follow
    serving.arm()
    assert serving.paused.wait(HANG), "this process does not serve the actor"
    return serving, log


def _asked_while_held(theirs: str) -> None:
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    assert vc.get_runtime().asked_folds() == ["a"], "the ask said pending and the exit hook waits for nothing"


def test_an_ask_while_this_process_serves_is_settled_by_the_fold_of_the_next_rounds_listing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's post lands and is asked of while a round waits before its listing:
    the exit hook waits for it until that round folded it; not for serving to end."""
    serving, log = _serving_paused_before_a_listing(store_spec, monkeypatch)
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    _asked_while_held(theirs)
    serving.arm()  # (the round after: paused before it lists)
    serving.resumed.set()
    assert serving.paused.wait(HANG), "serving ended"
    runtime = vc.get_runtime()
    assert runtime.asked_folds() == [], "the round's fold left the ask waiting"
    assert runtime.core("a")._held_until != -math.inf  # (serving goes on)
    serving.resumed.set()
    assert log.applied.run() == ["me/0", "me/1", "f/0"]


def test_an_ask_while_this_process_serves_is_settled_by_a_later_listing_that_finds_nothing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked while a round waits before its listing, the post is folded by a call of ours
    queued meanwhile (the lease holder's commit folds the inbox); the listing of the round
    after it finds nothing, and the ask is settled."""
    serving, log = _serving_paused_before_a_listing(store_spec, monkeypatch)
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    _asked_while_held(theirs)
    future = log.add.run_async("me/2")  # (the paused round gives way to it: no listing)
    serving.resumed.set()
    assert future.result(HANG) == 4
    assert log.applied.run() == ["me/0", "me/1", "f/0", "me/2"]
    runtime = vc.get_runtime()
    assert wait_for(lambda: runtime.asked_folds() == []), "no listing settled the ask"
    assert runtime.core("a")._held_until != -math.inf  # (serving goes on)

"""A second ``call_outcome`` ask while the fold the first one queued ends (review h198).

The ask's fold (``ActorCore._fold_given_up_posts``) folds, lists the inbox once more
(``_release_unless_posts_wait``), gives the lease up when nothing waits, then gives the actor
up (``_release``) and says it ended (``asked_fold_idle``, what the exit hook's
``Runtime.finish_queued_calls`` waits for). Another process's post lands after that second
listing (its poster gave up, as a one-shot process does), and this process asks of its call:

1. after the task gave the actor up: the ask queues the next fold, and the first task's end
   does not say "idle" while that one is queued (else the exit hook did not wait for it, and a
   one-shot process exited with the post unfolded). No test failed with the task setting
   ``asked_fold_idle`` whatever another ask queued meanwhile.
2. before the task gave the actor up: the ask queues nothing (a task holds the actor); it is
   remembered, and the task queues the next fold as it gives the actor up (else it ended
   without looking at the inbox again: pending, with no fold queued, and the exit hook waited
   for nothing; ``tests/test_review_h201_asked_while_held.py`` has the drain's and serving's
   cases).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from test_combining import HANG, foreign_box, init_switchable, pending_posts, post_adds, wait_for_no_posts
from test_review_h178_orphaned_post import give_up_at_the_first_lost_race, give_up_on_me_1
from test_review_h179_given_up_fold import ask_once

import vactor_cloud as vc
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import CallPendingError
from vactor_cloud.testing.lanes import StoreSpec

#: This process's own threads and the order of their steps: memory and local suffice.
pytestmark = [pytest.mark.vactor_lanes("memory", "local"), pytest.mark.usefixtures("runtime_off")]


class PausedFoldTask:
    """The first ``_fold_given_up_posts`` task pauses once at ``where`` ("released": just after
    it gave the actor up, ``_release``; "listed": just after its last listing and the lease's
    give-up, ``_release_unless_posts_wait``) until ``resume``; a later task waits at its start
    until ``let_next_go``. ``ended``: how many tasks ran to their end."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
        self.paused = threading.Event()
        self.resumed = threading.Event()
        self.next_started = threading.Event()
        self.next_gate = threading.Event()
        self.ended: list[int] = []
        self._first: list[int] = []
        task = ActorCore._fold_given_up_posts
        release = ActorCore._release
        last_listing = ActorCore._release_unless_posts_wait

        def counted_task(core: ActorCore) -> None:
            if self._first:
                self.next_started.set()
                assert self.next_gate.wait(HANG), "the test never let the next task go"
            else:
                self._first.append(threading.get_ident())
            try:
                task(core)
            finally:
                self.ended.append(threading.get_ident())

        def pause_here() -> None:
            if self._first == [threading.get_ident()] and not self.paused.is_set():
                self.paused.set()
                assert self.resumed.wait(HANG), "the test never resumed the task"

        def paused_release(core: ActorCore, **kw: Any) -> bool:
            left = release(core, **kw)
            if where == "released":
                pause_here()
            return left

        def paused_last_listing(core: ActorCore) -> None:
            last_listing(core)
            if where == "listed":
                pause_here()

        monkeypatch.setattr(ActorCore, "_fold_given_up_posts", counted_task)
        monkeypatch.setattr(ActorCore, "_release", paused_release)
        monkeypatch.setattr(ActorCore, "_release_unless_posts_wait", paused_last_listing)

    def resume(self) -> None:
        self.resumed.set()
        deadline = time.monotonic() + HANG
        while not self.ended and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ended, "the first task did not end"


def _their_post_lands_in_the_window(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, where: str
) -> Any:
    """``me/1`` given up on; its ask's fold task folds it and pauses at ``where``; another
    process's post (``f/0``, its poster gone) lands then, and this process asks of its call:
    pending. The paused task's hold, and "a"'s log."""
    init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    task = PausedFoldTask(monkeypatch, where)
    ask_once(call_id)
    assert task.paused.wait(HANG), "the ask's fold task did not get to the window"
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    assert len(pending_posts("a")) == 1
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    return task, log


def _exits_once_the_post_is_folded(log: Any) -> None:
    """As the exit hook does: wait for the queued folds (at most HANG), then the post is
    folded: nobody asks again."""
    vc.get_runtime().finish_queued_calls(time.monotonic() + HANG)
    assert log.applied.run() == ["me/0", "me/1", "f/0"]
    assert wait_for_no_posts("a") == []


def test_an_ask_once_the_fold_task_gave_the_actor_up_is_waited_for_by_the_exit_hook(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, log = _their_post_lands_in_the_window(store_spec, monkeypatch, "released")
    assert task.next_started.wait(HANG), "the second ask queued no fold"
    core = vc.get_runtime().core("a")
    task.resume()  # the first task ends; the second is queued (held at its start)
    assert not core.asked_fold_idle.is_set(), "the first task's end said idle with the next one queued"
    assert vc.get_runtime().asked_folds() == ["a"]
    task.next_gate.set()
    _exits_once_the_post_is_folded(log)
    assert core.asked_fold_idle.is_set()


def test_an_ask_after_the_fold_tasks_last_listing_has_its_post_folded_before_the_exit(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, log = _their_post_lands_in_the_window(store_spec, monkeypatch, "listed")
    task.resume()
    task.next_gate.set()  # (a task the ask queued runs at once)
    _exits_once_the_post_is_folded(log)

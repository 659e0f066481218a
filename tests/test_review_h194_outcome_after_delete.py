"""``call_outcome`` edges left by h188, h191 and h193 (review h194).

1. A post that lands after its actor's delete, asked of by a process that did not post it
   (procedure B): it is still applied, by a fold on the tombstone (which fails it with
   ``ActorDeletedError``) or by an actor made again under the id; so it is pending, and the
   ask queues the background fold (on a tombstone too) that resolves it to
   ``ActorDeletedError``.
2. The walk since the first (procedure B, step 4) passing over the steps of an actor made
   since: a stale post the first actor's cursor passed is not found (it answered "applied,
   outcome gone"), one the new actor may have applied is not; and that walk cut short by
   ``scan``: never "not found" for an applied call still listed.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections.abc import Callable

import pytest
from actors import OrderLog
from quiet_runtime import HANG
from test_combining import foreign_box, init_switchable
from test_posting import outcome_once_folded
from test_review_h183_outcome_not_found import _a_new_process
from test_review_h185_outcome_edges import _folded_by_another_process

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import CallNotFoundError, CallPendingError, CommitOutcomeUnknownError
from vactor_cloud.holding import Holder
from vactor_cloud.log import StepRecord
from vactor_cloud.outcome_elsewhere import InboxRead
from vactor_cloud.poster import Poster
from vactor_cloud.posting import Post, PostBox, PostedCall
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


def _add(token: str) -> tuple[PostedCall, ...]:
    return (PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex),)


def _post_add(actor_id: str, token: str) -> str:
    """Another process posts ``add(token)`` to ``actor_id``; the call's id."""
    calls = _add(token)
    box = foreign_box(actor_id)
    _sync.sync(box.send(box.prepare(calls)))
    return calls[0].call_id


def _at_the_inbox_listing(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> threading.Event:
    """``change`` runs when the ask (procedure B) of "a" is about to list its inbox, between its
    walk of the steps and its LIST, on the ask's own thread; the event says it ran.

    Hooked on the ask itself, not on the store's first LIST of the inbox: that LIST was at
    times a background fold's (the one ``_a_stale_post_pair``'s ask queued lists the inbox
    once more after its commit, before it gives the actor up), so the change ran while that
    fold held "a": its writer calls waited for the holder, the holder for its LIST, until
    ``Settings.deadline`` (30 s), and the ask, not held, answered meanwhile with "a" deleted
    and not made again yet (a CI run: the read after raised ``ActorDeletedError``)."""
    posts_naming = Poster._posts_naming
    ran = threading.Event()

    def change_first(core: Poster, call_id: str, walked: StepRecord) -> InboxRead:
        if core.actor_id == "a" and not ran.is_set():
            ran.set()
            change()
        return posts_naming(core, call_id, walked)

    monkeypatch.setattr(Poster, "_posts_naming", change_first)
    return ran


def _a_stale_post_pair() -> tuple[PostBox, Post, str]:
    """Another process's two posts to "a": the later one (seq 1) is folded (the cursor passes
    seq 0), the earlier one (seq 0) not written yet: the box, that post, its call id."""
    box = foreign_box("a")
    late, early = box.prepare(_add("late")), box.prepare(_add("early"))  # seqs 0 and 1
    _sync.sync(box.send(early))
    assert outcome_once_folded(vc.ActorHandle("a"), early.calls[0].call_id) == 2
    return box, late, late.calls[0].call_id


# -- 1. a post landing after the delete ---------------------------------------------------------
def test_a_post_landing_after_the_delete_is_pending_then_failed_by_the_fold_the_ask_queues(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Actor "a" is deleted; then another process's post to it lands (its poster read "a" before the
    delete) and its caller gives up. A new process asks: pending (a fold on the tombstone, or
    an actor made again, still applies it), and the ask queues the background fold, which
    folds it on the tombstone: asked again, ``ActorDeletedError`` (the call's outcome), not
    pending until the post expires."""
    init_switchable(store_spec)
    OrderLog.get_or_create("a").add.run("me/0")
    assert vc.delete_actor("a")
    call_id = _post_add("a", "late/1")
    _a_new_process(store_spec, monkeypatch)
    with pytest.raises(CallPendingError):
        vc.ActorHandle("a").call_outcome(call_id)
    core = vc.get_runtime().core("a")
    assert core.asked_fold_idle.wait(HANG), "no fold was queued (or it never ended)"
    with pytest.raises(vc.ActorDeletedError):
        vc.ActorHandle("a").call_outcome(call_id)


# -- 2. the walk since the first: an actor made since, or cut short by ``scan`` --------------------
@pytest.mark.parametrize("deleted", ["before-the-ask", "at-the-listing"])
def test_a_stale_post_is_not_found_though_an_actor_was_made_since_the_first_walk(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, deleted: str
) -> None:
    """A post its sender's later post passed (stale, never applied: review h187) lands while
    the ask is between its walk and its LIST, and "a" is deleted and made again then (the new
    actor commits a step). The tombstone's cursor passed the post, so no actor made since
    applies it: not found (h193's walk, passing the new actor's steps, answered "applied,
    outcome gone", and a caller told so does not retry a call never applied). Deleted before
    the ask: the first walk's newest step is the tombstone the new actor's creation is on."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    _a_new_process(store_spec, monkeypatch)
    box, late, call_id = _a_stale_post_pair()
    if deleted == "before-the-ask":
        assert vc.delete_actor("a")

    def delete_make_again_and_land() -> None:
        if deleted == "at-the-listing":
            assert vc.delete_actor("a")
        OrderLog.get_or_create("a").add.run("new/1")
        _sync.sync(box.send(late))

    ran = _at_the_inbox_listing(monkeypatch, delete_make_again_and_land)
    with pytest.raises(CallNotFoundError) as not_found:
        vc.ActorHandle("a").call_outcome(call_id)
    assert ran.is_set(), "the ask never listed the inbox"
    assert not not_found.value.never
    assert vc.ActorHandle("a").applied.run() == ["new/1"]  # (and the new actor never applies it)


def test_the_change_runs_at_the_asks_listing_not_at_a_fold_still_listing_the_inbox(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(``_at_the_inbox_listing`` itself) The fold ``_a_stale_post_pair``'s ask queued lists the
    inbox once more after its commit (``_release_unless_posts_wait``), held here until the hook
    is set, and then runs beside the ask: the change runs at the ask's listing. (At the store's
    first LIST of the inbox, it ran at that fold's, which held "a": 30 s, and the ask answered
    before "a" was made again.)"""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    _a_new_process(store_spec, monkeypatch)
    hooked, listed = threading.Event(), threading.Event()
    release = Holder._release_unless_posts_wait

    def once_hooked(core: Holder) -> None:
        hooked.wait(HANG)
        try:
            release(core)
        finally:
            listed.set()

    monkeypatch.setattr(Holder, "_release_unless_posts_wait", once_hooked)
    box, late, call_id = _a_stale_post_pair()

    def delete_make_again_and_land() -> None:
        assert vc.delete_actor("a")
        OrderLog.get_or_create("a").add.run("new/1")
        _sync.sync(box.send(late))

    ran = _at_the_inbox_listing(monkeypatch, delete_make_again_and_land)
    hooked.set()
    with pytest.raises(CallNotFoundError):
        vc.ActorHandle("a").call_outcome(call_id)
    assert ran.is_set(), "the ask never listed the inbox"
    assert listed.wait(HANG), "the fold never listed the inbox after its commit"
    assert vc.ActorHandle("a").applied.run() == ["new/1"]


@pytest.mark.parametrize("deleted", ["before-the-ask", "at-the-listing"])
def test_a_call_the_actor_made_since_the_first_walk_applied_is_never_not_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, deleted: str
) -> None:
    """Between the ask's walk and its LIST, "a" is deleted and made again, and another
    process's call is posted to the new actor and applied (its post still listed). The walk
    since passes the new actor's steps over unread: the answer is "applied, outcome gone",
    not "not found", on which its caller would apply it twice (the tombstone's cursor did not
    pass that post)."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    _a_new_process(store_spec, monkeypatch)
    calls = _add("new/1")
    if deleted == "before-the-ask":
        assert vc.delete_actor("a")

    def delete_make_again_and_apply() -> None:
        if deleted == "at-the-listing":
            assert vc.delete_actor("a")
        OrderLog.get_or_create("a")
        _folded_by_another_process("a", calls, {calls[0].call_id: 1})

    ran = _at_the_inbox_listing(monkeypatch, delete_make_again_and_apply)
    with pytest.raises(CommitOutcomeUnknownError) as applied:
        vc.ActorHandle("a").call_outcome(calls[0].call_id)
    assert ran.is_set(), "the ask never listed the inbox"
    assert not isinstance(applied.value, CallPendingError)


@pytest.mark.parametrize("call", ["applied", "stale"])
def test_the_walk_since_cut_short_by_scan_never_says_not_found_for_an_applied_call(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """``scan=2``; between the ask's walk and its LIST, another process's call is applied
    (its post still listed) or a stale post of its lands, and three more steps are committed:
    the walk since reads the newest two, not the step that applied the call (nor, stale, the
    steps that show the cursor passing it without it). Either way the answer is "applied,
    outcome gone" (``CommitOutcomeUnknownError``): for the applied call never "not found"; for
    the stale one the safe answer, as the steps that tell were not read. (An applied post
    deleted by then is "not found, not a sure never": applied, if at all, in a step older than
    the newest ``scan``, answer 4's caveat, as an ask made afresh would say.)"""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    _a_new_process(store_spec, monkeypatch)
    if call == "stale":
        box, late, call_id = _a_stale_post_pair()
        # (and a process that did not queue that ask's fold asks. Reasoned, not reproduced: in
        # 2 of 3 whole checks on a slow host this ask answered "not found", as if that fold,
        # still listing the inbox as the stale post landed, had deleted it unread)
        _a_new_process(store_spec, monkeypatch)
    else:
        calls = _add("theirs")
        call_id = calls[0].call_id

    def land_and_commit_more() -> None:
        if call == "stale":
            _sync.sync(box.send(late))
        else:
            _folded_by_another_process("a", calls, {call_id: 1})
        for n in range(3):  # (folds that leave the posts listed, as a folder dead before its deletes)
            more = _add(f"more/{n}")
            _folded_by_another_process("a", more, {more[0].call_id: n})

    ran = _at_the_inbox_listing(monkeypatch, land_and_commit_more)
    with pytest.raises(CommitOutcomeUnknownError) as unknown:
        vc.get_runtime().core("a").call_outcome(call_id, scan=2).unwrap()
    assert ran.is_set(), "the ask never listed the inbox"
    assert not isinstance(unknown.value, CallPendingError)

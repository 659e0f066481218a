"""``call_outcome`` of a call this process did not post, the id deleted and made again between
the ask's walk of the steps and its LIST of the inbox (review h195).

1. The walk of the steps committed since the first (procedure B, step 4) cut short by
   ``scan``: never the newest actor's outcome (nor its tombstone's) for a keyed call's id,
   never pending, never "not found".
2. Two actors made since (made, deleted, made again): the outcome of the call made to the
   actor the first walk was about, not that of a later actor's call of the key.
3. The sender dropped from the cursor (a writer whose clock runs an hour ahead) and the steps
   that tell compacted: a listed post dated at or before the post floor is never pending (no
   fold applies it), and whether it was applied cannot be told.
4. A post landing after the delete, applied by the actor made since as its call: the walk
   since takes no outcome from that actor's steps, but one there under the call's id makes
   the answer "cannot be told", never "not found" (in 1 too).
"""

from __future__ import annotations

import time

import pytest
from actors import OrderLog
from store_helpers import raw_get, raw_put
from test_combining import Switchable, a_fold_of, foreign_box, init_switchable, pending_posts
from test_review_h183_outcome_not_found import _a_new_process
from test_review_h185_outcome_edges import _folded_by_another_process
from test_review_h193_outcome_second_walk import _keyed_add
from test_review_h194_outcome_after_delete import _add, _at_the_inbox_listing

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import raise_watermark
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallNotFoundError, CallPendingError, CommitOutcomeUnknownError
from vactor_cloud.post_cursor import SENDER_TTL
from vactor_cloud.posting import PostedCall, advance_cursor, cursor_of, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


def _applied_and_deleted(calls: tuple[PostedCall, ...], outcome: object) -> None:
    """Another process's fold applies ``calls`` (posted to "a") with ``outcome``, and its
    folder deletes the post."""
    before = set(pending_posts("a"))
    _folded_by_another_process("a", calls, {calls[0].call_id: outcome})
    for key in set(pending_posts("a")) - before:
        _sync.sync(vc.get_runtime().store.delete(key))


def _failed_by_a_delete(calls: tuple[PostedCall, ...]) -> None:
    """``calls`` posted to "a", then "a" deleted: its tombstone fails them."""
    box = foreign_box("a")
    _sync.sync(box.send(box.prepare(calls)))
    assert vc.delete_actor("a")


def _ours_pending(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> tuple[Switchable, str, str, bytes]:
    """Actor "a" at step 1, another process's keyed call (key "k") pending on it; asked of from
    here as a new process. The wrapped store, the call's id, its post's key and bytes."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    ours = _keyed_add("a", "k", "old/1")
    box = foreign_box("a")
    _sync.sync(box.send(box.prepare(ours)))
    (key,) = pending_posts("a")
    data = raw_get(key)
    store = _a_new_process(store_spec, monkeypatch)
    return store, ours[0].call_id, key, data


# -- 1. the walk since the first, cut short by ``scan``, across a re-creation ---------------------
@pytest.mark.parametrize("newest", ["applied-by-the-new-actor", "failed-by-its-delete"])
@pytest.mark.parametrize("post", ["still-listed", "deleted"])
@pytest.mark.parametrize("scan", [1, 4])
def test_the_walk_since_cut_short_across_a_re_creation_never_answers_for_the_new_actor(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, newest: str, post: str, scan: int
) -> None:
    """Our keyed call is pending on "a" (step 1) when a new process asks: its first walk finds
    no outcome. Before its LIST, "a" is deleted (step 2, failing our call), made again (step 3),
    three calls of the new actor are applied, and then the new actor's call of the key (the
    same id) is applied (step 7, "the new actor's"), or posted and failed by the new actor's
    delete (step 7, a tombstone of the new actor's). The walk since reads the newest ``scan``
    steps, not the tombstone of ours. Never the new actor's answer (nor its tombstone's), never
    pending: our post still listed (the old delete's clean-up not done), "applied, outcome
    gone"; deleted, "cannot be told", not "not found" (a step read holds an outcome under the
    id that may be this call's: its post may have landed after the delete, applied by the new
    actor)."""
    _, call_id, key, data = _ours_pending(store_spec, monkeypatch)

    def delete_and_make_again() -> None:
        assert vc.delete_actor("a")
        OrderLog.get_or_create("a")
        for n in range(3):
            _applied_and_deleted(_add(f"new/{n}"), n)
        theirs = _keyed_add("a", "k", "new/k")
        if newest == "applied-by-the-new-actor":
            _applied_and_deleted(theirs, "the new actor's")
        else:
            _failed_by_a_delete(theirs)
        if post == "still-listed":
            raw_put(key, data)

    ran = _at_the_inbox_listing(monkeypatch, delete_and_make_again)
    core = vc.get_runtime().core("a")
    answer: object = None
    with pytest.raises((CommitOutcomeUnknownError, CallNotFoundError, vc.ActorDeletedError)) as raised:
        answer = core.call_outcome(call_id, scan=scan).unwrap()
    assert ran.is_set(), "the ask never listed the inbox"
    assert answer is None, f"answered {answer!r}: the new actor's outcome"
    assert core.env.run(core.revalidate()).step == 7
    error = raised.value
    assert not isinstance(error, vc.ActorDeletedError), f"the new actor's tombstone's: {error!r}"
    assert not isinstance(error, CallPendingError)
    assert isinstance(error, CommitOutcomeUnknownError), repr(error)


# -- 2. two actors made since the first walk ------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "between"),
    [
        ("applied-before-the-delete", "applied-by-it"),
        ("applied-before-the-delete", "failed-by-its-delete"),
        ("failed-by-the-delete", "applied-by-it"),
    ],
)
def test_two_actors_made_since_the_first_walk_never_answer_for_ours(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ours: str, between: str
) -> None:
    """Our keyed call is pending on "a" when a new process asks. Before its LIST: ours is
    applied ("ours") and "a" deleted, or "a" is deleted with ours pending (its tombstone fails
    it); an actor is made, whose call of the key is applied ("between's") or failed by its
    delete; it is deleted, an actor made again, and that one's call of the key applied
    ("the newest's"). The answer is ours (its outcome, or ``ActorDeletedError`` from the
    first tombstone), not the later actors'. (Ours failed and the one between's failed: h193's
    test, ``made-deleted-made-again``.)"""
    _, call_id, _, _ = _ours_pending(store_spec, monkeypatch)
    tombstones: list[int] = []

    def delete_make_delete_make() -> None:
        if ours == "applied-before-the-delete":
            _applied_and_deleted(_keyed_add("a", "k", "old/1"), "ours")
        assert vc.delete_actor("a")
        core = vc.get_runtime().core("a")
        tombstones.append(core.env.run(core.revalidate()).step)
        OrderLog.get_or_create("a")
        if between == "applied-by-it":
            _applied_and_deleted(_keyed_add("a", "k", "between/k"), "between's")
            assert vc.delete_actor("a")
        else:
            _failed_by_a_delete(_keyed_add("a", "k", "between/k"))
        OrderLog.get_or_create("a")
        _applied_and_deleted(_keyed_add("a", "k", "newest/k"), "the newest's")

    ran = _at_the_inbox_listing(monkeypatch, delete_make_delete_make)
    handle = vc.get_actor("a")
    if ours == "applied-before-the-delete":
        assert handle.call_outcome(call_id) == "ours"
    else:
        with pytest.raises(vc.ActorDeletedError) as raised:
            handle.call_outcome(call_id)
        assert raised.value.step == tombstones[0]
    assert ran.is_set(), "the ask never listed the inbox"


# -- 3. the sender dropped from the cursor, the steps that tell compacted -------------------------
def _folded_nothing_and_compacted(*, ahead: bool) -> None:
    """A fold of nothing on "a", by a writer whose clock runs an hour ahead (``ahead``: its
    step drops every sender from the cursor, raising the post floor past their posts) or
    right; then every step below it is compacted."""
    core = vc.get_runtime().core("a")
    top = core.env.run(core.revalidate())
    now = time.time() + (SENDER_TTL + 60.0 if ahead else 0.0)
    step = a_fold_of(top, [], b"", carried=b"", extra=advance_cursor(top.extra, [], now))
    assert bool(cursor_of(step.extra)) is not ahead
    _sync.sync(core.log.put_step(step))
    _sync.sync(raise_watermark(core.log, step.step))
    for below in range(step.step):
        _sync.sync(vc.get_runtime().store.delete(core.log.step_key(below)))


def _applied_leaving_the_post(key: str, outcome: object) -> None:
    """Another process's fold applies the post at ``key`` to "a" with ``outcome``; its folder
    dies before deleting the post."""
    core = vc.get_runtime().core("a")
    top = core.env.run(core.revalidate())
    (post,) = _sync.sync(foreign_box("a").read([key]))
    outcomes = encode_outcomes({c.call_id: Outcome(True, outcome) for c in post.calls})
    _sync.sync(core.log.put_step(a_fold_of(top, [post], outcomes)))


@pytest.mark.parametrize("sender", ["dropped", "kept"])
@pytest.mark.parametrize(
    ("ours", "made_again"),
    [("applied", True), ("applied", False), ("failed-by-the-delete", True)],
    ids=["applied-made-again", "applied-not-deleted", "failed-by-the-delete-made-again"],
)
def test_a_listed_post_whose_sender_left_the_cursor_is_never_pending(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ours: str, made_again: bool, sender: str
) -> None:
    """Our call is pending on "a" when a new process asks. Before its LIST, ours is applied
    (its folder dies before deleting the post) or failed by a delete of "a"; "a" is made
    again (``made_again``: deleted first, if ours was applied); a writer whose clock runs an
    hour ahead drops our sender from the cursor, and the steps below its step are
    compacted; our post is listed. No fold applies a post dated at or before the post floor
    (a fold deletes it unread): pending is wrong (ours applied, the next ask, the post gone,
    says "not found", and a caller retrying applies it twice); whether it was applied cannot
    be told. (``kept``: the writer's clock is right, the newest cursor applies the post:
    applied, its outcome compacted.)"""
    _, call_id, key, data = _ours_pending(store_spec, monkeypatch)

    def change() -> None:
        if ours == "applied":
            _applied_leaving_the_post(key, "ours")
        if made_again:
            assert vc.delete_actor("a")
            OrderLog.get_or_create("a")
        _folded_nothing_and_compacted(ahead=sender == "dropped")
        raw_put(key, data)  # (listed: its folder's, or the delete's, clean-up not done)

    ran = _at_the_inbox_listing(monkeypatch, change)
    told = "cannot be told" if sender == "dropped" else "was applied"
    with pytest.raises(CommitOutcomeUnknownError, match=told) as raised:
        vc.get_actor("a").call_outcome(call_id)
    assert ran.is_set(), "the ask never listed the inbox"
    assert not isinstance(raised.value, CallPendingError)
    if sender == "kept" and ours == "failed-by-the-delete":
        assert "or failed by a delete" in str(raised.value), str(raised.value)  # (never ran)
    assert pending_posts("a") == [key]


# -- 4. a post landing after the delete, applied by the actor made since --------------------------
def test_a_post_the_actor_made_since_applied_is_never_not_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process asks of another process's call to "a" (step 1) whose post has not landed
    (its write slow): the first walk finds nothing. Before the ask's LIST, "a" is deleted
    (step 2: no post to fail), the post lands, "a" is made again (step 3), the new actor's
    first fold applies it (step 4, as that actor's call) and deletes it, and the new actor
    commits step 5. The walk since takes no outcome from the new actor's steps (the answer
    is about the first actor), but it reads them: one holds an outcome under the call's id,
    so the call may have been applied, and "not found" would have its caller retry it and
    apply it twice: whether it was cannot be told."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    _a_new_process(store_spec, monkeypatch)
    late = _add("late/1")

    def delete_land_make_again_and_fold() -> None:
        assert vc.delete_actor("a")
        OrderLog.get_or_create("a")
        _applied_and_deleted(late, "applied by the new actor")
        _applied_and_deleted(_add("new/1"), 1)  # (the fold that applied it is not the newest step)

    ran = _at_the_inbox_listing(monkeypatch, delete_land_make_again_and_fold)
    answer: object = None
    with pytest.raises(CommitOutcomeUnknownError) as raised:
        answer = vc.get_actor("a").call_outcome(late[0].call_id)
    assert ran.is_set(), "the ask never listed the inbox"
    assert answer is None
    assert not isinstance(raised.value, CallPendingError)
    assert pending_posts("a") == []

"""``call_outcome`` at the edges of exactly-once (review h185).

1. The id deleted and made again: an answer about the actor the call was made to, never
   another actor's call that has the same id (a keyed call's id is derived from the actor id
   and the key), and an old actor's post still listed is never applied to the new actor.
2. Two processes post the same keyed call (one call id): applied once, every ask answers
   that one outcome, none says pending for good.
3. A json actor's "not found" says what fits an actor whose calls are never posted (not "ask
   again after the poster's deadline").
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import uuid
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from store_helpers import raw_get, raw_put
from test_combining import (
    a_fold_of,
    foreign_box,
    init_switchable,
    pending_posts,
    post_adds,
    wait_for_no_posts,
)
from test_posting import Tally, _commit_behind_its_back, _give_up_on_c, outcome_once_folded, spec
from test_review_h179_given_up_fold import JsonLog
from test_review_h180_outcome_elsewhere import _as_a_new_process
from test_review_h183_outcome_not_found import _a_new_process, _is_not_found, _three_foreign_posts
from test_stats import moved

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallPendingError, RetryableStorageError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.posting import PostBox, PostedCall, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


def _folded_by_another_process(
    actor_id: str, calls: tuple[PostedCall, ...], outcomes: dict[str, Any]
) -> None:
    """Another process posts ``calls`` to ``actor_id`` and its fold commits the next step,
    recording ``outcomes`` (by call id) for them."""
    box = foreign_box(actor_id)
    post = _sync.sync(box.send(box.prepare(calls)))
    core = vc.get_runtime().core(actor_id)
    newest = core.env.run(core.revalidate())
    recorded = encode_outcomes({call_id: Outcome(True, value) for call_id, value in outcomes.items()})
    _sync.sync(core.log.put_step(a_fold_of(newest, [post], recorded)))


# -- 1. the id deleted and made again -----------------------------------------------------------
@pytest.mark.usefixtures(spec.__name__)
@pytest.mark.parametrize("theirs", ["applied-by-the-new-actor", "failed-by-its-delete"])
@pytest.mark.parametrize("ours", ["pending-at-the-delete", "applied-before-the-delete"])
def test_our_keyed_call_to_a_deleted_actor_is_not_answered_by_the_next_actors_call_of_its_key(
    store_spec: StoreSpec, ours: str, theirs: str
) -> None:
    """Our keyed call is given up on; its post is still pending when the actor is deleted
    (the tombstone fails the call: ``ActorDeletedError``), or was applied before. The id is
    made again, and another process's call with the same key (the same call id) is applied
    by the new actor, or failed by its delete (a second tombstone records it). Our
    ``call_outcome`` is our call's, not the later call's."""
    handle, call_id = _give_up_on_c(store_spec, key="k")
    assert call_id == uuid.uuid5(uuid.NAMESPACE_URL, "slow/k").hex
    if ours == "applied-before-the-delete":
        assert outcome_once_folded(handle, call_id) == ["a", "b", "c"]
    assert vc.delete_actor("slow")
    core = vc.get_runtime().core("slow")
    first_tombstone = core.env.run(core.revalidate()).step
    Tally.get_or_create("slow")
    later = (PostedCall("add", pickle.dumps((("z",), {})), call_id, "k"),)
    if theirs == "applied-by-the-new-actor":
        _folded_by_another_process("slow", later, {call_id: ["z"]})
    else:
        box = foreign_box("slow")
        _sync.sync(box.send(box.prepare(later)))
        assert vc.delete_actor("slow")
    if ours == "applied-before-the-delete":
        assert handle.call_outcome(call_id) == ["a", "b", "c"]
    else:
        with pytest.raises(vc.ActorDeletedError) as raised:
            handle.call_outcome(call_id)
        assert raised.value.step == first_tombstone


@pytest.mark.parametrize("carried", ["read", "by-its-name"])
def test_an_old_actors_post_still_listed_is_not_the_new_actors_call_and_never_applied_to_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, carried: str
) -> None:
    """Another process's post is pending when the actor is deleted (the tombstone fails its
    call), and still listed after the actor is made again (its delete not done yet). A new
    process asking of its call on the new actor hears "not found" (not a sure never), not
    "applied": the new actor never had that call. A fold of the new actor then deletes the
    post unapplied. (``by-its-name``: its calls sealed in its name, known from the listing
    with no read, review h188.)"""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    box = foreign_box("a")
    if carried == "by-its-name":
        box.names = True
        assert _sync.sync(box.mail.load(create=True)) is not None
    (call_id,) = post_adds(box, ["other/1"])
    (key,) = pending_posts("a")
    if carried == "by-its-name":
        assert _sync.sync(box.keys()) == [key] and box.cached(key) is not None
    data = raw_get(key)
    assert vc.delete_actor("a")
    if not pending_posts("a"):
        raw_put(key, data)  # (the deleter's delete of the post not done yet)
    handle = OrderLog.get_or_create("a")
    _a_new_process(store_spec, monkeypatch)
    with pytest.raises(vc.CallNotFoundError) as raised:
        handle.call_outcome(call_id)
    assert not raised.value.never
    commit_behind_its_back("a")  # our next call loses a race, posts and folds
    assert handle.add.run("me/1") == 1
    assert wait_for_no_posts("a") == []
    assert handle.applied.run() == ["me/1"]


# -- 2. one keyed call posted by two processes --------------------------------------------------
@pytest.mark.usefixtures(spec.__name__)
@pytest.mark.parametrize("theirs", ["pending-beside-ours", "posted-once-ours-applied"])
def test_a_keyed_call_two_processes_posted_applies_once_and_every_ask_gets_its_outcome(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, theirs: str
) -> None:
    """Our keyed call is given up on (its post pending); another process posts a call with the
    same key (the same call id, other arguments) beside it, or once ours was applied. Our ask
    and a new process's ask both come to the one outcome (pending until a fold, not for
    good); the key's call is applied once (the other post's answer is the recorded one)."""
    handle, call_id = _give_up_on_c(store_spec, key="k")
    other = (PostedCall("add", pickle.dumps((("c2",), {})), call_id, "k"),)
    box = foreign_box("slow")
    if theirs == "pending-beside-ours":
        _sync.sync(box.send(box.prepare(other)))
    # (Beside ours, either post may be folded first: the key's first call is the one applied.)
    outcome = outcome_once_folded(handle, call_id)
    assert outcome in (["a", "b", "c"], ["a", "b", "c2"])
    if theirs == "posted-once-ours-applied":
        assert outcome == ["a", "b", "c"]
        _sync.sync(box.send(box.prepare(other)))
    _as_a_new_process(monkeypatch)
    assert outcome_once_folded(handle, call_id) == outcome  # (from the steps: no fold)
    vc.shutdown()  # a runtime that loses a race folds what waits (theirs, if left)
    store_spec.init(settings=vc.Settings(storage=store_spec.url, fresh_window=300.0, combine_after=1))
    handle = vc.get_actor("slow")
    handle.get.run()
    _commit_behind_its_back(store_spec, "slow", "d")
    assert handle.add.run("e") == [*outcome, "d", "e"]  # the key's call applied once
    assert wait_for_no_posts("slow") == []
    assert outcome_once_folded(handle, call_id) == outcome  # (asked once all is folded)


# -- 3. a json actor's "not found" --------------------------------------------------------------
def test_a_json_actors_not_found_does_not_say_ask_again(store_spec: StoreSpec) -> None:
    """A json actor never posts a call: its "not found" is final. The message says so and what
    to do instead (a call's own outcome, or a retry with its key), not to ask again once a
    poster's deadline passed (no post of it can land); it survives pickling."""
    store_spec.init()
    JsonLog.get_or_create("j").add.run("x")
    with pytest.raises(vc.CallNotFoundError) as raised:
        vc.get_actor("j").call_outcome(uuid.uuid4().hex)
    _is_not_found(raised.value, never=False)
    message = str(raised.value)
    assert "never posted" in message and "idempotency key" in message
    assert "ask again" not in message and "Settings.deadline" not in message


# -- 4. the counters ----------------------------------------------------------------------------
def an_ask_whose_inbox_listings_fail(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, *, times: int | None
) -> tuple[vc.ActorHandle[OrderLog], list[str]]:
    """Actor "a" with one call applied, loaded by a new process whose LISTs of a's inbox fail
    (transiently) from now on: the first ``times`` of them, or (``None``) every one. The
    handle and the keys of the listings failed so far."""
    init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    store = _a_new_process(store_spec, monkeypatch)
    handle.applied.run()  # (the actor loaded: the failures are the ask's)
    failed: list[str] = []

    def fail_inbox_listings(operation: str, key: str) -> Exception | None:
        if operation != "list" or not key.startswith(posts_prefix("a")):
            return None
        if times is not None and len(failed) >= times:
            return None
        failed.append(key)
        return RetryableStorageError("injected: the inbox listing failed", key)

    store.fail = fail_inbox_listings
    return handle, failed


def test_a_call_outcome_read_retried_counts_no_commit_retry(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask's LIST of the inbox fails once (transiently) and is tried again: the answer
    comes, and no commit attempt was retried (``commit_retries_transient`` stays)."""
    handle, failed = an_ask_whose_inbox_listings_fail(store_spec, monkeypatch, times=1)
    before = vc.stats()
    with pytest.raises(vc.CallNotFoundError):
        handle.call_outcome(uuid.uuid4().hex)
    assert failed, "the ask never listed the inbox"
    assert "commit_retries_transient" not in moved(before)


# -- 5. the rounds of reads, the inbox changing under them --------------------------------------
def _at_the_first_post_read(store: Any, change: Any) -> threading.Event:
    """Run ``change()`` (another process's work, off the IO loop) when the ask's rounds first
    read a post of "a"'s inbox (its LIST done), once; the event says it ran."""
    inner_around = store._around
    ran = threading.Event()

    async def change_first(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "get" and key.startswith(posts_prefix("a")) and not ran.is_set():
            ran.set()
            await asyncio.get_running_loop().run_in_executor(None, change)
        return await inner_around(operation, key, run, **kw)

    store._around = change_first
    return ran


def test_posts_folded_while_the_rounds_read_give_the_outcome_from_the_steps(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three posts listed, read one per round, the call in the third; at the first read,
    another process's fold applies all three (step 2) and deletes them: the rounds read none
    of them, and the walk of the steps committed since gives the call's outcome (not "not
    found", on which a caller would retry and apply it twice)."""
    handle, call_ids = _three_foreign_posts(store_spec, monkeypatch)
    store = vc.get_runtime().store
    log_ = vc.get_runtime().core("a").log

    def fold_all() -> None:
        box = PostBox(store.inner, "a", vc.get_runtime().settings.signing_key)
        posts = _sync.sync(box.read(_sync.sync(box.keys())))
        one = _sync.sync(log_.read_step(1))
        assert one is not None and len(posts) == 3
        recorded = encode_outcomes({c: Outcome(True, f"folded {c}") for c in call_ids})
        _sync.sync(log_.put_step(a_fold_of(one, posts, recorded)))
        _sync.sync(box.delete([p.key for p in posts]))

    ran = _at_the_first_post_read(store, fold_all)
    assert handle.call_outcome(call_ids[2]) == f"folded {call_ids[2]}"
    assert ran.is_set(), "the ask read no post"
    assert pending_posts("a") == []


def test_a_post_landing_while_the_rounds_read_is_not_found_then_pending_then_applied_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call's post lands after the ask's LIST, while its rounds read the three listed:
    "not found", not a sure never (a post may land late); asked again, pending (listed now),
    then its outcome; applied once."""
    handle, _ = _three_foreign_posts(store_spec, monkeypatch)
    call_id = uuid.uuid4().hex
    box = foreign_box("a")
    late = (PostedCall("add", pickle.dumps((("late/1",), {})), call_id),)
    ran = _at_the_first_post_read(vc.get_runtime().store, lambda: _sync.sync(box.send(box.prepare(late))))
    with pytest.raises(vc.CallNotFoundError) as raised:
        handle.call_outcome(call_id)
    assert ran.is_set() and not raised.value.never
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_id)
    assert outcome_once_folded(handle, call_id) == 5
    assert handle.applied.run() == ["me/0", "other/1", "other/2", "other/3", "late/1"]

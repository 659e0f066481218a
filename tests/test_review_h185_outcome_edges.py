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

import pickle
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
from test_review_h183_outcome_not_found import _a_new_process, _is_not_found
from test_stats import moved

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.posting import PostedCall, encode_outcomes
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
def test_our_keyed_call_failed_by_a_delete_is_not_answered_by_the_next_actors_call_of_its_key(
    store_spec: StoreSpec,
) -> None:
    """Our keyed call is given up on, its post pending; the actor is deleted (the tombstone
    fails the call: ``ActorDeletedError``) and made again, and another process's call with
    the same key (the same call id) is applied by the new actor. Our ``call_outcome`` is our
    call's: deleted, not the new actor's result."""
    handle, call_id = _give_up_on_c(store_spec, key="k")
    assert call_id == uuid.uuid5(uuid.NAMESPACE_URL, "slow/k").hex
    assert vc.delete_actor("slow")
    Tally.get_or_create("slow")
    theirs = PostedCall("add", pickle.dumps((("z",), {})), call_id, "k")
    _folded_by_another_process("slow", (theirs,), {call_id: ["z"]})
    with pytest.raises(vc.ActorDeletedError):
        handle.call_outcome(call_id)


def test_an_old_actors_post_still_listed_is_not_the_new_actors_call_and_never_applied_to_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's post is pending when the actor is deleted (the tombstone fails its
    call), and still listed after the actor is made again (its delete not done yet). A new
    process asking of its call on the new actor hears "not found" (not a sure never), not
    "applied": the new actor never had that call. A fold of the new actor then deletes the
    post unapplied."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    (key,) = pending_posts("a")
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
def test_a_call_outcome_read_retried_counts_no_commit_retry(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask's LIST of the inbox fails once (transiently) and is tried again: the answer
    comes, and no commit attempt was retried (``commit_retries_transient`` stays)."""
    init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    store = _a_new_process(store_spec, monkeypatch)
    failed: list[str] = []

    def fail_once(operation: str, key: str) -> Exception | None:
        if operation == "list" and key.startswith(posts_prefix("a")) and not failed:
            failed.append(key)
            return RetryableStorageError("injected: the inbox listing failed", key)
        return None

    store.fail = fail_once
    before = vc.stats()
    with pytest.raises(vc.CallNotFoundError):
        handle.call_outcome(uuid.uuid4().hex)
    assert failed, "the ask never listed the inbox"
    assert "commit_retries_transient" not in moved(before)

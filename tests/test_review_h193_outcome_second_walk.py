"""``call_outcome`` of a call this process did not post, the id deleted and made again
between the ask's walk of the steps and its LIST of the inbox (review h193).

The walk of the steps committed since the first walk (procedure B, step 4) answers about the
actor the first walk was about: an outcome in a step of an actor created since (a keyed call
of its with the same id) is passed over; the old actor's tombstone, which failed the call,
gives ``ActorDeletedError``.
"""

from __future__ import annotations

import pickle
import threading
import uuid

import pytest
from actors import OrderLog
from test_combining import foreign_box, init_switchable
from test_review_h183_outcome_not_found import _a_new_process
from test_review_h185_outcome_edges import _folded_by_another_process
from test_review_h194_outcome_after_delete import _at_the_inbox_listing

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.posting import PostedCall
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


def _keyed_add(actor_id: str, key: str, token: str) -> tuple[PostedCall, ...]:
    """A keyed ``add(token)`` as a post carries it: its id derives from the actor id and key."""
    call_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{actor_id}/{key}").hex
    return (PostedCall("add", pickle.dumps(((token,), {})), call_id, key),)


def their_keyed_call_pending(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> tuple[PostedCall, ...]:
    """Another process's keyed call (key "k") pending on "a" (one step of ours); this process
    then as a new one (``_a_new_process``). The call."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    ours = _keyed_add("a", "k", "old/1")
    box = foreign_box("a")
    _sync.sync(box.send(box.prepare(ours)))
    _a_new_process(store_spec, monkeypatch)
    return ours


def _made_again_at_the_inbox_listing(
    monkeypatch: pytest.MonkeyPatch, later: tuple[PostedCall, ...], *, between: bool
) -> threading.Event:
    """When the ask is about to list "a"'s inbox (once, on the ask's own thread: see
    ``_at_the_inbox_listing``): "a" is deleted (its tombstone fails the pending posts), made
    again, and another process's fold applies ``later`` on the new actor (outcome "the new
    actor's"). ``between``: an actor in between, made and deleted, whose tombstone fails
    ``later`` posted to it first. The event says it ran."""

    def delete_and_make_again() -> None:
        assert vc.delete_actor("a")
        OrderLog.get_or_create("a")
        if between:
            box = foreign_box("a")
            _sync.sync(box.send(box.prepare(later)))
            assert vc.delete_actor("a")
            OrderLog.get_or_create("a")
        _folded_by_another_process("a", later, {later[0].call_id: "the new actor's"})

    return _at_the_inbox_listing(monkeypatch, delete_and_make_again)


@pytest.mark.parametrize("between", [False, True], ids=["made-again", "made-deleted-made-again"])
def test_the_walk_since_the_first_does_not_answer_with_the_next_actors_keyed_call(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, between: bool
) -> None:
    """Another process's keyed call is pending on "a" when a new process asks of it: the
    first walk finds no outcome. Before the ask's LIST, "a" is deleted (the tombstone fails
    the call), made again, and a call of the new actor with the same key (the same id) is
    applied. The answer is the old call's (``ActorDeletedError`` from its tombstone), not the
    new actor's outcome, nor (an actor made and deleted in between, whose tombstone failed
    its call of the key) the tombstone of the actor in between."""
    ours = their_keyed_call_pending(store_spec, monkeypatch)
    core = vc.get_runtime().core("a")
    before = core.env.run(core.revalidate()).step
    ran = _made_again_at_the_inbox_listing(monkeypatch, _keyed_add("a", "k", "new/1"), between=between)
    with pytest.raises(vc.ActorDeletedError) as raised:
        answer = vc.get_actor("a").call_outcome(ours[0].call_id)
        assert answer != "the new actor's", "answered with the new actor's call of the key"
    assert ran.is_set(), "the ask never listed the inbox"
    assert raised.value.step == before + 1  # (the tombstone, the step after the first walk's newest)

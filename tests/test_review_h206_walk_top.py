"""``call_outcome`` of a listed post applied by an actor made, and deleted, since the ask's
first walk, another actor made again after it (review h206).

The walk of the steps since the first (procedure B, step 4) keeps ``SinceWalked.top``, the
newest step of the first walk's actor (its tombstone), and ``_all_stale`` calls a listed post
stale only if that cursor passed it. The newest actor's cursor is no stand-in: it starts from
the tombstone of the actor between, whose cursor carries the post that actor applied; a post
passed there was applied, and "not found" would have its caller apply it again.
"""

from __future__ import annotations

import pytest
from actors import OrderLog
from store_helpers import raw_get, raw_put
from test_combining import init_switchable, pending_posts
from test_review_h183_outcome_not_found import _a_new_process
from test_review_h185_outcome_edges import _folded_by_another_process
from test_review_h194_outcome_after_delete import _add, _at_the_inbox_listing

import vactor_cloud as vc
from vactor_cloud.errors import CallNotFoundError, CallPendingError, CommitOutcomeUnknownError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


@pytest.mark.parametrize("deleted", ["before-the-ask", "at-the-listing"])
def test_a_call_applied_by_an_actor_made_and_deleted_since_the_first_walk_is_never_not_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, deleted: str
) -> None:
    """Between the ask's walk and its LIST, "a" is deleted (``before-the-ask``: before the
    first walk, whose newest step is then the tombstone), made again, another process's call
    applied by that actor, "a" deleted and made again; the call's post is still listed (a
    clean-up not done). The newest cursor passed the post (carried from the tombstone of the
    actor that applied it), the first actor's tombstone's did not: "applied, outcome gone"
    (or "cannot be told"), never "not found" (read against the newest actor's cursor, the post
    looked stale, and its caller would retry a call that was applied)."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")
    _a_new_process(store_spec, monkeypatch)
    deletes = {"before-the-ask": [True, False], "at-the-listing": [False, True]}[deleted]
    if deletes[0]:  # (the first walk's newest step: the tombstone)
        assert vc.delete_actor("a")
    calls = _add("between/1")

    def delete_make_apply_delete_make() -> None:
        if deletes[1]:
            assert vc.delete_actor("a")
        before = set(pending_posts("a"))
        OrderLog.get_or_create("a")
        _folded_by_another_process("a", calls, {calls[0].call_id: 1})
        (key,) = set(pending_posts("a")) - before
        data = raw_get(key)
        assert vc.delete_actor("a")
        OrderLog.get_or_create("a")
        raw_put(key, data)  # (listed: its folder's clean-up, or the delete's, not done)

    ran = _at_the_inbox_listing(monkeypatch, delete_make_apply_delete_make)
    with pytest.raises((CommitOutcomeUnknownError, CallNotFoundError)) as raised:
        vc.ActorHandle("a").call_outcome(calls[0].call_id)
    assert ran.is_set(), "the ask never listed the inbox"
    assert not isinstance(raised.value, CallNotFoundError), f"a call applied, told {raised.value!r}"
    assert not isinstance(raised.value, CallPendingError)

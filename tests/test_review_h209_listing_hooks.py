"""The test hooks that change the store "when the ask lists the inbox" run at the ask's own
listing, not at a background fold's (review h209).

``test_review_h183_outcome_not_found._fold_at_the_inbox_listing`` and
``test_review_h193_outcome_second_walk._made_again_at_the_inbox_listing`` ran their change at
the store's first LIST of "a"'s inbox, as ``test_review_h194``'s hook did until a background
fold's LIST came first under CI load. Here a background fold of "a" lists the inbox before the
ask: the change must still wait for the ask's listing (run at the fold's, h193's change ran
before the ask's first walk, which then answered with the new actor's outcome; h183's ran
before it too, and the test checked its first walk, not the walk since).
"""

from __future__ import annotations

import pytest
from test_combining import HANG
from test_review_h183_outcome_not_found import (
    _a_new_process,
    _fold_at_the_inbox_listing,
    _one_foreign_post_at_step_2,
)
from test_review_h193_outcome_second_walk import (
    _keyed_add,
    _made_again_at_the_inbox_listing,
    their_keyed_call_pending,
)

import vactor_cloud as vc
from vactor_cloud.holding import Holder
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local"), pytest.mark.usefixtures("runtime_off")]


def _a_fold_lists_the_inbox_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A background fold of "a" (one an ask queues) runs to its end, listing the inbox once
    and folding nothing."""
    with monkeypatch.context() as patched:
        patched.setattr(Holder, "_fold_unless_another_does", lambda core: core._post_keys())
        core = vc.get_runtime().core("a")
        core._fold_given_up_posts_soon()
        assert core.asked_fold_idle.wait(HANG), "the fold never ended"


@pytest.mark.parametrize("delete", [True, False], ids=["deleted", "still-listed"])
def test_the_fold_at_the_inbox_listing_waits_for_the_asks_listing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, delete: bool
) -> None:
    _, call_id = _one_foreign_post_at_step_2(store_spec)
    folded = _fold_at_the_inbox_listing(_a_new_process(store_spec, monkeypatch), monkeypatch, delete=delete)
    _a_fold_lists_the_inbox_first(monkeypatch)
    assert folded == [], "the change ran at a background fold's listing"
    assert vc.get_actor("a").call_outcome(call_id) == "from step 3"
    assert len(folded) == 1, "the ask never listed the inbox"


def test_the_actor_made_again_at_the_inbox_listing_waits_for_the_asks_listing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = their_keyed_call_pending(store_spec, monkeypatch)
    ran = _made_again_at_the_inbox_listing(monkeypatch, _keyed_add("a", "k", "new/1"), between=False)
    _a_fold_lists_the_inbox_first(monkeypatch)
    assert not ran.is_set(), "the change ran at a background fold's listing"
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("a").call_outcome(ours[0].call_id)
    assert ran.is_set(), "the ask never listed the inbox"

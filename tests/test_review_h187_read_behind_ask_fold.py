"""A read-only call while the ask's background fold stalls on the store (review h187).

``call_outcome`` from a process that did not post queues the fold
(``ActorCore._fold_given_up_posts_soon``), which holds the actor (``_drainer``) while its lease
take or step put gets no answer. A read-only call of the same actor must not wait behind it
(the seed's "read-only calls never wait behind writes"). Held at review time; the test fails
if a read waits for the holder (mutation: ``read()`` waiting while ``_drainer`` is set).
"""

from __future__ import annotations

import pytest
from test_combining import HANG
from test_review_h180_outcome_elsewhere import _as_a_new_process
from test_review_h181_stalled_ask_fold import _STALLS, _a_post_nobody_folds, _asks_answer_while_it_stalls

from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.parametrize("stall", sorted(_STALLS))
def test_a_read_only_call_does_not_wait_behind_the_stalled_ask_fold(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, stall: str
) -> None:
    store, handle, call_id = _a_post_nobody_folds(store_spec, stall)
    _as_a_new_process(monkeypatch)
    _asks_answer_while_it_stalls(store, handle, call_id)
    try:
        applied = handle.applied.run_async().result(timeout=HANG / 2)
    finally:
        stalled = not store.ended.is_set()
        store.release.set()
    assert stalled, "the read-only call waited for the stalled request"
    assert applied[0] == "me/0"

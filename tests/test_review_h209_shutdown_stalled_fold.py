"""``shutdown()`` waiting for the fold a ``call_outcome`` ask queued while the store stalls,
on moto too (review h209).

As in ``tests/test_review_h181_stalled_ask_fold.py`` (memory and local lanes there), the
fold's lease take or step put gets no answer; ``close(asked_folds=True)`` (what
``shutdown()`` runs) ends within its one timeout, cancels the stalled request, and says in a
warning what it waited for and cut off; the next runtime's asks fold the post once.
"""

from __future__ import annotations

import logging

import pytest
from actors import OrderLog
from test_combining import HANG
from test_posting import outcome_once_folded
from test_review_actor_cache import runtime_threads
from test_review_h180_outcome_elsewhere import _as_a_new_process
from test_review_h181_stalled_ask_fold import _a_post_nobody_folds, _asks_answer_while_it_stalls, closed_as

import vactor_cloud as vc
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.mark.parametrize("stall", ["lease_take", "step_answer"])
def test_shutdown_waiting_for_a_stalled_ask_fold_ends_within_its_timeout_and_names_the_fold(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, stall: str
) -> None:
    before = runtime_threads()
    store, handle, call_id = _a_post_nobody_folds(store_spec, stall)
    _as_a_new_process(monkeypatch)
    _asks_answer_while_it_stalls(store, handle, call_id)
    caplog.set_level(logging.WARNING, logger="vactor_cloud")
    try:
        assert closed_as(vc.get_runtime(), "shutdown", 1.0), f"the shutdown did not end within {HANG} s"
        assert store.ended.is_set()  # (the stalled request was cancelled, not left waiting)
        assert set(runtime_threads()) <= set(before), (before, runtime_threads())
        said = [r.getMessage() for r in caplog.records if "shutdown waited 2 s" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in caplog.records]
        # (which work: the fold, whose post stays in the inbox; not only "a stalled request")
        assert "the fold call_outcome queued for 'a'" in said[0], said[0]
    finally:
        store.release.set()
    vc.shutdown()
    _as_a_new_process(monkeypatch)
    store_spec.init(settings=Settings(storage=store_spec.url))
    handle = OrderLog.get_or_create("a")
    assert outcome_once_folded(handle, call_id) == 2
    assert handle.applied.run() == ["me/0", "other/1"]  # applied once

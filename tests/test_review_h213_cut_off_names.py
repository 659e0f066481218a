"""Hostile review h213: the close's cut-off warning names the asked folds it cut off.

``_close`` past its timeout cancels the requests in flight, then logs what it cut off. The fold
a ``call_outcome`` queued, its request cancelled, ends on its own thread at once: read after
the cancel, the actors whose fold was cut off were often none (the warning named no fold).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from test_combining import wait_for
from test_review_h180_outcome_elsewhere import _as_a_new_process
from test_review_h181_stalled_ask_fold import _a_post_nobody_folds, _asks_answer_while_it_stalls, closed_as

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def test_the_cut_off_warning_names_the_asked_fold_that_ended_once_its_request_was_cancelled(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fold's step put stalls; ``shutdown`` waits past its timeout and cancels it. The fold
    has ended (its request cancelled) by the time the warning is written, as it often had: the
    warning must still name it, as what the close cut off."""
    store, handle, call_id = _a_post_nobody_folds(store_spec, "step_answer")
    _as_a_new_process(monkeypatch)
    _asks_answer_while_it_stalls(store, handle, call_id)
    runtime = vc.get_runtime()
    cancel = _sync.cancel

    def then_the_fold_ends(*args: Any) -> Any:
        cancelled = cancel(*args)
        assert wait_for(lambda: not runtime.asked_folds()), "the fold did not end once cancelled"
        return cancelled

    monkeypatch.setattr(_sync, "cancel", then_the_fold_ends)
    caplog.set_level(logging.WARNING, logger="vactor_cloud")
    try:
        assert closed_as(runtime, "shutdown", 1.0)
    finally:
        store.release.set()
    said = [r.getMessage() for r in caplog.records if "piece(s) of work" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
    assert "the fold call_outcome queued for 'a'" in said[0], said[0]

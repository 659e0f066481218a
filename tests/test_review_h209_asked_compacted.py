"""An ask remembered while this process drains, and the step that tells the outcome
compacted before the fold the ask left to the holder (review h209).

Another process's post waits; this process drains a call of its own (its step put held) and
asks of that post: pending, remembered (``Holder._asked_held``). Meanwhile another process
folds the post (step 2 records its outcome), commits step 3, and the actor is compacted to
step 3 (step 2, which told the outcome, deleted; this process's cached step forgotten). The
drain then loses its race and goes on; as it gives the actor up, the remembered fold is
queued and runs. Nothing is applied twice (the cursor passed the post), the exit hook's wait
ends, and the ask's answer is "applied, its outcome compacted" or "not found" (not a sure
never: a process that did not post the call), never pending for good nor another outcome.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from store_helpers import retune
from test_combining import HANG, a_fold_of, foreign_box
from test_review_h201_asked_while_held import _drain_me_1_held, _their_post_and_a_held_drain

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallNotFoundError, CallPendingError, CommitOutcomeUnknownError
from vactor_cloud.posting import encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local"), pytest.mark.usefixtures("runtime_off")]


def test_the_step_telling_the_outcome_compacted_before_the_remembered_fold(store_spec: StoreSpec) -> None:
    log, held, theirs = _their_post_and_a_held_drain(store_spec)
    future = _drain_me_1_held(log, held)
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    runtime = vc.get_runtime()
    assert runtime.asked_folds() == ["a"]
    # Another process folds the post (step 2 records its outcome), then commits step 3.
    log_ = runtime.core("a").log
    box = foreign_box("a")
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    one = _sync.sync(log_.read_step(1))
    assert one is not None
    two = a_fold_of(one, [post], encode_outcomes({theirs: Outcome(True, "from step 2")}))
    _sync.sync(log_.put_step(two))
    _sync.sync(log_.put_step(dataclasses.replace(two, step=3, parent=2, posted=b"", carried=b"")))
    retune(fresh_window=0.0)  # (min_age 0 is allowed where no writer trusts a cache)
    assert vc.get_actor("a").compact(1, min_age=0.0).watermark == 3
    held.release.set()
    assert future.result(HANG) == 2  # type: ignore[attr-defined]  # (me/0, me/1: step 2's state)
    runtime.finish_queued_calls(time.monotonic() + HANG)  # as the exit hook does
    assert runtime.asked_folds() == []
    assert log.applied.run() == ["me/0", "me/1"]  # the post not applied again (its cursor passed)
    for _ in range(2):
        try:
            answer = vc.get_actor("a").call_outcome(theirs)
        except CommitOutcomeUnknownError as unknown:
            assert not isinstance(unknown, CallPendingError), "pending after the post was folded"
            assert "compacted" in str(unknown), str(unknown)
        except CallNotFoundError as not_found:
            assert not not_found.never
        else:
            raise AssertionError(f"an outcome no step holds: {answer!r}")

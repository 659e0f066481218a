"""Review h150 (h140's survivor "F5"): ``workflow.resume`` of a posted call whose fold committed
its failure, once compaction took that step, and a stray step object sits just below the
retention watermark, recording the call's outcome as a success (a folder whose run of the call
succeeded, whose put stalled and landed after the compaction freed the number, and which
crashed before its own check deleted it again). Below the watermark nothing is history: the
stray must not be taken for the step that applied the call, or resume drops a failed call
(its record deleted as stale, never run again)."""

from __future__ import annotations

import dataclasses
import pickle
import uuid

import pytest
from test_combining import foreign_box, init_switchable
from test_review_combined import Till, _fold_posts_here, _price_failures_left

import vactor_cloud as vc
from vactor_cloud import _sync, workflow
from vactor_cloud.compaction import compact
from vactor_cloud.dedup import Outcome
from vactor_cloud.posting import PostedCall, decode_outcomes, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import failure_key

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_resume_runs_a_failed_posted_call_past_a_stray_success_below_the_watermark(
    store_spec: StoreSpec,
) -> None:
    init_switchable(store_spec, combine_window=60.0, commit_timeout=5.0)
    till = Till.get_or_create("till")
    till.view.run()
    call_id = uuid.uuid4().hex
    box = foreign_box("till")
    _sync.sync(box.send(box.prepare((PostedCall("deposit", pickle.dumps(((5,), {})), call_id),))))
    _price_failures_left[:] = [1]
    _fold_posts_here("till", till)  # applied: its outcome is the ConnectionError
    assert till.view.run() == 0
    assert workflow.get_status("till") == workflow.FAILED
    for _ in range(3):  # later steps, none of which records the call's outcome but the first
        till.touch.run()
    core = vc.get_runtime().core("till")
    newest = _sync.sync(core.revalidate())
    below = _sync.sync(core.log.read_step(newest.step - 1))
    assert below is not None and call_id not in decode_outcomes(below.posted)
    store = core.log.store
    record = _sync.sync(store.get(failure_key("till", call_id))).data
    report = _sync.sync(compact(core.log, 1, min_age=0.0, fresh_window=0.0))
    assert report.watermark == newest.step
    # The compaction took the record with the step that committed the call; it is there again
    # (the record of a resumed run that failed again, or a late put of one, lands after it).
    _sync.sync(store.put(failure_key("till", call_id), record))
    assert workflow.get_status("till") == workflow.FAILED
    # The stray: at the freed number just below the watermark, the post applied with success.
    stray = dataclasses.replace(below, posted=encode_outcomes({call_id: Outcome(True, 5)}), carried=b"")
    _sync.sync(store.put(core.log.step_key(stray.step), core.log.encode_step(stray), mode="create"))
    assert vc.get(workflow.resume("till"), timeout=60) == [5]
    assert till.view.run() == 5
    assert workflow.get_status("till") == workflow.SUCCESSFUL

"""Hostile review h211: per-process structures that grow with use stay bounded.

Each test drives one structure with many distinct ids in one process (a long-lived batch
worker's or server's day, shortened) and counts its entries at a quarter of the way and at the
end: a count that grows with the ids past its bound is the defect.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def test_deletes_of_ids_that_hold_no_actor_leave_no_key_behind(actor_store: StoreSpec) -> None:
    """``delete_actor`` of an id that never held an actor raises ``ActorNotFoundError``: a sure
    answer, nothing was written. The runtime kept that delete's key by actor id all the same
    (``Runtime.delete_keys``, meant for deletes left in doubt), one entry per id, for the
    process's life: a clean-up job deleting ids that may not exist grew it with every id."""
    runtime = vc.get_runtime()
    ids = 200
    counted: list[int] = []
    for i in range(ids):
        with pytest.raises(vc.ActorNotFoundError):
            vc.delete_actor(f"never-made-{i}")
        if i + 1 in (ids // 4, ids):
            counted.append(len(runtime.delete_keys))
    assert counted == [0, 0]


def _fail_then_mend(ids: list[str], flag: Path) -> None:
    """Each actor of ``ids`` gets a call whose sub-workflow fails (recorded, resumable), then
    its step mends."""
    for actor_id in ids:
        with pytest.raises(RuntimeError, match="publish is down"):
            Publisher.get_or_create(actor_id).run.run(1)
    flag.unlink()


def test_reruns_resumed_one_after_another_hold_no_result_once_each_resume_returned(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
) -> None:
    """``workflow.resume`` remembers a re-run done, with its result, for a resume of this process
    whose listing raced the re-run's record delete. It kept the newest 4,096 for the process's
    life, each holding its result (and the re-run's copy of it): a worker resuming workflows of
    large results kept gigabytes. With no resume listing meanwhile, none is needed: 16 resumes
    one after another now leave none (they left 4 at a quarter, 16 at the end)."""
    ids = [f"one-after-another-{i}" for i in range(16)]
    _fail_then_mend(ids, broken)
    counted: list[int] = []
    for n, actor_id in enumerate(ids, 1):
        assert vc.get(workflow.resume(actor_id), timeout=HANG) == [2]
        if n in (len(ids) // 4, len(ids)):
            counted.append(len(workflow._rerun_done))
    assert counted == [0, 0]


def test_a_resume_whose_listing_raced_a_reruns_record_delete_gives_that_reruns_result(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resume B lists the actor's failed call, then waits (held before it starts its re-runs);
    resume A re-runs the call meanwhile (its record deleted, its step committed) and returns.
    B, let go, must give A's result, not run the call a second time: A's re-run is remembered
    while B, whose listing began before A's re-run was done, runs (and forgotten once B ends)."""
    _fail_then_mend(["raced"], broken)
    listed, go = threading.Event(), threading.Event()
    held: list[threading.Thread] = []
    rerun_once = workflow._rerun_once

    def held_after_listing(runtime: Any, failed: Any, listing: int) -> Any:
        if threading.current_thread() in held:
            listed.set()
            assert go.wait(HANG)
        return rerun_once(runtime, failed, listing)

    monkeypatch.setattr(workflow, "_rerun_once", held_after_listing)
    answers: list[object] = []
    late = threading.Thread(target=lambda: answers.append(vc.get(workflow.resume("raced"), timeout=HANG)))
    held.append(late)
    late.start()
    try:
        assert listed.wait(HANG)
        assert vc.get(workflow.resume("raced"), timeout=HANG) == [2]
        steps = len(vc.get_actor("raced").history())
    finally:
        go.set()
        late.join(HANG)
    assert answers == [[2]]
    assert len(vc.get_actor("raced").history()) == steps, "the call was run again"
    assert len(workflow._rerun_done) == 0

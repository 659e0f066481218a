"""Hostile review h215: ``workflow.resume`` of one actor from two processes at once.

A process shares one re-run among its own resumes (``workflow._rerunning``); another process
knows nothing of it. Both list the failed call before either re-run deletes its record, both
re-run it: each re-run commits under an idempotency key of the call's own (its call id, in the
namespace no caller's key can spell), so the later commit finds the key recorded and answers
with the first one's result instead of applying the call again.
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path
from typing import Any

import pytest
from child_processes import fork_and_report
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture
from test_review_h211_memory_bounds import _fail_then_mend

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0


def _applied(actor_id: str) -> list[str]:
    return [call.method for entry in vc.get_actor(actor_id).history() for call in entry.calls]


@pytest.mark.vactor_lanes("local")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_two_processes_resuming_at_once_apply_the_call_once(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This process and a forked child each resume the actor; each, once it has listed the
    failed call, waits for the other's listing (a pipe each way), then both re-run it. Both
    found the record; each re-ran the call and committed it: applied twice (two steps)."""
    _fail_then_mend(["both"], broken)
    parent_pid = os.getpid()
    to_child, to_parent = os.pipe(), os.pipe()
    rerun_once = workflow._rerun_once

    def held(runtime: Any, failed: Any, listing: int) -> Any:
        mine, theirs = (to_child, to_parent) if os.getpid() == parent_pid else (to_parent, to_child)
        os.write(mine[1], b"l")  # listed
        ready, _, _ = select.select([theirs[0]], [], [], HANG)
        assert ready, "the other process never listed"
        os.read(theirs[0], 1)
        return rerun_once(runtime, failed, listing)

    monkeypatch.setattr(workflow, "_rerun_once", held)
    answers: list[object] = []


    def resume() -> None:
        try:
            answers.append(vc.get(workflow.resume("both"), timeout=HANG))
        except Exception as exc:
            answers.append(exc)

    here = threading.Thread(target=resume)
    try:
        child = fork_and_report(
            lambda: repr(vc.get(workflow.resume("both"), timeout=HANG)).encode(), HANG, parent=here.start
        )
    finally:
        if here.ident is not None:
            here.join(HANG)
        for end in (*to_child, *to_parent):
            os.close(end)
    assert child == b"[2]" and answers == [[2]], (child, answers)
    assert _applied("both").count("run") == 1, _applied("both")
    assert vc.get(workflow.resume("both"), timeout=HANG) == []

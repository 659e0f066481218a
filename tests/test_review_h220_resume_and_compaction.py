"""Hostile review h220: compaction meeting ``workflow.resume``'s key of a re-run call.

* compaction between a resume's listing and its re-run's commit: another process re-ran the
  call and committed it, the actor went on, and compaction deleted that step with the call's
  checkpoints and record; the held re-run runs its steps again (their checkpoints are gone)
  and its commit is answered by the key, carried by the newest step's table;
* a failed-call record put back once compaction deleted the step that committed its re-run
  (and the table moved into a checkpoint, and compaction deleted the checkpoints no kept
  step names): the key is still in the window, the next resume is answered by it;
* compaction deleting, as older than its ``min_age``, the record a resume has listed: the
  report calls the call unresumable, and the resume runs it (once).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from child_processes import fork_and_report
from store_helpers import init, raw_get, raw_put
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture
from test_review_h211_memory_bounds import _fail_then_mend

import vactor_cloud as vc
from vactor_cloud import _sync, workflow
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import failure_keys

HANG = 60.0
NEEDS_FORK = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _done(actor_id: str) -> list[int]:
    """The values ``record`` appended: each application of ``run`` appends its result."""
    handle = vc.get_actor(actor_id)
    done: list[int] = handle.state_at(handle.history(limit=1)[0].step).done
    return done


def _record_of(actor_id: str) -> str:
    (record,) = _sync.sync(failure_keys(vc.get_runtime().store, actor_id))
    return record


@contextlib.contextmanager
def _resume_waiting_after_its_listing(
    actor_id: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[object]]:
    """A resume of ``actor_id`` on another thread, waiting once it has listed the records
    until the block ends (a forked child's resumes do not wait); what it answered (its result,
    or its exception) is in the list yielded once the block ended."""
    parent_pid = os.getpid()
    listed, go_on = threading.Event(), threading.Event()
    rerun_once = workflow._rerun_once

    def held(runtime: Any, failed: Any, listing: int) -> Any:
        if os.getpid() == parent_pid:
            listed.set()
            assert go_on.wait(HANG), "the block never ended"
        return rerun_once(runtime, failed, listing)

    monkeypatch.setattr(workflow, "_rerun_once", held)
    answers: list[object] = []

    def resume() -> None:
        try:
            answers.append(vc.get(workflow.resume(actor_id), timeout=HANG))
        except Exception as exc:
            answers.append(exc)

    here = threading.Thread(target=resume)
    here.start()
    try:
        assert listed.wait(HANG), "the resume never listed"
        yield answers
    finally:
        go_on.set()
        here.join(HANG)


@pytest.mark.vactor_lanes("local", "moto")
@NEEDS_FORK
def test_compaction_between_a_resumes_listing_and_its_commit_applies_the_call_once(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This process's resume lists the record and waits; a forked child resumes the actor
    (applies the call), commits two more calls and compacts to one step (the re-run's step,
    its checkpoint and record go). Then this resume's re-run runs the call's step again and
    commits: the newest step's table holds the key, which answers it."""
    init(actor_store, fresh_window=0.0)
    _fail_then_mend(["compacted"], broken)

    def other_process() -> bytes:
        assert vc.get(workflow.resume("compacted"), timeout=HANG) == [2]
        job = Publisher.get_or_create("compacted")
        assert job.record.run(5) == 5 and job.record.run(6) == 6
        report = job.compact(keep_last=1, min_age=0)
        return f"{report.deleted_steps} steps, {report.deleted_tasks} tasks".encode()

    with _resume_waiting_after_its_listing("compacted", monkeypatch) as answers:
        child = fork_and_report(other_process, HANG)
    # (steps 0-2 of 3; the call's checkpoint of publish, and its record: gone before its commit)
    assert child == b"3 steps, 1 tasks", child
    assert answers == [[2]], answers
    assert _done("compacted") == [2, 5, 6]


def test_a_record_put_back_after_compaction_deleted_the_reruns_step_is_answered_by_its_key(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
) -> None:
    """The re-run's key recorded, 80 keyed calls move the table into checkpoints; compaction
    keeps one step (the re-run's step, and the checkpoints no kept step names, go). The record
    kept from before, put back, is answered by the key still in the window: nothing applies."""
    init(actor_store, fresh_window=0.0)
    _fail_then_mend(["put-back"], broken)
    record = _record_of("put-back")
    kept = raw_get(record)
    assert vc.get(workflow.resume("put-back"), timeout=HANG) == [2]
    job = Publisher.get_or_create("put-back")
    for n in range(80):
        assert job.record.options(idempotency_key=f"a keyed call of the actor's, number {n:04}").run(n) == n
    store = vc.get_runtime().store
    checkpoints = [k for k in _sync.sync(store.list("actors/put-back/dedup/")) if "/outcomes/" not in k]
    assert len(checkpoints) >= 2, checkpoints
    report = job.compact(keep_last=1, min_age=0)
    assert report.deleted_steps == 81, report
    assert len(_sync.sync(store.list("actors/put-back/dedup/"))) < len(checkpoints)
    raw_put(record, kept)
    assert workflow.get_status("put-back") == workflow.FAILED
    assert vc.get(workflow.resume("put-back"), timeout=HANG) == [2]
    assert workflow.get_status("put-back") == workflow.SUCCESSFUL
    assert _done("put-back") == [2, *range(80)]


def test_a_record_compaction_takes_for_unresumable_is_still_run_by_a_resume_that_listed_it(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resume lists the record and waits; the actor commits on, and a compaction finds the
    record older than its ``min_age`` (0 here) before the newest step: it deletes it and
    reports the call unresumable. The resume that listed it still runs the call, once. The
    warning said to run the call again as a new one if still wanted (a second application,
    taken at its word); it says now to look at the history first, where the resumed call is."""
    init(actor_store, fresh_window=0.0)
    _fail_then_mend(["aged"], broken)
    call_id = _record_of("aged").split("/")[-2]
    with _resume_waiting_after_its_listing("aged", monkeypatch) as answers:
        job = Publisher.get_or_create("aged")
        assert job.record.run(5) == 5
        report = job.compact(keep_last=1, min_age=0)
    assert report.unresumable == (call_id,), report
    (warning,) = [r.getMessage() for r in caplog.records if "no longer be resumed" in r.getMessage()]
    assert "a resume that listed it before may still run it" in warning, warning
    assert "handle.history()" in warning, warning
    assert answers == [[2]], answers
    assert _done("aged") == [5, 2]
    assert vc.get_actor("aged").history(limit=1)[0].calls[0].call_id == call_id

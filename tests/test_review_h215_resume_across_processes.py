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
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from child_processes import fork_and_report
from store_helpers import init, raw_get, raw_put
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture
from test_review_h211_memory_bounds import _fail_then_mend
from test_review_lifecycle import Recorder

import vactor_cloud as vc
from vactor_cloud import _sync, keys, workflow
from vactor_cloud.batch import PendingCall
from vactor_cloud.commit_notes import interrupted_note
from vactor_cloud.history import HistoryEntry
from vactor_cloud.ids import resume_dedup_key
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0
NEEDS_FORK = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _applied(actor_id: str) -> list[str]:
    return [call.method for entry in vc.get_actor(actor_id).history() for call in entry.calls]


@pytest.mark.vactor_lanes("local", "moto")
@NEEDS_FORK
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


def test_a_resumed_call_commits_with_the_requests_of_an_unkeyed_one(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
) -> None:
    """The resume key travels in the step, as a caller's key does in a small table: from its
    listing on, the resume of one failed call makes the requests it made unkeyed (the listing,
    the record's read, the commit: the inbox's listing, the step's checkpoint, the record's
    delete, the step's put; then resume's delete), none of the table's."""
    _fail_then_mend(["counted"], broken)
    vc.shutdown()
    runtime = init(actor_store)  # (a fresh process: its actors' logs use the store wrapped)
    store = runtime.store = Recorder(runtime.store)
    assert vc.get(workflow.resume("counted"), timeout=HANG) == [2]
    record = next(key for _, key in store.log if key.endswith("/failed"))
    call = record.split("/")[-2]
    made = [f"{op} {key.split('/', 2)[2].replace(call, '<call>')}" for op, key in store.log]
    # (from the listing on; a fresh process reads the class body too, whenever, and HEAD is
    # a hint moved in the background: neither counted)
    made = [m for m in made[made.index("list tasks/") :] if not m.startswith(("get class/", "put HEAD"))]
    assert made == [
        "list tasks/",
        "get tasks/<call>/failed",
        "list inbox/",
        "list tasks/<call>/",
        "put tasks/<call>/000000",
        "delete tasks/<call>/failed",
        "put steps/00000000000000000001",
        "delete tasks/<call>/failed",
    ], made


def test_a_rerun_failing_again_records_its_failure_anew_and_nothing_under_its_key(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
) -> None:
    """A re-run whose sub-workflow fails again is an unkeyed call's failure: its record is
    written anew (as a caller's key would have it, none was), its key records nothing (the
    next resume, once the step mends, runs the call)."""
    with pytest.raises(RuntimeError, match="publish is down"):
        Publisher.get_or_create("anew").run.run(1)
    (record,) = [
        k for k in _sync.sync(vc.get_runtime().store.list(keys.tasks_prefix("anew"))) if k.endswith("/failed")
    ]
    first = raw_get(record)
    with pytest.raises(RuntimeError, match="publish is down"):
        vc.get(workflow.resume("anew"), timeout=HANG)
    assert raw_get(record) != first
    broken.unlink()
    assert vc.get(workflow.resume("anew"), timeout=HANG) == [2]
    assert _applied("anew").count("run") == 1
    (resumed,) = [c for entry in vc.get_actor("anew").history() for c in entry.calls if c.method == "run"]
    assert HistoryEntry.call_text(resumed) == "resumed failed call: run(1) -> 2"


def test_an_interrupted_resumed_call_is_not_said_to_be_retried_with_its_key() -> None:
    """A resumed call's key is no caller's: the note of an interrupted commit says what it
    says of an unkeyed call, not "a retry with the same idempotency key"."""
    call_id = "0" * 32
    call = PendingCall("run", (), {}, False, Future(), call_id, idempotency_key=resume_dedup_key(0, call_id))
    note = interrupted_note("noted", [call])
    assert "look at handle.history() before calling again" in note, note


@pytest.mark.xfail(
    strict=True,
    reason="the resume key is remembered by the idempotency table alone: a failed-call record "
    "put back once the key left the dedup window runs its call again, as an event put back past "
    "the window is applied again (docs/security.md)",
)
def test_a_failed_call_record_put_back_past_the_dedup_window_does_not_apply_the_call_again(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
) -> None:
    init(actor_store, dedup_window=(1, 0.0))
    with pytest.raises(RuntimeError, match="publish is down"):
        Publisher.get_or_create("past").run.run(1)
    (record,) = [
        k for k in _sync.sync(vc.get_runtime().store.list(keys.tasks_prefix("past"))) if k.endswith("/failed")
    ]
    kept = raw_get(record)
    broken.unlink()
    assert vc.get(workflow.resume("past"), timeout=HANG) == [2]
    assert Publisher.get_or_create("past").record.options(idempotency_key="newer").run(5) == 5
    raw_put(record, kept)
    vc.get(workflow.resume("past"), timeout=HANG)
    assert _applied("past").count("run") == 1, _applied("past")

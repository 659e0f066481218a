"""Hostile review h213: ``workflow.resume`` racing itself in one process.

A failed call is re-run at most once per process when resumes race: a resume whose listing
began before another resume's re-run of the same call ended gives that re-run's outcome,
whatever it was, and does not run the call again. What is remembered for that is kept only
while such a listing runs, however that resume ends.
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
from store_helpers import init
from test_delete_faults import TombstoneAnswerLost
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture
from test_review_h211_memory_bounds import _fail_then_mend

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.errors import StorageError
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@contextlib.contextmanager
def resume_held_after_listing(
    monkeypatch: pytest.MonkeyPatch, actor_id: str, at: str = "_rerun_once"
) -> Iterator[list[object]]:
    """A resume of ``actor_id`` on another thread that lists its failed calls, then waits
    (before its re-runs; ``at="_applied_elsewhere"``: before its checks of posted calls) until
    the block ends; its answer (result or exception) is in the list yielded, once the block
    has ended."""
    listed, go = threading.Event(), threading.Event()
    original = getattr(workflow, at)
    answers: list[object] = []

    def held(runtime: Any, failed: Any, listing: int) -> Any:
        if threading.current_thread() is late:
            listed.set()
            assert go.wait(HANG)
        return original(runtime, failed, listing)

    def resume() -> None:
        try:
            answers.append(vc.get(workflow.resume(actor_id), timeout=HANG))
        except Exception as exc:
            answers.append(exc)

    monkeypatch.setattr(workflow, at, held)
    late = threading.Thread(target=resume)
    late.start()
    try:
        assert listed.wait(HANG)
        yield answers
    finally:
        go.set()
        late.join(HANG)
    assert not late.is_alive()


def test_a_resume_whose_listing_raced_a_rerun_whose_commit_ended_in_doubt_does_not_run_it_again(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resume B lists the failed call, then waits before its re-runs; resume A re-runs the call:
    its record is deleted, its step lands, but the put's answer is lost and the step cannot be
    read back, so A's future raises. B, let go, found the record listed; only a re-run that
    succeeded was remembered for it, so B ran the call again: applied twice (two steps)."""
    _fail_then_mend(["doubt"], broken)
    vc.shutdown()
    runtime = init(actor_store)
    store = runtime.store = TombstoneAnswerLost(runtime.store)  # (the first step put: A's)
    with resume_held_after_listing(monkeypatch, "doubt") as answers:
        with pytest.raises(StorageError) as first:
            vc.get(workflow.resume("doubt"), timeout=HANG)
        store.healed = True
    assert answers == [first.value], "the call was run again"
    applied = [call.method for entry in vc.get_actor("doubt").history() for call in entry.calls]
    assert applied.count("run") == 1, applied
    assert workflow._rerun_done == {} and workflow._listing == {}


def test_a_resume_whose_listing_raised_leaves_no_listing_behind(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resume whose listing fails (a storage error) ends its listing too: left counted, every
    re-run done after it was remembered, with its result, for the process's life."""
    _fail_then_mend(["listed", "later"], broken)
    list_failures = workflow.list_failures

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("the listing failed (injected)", "actors/listed/tasks/")

    monkeypatch.setattr(workflow, "list_failures", failing)
    with pytest.raises(StorageError, match="injected"):
        workflow.resume("listed")
    assert workflow._listing == {}
    monkeypatch.setattr(workflow, "list_failures", list_failures)
    assert vc.get(workflow.resume("later"), timeout=HANG) == [2]
    assert workflow._rerun_done == {}


def test_reruns_of_other_actors_do_not_push_out_the_one_a_racing_resume_listed(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resume B of ``x`` lists its failed call and waits; resume A re-runs it (done, remembered
    for B); then a resume of another actor re-runs its own call. That re-run was remembered
    too (B's listing began before it ended, though B lists another actor) and, past the bound
    (4,096; 1 here), pushed out A's: B ran ``x``'s call a second time."""
    monkeypatch.setattr(workflow, "_RERUN_DONE_MAX", 1)
    _fail_then_mend(["x", "other"], broken)
    with resume_held_after_listing(monkeypatch, "x") as answers:
        assert vc.get(workflow.resume("x"), timeout=HANG) == [2]
        assert vc.get(workflow.resume("other"), timeout=HANG) == [2]
    applied = [call.method for entry in vc.get_actor("x").history() for call in entry.calls]
    assert applied.count("run") == 1, applied
    assert answers == [[2]]
    assert workflow._rerun_done == {}


def test_a_resume_listing_one_actor_keeps_no_rerun_of_the_others(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a resume of ``held`` lists (a stalled LIST, up to ``Settings.deadline``), resumes of
    other actors re-run their calls: none of their records can be in that listing, yet each
    re-run was kept, with its result, until the held resume ended (up to 4,096 of them)."""
    ids = [f"beside-{i}" for i in range(8)]
    _fail_then_mend(["held", *ids], broken)
    with resume_held_after_listing(monkeypatch, "held") as answers:
        for actor_id in ids:
            assert vc.get(workflow.resume(actor_id), timeout=HANG) == [2]
        assert len(workflow._rerun_done) == 0
    assert answers == [[2]]


def test_a_resume_begun_after_a_rerun_failed_again_runs_the_call_while_an_older_listing_runs(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resume B lists the failed call and waits; resume A re-runs it and it fails again (its
    record stays), remembered for B. Resume C, begun after A ended, once the step is mended,
    must run the call, not give A's old failure because B still lists; B, let go, gives C's
    outcome and does not run the call again."""
    with pytest.raises(RuntimeError, match="publish is down"):
        Publisher.get_or_create("again").run.run(1)
    with resume_held_after_listing(monkeypatch, "again") as answers:
        with pytest.raises(RuntimeError, match="publish is down"):
            vc.get(workflow.resume("again"), timeout=HANG)
        broken.unlink()
        assert vc.get(workflow.resume("again"), timeout=HANG) == [2]
    assert answers == [[2]]  # (B raced C too, whose re-run is the newest: its outcome)
    applied = [call.method for entry in vc.get_actor("again").history() for call in entry.calls]
    assert applied.count("run") == 1, applied
    assert workflow._rerun_done == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_resume_listed_keeps_none_of_the_parents_reruns(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A re-run done while a resume lists is kept, with its result, for that resume. A child
    forked then has no such resume (the parent's threads are not there), yet kept the parent's
    re-runs, results and all, until its own first resume."""
    _fail_then_mend(["forked"], broken)
    with resume_held_after_listing(monkeypatch, "forked") as answers:
        assert vc.get(workflow.resume("forked"), timeout=HANG) == [2]
        assert len(workflow._rerun_done) == 1  # (kept for the held resume)
        report = fork_and_report(lambda: str(len(workflow._rerun_done)).encode(), HANG)
    assert report == b"0"
    assert answers == [[2]]

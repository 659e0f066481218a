"""Review h158: mutations of ``workflow.resume``'s memory of re-runs (``workflow.py``), run
against the workflow tests (``test_review_workflow``, ``test_workflow_steps``, h140, retention),
then the survivors against every test module that calls ``resume``:

* W1 the re-runs remembered as done unbounded (one future per call ever resumed, for the
  process's life): survived all; ``test_the_reruns_remembered_as_done_stay_within_their_bound``
* W2 a settled re-run left among those running: killed, retention
* W4 ``_post_pending`` without its second look at the newest step: killed (only) by
  ``test_review_combined``'s random three-process model
* W6 a re-run that failed again remembered as done (a later resume gave the old failure
  instead of running the call): killed by that same model test only;
  ``test_a_call_failing_again_on_resume_runs_on_the_next``
* W7 a re-run answered before its record's delete: killed, ``test_review_callers``
* W8 the at-fork hook keeping the parent's running re-runs: killed, ``test_review_hangs``
* W10 a posted call whose record is gone taken for one to run: killed, ``test_review_combined``
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

BROKEN: list[Path] = []


@workflow.step(max_retries=0)
def publish(y: int) -> int:
    if BROKEN and BROKEN[0].exists():
        raise RuntimeError("publish is down")
    if BROKEN and (BROKEN[0].parent / f"down-{y}").exists():
        raise RuntimeError(f"publish {y} is down")
    return y + 1


@workflow.virtual_actor
class Publisher:
    def __init__(self) -> None:
        self.done: list[int] = []

    def run(self, x: int) -> object:
        return self.record.step(publish.step(x))

    def record(self, value: int) -> int:
        self.done.append(value)
        return value

    @workflow.virtual_actor.readonly
    def published(self) -> list[int]:
        return self.done


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Path]:
    flag = tmp_path / "broken"
    flag.touch()
    BROKEN[:] = [flag]
    yield flag
    BROKEN.clear()


def test_a_call_failing_again_on_resume_runs_on_the_next(actor_store: StoreSpec, broken: Path) -> None:
    job = Publisher.get_or_create("again")
    with pytest.raises(RuntimeError, match="publish is down"):
        job.run.run(40)
    with pytest.raises(RuntimeError, match="publish is down"):
        vc.get(workflow.resume("again"))
    broken.unlink()
    assert vc.get(workflow.resume("again")) == [41]
    assert vc.get(workflow.resume("again")) == []


def test_the_reruns_remembered_as_done_stay_within_their_bound(
    actor_store: StoreSpec, broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflow, "_RERUN_DONE_MAX", 1)
    monkeypatch.setattr(workflow, "_rerun_done", type(workflow._rerun_done)())
    # A resume listing since before these re-runs (it may find each record still listed):
    # without one, no re-run is remembered at all
    ids = ["bound-a", "bound-b", "bound-c"]
    monkeypatch.setattr(workflow, "_listing", {-1 - n: actor_id for n, actor_id in enumerate(ids)})
    for actor_id in ids:
        with pytest.raises(RuntimeError, match="publish is down"):
            Publisher.get_or_create(actor_id).run.run(1)
    broken.unlink()
    for actor_id in ids:
        assert vc.get(workflow.resume(actor_id)) == [2]
    assert len(workflow._rerun_done) == 1


def test_a_resume_whose_first_call_fails_again_still_commits_the_others(
    actor_store: StoreSpec, broken: Path
) -> None:
    """Of several calls run again, some failing again: the future raises the exception of the
    first of those, in the order the calls first failed; the others still run, those that
    succeed commit, and those that failed again stay recorded for the next resume."""
    broken.unlink()
    flags = broken.parent
    job = Publisher.get_or_create("several")
    for y in (10, 20, 30):
        (flags / f"down-{y}").touch()
        with pytest.raises(RuntimeError, match=f"publish {y} is down"):
            job.run.run(y)
    assert workflow.get_status("several") == workflow.FAILED
    # 10 and 30 fail again, 20 is back: the future raises 10's failure, the first in order
    (flags / "down-20").unlink()
    with pytest.raises(RuntimeError, match="publish 10 is down"):
        vc.get(workflow.resume("several"))
    assert job.published.run() == [21]
    (flags / "down-30").unlink()
    with pytest.raises(RuntimeError, match="publish 10 is down"):
        vc.get(workflow.resume("several"))
    assert job.published.run() == [21, 31]
    (flags / "down-10").unlink()
    assert vc.get(workflow.resume("several")) == [11]
    assert job.published.run() == [21, 31, 11]
    assert workflow.get_status("several") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("several")) == []

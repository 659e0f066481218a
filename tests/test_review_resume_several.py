"""``workflow.resume`` over several failed calls, one of which fails again.

The future raises the exception of the first call, in the order the calls first failed, that
fails again; the others still run, and those that succeed commit (their results are in the
actor's state and history); the call that failed again stays recorded for the next resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

#: the directory whose ``down-<y>`` files make ``publish(y)`` fail
FLAGS: list[Path] = []


@workflow.step(max_retries=0)
def publish(y: int) -> int:
    if FLAGS and (FLAGS[0] / f"down-{y}").exists():
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
def flags(tmp_path: Path) -> Iterator[Path]:
    FLAGS[:] = [tmp_path]
    yield tmp_path
    FLAGS.clear()


def test_a_resume_whose_first_call_fails_again_still_commits_the_others(
    actor_store: StoreSpec, flags: Path
) -> None:
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
    # what failed again stays for the next resume, in its order
    (flags / "down-30").unlink()
    with pytest.raises(RuntimeError, match="publish 10 is down"):
        vc.get(workflow.resume("several"))
    assert job.published.run() == [21, 31]
    (flags / "down-10").unlink()
    assert vc.get(workflow.resume("several")) == [11]
    assert job.published.run() == [21, 31, 11]
    assert workflow.get_status("several") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("several")) == []

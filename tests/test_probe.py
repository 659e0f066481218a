"""The probe that finds an actor's newest step ends, even behind a writer as fast as it reads."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.log import ActorLog, StepRecord


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def incr(self) -> int:
        self.value += 1
        return self.value


@pytest.fixture
def runtime() -> Iterator[None]:
    vc.init(f"memory://probe-{uuid.uuid4().hex[:8]}")
    try:
        yield
    finally:
        vc.shutdown()


@pytest.mark.usefixtures("runtime")
def test_a_probe_behind_a_writer_that_commits_a_step_per_read_answers_the_newest_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each step read lets another writer commit the next step: walking until a step is
    missing would never end (a folder behind a busy writer on a slow store chased it for
    seconds). The probe answers the newest step its listing saw, in a bounded number of reads."""
    counter = Counter.get_or_create("p")
    for _ in range(3):
        counter.incr.run()
    core = vc.get_runtime().core("p")
    base = core.record
    assert base is not None
    log: ActorLog = core.log
    newest = [base.step]
    reads = [0]
    read_step = ActorLog.read_step

    async def read_and_let_the_writer_commit(self: ActorLog, step: int) -> StepRecord | None:
        reads[0] += 1
        if reads[0] > 50:
            raise AssertionError("the probe is still walking after 50 reads")
        record = await read_step(self, newest[0])
        assert record is not None
        await self.put_step(dataclasses.replace(record, step=newest[0] + 1, parent=newest[0]))
        newest[0] += 1
        return await read_step(self, step)

    monkeypatch.setattr(ActorLog, "read_step", read_and_let_the_writer_commit)
    found, requests = _sync.sync(log.probe_from(base))
    assert found.step > base.step
    assert reads[0] <= 3 and requests <= 4, (reads, requests)
    # It was the newest step when the listing answered: only the commit the last read let
    # through came after it.
    assert found.step >= newest[0] - 1

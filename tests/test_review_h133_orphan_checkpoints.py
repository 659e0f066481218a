"""Review h133: idempotency checkpoints that no step names, beside the ones kept steps name.

A commit that writes a checkpoint puts ``dedup/<N:020d>-<token>`` (``N`` its own step number)
before its step; one that loses its race leaves it, named by no step, beside the winner's
``<N>-<othertoken>``. A compaction deleted only the checkpoints whose names sort below the
floor (the one the oldest kept step names): an orphan at the floor's number whose token sorted
above the floor's, and every orphan at a later number, stayed for later compactions.

Checkpoint ``<n>-x`` is first named (if ever) by step ``n``, and names only grow along the
chain: a step ``k`` naming ``<j>-t`` tells that steps ``j..k`` all name it, so every other
checkpoint of a number from ``j`` to ``k`` is named by no step, now or later. A compaction knows
two such steps (the oldest kept, the newest) and reads the step of each other number at which
it lists two checkpoints or more; checkpoints above the newest step (a commit in flight puts its
checkpoint before its step) are kept.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import compact
from vactor_cloud.log import ActorLog, StepRecord
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

_TAG = "t" * 200


@vc.virtual_actor
class Purse:
    def __init__(self) -> None:
        self.balance = 0

    def pay(self, amount: int, tag: str = "") -> str:
        self.balance += amount
        return f"{self.balance}:{tag}"

    def touch(self) -> int:
        return self.balance


def init(spec: StoreSpec, **settings: Any) -> Runtime:
    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url, fresh_window=0.0, **settings))
    return vc.get_runtime()


def newest_step(log: ActorLog) -> int:
    async def read() -> int:
        record = await log.load_latest(await log.read_head())
        assert record is not None
        return record.step

    return _sync.sync(read())


def orphan_beside(log: ActorLog, name: str, token: str) -> str:
    """A checkpoint of the same step number as ``name`` (a copy of it: a racing commit's table
    is much the same) under ``token``: what a commit that lost its race leaves."""
    orphan = f"{name[:20]}-{token}"
    data = _sync.sync(log.store.get(log.dedup_key(name))).data
    _sync.sync(log.store.put(log.dedup_key(orphan), data, mode="create"))
    return orphan


def a_purse_of_checkpoints(spec: StoreSpec) -> ActorLog:
    """The log of an actor ``p`` whose keyed calls wrote several idempotency checkpoints."""
    init(spec)
    purse = Purse.get_or_create("p")
    for i in range(40):
        purse.pay.options(idempotency_key=f"pay-{i}").run(1, tag=f"{i}{_TAG}")
    for _ in range(3):
        purse.touch.run()
    return vc.get_runtime().log("p")


def checkpoints(log: ActorLog) -> list[str]:
    return _sync.sync(log.list_dedup_checkpoints())


@pytest.mark.usefixtures("runtime_off")
def test_one_compaction_deletes_every_orphan_checkpoint_below_the_newest_step(spec: StoreSpec) -> None:
    log = a_purse_of_checkpoints(spec)
    real = checkpoints(log)
    assert len(real) >= 3, real
    floor, middle, top = real[-3:]
    newest = newest_step(log)
    assert int(top[:20]) < newest
    # The oldest kept step is the one after the floor's (it names the floor: the next
    # checkpoint is of a later step).
    keep_last = newest - int(floor[:20])
    orphans = [
        orphan_beside(log, name, token)
        for name in (floor, middle, top)
        for token in ("0" * 16, "f" * 16)
        if f"{name[:20]}-{token}" != name
    ]
    # A commit in flight, racing the compaction: its checkpoint is put before its step.
    in_flight = f"{newest + 1:020d}-{'f' * 16}"
    _sync.sync(log.store.put(log.dedup_key(in_flight), _sync.sync(log.store.get(log.dedup_key(top))).data))
    report = _sync.sync(compact(log, keep_last=keep_last, min_age=0.0, fresh_window=0.0))
    assert report.watermark == int(floor[:20]) + 1
    oldest_kept = _sync.sync(log.read_step(report.watermark))
    assert oldest_kept is not None and oldest_kept.dedup_base == floor
    left = checkpoints(log)
    outlived = sorted(set(orphans) & set(left))
    assert not outlived, f"orphans outlived the compaction: {outlived}"
    assert left == [floor, middle, top, in_flight]
    # Every key still answers from the table, once.
    purse = vc.get_actor("p")
    for i in range(40):
        assert purse.pay.options(idempotency_key=f"pay-{i}").run(1, tag="retry") == f"{i + 1}:{i}{_TAG}"


@pytest.mark.usefixtures("runtime_off")
def test_a_step_read_at_a_shared_number_decides_nothing_once_the_watermark_passed_it(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction reads the step of a number at which two checkpoints are listed. Another
    compaction raised the watermark past that number meanwhile and deleted the step, and a
    stalled writer's late put re-created it (a stray, naming the lost race's checkpoint): what
    the stray names must not get the checkpoint the kept steps name deleted."""
    log = a_purse_of_checkpoints(spec)
    floor, middle, _top = checkpoints(log)[-3:]
    shared = int(middle[:20])
    orphan = orphan_beside(log, middle, "f" * 16)
    newest = newest_step(log)
    read_step, read_gc = ActorLog.read_step, ActorLog.read_gc
    stray_read: list[int] = []

    async def stray_at_the_shared_number(self: ActorLog, step: int) -> StepRecord | None:
        record = await read_step(self, step)
        if self.actor_id == "p" and step == shared and record is not None:
            stray_read.append(step)
            return dataclasses.replace(record, writer="stalled", dedup_base=orphan)
        return record

    async def raised_once_the_stray_was_read(self: ActorLog) -> int:
        gc = await read_gc(self)
        return max(gc, shared + 1) if stray_read else gc

    monkeypatch.setattr(ActorLog, "read_step", stray_at_the_shared_number)
    monkeypatch.setattr(ActorLog, "read_gc", raised_once_the_stray_was_read)
    _sync.sync(compact(log, keep_last=newest - int(floor[:20]), min_age=0.0, fresh_window=0.0))
    assert stray_read, "the step at the shared number was not read"
    assert middle in checkpoints(log)

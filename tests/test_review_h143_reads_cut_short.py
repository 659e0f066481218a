"""Review h143: reads cut short (h142, ``checked_read.py``) where h142 left a fresh GET unchecked.

A sub-task's checkpoint put that finds the position taken (another run of the call won it)
reads the winner's checkpoint back: its result counts, so both runs go on with one result
(a later child launched with it finds the winner's checkpoint for it, and does not run again).
That read was one GET: cut short on the way, the checkpoint "does not verify", and this run
went on with its own child's result, as if none had been written.

A timer runner's claim on an actor's due timers (``timer_runner.claim_actor``) is a lease: a
runner that finds one held reads it, and takes it over only if it expired or is unreadable.
Read cut short on the way, a live claim was "unreadable", and taken from the runner holding it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import cloudpickle
import pytest
from subtask_workers import Trainer
from test_review_h142_reads_cut_short import CutsFirstReads

import vactor_cloud as vc
from vactor_cloud import codec
from vactor_cloud.keys import task_key
from vactor_cloud.storage import MemoryStore, PutMode
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_runner import claim_actor


class WonByAnotherRun(CutsFirstReads):
    """Cuts the first read of ``won`` short; its first put lands after another run's
    checkpoint there (the same meta, the result 777): refused, the position taken."""

    def __init__(self, inner: vc.storage.ObjectStore, won: str) -> None:
        super().__init__(inner, only=won)
        self.won = won
        self.raced = False

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key == self.won and not self.raced:
            self.raced = True
            meta = codec.decode(key, data).meta
            other = codec.encode(key, meta, {"result": cloudpickle.dumps(777)})
            await self.inner.put(key, other, mode="create")
        return await super()._put(key, data, mode)


@pytest.mark.usefixtures("runtime_off")
def test_a_checkpoint_won_by_another_run_read_back_cut_short_is_read_again(
    store_spec: StoreSpec, tmp_path: Path
) -> None:
    store_spec.init()
    trainer = Trainer.get_or_create("t")
    trainer.fan_out.run(0, str(tmp_path / "warm"))  # (loaded: the race below is its first)
    runtime = vc.get_runtime()
    won = task_key("t", uuid.uuid5(uuid.NAMESPACE_URL, "t/k1").hex, 0)
    runtime.store = racing = WonByAnotherRun(runtime.store, won)
    # Before: [0, 1], this run's own result (the winner's read cut short "does not verify").
    assert trainer.fan_out.options(idempotency_key="k1").run(2, str(tmp_path / "events")) == [777, 1]
    assert racing.raced and racing.reads == {won: 2}


@pytest.mark.parametrize("signing_key", [None, b"k" * 32], ids=["plain", "signed"])
def test_a_live_timer_claim_read_cut_short_is_read_again_not_taken_over(signing_key: bytes | None) -> None:
    async def scenario() -> tuple[bool, bool, int]:
        inner = MemoryStore(name=f"h143-{uuid.uuid4().hex}")
        held = await claim_actor(inner, "a", "runner-1", 60.0, signing_key)
        cutting = CutsFirstReads(inner, only="timer-claims/")
        taken = await claim_actor(cutting, "a", "runner-2", 60.0, signing_key)
        return held, taken, cutting.requests["get"]

    held, taken, gets = asyncio.run(scenario())
    assert held
    assert not taken, "a live claim, read cut short, was taken over from the runner holding it"
    assert gets == 2

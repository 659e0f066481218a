"""Review h143: reads cut short (h142, ``checked_read.py``) where h142 left a fresh GET unchecked.

A sub-task's checkpoint put that finds the position taken (another run of the call won it)
reads the winner's checkpoint back: its result counts, so both runs go on with one result
(a later child launched with it finds the winner's checkpoint for it, and does not run again).
That read was one GET: cut short on the way, the checkpoint "does not verify", and this run
went on with its own child's result, as if none had been written.

A timer runner's claim on an actor's due timers (``timer_claims.claim_actor``) is a lease: a
runner that finds one held reads it, and takes it over only if it expired or is unreadable.
Read cut short on the way, a live claim was "unreadable", and taken from the runner holding it.

Pins: what changes between the GETs of a read cut short is what the next GET says: a step
deleted (compacted) meanwhile is gone (None, not an error), a lease overwritten meanwhile is
the new one, with its version (the one a take must match).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import cloudpickle
import pytest
from subtask_workers import Trainer
from test_review_h142_reads_cut_short import CutsFirstReads

import vactor_cloud as vc
from vactor_cloud import codec
from vactor_cloud.keys import task_key
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog
from vactor_cloud.storage import Blob, MemoryStore, PutMode
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_claims import claim_actor


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


class ChangesAfterACutRead(CutsFirstReads):
    """Cuts the first read of each key short, then runs ``meanwhile`` (once) before the next."""

    def __init__(self, inner: vc.storage.ObjectStore, meanwhile: Callable[[], Awaitable[object]]) -> None:
        super().__init__(inner)
        self.meanwhile: Callable[[], Awaitable[object]] | None = meanwhile

    async def _get(self, key: str) -> Blob:
        if self.reads.get(key) == 1 and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return await super()._get(key)


def test_a_step_deleted_between_the_reads_of_a_read_cut_short_is_gone() -> None:
    async def scenario() -> tuple[object, int]:
        inner = MemoryStore(name=f"h143-{uuid.uuid4().hex}")
        whole = ActorLog(inner, "a")
        key = whole.step_key(1)
        await inner.put(key, b"a step whose first read is cut short")
        store = ChangesAfterACutRead(inner, lambda: inner.delete(key))
        return await ActorLog(store, "a").read_step(1), store.requests["get"]

    assert asyncio.run(scenario()) == (None, 2)


def test_a_lease_overwritten_between_the_reads_of_a_read_cut_short_is_the_new_one() -> None:
    async def scenario() -> tuple[str, str, str | None]:
        inner = MemoryStore(name=f"h143-{uuid.uuid4().hex}")
        leases = LeaseStore(inner, "a", None)
        first = await leases.write(await leases.read(), "h1", 60, 1)
        assert first is not None
        taken: list[object] = []

        async def overwrite() -> None:
            taken.append(await leases.write(first, "h2", 60, 1))

        read = await LeaseStore(ChangesAfterACutRead(inner, overwrite), "a", None).read()
        return read.holder, read.version, await inner.head(leases.key)

    holder, version, stored = asyncio.run(scenario())
    assert holder == "h2" and version == stored

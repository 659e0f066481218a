"""Reads beside compaction and cache drops (the h55 review): a read whose cache keeps being
dropped, past views (``state_at``) and the read budget (``Settings.max_read_bytes``), a
read at a step compacted away. Each test failed on the code it was written against; waits
are bounded by events and counts, never timed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.core import ActorCore
from vactor_cloud.log import ActorLog
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a test waits for what must finish at once before calling it a hang
HANG = 120.0


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init(settings=replace(vc.Settings(storage=""), storage=store_spec.url, head_interval=3600.0))
    try:
        yield store_spec
    finally:
        vc.shutdown()


@vc.virtual_actor
class Gauge:
    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


def test_a_read_whose_cache_is_dropped_after_every_load_is_answered_by_its_own_load(
    actors: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_loaded_record`` loaded the actor, then read the cache again: dropped meanwhile (a
    compaction's ``forget``, a writer's failed attempt, on another thread), it loaded again,
    and again, bounded only by ``Settings.deadline``: under drops that keep coming a read
    starved (one full load, HEAD and steps, per drop) and, on a store answering at once,
    spun. A read now runs on the step its own load found: bounded loads, however many drops."""
    gauge = Gauge.get_or_create("dropped")
    assert gauge.add.run() == 1
    vc.get_runtime().core("dropped").forget()
    drops = [40]  # bounded: the unchanged code ends once the drops stop
    loads: list[str] = []
    accept, read_head = ActorCore._accept, ActorLog.read_head

    def accept_then_drop(core: ActorCore, *args: Any, **kwargs: Any) -> None:
        accept(core, *args, **kwargs)
        if core.actor_id == "dropped" and drops[0] > 0:
            drops[0] -= 1
            core.forget()  # as a compaction's forget() on another thread, right after the load

    async def counted_read_head(log: ActorLog) -> Any:
        loads.append(log.actor_id)
        return await read_head(log)

    monkeypatch.setattr(ActorCore, "_accept", accept_then_drop)
    monkeypatch.setattr(ActorLog, "read_head", counted_read_head)
    assert gauge.value.run() == 1
    # One by the handle (the actor was not cached), one by the read's own revalidation.
    assert loads.count("dropped") <= 2, loads

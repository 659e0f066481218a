"""Review h146: ``repair_timer_index()`` of every actor, and the CLI's ``IdChunks``, attacked at
their chunk boundaries: a run bounded by one ``Settings.deadline`` for every actor, ids that sort
before ``/``, actors created and deleted between chunks, an empty store, exactly a chunk."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from actors import Tally
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import history, timer_runner
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _seed(ids: list[str]) -> None:
    for actor_id in ids:
        handle = Tally.get_or_create(actor_id)
        handle.incr.options(delay=3600, timer_key="t").run()


def _slow_listing(monkeypatch: pytest.MonkeyPatch, pause: float) -> None:
    store = vc.get_runtime().store
    real = store.list

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(pause)
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "list", slow)


def test_repair_of_every_actor_is_bounded_by_the_deadline_a_chunk_at_a_time(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Settings.deadline`` bounds an operation; the repair of every actor is a job of many
    (a bucket of millions of actors takes minutes). It ran as one operation, every chunk under
    one deadline: past it, ``StorageTimeoutError`` on any store big enough to page through
    (here some 15 LISTs of 0.1 s each under a deadline of 0.5 s; a chunk takes one or two)."""
    ids = [f"a-{n:03d}" for n in range(60)]
    _seed(ids)
    monkeypatch.setattr(timer_runner, "_REPAIR_CHUNK", 4)
    monkeypatch.setattr(history, "_ID_PAGE", 16)
    _slow_listing(monkeypatch, 0.1)
    retune(deadline=0.5)
    written = timer_runner.repair_timer_index()
    retune(deadline=30.0)
    assert written == len(ids)

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
from vactor_cloud import history, timer_repair, timer_runner
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
    (here some 15 LISTs of 0.1 s each under a deadline of 1 s; a chunk takes one or two)."""
    ids = [f"a-{n:03d}" for n in range(60)]
    _seed(ids)
    monkeypatch.setattr(timer_repair, "_REPAIR_CHUNK", 4)
    monkeypatch.setattr(history, "_ID_PAGE", 16)
    _slow_listing(monkeypatch, 0.1)
    retune(deadline=1.0)
    written = timer_runner.repair_timer_index()
    retune(deadline=30.0)
    assert written == len(ids)


#: ids around the ``/`` that ends an id in its keys: ``-``, ``.``, `` ``, ``!`` sort before it,
#: ``0`` (the cursor's character) just after it, then letters and characters beyond ASCII
ODD_IDS = ["a", "a-b", "a.b", "a b", "a!", "a0", "a00", "a-", "ab", "b", "é", "日本", "~x", "A"]


class Repaired:
    """The ids each ``repair_index`` call got (the one that reads each actor and writes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chunks: list[list[str]] = []
        self.between: Any = None
        real = timer_repair.repair_index

        async def repair_index(store: Any, actor_ids: list[str], read_extra: Any) -> int:
            self.chunks.append(list(actor_ids))
            written: int = await real(store, actor_ids, read_extra)
            if self.between is not None and len(self.chunks) == 1:
                await asyncio.to_thread(self.between)
            return written

        monkeypatch.setattr(timer_repair, "repair_index", repair_index)

    @property
    def ids(self) -> list[str]:
        return [actor_id for chunk in self.chunks for actor_id in chunk]


@pytest.mark.parametrize(("chunk", "page"), [(1, 2), (2, 3), (3, 64), (len(ODD_IDS), 5)])
def test_every_odd_id_is_repaired_once_whatever_the_chunk_and_page(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, chunk: int, page: int
) -> None:
    _seed(ODD_IDS)
    monkeypatch.setattr(timer_repair, "_REPAIR_CHUNK", chunk)
    monkeypatch.setattr(history, "_ID_PAGE", page)
    repaired = Repaired(monkeypatch)
    assert timer_runner.repair_timer_index() == len(ODD_IDS)
    assert sorted(repaired.ids) == sorted(ODD_IDS)  # (each once)
    # (chunks of the size set, read by timer_repair: with the default size, one chunk of all;
    # an empty last chunk, where the ids end a whole chunk, left aside)
    whole, rest = divmod(len(ODD_IDS), chunk)
    sizes = [len(c) for c in repaired.chunks if c]
    assert sizes == [chunk] * whole + [rest] * (rest > 0), repaired.chunks


def test_an_empty_store_repairs_nothing(actor_store: StoreSpec) -> None:
    assert timer_runner.repair_timer_index() == 0


def test_actors_created_and_deleted_between_chunks(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each actor there throughout is repaired once; one deleted before its chunk is listed is
    listed (its tombstone) with no timer to index; one created behind the listing waits for the
    next repair, one created ahead of it is repaired."""
    ids = [f"m-{n}" for n in range(8)]
    _seed(ids)
    monkeypatch.setattr(timer_repair, "_REPAIR_CHUNK", 2)
    monkeypatch.setattr(history, "_ID_PAGE", 3)
    repaired = Repaired(monkeypatch)

    def between() -> None:
        vc.delete_actor("m-6")
        _seed(["a-behind", "z-ahead"])

    repaired.between = between
    assert timer_runner.repair_timer_index() == 7 + 1
    # (m-6's tombstone is listed, and indexes nothing: 7 of the seeded 8, and z-ahead's)
    assert len(set(repaired.ids)) == len(repaired.ids)
    assert sorted(repaired.ids) == sorted([*ids, "z-ahead"])

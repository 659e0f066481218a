"""Review h150: ``repair_index`` (``vactor timers repair``) and ``write_entries`` when one actor's
repair, or one entry's put, fails: the others are waited for (never left running behind the
caller's back once it heard the failure), and the error names the actor(s) that failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from actors import Tally

import vactor_cloud as vc
from vactor_cloud import _sync, keys
from vactor_cloud.errors import DamagedObjectError, StorageError
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import pending_timers, repair_index, write_entries

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _seed_without_index(ids: list[str]) -> None:
    """Actors ``ids`` with a pending timer each, and no due-index entry left for any."""
    for actor_id in ids:
        Tally.get_or_create(actor_id).incr.options(delay=3600, timer_key="t").run()
    store = vc.get_runtime().store
    for key in _sync.sync(store.list(keys.TIMER_INDEX)):
        _sync.sync(store.delete(key))


def _indexed() -> set[str]:
    listed = _sync.sync(vc.get_runtime().store.list(keys.TIMER_INDEX))
    return {entry[1] for key in listed if (entry := keys.timer_index_entry(key)) is not None}


def _count_puts(monkeypatch: pytest.MonkeyPatch, failing: str | None = None) -> list[str]:
    """The keys of the puts that have ended, in order (``failing``: one refused)."""
    store = vc.get_runtime().store
    real_put = store.put
    ended: list[str] = []

    async def put(key: str, data: bytes, **kwargs: Any) -> str:
        if key == failing:
            raise StorageError("refused for the test", key=key)
        for _ in range(20):  # (the other puts are still in flight when that one fails)
            await asyncio.sleep(0)
        version = await real_put(key, data, **kwargs)
        ended.append(key)
        return version

    monkeypatch.setattr(store, "put", put)
    return ended


async def _failure_and_then(work: Any, ended: list[str]) -> tuple[BaseException, list[str]]:
    """The exception ``work`` raised, and the puts ended when it was heard (the loop is one
    thread: nothing runs between the raise and this copy)."""
    try:
        await work
    except Exception as exc:
        return exc, list(ended)
    raise AssertionError("it did not fail")


async def _extra(actor_id: str) -> dict[str, Any]:
    return (await vc.get_runtime().core(actor_id).revalidate()).extra


def test_a_failed_actor_repair_waits_for_the_others_and_names_the_actor(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_without_index(["good", "slow"])
    slow_started = asyncio.Event()

    async def read_extra(actor_id: str) -> dict[str, Any]:
        if actor_id == "bad":
            await slow_started.wait()
            raise DamagedObjectError("actors/bad/steps/00000000000000000000", "made up for the test")
        if actor_id == "slow":
            slow_started.set()
            for _ in range(20):  # (still reading when the bad one fails)
                await asyncio.sleep(0)
        return await _extra(actor_id)

    store = vc.get_runtime().store
    ended = _count_puts(monkeypatch)
    repair = repair_index(store, ["bad", "good", "slow"], read_extra)
    error, ended_then = _sync.sync(_failure_and_then(repair, ended))
    assert isinstance(error, DamagedObjectError)
    # done when the failure was heard, not after
    assert {keys.timer_index_entry(k)[1] for k in ended_then} == {"good", "slow"}  # type: ignore[index]
    assert _indexed() == {"good", "slow"}
    said = "\n".join(getattr(error, "__notes__", []))
    assert "'bad'" in said and "'slow'" not in said
    assert "2 of 3" in said  # the others were repaired


def test_every_failed_actor_is_named(actor_store: StoreSpec) -> None:
    _seed_without_index(["good"])

    async def read_extra(actor_id: str) -> dict[str, Any]:
        if actor_id.startswith("bad"):
            raise DamagedObjectError(f"actors/{actor_id}/steps/00000000000000000000", "made up")
        return await _extra(actor_id)

    with pytest.raises(DamagedObjectError) as caught:
        _sync.sync(repair_index(vc.get_runtime().store, ["bad-1", "good", "bad-2"], read_extra))
    said = "\n".join(getattr(caught.value, "__notes__", []))
    assert "'bad-1'" in said and "'bad-2'" in said
    assert _indexed() == {"good"}


def test_a_failed_entry_put_waits_for_the_other_puts(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("a", "b", "c"):
        Tally.get_or_create("many").incr.options(delay=3600, timer_key=key).run()
    store = vc.get_runtime().store
    for key in _sync.sync(store.list(keys.TIMER_INDEX)):
        _sync.sync(store.delete(key))
    timers = sorted(pending_timers(_sync.sync(_extra("many"))).values(), key=lambda t: t.key)
    failing = timers[0].index_key("many")
    ended = _count_puts(monkeypatch, failing)
    error, ended_then = _sync.sync(_failure_and_then(write_entries(store, "many", timers), ended))
    assert isinstance(error, StorageError) and "refused for the test" in str(error)
    assert set(ended_then) == {t.index_key("many") for t in timers[1:]}  # waited for

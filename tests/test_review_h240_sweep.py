"""Review h240: a mutation sweep of the fault injector the chaos, crash and wire-fault suites rely
on (``testing/faults.py``, ``testing/latency.py``), of the store contract's base
(``storage/_base.py``), the memory store, storage URL parsing (``storage/__init__.py``) and
``subtask.py``.

TABLE

Notes:

NOTES
"""

from __future__ import annotations

import asyncio
import types
import uuid

import pytest

from vactor_cloud.errors import RetryableStorageError, StorageError, StorageTimeoutError
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing import faults
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore

ALL = frozenset({"get", "head", "put", "list", "delete"})


def _faulty(*rules: FaultRule, seed: int = 1) -> tuple[FaultyStore, MemoryStore]:
    inner = MemoryStore(f"h240-{uuid.uuid4().hex}")
    return FaultyStore(inner, FaultConfig(rules, seed)), inner


# -- the fault injector -------------------------------------------------------------------------
def test_a_rule_counts_and_fires_on_its_own_operations_only() -> None:
    """F01: a rule for puts that fired on (and counted) a get or a list injected into requests
    the chaos phase said it spared."""
    store, inner = _faulty(FaultRule("fail_before", operations=frozenset({"put"}), at=(1,)))

    async def run() -> None:
        await inner.put("k", b"0")
        assert (await store.get("k")).data == b"0"
        assert await store.head("k") is not None
        assert await store.list("") == ["k"]
        await store.delete("k")
        with pytest.raises(RetryableStorageError):
            await store.put("k", b"1")  # the rule's first put
        assert await inner.head("k") is None

    asyncio.run(run())
    assert dict(store.injected) == {"fail_before": 1}


def test_when_several_rules_fire_the_first_is_injected() -> None:
    """F09: the last rule that fired was injected (a lost response where the first rule said
    the request never left)."""
    store, inner = _faulty(
        FaultRule("fail_before", at=(1,)), FaultRule("lost_response", at=(1,), retryable=False)
    )

    async def run() -> None:
        with pytest.raises(RetryableStorageError):
            await store.put("k", b"x", mode="create")
        assert await inner.head("k") is None

    asyncio.run(run())
    assert dict(store.injected) == {"fail_before": 1}


def test_a_lost_response_with_retryable_false_raises_a_plain_storage_error_after_applying() -> None:
    """F18: ``retryable=False`` ignored for a lost response (always retryable)."""
    store, inner = _faulty(FaultRule("lost_response", at=(1,), retryable=False))

    async def run() -> None:
        with pytest.raises(StorageError) as info:
            await store.put("k", b"x", mode="create")
        assert not isinstance(info.value, RetryableStorageError)
        assert (await inner.get("k")).data == b"x"

    asyncio.run(run())


@pytest.mark.parametrize(("operation", "write"), [("put", True), ("delete", True), ("get", False)])
def test_an_injected_timeout_says_whether_a_write_was_in_flight(operation: str, write: bool) -> None:
    """F20: a delete's timeout said no write was in flight."""
    store, inner = _faulty(FaultRule("timeout_before", operations=frozenset({operation}), at=(1,)))

    async def run() -> None:
        await inner.put("k", b"0")
        with pytest.raises(StorageTimeoutError) as info:
            if operation == "put":
                await store.put("k", b"1")
            elif operation == "delete":
                await store.delete("k")
            else:
                await store.get("k")
        assert info.value.write_in_flight is write

    asyncio.run(run())


def test_a_delay_sleeps_a_random_time_up_to_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """F23: a delay that never waited (every chaos phase's "delay" kind tested nothing)."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(faults, "asyncio", types.SimpleNamespace(sleep=sleep))
    store, _ = _faulty(FaultRule("delay", operations=ALL, probability=1.0, delay=0.5))

    async def run() -> None:
        for n in range(5):
            await store.put(f"k{n}", b"x")

    asyncio.run(run())
    assert len(waits) == 5
    assert all(0.0 < w <= 0.5 for w in waits), waits


@pytest.mark.parametrize("data", [b"", b"x", b"xy"])
def test_a_truncated_read_is_never_the_whole_object_and_an_empty_one_stays_empty(data: bytes) -> None:
    """F25: a cut that may keep every byte (a one-byte object came back whole); F27: an empty
    object's damaged read raised ValueError instead of returning it."""
    for kind in ("truncate_read", "corrupt_read"):
        for seed in range(8):
            store, inner = _faulty(FaultRule(kind, operations=frozenset({"get"}), at=(1,)), seed=seed)  # type: ignore[arg-type]
            damaged = asyncio.run(_read_back(store, inner, data))
            assert damaged == b"" if not data else damaged != data, (kind, seed, damaged)


async def _read_back(store: FaultyStore, inner: MemoryStore, data: bytes) -> bytes:
    await inner.put("k", data)
    return (await store.get("k")).data


class _Killed(Exception):
    pass


def test_a_crash_before_kills_before_the_request_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """F29: a crash_before that never killed (the crash suite's "before" points)."""

    def kill() -> None:
        raise _Killed

    monkeypatch.setattr(faults, "_kill_self", kill)
    store, inner = _faulty(FaultRule("crash_before", key_contains="/steps/", at=(2,)))

    async def run() -> None:
        await store.put("a/steps/1", b"1")
        with pytest.raises(_Killed):
            await store.put("a/steps/2", b"2")
        assert await inner.head("a/steps/2") is None

    asyncio.run(run())


def test_a_batched_conditional_delete_through_the_injector_keeps_a_key_written_again() -> None:
    """F31: the injector forwarded a batch of conditional deletes as plain deletes (a key
    written again since was deleted)."""
    store, inner = _faulty()
    store.delete_batch = 3

    async def run() -> None:
        versions = {key: await inner.put(key, b"0") for key in ("a", "b", "c")}
        await inner.put("b", b"again")
        await store.delete_unchanged(versions)
        assert await inner.list("") == ["b"]

    asyncio.run(run())

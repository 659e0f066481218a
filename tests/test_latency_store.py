"""LatencyStore: every request waits a round trip, half before and half after the wrapped store acts."""

from __future__ import annotations

import asyncio

import pytest

import vactor_cloud as vc
from vactor_cloud.cli import bench_harness as bench
from vactor_cloud.cli import main as vactor
from vactor_cloud.errors import AlreadyExistsError, NotFoundError
from vactor_cloud.runtime import get_runtime
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.latency import Latency, LatencyStore, install


def test_latency_parses_milliseconds_with_optional_jitter() -> None:
    assert Latency.parse("20") == Latency(0.02, 0.0)
    assert Latency.parse("20,5") == Latency(0.02, 0.005)
    for bad in ("", "x", "1,2,3", "-1"):
        with pytest.raises(ValueError):
            Latency.parse(bad)


def test_every_request_waits_and_acts_in_the_middle_of_its_wait() -> None:
    """Each request waits half its round trip, acts on the wrapped store, then waits the other
    half; the halves are the store's ``sleep``, here held until the test lets each one end (no
    clock in the test: it fails only if the order is wrong)."""
    inner = MemoryStore("latency-store")
    store = LatencyStore(inner, Latency(0.4))
    waits: list[float] = []

    async def body() -> None:
        cue: asyncio.Queue[asyncio.Event] = asyncio.Queue()

        async def held(seconds: float) -> None:
            waits.append(seconds)
            done = asyncio.Event()
            await cue.put(done)
            await done.wait()

        store.sleep = held
        put = asyncio.create_task(store.put("k", b"v", mode="create"))
        first = await asyncio.wait_for(cue.get(), 30)  # the put waits its first half
        assert await inner.head("k") is None  # not there yet
        first.set()
        second = await asyncio.wait_for(cue.get(), 30)  # applied; the answer on its way back
        assert await inner.head("k") is not None
        assert not put.done()
        second.set()
        await asyncio.wait_for(put, 30)
        assert waits == [0.2, 0.2]

        async def let_each_half_end() -> None:
            while True:
                (await cue.get()).set()

        releaser = asyncio.create_task(let_each_half_end())
        try:
            for operation in (store.get("k"), store.head("k"), store.list(""), store.delete("k")):
                waits.clear()
                await asyncio.wait_for(operation, 30)
                assert waits == [0.2, 0.2]
            # Errors are the wrapped store's, unchanged (and still wait both halves).
            waits.clear()
            with pytest.raises(NotFoundError):
                await store.get("k")
            assert waits == [0.2, 0.2]
            await store.put("k", b"v", mode="create")
            with pytest.raises(AlreadyExistsError):
                await store.put("k", b"v", mode="create")
        finally:
            releaser.cancel()

    try:
        asyncio.run(body())
    finally:
        MemoryStore.wipe("latency-store")
    assert store.requests.total() == inner.requests.total() - 2  # the test's own two peeks


def test_a_latency_store_sleeps_a_real_round_trip_by_default() -> None:
    """Without a test's cue the halves are ``asyncio.sleep`` of half the round trip each."""
    store = LatencyStore(MemoryStore("latency-default"), Latency(0.02))
    try:
        assert store.sleep is asyncio.sleep
    finally:
        MemoryStore.wipe("latency-default")


def test_jitter_spreads_the_round_trip_within_its_bounds() -> None:
    """``Latency(s, j)``: each round trip is ``s`` plus or minus at most ``j``, both halves alike."""
    store = LatencyStore(MemoryStore("latency-jitter"), Latency(0.02, 0.01), seed=7)
    halves: list[float] = []

    async def recorded(seconds: float) -> None:
        halves.append(seconds)

    store.sleep = recorded

    async def body() -> None:
        for n in range(50):
            await store.put(f"k{n}", b"v")

    try:
        asyncio.run(body())
    finally:
        MemoryStore.wipe("latency-jitter")
    trips = [a + b for a, b in zip(halves[::2], halves[1::2], strict=True)]
    assert all(a == b for a, b in zip(halves[::2], halves[1::2], strict=True))
    assert all(0.01 - 1e-9 <= t <= 0.03 + 1e-9 for t in trips) and len(set(trips)) > 10


def test_install_wraps_the_runtime_store_and_actors_use_it() -> None:
    vc.init("memory://latency-install")
    try:
        wrapped = install(Latency(0.001))
        assert get_runtime().store is wrapped
        handle = bench.BenchCounter.get_or_create("c")
        assert handle.incr.run() == 1
        assert wrapped.requests["put"] >= 1
    finally:
        vc.shutdown()
        MemoryStore.wipe("latency-install")


def test_bench_takes_latency_and_row_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert Latency.parse("20,5") == Latency(0.02, 0.005)
    with pytest.raises(SystemExit) as bad_rows:
        vactor(["bench", "memory://x", "--rows", "nope"])
    assert bad_rows.value.code == 2
    assert "unknown row groups" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_latency:
        vactor(["bench", "memory://x", "--latency", "x"])
    assert bad_latency.value.code == 2

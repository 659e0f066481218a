"""LatencyStore: every request waits a round trip, half before and half after the wrapped store acts."""

from __future__ import annotations

import asyncio
import time

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
    inner = MemoryStore("latency-store")
    # Long enough that a loaded machine's scheduling delays (tens of ms) cannot blur the halves.
    store = LatencyStore(inner, Latency(0.4))

    async def body() -> None:
        started = time.perf_counter()
        put = asyncio.create_task(store.put("k", b"v", mode="create"))
        await asyncio.sleep(0.05)
        assert await inner.head("k") is None  # still on its way there (until 0.2 s)
        await asyncio.sleep(0.25)
        assert await inner.head("k") is not None  # applied, the answer on its way back
        assert not put.done()  # (until 0.4 s)
        await put
        assert time.perf_counter() - started >= 0.4
        for operation in (
            store.get("k"),
            store.head("k"),
            store.list(""),
            store.delete("k"),
        ):
            started = time.perf_counter()
            await operation
            assert time.perf_counter() - started >= 0.4
        # Errors are the wrapped store's, unchanged.
        with pytest.raises(NotFoundError):
            await store.get("k")
        await store.put("k", b"v", mode="create")
        with pytest.raises(AlreadyExistsError):
            await store.put("k", b"v", mode="create")

    try:
        asyncio.run(body())
    finally:
        MemoryStore.wipe("latency-store")
    assert store.requests.total() == inner.requests.total() - 2  # the test's own two peeks


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

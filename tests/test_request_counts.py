"""Request counts of the hot paths, asserted exactly on every backend (issue 5).

The counts come from tracing the store the runtime uses (every get, put,
list, head and delete with its key and interval), so they are
deterministic: no timings are asserted here.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli.bench_harness import BenchCounter, Target, _cold_call_fresh_runtime, _cold_call_in_child
from vactor_cloud.cli.request_trace import Request, RequestTrace, sequential_round_trips
from vactor_cloud.testing.lanes import Lane, StoreSpec

#: HEAD never moves during a test unless the test flushes it, and caches stay fresh
#: however slow the emulator: counts stay exact
# No background HEAD moves or inbox listings inside a measured window, however slow the server.
_QUIET = vc.Settings(storage="", head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)

_gate = threading.Event()
_entered = threading.Event()


@vc.virtual_actor
class Ledger:
    """Records the order of applied writes; ``hold`` blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.entries: list[int] = []

    def add(self, value: int) -> int:
        if value < 0:
            raise ValueError(f"negative entry {value}")
        self.entries.append(value)
        return len(self.entries)

    def hold(self) -> str:
        # Through sys.modules: the class body is pickled by value, and events cannot be.
        here = sys.modules[__name__]
        here._entered.set()
        here._gate.wait(30)
        return "held"

    @vc.virtual_actor.readonly
    def all(self) -> list[int]:
        return list(self.entries)


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.init(store_spec.url, settings=replace(_QUIET, storage=store_spec.url), **store_spec.options)
    try:
        yield store_spec
    finally:
        _gate.set()
        vc.shutdown()


def trace() -> RequestTrace:
    return RequestTrace(vc.get_runtime().store)


def newest_step(actor_id: str) -> int:
    record = vc.get_runtime().core(actor_id).record
    assert record is not None
    return record.step


def kinds(requests: list[Request]) -> list[tuple[str, str]]:
    return [(r.kind, r.key.rsplit("/", 2)[-2] + "/" + r.key.rsplit("/", 1)[-1]) for r in requests]


def test_warm_commit_is_exactly_one_create_only_put_of_the_next_step(actors: StoreSpec) -> None:
    handle = BenchCounter.get_or_create("warm")
    handle.incr.run()
    before = newest_step("warm")
    with trace().installed() as t:
        assert handle.incr.run() == 2
    assert kinds(t.requests) == [("put", f"steps/{before + 1:020d}")]
    assert vc.get_runtime().store.requests["put"] >= 1


def test_a_warm_commit_through_an_unpickled_handle_or_method_is_one_put(actors: StoreSpec) -> None:
    """A handle and a method pickled and unpickled here carry their class (by name): checking
    it costs no request, each commit is the one put of the next step."""
    handle = BenchCounter.get_or_create("unpickled")
    handle.incr.run()
    again, method = pickle.loads(pickle.dumps(handle)), pickle.loads(pickle.dumps(handle.incr))
    assert again._class_name == handle._class.name
    before = newest_step("unpickled")
    with trace().installed() as t:
        assert again.incr.run() == 2
        assert method.run() == 3
    assert kinds(t.requests) == [("put", f"steps/{before + 1:020d}"), ("put", f"steps/{before + 2:020d}")]


def test_warm_linearizable_read_is_exactly_one_get_probing_the_next_step(actors: StoreSpec) -> None:
    handle = BenchCounter.get_or_create("reader")
    handle.incr.run()
    step = newest_step("reader")
    with trace().installed() as t:
        assert handle.value.run() == 1
    assert kinds(t.requests) == [("get", f"steps/{step + 1:020d}")]


def test_warm_call_that_commits_nothing_is_exactly_one_get_probing_the_next_step(actors: StoreSpec) -> None:
    """A call that raises, and a keyed retry answered from the table, commit nothing: no put
    tells whether the cache is the newest step, so one probe does (docs/protocol.md, Commit,
    "Nothing to commit"), as a read's does."""
    handle = Ledger.get_or_create("nothing")
    assert handle.add.options(idempotency_key="k").run(1) == 1
    step = newest_step("nothing")
    with trace().installed() as t:
        with pytest.raises(ValueError, match="negative"):
            handle.add.run(-1)
        assert handle.add.options(idempotency_key="k").run(1) == 1
    assert kinds(t.requests) == [("get", f"steps/{step + 1:020d}")] * 2


def test_cold_call_from_a_new_process_takes_at_most_four_round_trips_and_no_list(
    actors: StoreSpec, store_lane: Lane
) -> None:
    handle = BenchCounter.get_or_create("cold")
    for _ in range(3):
        handle.incr.run()
    _sync.sync(vc.get_runtime().heads.flush())  # HEAD is current
    target = Target(actors.url, actors.options, actors.env)
    if store_lane.multiprocess:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply_async(_cold_call_in_child, (target, "cold")).get(timeout=120)
    else:
        # memory:// is one process: a fresh runtime is the closest thing to a new process
        result = _cold_call_fresh_runtime(target, "cold")
        vc.init(actors.url, settings=replace(_QUIET, storage=actors.url), **actors.options)
    # HEAD is current: the log is never listed (the inbox listing overlaps the HEAD read)
    assert result["step_lists"] == 0
    assert result["lists"] <= 1
    assert result["round_trips"] <= 4
    # and the call really committed, after the three before it
    assert vc.get_actor("cold").value.run() == 4


def test_sequential_round_trips_counts_chains_not_requests() -> None:
    concurrent = [Request("get", "a", 0.0, 1.0), Request("get", "b", 0.1, 1.1)]
    assert sequential_round_trips(concurrent) == 1
    chained = [*concurrent, Request("put", "c", 1.2, 2.0), Request("get", "d", 2.5, 3.0)]
    assert sequential_round_trips(chained) == 3
    assert sequential_round_trips([]) == 0


def _queue_behind_a_held_call(handle: Any, values: list[int]) -> tuple[Any, list[Any]]:
    """Occupy the actor with ``hold`` so that the writes submitted next wait in its queue together."""
    _gate.clear()
    _entered.clear()
    held = handle.hold.run_async()
    assert _entered.wait(30), "the holding call never started"
    futures = [handle.add.run_async(v) for v in values]
    return held, futures


def test_queued_writes_are_group_committed_as_one_step(actors: StoreSpec) -> None:
    handle = Ledger.get_or_create("group")
    handle.add.run(0)
    base = newest_step("group")
    with trace().installed() as t:
        held, futures = _queue_behind_a_held_call(handle, list(range(1, 21)))
        _gate.set()
        assert held.result(30) == "held"
        assert vc.get(futures, timeout=30) == list(range(2, 22))
    # one step for the held call, one for the twenty queued writes
    assert newest_step("group") == base + 2
    assert kinds(t.requests) == [
        ("put", f"steps/{base + 1:020d}"),
        ("put", f"steps/{base + 2:020d}"),
    ]
    assert handle.all.run() == list(range(21))


def test_a_raising_call_is_excluded_from_the_batch_and_the_rest_commit(actors: StoreSpec) -> None:
    handle = Ledger.get_or_create("excluded")
    handle.add.run(0)
    base = newest_step("excluded")
    with trace().installed() as t:
        held, futures = _queue_behind_a_held_call(handle, [1, 2, -3, 4])
        _gate.set()
        held.result(30)
        assert futures[0].result(30) == 2
        assert futures[1].result(30) == 3
        with pytest.raises(ValueError, match="negative entry -3"):
            futures[2].result(30)
        assert futures[3].result(30) == 4
    assert newest_step("excluded") == base + 2
    assert [r.kind for r in t.requests] == ["put", "put"]
    assert handle.all.run() == [0, 1, 2, 4]


def client_threads() -> int:
    """Threads of this process, without the in-process moto server's per-request threads."""
    return sum(1 for t in threading.enumerate() if "process_request_thread" not in t.name)


def test_async_fan_out_over_200_actors_runs_on_one_loop_without_a_thread_per_call(
    store_spec: StoreSpec,
) -> None:
    vc.init(
        store_spec.url,
        settings=replace(_QUIET, storage=store_spec.url, max_workers=4),
        **store_spec.options,
    )
    try:
        ids = [f"fan-{i}" for i in range(200)]

        async def create_all() -> list[Any]:
            return list(await asyncio.gather(*(BenchCounter.get_or_create_async(a) for a in ids)))

        handles = asyncio.run(create_all())
        threads_before = client_threads()
        peak = threads_before

        async def fan_out() -> list[Any]:
            nonlocal peak
            futures = [h.incr.run_async() for h in handles]
            peak = max(peak, client_threads())
            results = await asyncio.gather(*futures)
            peak = max(peak, client_threads())
            return list(results)

        with trace().installed() as t:
            assert asyncio.run(fan_out()) == [1] * 200
        # the method runs happen on the runtime's 4 workers, not on 200 threads
        assert peak - threads_before <= 4
        assert client_threads() - threads_before <= 4
        # one create-only put per actor and nothing else (creation already listed the inboxes)
        assert sorted(kinds(t.requests)) == sorted([("put", f"steps/{1:020d}")] * 200)
    finally:
        vc.shutdown()

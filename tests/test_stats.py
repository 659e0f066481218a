"""Observability (issue #14, point 6): notable events move vc.stats() counters, are logged at a
level that fits, show in ``vactor doctor``, and become OpenTelemetry spans when the API is installed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from combining_workers import commit_behind_its_back
from runtime_workers import Counter

import vactor_cloud as vc
from vactor_cloud import counters, tracing
from vactor_cloud.errors import RetryableStorageError, StorageError
from vactor_cloud.events import send_event
from vactor_cloud.storage import MemoryStore, PutMode
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec


@pytest.fixture(autouse=True)
def _zero() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


def moved(before: dict[str, int]) -> dict[str, int]:
    """The counters that changed since ``before``, by how much."""
    after = vc.stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "vactor_cloud" and r.levelno == level and text in r.getMessage()
    ]


def test_stats_lists_every_documented_counter_at_zero_and_is_thread_safe() -> None:
    assert vc.stats() == dict.fromkeys(counters.COUNTERS, 0)
    assert "stats" in vc.__all__

    def bump() -> None:
        for _ in range(10_000):
            counters.count("reads")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a thread counting reads never ended"
    assert vc.stats()["reads"] == 40_000
    counters.reset()
    assert vc.stats()["reads"] == 0


def test_commits_and_reads_are_counted(actor_store: StoreSpec) -> None:
    counter = Counter.get_or_create("c", 0)
    before = vc.stats()
    counter.incr.run(1)
    counter.incr.run(1)
    assert counter.value.run() == 2
    assert moved(before) == {"commits": 2, "reads": 1}


def test_a_lost_race_counts_a_conflict_logged_at_debug_and_the_posted_batch_when_folded(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    vc.shutdown()
    actor_store.init(settings=vc.Settings(storage="", combine_after=1))  # one lost race posts
    counter = Counter.get_or_create("c", 0)
    counter.incr.run(1)
    commit_behind_its_back("c")
    before = vc.stats()
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        assert counter.incr.run(1) == 2  # applied on their step (value 1 too)
    # The loser posted its batch (contention combining) and folded it into its own commit.
    assert moved(before) == {
        "commits": 1,
        "commit_conflicts": 1,
        "posted_calls": 1,
        "folded_calls": 1,
        "leases_taken": 1,  # nobody held the folder lease: the loser took it, and folded
    }
    assert records(caplog, logging.DEBUG, "lost the race for step 2")


class _Failing(MemoryStore):
    """A memory store that raises the error ``fail(operation, key)`` returns, when it returns one."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.fail: Callable[[str, str], Exception | None] = lambda operation, key: None

    def _check(self, operation: str, key: str) -> None:
        error = self.fail(operation, key)
        if error is not None:
            raise error

    async def _get(self, key: str) -> Any:
        self._check("get", key)
        return await super()._get(key)

    async def _head(self, key: str) -> str | None:
        self._check("head", key)
        return await super()._head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        self._check("put", key)
        return await super()._put(key, data, mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        self._check("list", prefix)
        return await super()._list(prefix, start_after, limit)


def test_a_transient_error_before_the_put_counts_a_retry(caplog: pytest.LogCaptureFixture) -> None:
    store = _Failing(f"transient-{uuid.uuid4().hex}")
    vc.init(store, settings=vc.Settings(fresh_window=0.0))  # every commit revalidates first
    try:
        counter = Counter.get_or_create("c", 0)
        failures = iter([RetryableStorageError("injected: no answer", "k")])
        store.fail = lambda operation, key: next(failures, None) if operation != "put" else None
        before = vc.stats()
        with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
            assert counter.incr.run(1) == 1
        assert moved(before) == {"commits": 1, "commit_retries_transient": 1}
        assert records(caplog, logging.DEBUG, "storage error before the commit's put")
    finally:
        vc.shutdown()


def test_a_lost_response_resolved_as_our_commit_is_counted_and_logged_at_info(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ.update(store_spec.env)
    # The first step put after creation is applied, then its response is lost.
    lossy = FaultyStore(
        store_spec.open(),
        FaultConfig(
            seed=1,
            rules=(FaultRule("lost_response", key_contains="/steps/", at=(2,), retryable=False),),
        ),
    )
    vc.init(lossy)
    try:
        counter = Counter.get_or_create("c", 0)
        before = vc.stats()
        with caplog.at_level(logging.INFO, logger="vactor_cloud"):
            assert counter.incr.run(1) == 1
        assert sum(lossy.injected.values()) == 1
        assert moved(before) == {"commits": 1, "lost_responses_resolved": 1}
        assert records(caplog, logging.INFO, "the object is ours")
    finally:
        vc.shutdown()


def test_a_put_whose_outcome_cannot_be_learned_counts_outcome_unknown_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _Failing(f"unknown-{uuid.uuid4().hex}")
    vc.init(store)
    try:
        counter = Counter.get_or_create("c", 0)
        # Every step put fails, and so does reading the step back: nothing can tell what happened.
        store.fail = lambda operation, key: (
            StorageError(f"{key}: injected", key)
            if "/steps/" in key and operation in ("put", "get")
            else None
        )
        before = vc.stats()
        with caplog.at_level(logging.WARNING, logger="vactor_cloud"), pytest.raises(vc.StorageError):
            counter.incr.run(1)
        assert moved(before) == {"commit_errors": 1, "outcome_unknown": 1}
        assert records(caplog, logging.WARNING, "commit outcome unknown")
    finally:
        vc.shutdown()


def test_idle_actors_dropped_from_a_small_cache_count_as_evictions(store_spec: StoreSpec) -> None:
    store_spec.init(settings=vc.Settings(max_cached_actors=2))
    try:
        before = vc.stats()
        for n in range(5):
            Counter.get_or_create(f"c{n}", n)
        assert vc.get_runtime().cached()[0] <= 3
        assert moved(before)["evictions"] >= 2
    finally:
        vc.shutdown()


class _Stalled(MemoryStore):
    async def _get(self, key: str) -> Any:
        await asyncio.sleep(3600)


@pytest.mark.parametrize(
    ("timeout", "deadline", "counter", "message"),
    [
        (0.2, 30.0, "storage_timeouts", "Settings.timeout"),
        (30.0, 0.3, "deadline_timeouts", "Settings.deadline"),
    ],
)
def test_a_stalled_store_counts_a_timeout_and_logs_it_at_warning(
    caplog: pytest.LogCaptureFixture, timeout: float, deadline: float, counter: str, message: str
) -> None:
    vc.init(_Stalled(f"stalled-{uuid.uuid4().hex}"), settings=vc.Settings(timeout=timeout, deadline=deadline))
    try:
        with caplog.at_level(logging.WARNING, logger="vactor_cloud"), pytest.raises(vc.StorageTimeoutError):
            vc.get_actor("x")
        assert vc.stats()[counter] == 1
        assert records(caplog, logging.WARNING, message)
    finally:
        vc.shutdown()


@vc.virtual_actor
class Inbox:
    def __init__(self) -> None:
        self.seen: list[int] = []

    @vc.virtual_actor.on_event("ping")
    def ping(self, payload: int) -> None:
        self.seen.append(payload)

    def touch(self) -> int:
        return len(self.seen)


def test_events_applied_by_a_commit_are_counted_as_folded(actor_store: StoreSpec) -> None:
    inbox = Inbox.get_or_create("i")
    before = vc.stats()
    for n in range(3):
        send_event("i", "ping", n)
    assert inbox.process_events() == 3
    assert moved(before)["folded_events"] == 3


# The doctor runs in a child process: a memory store would not be shared with it.
@pytest.mark.parametrize("store_lane", ["local"], indirect=True)
def test_doctor_prints_the_counters_and_puts_them_in_its_json(store_spec: StoreSpec) -> None:
    env = {**os.environ, **store_spec.env, "VACTOR_STORAGE": store_spec.url}
    os.makedirs(store_spec.url.removeprefix("file://"), exist_ok=True)  # doctor checks an existing store

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "vactor_cloud", "doctor", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)

    plain = doctor().stdout
    assert "counters (vactor_cloud.stats() of this run): all 0" in plain  # (only moved ones are named)
    report = json.loads(doctor("--json").stdout)
    assert set(report["stats"]) >= set(counters.COUNTERS)
    assert report["stats"]["storage_timeouts"] == 0


# -- OpenTelemetry (only when opentelemetry-api is installed; not a dependency) -------------------


@dataclasses.dataclass
class _Span:
    name: str
    attributes: dict[str, Any]


class _RecordingTracer:
    """Just enough of an OpenTelemetry tracer to see which spans are started, with what."""

    def __init__(self) -> None:
        self.spans: list[_Span] = []

    def start_as_current_span(self, name: str, attributes: dict[str, Any] | None = None, **_: Any) -> Any:
        from opentelemetry import trace

        span = _Span(name, dict(attributes or {}))
        self.spans.append(span)

        class _Live(trace.NonRecordingSpan):
            def set_attribute(self, key: str, value: Any) -> None:
                span.attributes[key] = value

        return trace.use_span(_Live(trace.INVALID_SPAN_CONTEXT), end_on_exit=True)


def test_commits_and_reads_are_opentelemetry_spans_when_the_api_is_installed(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("opentelemetry.trace")
    assert tracing.enabled()
    tracer = _RecordingTracer()
    monkeypatch.setattr(tracing, "_tracer", tracer)
    counter = Counter.get_or_create("c", 0)
    counter.incr.run(1)
    commit_behind_its_back("c")
    counter.incr.run(1)  # loses the race for step 2, commits step 3
    counter.value.run()
    commits = [
        (s.attributes["vactor.step"], s.attributes["vactor.attempt"], s.attributes["vactor.outcome"])
        for s in tracer.spans
        if s.name == "vactor.commit"
    ]
    assert commits[-3:] == [(1, 1, "committed"), (2, 1, "conflict"), (3, 2, "committed")]
    assert all(s.attributes["vactor.actor_id"] == "c" for s in tracer.spans)
    assert [s.attributes for s in tracer.spans if s.name == "vactor.read"] == [{"vactor.actor_id": "c"}]

"""``vactor bench URL``: how close the runtime comes to the storage floor, measured on your store.

Every row is the median over ``repeats`` runs, and every ratio divides two
things measured in the same run against the same store: the library's
commit against a raw create-only PUT of the same bytes, the library's
throughput against a hand-rolled GET + If-Match loop (boto3 for ``s3://``,
the :class:`~vactor_cloud.storage.ObjectStore` contract elsewhere), and so on.

The benchmark writes under a fresh sub-prefix ``vactor-bench-<run id>`` of
``URL`` and deletes it at the end (``--keep`` leaves it). ``--latency MS[,JITTER]``
delays every request the benchmark's processes send (a
:class:`~vactor_cloud.testing.latency.LatencyStore`), so rows measured on a
local directory or an emulator show what a remote bucket would; ``--rows``
picks row groups.

The command line (``vactor bench``) lives in :mod:`vactor_cloud.cli.bench`;
this module is the measurement harness: the benchmark's actor class, the rows, what runs
inside the benchmark's child processes, and the run. It builds on
:mod:`vactor_cloud.cli.bench_model` (profiles, target, rows as data),
:mod:`vactor_cloud.cli.request_trace` (requests counted), :mod:`vactor_cloud.cli.bench_baselines`
(the raw baselines and the drivers) and :mod:`vactor_cloud.cli.bench_processes` (child
processes, from the parent's side).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.actor import ActorClass
from vactor_cloud.cli.bench_baselines import (
    _CONCURRENCY,
    _PAYLOAD,
    _boto3_cas_loop,
    _cpu_per_call,
    _delete_prefix,
    _drive,
    _raw_puts,
    _store_cas_loop,
)
from vactor_cloud.cli.bench_model import (
    PROFILES,
    Profile,
    Row,
    Target,
    _known,
    _median,
    _no_baseline_row,
    _p50,
    _ratio,
    _shown,
)
from vactor_cloud.cli.bench_processes import (
    _CHILD_TIMEOUT,
    _READY_LIMIT,
    _bare_put_script,
    _cold_start_script,
    _ended,
    _joined,
    _rss_mb,
    _run_captured,
    _taken,
    _time_child,
    _wait_ready,
)
from vactor_cloud.cli.request_trace import RequestTrace, sequential_round_trips
from vactor_cloud.errors import AlreadyExistsError
from vactor_cloud.log_records import CallRecord, StepRecord
from vactor_cloud.runtime import get_runtime

__all__ = ["PROFILES", "ROW_GROUPS", "BenchCounter", "Profile", "Row", "Target", "run_bench"]


class _Counter:
    """The benchmark's actor: an integer and 1 KB of payload."""

    def __init__(self) -> None:
        self.n = 0
        self.payload = _PAYLOAD

    def incr(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


#: the benchmark's actor class (``vactor_cloud.cli.bench_harness:_Counter``)
BenchCounter: ActorClass[Any] = vc.virtual_actor(_Counter)


# -- small pieces ------------------------------------------------------------------------
def _run_on_loop(coro: Awaitable[Any]) -> Any:
    """Run ``coro`` on the IO loop and wait for it. Interrupted (SIGINT, or SIGTERM as the CLI
    maps it), the coroutine is cancelled and waited for (at most 10 s) before the interrupt
    goes on: a loop of PUTs left running would write into the prefix the cleanup deletes."""
    running: list[asyncio.Task[Any]] = []

    async def wrapper() -> Any:
        task = asyncio.current_task()
        if task is not None:
            running.append(task)
        return await coro

    try:
        return _sync.sync(wrapper())
    except BaseException:
        if running and not running[0].done():
            _cancel_and_wait(running[0], 10.0)
        raise


def _cancel_and_wait(task: asyncio.Task[Any], seconds: float) -> None:
    """Cancel ``task`` (on the IO loop) and wait until it finished, at most ``seconds``. A task
    cancelled already (by the sync bridge, at the interrupt) is not cancelled again: a second
    cancel cut its clean-up short (a request in flight it waited for)."""
    finished = threading.Event()

    def cancel() -> None:
        task.add_done_callback(lambda _task: finished.set())
        if not task.cancelling():
            task.cancel()

    try:
        _sync.get_loop().call_soon_threadsafe(cancel)
    except RuntimeError:  # the loop is closed: nothing runs on it any more
        return
    _sync.interruptible_wait(finished.wait, seconds, forever=None)  # (a second signal's handler runs)


def _step_bytes(actor_key_prefix: str, state: bytes) -> tuple[str, bytes]:
    """An encoded step object like the ones commits write (for raw PUTs of the same size)."""
    record = StepRecord(
        step=1,
        parent=0,
        class_ref=_class_ref(),
        serializer="pickle",
        state=state,
        writer=uuid.uuid4().hex,
        time=time.time(),
        calls=(CallRecord("incr", uuid.uuid4().hex, True, time.time(), args="", result="1"),),
    )
    key = f"{actor_key_prefix}steps/{1:020d}"
    return key, record.encode(key, get_runtime().settings.signing_key)


def _class_ref() -> Any:
    return BenchCounter.definition.body()[0]


def _actor_id(run_id: str, name: str) -> str:
    return f"bench-{run_id}-{name}"


# -- rows ----------------------------------------------------------------------------------
class Bench:
    def __init__(self, target: Target, profile: Profile, run_id: str, advance: Callable[[str], None]) -> None:
        self.target = target
        self.profile = profile
        self.run_id = run_id
        self.advance = advance
        self.is_s3 = target.scheme in ("s3", "s3a")

    # warm path ----------------------------------------------------------------------------
    def warm_rows(self) -> list[Row]:
        p = self.profile
        handle = BenchCounter.get_or_create(_actor_id(self.run_id, "warm"))
        handle.incr.run()
        handle.value.run()
        store = get_runtime().store
        commit_requests: list[int] = []
        read_requests: list[int] = []
        ratios: list[float] = []
        commit_p50s: list[float] = []
        raw_p50s: list[float] = []
        core = get_runtime().core(handle.actor_id)
        assert core.record is not None
        key_prefix = core.log.prefix
        for _ in range(p.repeats):
            trace = RequestTrace(store)
            with trace.installed():
                handle.incr.run()
            commit_requests.append(len(trace.on_path()))
            trace = RequestTrace(store)
            with trace.installed():
                handle.value.run()
            read_requests.append(len(trace.on_path()))
            # Interleave library commits and raw puts so drift in the store hits both alike.
            commits: list[float] = []
            raws: list[float] = []
            _, data = _step_bytes(key_prefix, core.record.state)
            for i in range(p.samples):
                started = time.perf_counter()
                handle.incr.run()
                commits.append(time.perf_counter() - started)
                key = f"raw/{uuid.uuid4().hex}-{i}"
                started = time.perf_counter()
                _sync.sync(store.put(key, data, mode="create"))
                raws.append(time.perf_counter() - started)
            commit_p50s.append(_p50(commits))
            raw_p50s.append(_p50(raws))
            ratios.append(_p50(commits) / _p50(raws))
            self.advance("warm")
        requests = int(_median([float(n) for n in commit_requests]))
        reads = int(_median([float(n) for n in read_requests]))
        ratio = _median(ratios)
        return [
            Row("warm commit: requests on the critical path", "1", str(requests), requests == 1),
            Row(
                "warm commit p50 / raw create-only PUT p50 of the same bytes",
                "<= 1.25",
                f"{ratio:.2f}",
                _shown(ratio, 2) <= 1.25,
                f"commit {_median(commit_p50s) * 1e3:.2f} ms, PUT {_median(raw_p50s) * 1e3:.2f} ms",
            ),
            Row("warm linearizable read-only call: requests", "1", str(reads), reads == 1),
        ]

    # cold path ------------------------------------------------------------------------------
    def cold_row(self) -> Row:
        actor_id = _actor_id(self.run_id, "cold")
        handle = BenchCounter.get_or_create(actor_id)
        handle.incr.run()
        depths: list[int] = []
        lists: list[int] = []
        notes = ""
        elapsed: list[float] = []
        for _ in range(self.profile.repeats):
            handle.incr.run()
            _run_on_loop(get_runtime().heads.flush())  # HEAD current, as after a quiet period
            if self.target.multiprocess:
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(1) as pool:
                    result = pool.apply_async(_cold_call_in_child, (self.target, actor_id)).get(
                        _CHILD_TIMEOUT
                    )
                notes = "new process (spawn)"
            else:
                result = _cold_call_fresh_runtime(self.target, actor_id)
                notes = "memory store: a fresh runtime in this process, not a new process"
            depths.append(result["round_trips"])
            lists.append(result["step_lists"])
            elapsed.append(result["elapsed_us"] / 1e3)
            self.advance("cold")
        depth = int(_median([float(d) for d in depths]))
        listed = int(max(lists))
        return Row(
            "cold writer call from a new process (get_actor + one call): sequential round trips",
            "<= 4",
            str(depth),
            depth <= 4 and listed == 0,
            f"{notes}; LIST of steps: {listed}; {_median(elapsed):.0f} ms"
            + ("" if self.target.latency is None else " at the injected latency"),
        )

    # throughput against a CAS loop ------------------------------------------------------------
    def one_actor_row(self) -> Row:
        p = self.profile
        handle = BenchCounter.get_or_create(_actor_id(self.run_id, "hot"))
        handle.incr.run()
        name = "one actor, one process, 64 concurrent writers: commits/s / GET + If-Match loop commits/s"
        ratios: list[float | None] = []
        lib_rates: list[float] = []
        cas_rates: list[float] = []
        for i in range(p.repeats):
            lib = asyncio.run(_drive(lambda _i: handle.incr.run_async(), _CONCURRENCY, p.duration))
            if self.is_s3 and self.target.latency is None:
                cas = _boto3_cas_loop(self.target, f"cas-{self.run_id}-{i}", _CONCURRENCY, p.duration)
            else:
                cas = _run_on_loop(_store_cas_loop(get_runtime().store, f"cas/{self.run_id}-{i}", p.duration))
            lib_rates.append(lib)
            cas_rates.append(cas)
            ratios.append(_ratio(lib, cas))
            self.advance("one actor")
        how = (
            "boto3 GET + If-Match PUT, 64 threads"
            if self.is_s3 and self.target.latency is None
            else "ObjectStore get + put(IfMatch), 64 tasks"
        )
        if None in ratios:
            return _no_baseline_row(name, ">= 20", f"the CAS loop ({how})", ratios)
        ratio = _median(_known(ratios))
        return Row(
            name,
            ">= 20",
            f"{ratio:.1f}",
            _shown(ratio, 1) >= 20,
            f"{_median(lib_rates):.0f} calls/s vs {_median(cas_rates):.0f}/s ({how})",
        )

    def fan_out_row(self) -> Row:
        p = self.profile
        n_actors = 200
        handles = [BenchCounter.get_or_create(_actor_id(self.run_id, f"fan-{i}")) for i in range(n_actors)]
        vc.get([h.incr.run_async() for h in handles])
        store = get_runtime().store
        _, data = _step_bytes("raw/", b"x" * 1100)
        name = "200 actors, 64 in flight: calls/s / raw create-only PUTs/s at the same concurrency"
        ratios: list[float | None] = []
        lib_rates: list[float] = []
        raw_rates: list[float] = []
        threads_before = threading.active_count()
        threads_peak = threads_before
        for i in range(p.repeats):
            lib = asyncio.run(
                _drive(lambda k: handles[k % n_actors].incr.run_async(), _CONCURRENCY, p.duration)
            )
            threads_peak = max(threads_peak, threading.active_count())
            raw = _run_on_loop(_raw_puts(store, f"fanraw/{self.run_id}-{i}", data, p.duration))
            lib_rates.append(lib)
            raw_rates.append(raw)
            ratios.append(_ratio(lib, raw))
            self.advance("fan-out")
        if None in ratios:
            return _no_baseline_row(name, ">= 0.7", "the raw create-only PUTs", ratios)
        ratio = _median(_known(ratios))
        return Row(
            name,
            ">= 0.7",
            f"{ratio:.2f}",
            _shown(ratio, 2) >= 0.7,
            f"{_median(lib_rates):.0f} calls/s vs {_median(raw_rates):.0f} PUTs/s; one event loop, "
            f"threads {threads_before}->{threads_peak}",
        )

    # many processes ------------------------------------------------------------------------------
    def processes_row(self) -> Row:
        p = self.profile
        name = f"{p.processes} processes on one actor: aggregate / one process alone"
        goal = ">= 0.5, each >= 1/16"
        if not self.target.multiprocess:
            return Row(name, goal, "n/a", None, "memory:// lives in one process")
        ratios: list[float | None] = []
        shares: list[float] = []
        alone_rates: list[float] = []
        for i in range(p.repeats):
            actor_id = _actor_id(self.run_id, f"procs-{i}")
            BenchCounter.get_or_create(actor_id).incr.run()
            alone = _processes(self.target, actor_id, 1, p.duration)
            many = _processes(self.target, actor_id, p.processes, p.duration)
            aggregate = sum(many) / p.duration
            alone_rate = alone[0] / p.duration
            alone_rates.append(alone_rate)
            ratios.append(_ratio(aggregate, alone_rate))
            shares.append(min(many) / sum(many) if sum(many) else 0.0)
            self.advance("processes")
        if None in ratios:
            return _no_baseline_row(name, goal, "one process alone", ratios)
        ratio = _median(_known(ratios))
        share = _median(shares)
        return Row(
            name,
            goal,
            f"{ratio:.2f}, min share {share:.3f}",
            _shown(ratio, 2) >= 0.5 and _shown(share, 3) >= 1 / 16,
            f"one process alone {_median(alone_rates):.0f} calls/s (sequential calls per process)",
        )

    # long actors ----------------------------------------------------------------------------------
    def long_rows(self) -> list[Row]:
        p = self.profile
        short_id = _actor_id(self.run_id, "short")
        long_id = _actor_id(self.run_id, "long")
        short = BenchCounter.get_or_create(short_id)
        for _ in range(9):
            short.incr.run()
        BenchCounter.get_or_create(long_id)
        _run_on_loop(_write_steps(long_id, p.long_steps))
        self.advance("long: steps written")
        # Both actors are loaded cold by a fresh runtime, as a new process would.
        self.target.init()
        long = vc.get_actor(long_id)
        short = vc.get_actor(short_id)
        read_ratios: list[float] = []
        commit_ratios: list[float] = []
        for _ in range(p.repeats):
            reads: dict[str, list[float]] = {"short": [], "long": []}
            commits: dict[str, list[float]] = {"short": [], "long": []}
            for _i in range(p.samples):
                for name, handle in (("short", short), ("long", long)):
                    started = time.perf_counter()
                    handle.value.run()
                    reads[name].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    handle.incr.run()
                    commits[name].append(time.perf_counter() - started)
            read_ratios.append(_p50(reads["long"]) / _p50(reads["short"]))
            commit_ratios.append(_p50(commits["long"]) / _p50(commits["short"]))
            self.advance("long")
        steps = f"{p.long_steps:,} steps vs 10"
        read_ratio, commit_ratio = _median(read_ratios), _median(commit_ratios)
        return [
            Row(
                f"read p50 at {p.long_steps:,} steps / at 10 steps",
                "<= 1.1",
                f"{read_ratio:.2f}",
                _shown(read_ratio, 2) <= 1.1,
                steps,
            ),
            Row(
                f"commit p50 at {p.long_steps:,} steps / at 10 steps",
                "<= 1.1",
                f"{commit_ratio:.2f}",
                _shown(commit_ratio, 2) <= 1.1,
                steps,
            ),
        ]

    # CPU and memory ---------------------------------------------------------------------------------
    def cpu_row(self) -> Row:
        """Library CPU per commit on a memory store, whatever URL is benchmarked."""
        p = self.profile
        values: list[float] = []
        with _memory_runtime(self.run_id):
            handle = BenchCounter.get_or_create("cpu")
            for _ in range(20):
                handle.incr.run()
            for _ in range(p.repeats):
                n = max(200, p.samples * 20)
                started = time.process_time()
                for _i in range(n):
                    handle.incr.run()
                values.append((time.process_time() - started) / n)
                self.advance("cpu")
        value = _median(values) * 1e6
        return Row(
            "library CPU per commit, 1 KB state, memory backend",
            "<= 100 us",
            f"{value:.0f} us",
            _shown(value) <= 100,
            "process CPU / sequential run() calls (all threads: caller, IO loop, worker)",
        )

    def store_cpu_row(self) -> Row:
        """CPU per sequential commit on the benchmarked store, beside a raw PUT's CPU on the same store.

        Process CPU (``time.process_time()``: every thread of this process, the caller,
        the IO loop and the store client's own threads) over ``n`` sequential ``run()``
        commits of one warm actor, divided by ``n``. On ``memory://`` that is all library
        CPU (the reference, target <= 100 us); on other stores it includes the store
        client's CPU (fsspec, botocore signing), so the row also measures ``n`` raw
        create-only PUTs of the same bytes and shows the difference. An emulator that
        runs in this process (a ``ThreadedMotoServer``) would be counted too: run it as a
        separate process.
        """
        p = self.profile
        handle = BenchCounter.get_or_create(_actor_id(self.run_id, "cpu-store"))
        for _ in range(20):
            handle.incr.run()
        store = get_runtime().store
        core = get_runtime().core(handle.actor_id)
        assert core.record is not None
        _, data = _step_bytes(core.log.prefix, core.record.state)
        n = max(200, p.samples * 20) if self.target.scheme == "memory" else max(50, p.samples * 4)
        commit_cpu: list[float] = []
        put_cpu: list[float] = []
        for r in range(p.repeats):
            commit_cpu.append(_cpu_per_call(lambda _i: handle.incr.run(), n))
            prefix = f"cpuraw/{self.run_id}-{r}"

            def raw_put(i: int, prefix: str = prefix) -> None:
                _sync.sync(store.put(f"{prefix}/{i}", data, mode="create"))

            put_cpu.append(_cpu_per_call(raw_put, n))
            _run_on_loop(_delete_prefix(store, prefix + "/"))
            self.advance("cpu: this store")
        value = _median(commit_cpu) * 1e6
        put = _median(put_cpu) * 1e6
        reference = self.target.scheme == "memory"
        note = f"{n} sequential run() calls per sample; process CPU, all threads"
        if not reference:
            note += (
                f"; includes the store client: raw create-only PUT {put:.0f} us CPU, "
                f"commit - PUT {value - put:.0f} us; the target is judged on memory://"
            )
        return Row(
            "CPU per sequential commit, 1 KB state, this store",
            "<= 100 us",
            f"{value:.0f} us",
            _shown(value) <= 100 if reference else None,
            note,
            raw={"commit_cpu_us": value, "put_cpu_us": put, "n": n},
        )

    def rss_row(self) -> Row:
        p = self.profile
        growths: list[float] = []
        ctx = multiprocessing.get_context("spawn")
        target = self.target if self.target.multiprocess else Target(f"memory://bench-{self.run_id}-rss")
        for i in range(p.repeats):
            with ctx.Pool(1) as pool:
                growths.append(
                    pool.apply_async(_rss_in_child, (target, f"{self.run_id}-rss{i}", p.rss_actors)).get(
                        _CHILD_TIMEOUT
                    )
                )
            self.advance("rss")
        growth = _median(growths)
        scaled = growth * 10_000 / p.rss_actors
        # The measured column is what the target is compared with: the growth per 10,000 actors.
        note = f"{p.rss_actors:,} actors, one call each, in a new process"
        if p.rss_actors != 10_000:
            note += f"; measured {growth:.1f} MB, scaled to 10,000"
        if not self.target.multiprocess:
            note += "; includes the memory store's own objects"
        return Row(
            "RSS growth after touching 10,000 actors",
            "<= 100 MB",
            f"{scaled:.1f} MB",
            _shown(scaled, 1) <= 100,
            note,
        )

    # cold start of a whole process ------------------------------------------------------------
    def cold_start_row(self) -> Row:
        """Process start to first committed call, against a bare script doing one PUT (boto3 on S3)."""
        if not self.target.multiprocess:
            return Row(COLD_START_ROW, "<= 1.5 (s3)", "n/a", None, "a memory store lives in one process")
        ratios: list[float] = []
        ours: list[float] = []
        bare: list[float] = []
        for i in range(self.profile.repeats):
            actor_id = _actor_id(self.run_id, f"start{i}")
            ours.append(_time_child(_cold_start_script(self.target, actor_id), self.target))
            bare.append(
                _time_child(_bare_put_script(self.target, f"bare-put-{self.run_id}-{i}"), self.target)
            )
            ratios.append(ours[-1] / bare[-1])
            self.advance("cold start")
        ratio = _median(ratios)
        baseline = "boto3 put_object" if self.target.scheme in ("s3", "s3a") else "a plain one-object write"
        return Row(
            COLD_START_ROW,
            "<= 1.5 (s3)",
            f"{ratio:.2f}",
            _shown(ratio, 2) <= 1.5 if self.target.scheme in ("s3", "s3a") else None,
            f"new process: vactor_cloud {_median(ours) * 1e3:.0f} ms, "
            f"{baseline} {_median(bare) * 1e3:.0f} ms",
        )


COLD_START_ROW = "cold start: new process to first committed call / bare one-PUT script"
TIMERS_ROW = "timers due together, several runner processes: p99 lateness"
#: (timers, actors, window s, lead s, runners) of the timers row, per profile
_TIMER_SIZES: dict[str, tuple[int, int, float, float, int]] = {
    "full": (10_000, 1_000, 60.0, 45.0, 4),
    "quick": (1_000, 100, 10.0, 10.0, 4),
    "tiny": (40, 8, 2.0, 3.0, 2),
}


def _timers_row(target: Target, profile: Profile) -> Row:
    """``python -m vactor_cloud.timer_bench`` in a child: timers due within one window, fired
    by several runner processes polling every second (target: p99 ≤ poll + 1 s)."""
    goal = "<= poll + 1 s (2 s)"
    if not target.multiprocess:
        return Row(TIMERS_ROW, goal, "n/a", None, "a memory store lives in one process")
    timers, actors, window, lead, runners = _TIMER_SIZES[profile.name]
    sizes = ["--timers", str(timers), "--actors", str(actors), "--window", str(window)]
    sizes += ["--lead", str(lead), "--runners", str(runners), "--storage-options", json.dumps(target.options)]
    done = _run_captured(
        [sys.executable, "-m", "vactor_cloud.timer_bench", target.url, *sizes],
        {**os.environ, **target.env},
        lead + window + _CHILD_TIMEOUT,
    )
    try:
        row = json.loads(done.stdout.strip().splitlines()[-1])
        p99 = float(row["lateness_p99_s"])
        # every timer applied once, the index emptied, no runner's error: else a MISS, whatever p99
        complete = (
            row["doubled"] == 0
            and row["unfired_when_runners_stopped"] == 0
            and row["index_left"] == 0
            and row["error_count"] == 0
        )
    except (IndexError, ValueError, KeyError, TypeError):
        failed = f"timer_bench exited {done.returncode}: {done.stderr[-300:]}"
        return Row(TIMERS_ROW, goal, "error", False, failed)
    note = (
        f"{timers:,} timers / {actors:,} actors due within {window:g} s, {runners} runners: "
        f"p50 {row['lateness_p50_s']} s, {row['requests_per_timer']} requests per timer, "
        f"{row['fired']} fired, {row['doubled']} doubled"
    )
    if row["index_left"] or row["error_count"]:
        note += f", {row['index_left']} index entries left, {row['error_count']} runner errors"
        if row.get("errors"):
            note += f" (first: {row['errors'][0]})"
    if target.latency is not None:
        note += "; without the injected latency"
    return Row(TIMERS_ROW, goal, f"{p99:.3f} s", _shown(p99, 3) <= 2.0 and complete, note)


# -- drivers -------------------------------------------------------------------------------------
async def _write_steps(actor_id: str, count: int) -> None:
    """Give ``actor_id`` ``count`` steps by writing step objects directly (commits would take hours)."""
    runtime = get_runtime()
    core = runtime.core(actor_id)
    await core.ensure_loaded()
    assert core.record is not None
    base = core.record
    log = core.log
    queue = iter(range(base.step + 1, count))

    async def worker() -> None:
        for step in queue:
            record = replace(base, step=step, parent=step - 1, writer=uuid.uuid4().hex, calls=())
            with contextlib.suppress(AlreadyExistsError):
                await log.store.put(
                    log.step_key(step), record.encode(log.step_key(step), log.signing_key), mode="create"
                )

    await asyncio.gather(*(worker() for _ in range(_CONCURRENCY)))
    newest = await log.read_step(count - 1)
    assert newest is not None
    await log.advance_head(newest.step, newest.class_ref, await log.read_head())


# -- child processes -------------------------------------------------------------------------------
def _cold_call_in_child(target: Target, actor_id: str) -> dict[str, int]:
    target.init()
    try:
        return _cold_call(actor_id, target.latency is not None)
    finally:
        vc.shutdown()


def _cold_call_fresh_runtime(target: Target, actor_id: str) -> dict[str, int]:
    target.init()
    return _cold_call(actor_id, target.latency is not None)


def _cold_call(actor_id: str, delayed: bool = False) -> dict[str, int]:
    # A store that answers at once gets 5 ms per request, so that requests sent
    # together overlap and round trips show; one already delayed needs none.
    trace = RequestTrace(get_runtime().store, latency=0.0 if delayed else 0.005)
    started = time.perf_counter()
    with trace.installed():
        handle = vc.get_actor(actor_id)
        handle.incr.run()
    elapsed_us = int((time.perf_counter() - started) * 1e6)
    path = trace.on_path()
    return {
        "elapsed_us": elapsed_us,
        "round_trips": sequential_round_trips(path),
        "requests": len(path),
        "lists": sum(1 for r in path if r.kind == "list"),
        # the log's own listing (the inbox is listed once per process, alongside the HEAD read)
        "step_lists": sum(1 for r in path if r.kind == "list" and "/steps/" in r.key),
    }


def _process_writer(
    target: Target, actor_id: str, start: Any, duration: float, results: Any, index: int, ready: Any
) -> None:
    target.init()
    handle = vc.get_actor(actor_id)
    handle.value.run()
    ready.put(index)
    if not start.wait(_READY_LIMIT + 60):
        return  # (the row gave up: no report, nothing written)
    deadline = time.perf_counter() + duration
    done = 0
    while time.perf_counter() < deadline:
        handle.incr.run()
        done += 1
    results.put((index, done))
    vc.shutdown()


def _processes(target: Target, actor_id: str, count: int, duration: float) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    ready = ctx.Queue()
    procs = [
        ctx.Process(target=_process_writer, args=(target, actor_id, start, duration, results, i, ready))
        for i in range(count)
    ]
    started: list[Any] = []
    try:
        for proc in procs:
            proc.start()
            started.append(proc)
        time.sleep(0)
        # Every child has imported and loaded the actor before the clock starts.
        _wait_ready(procs, _READY_LIMIT, ready)
        start.set()
        counts = [0] * count
        waiting = list(procs)
        for _ in range(count):
            index, done = _taken(results, duration + 120, waiting)
            counts[index] = done
            waiting.remove(procs[index])
        for proc in procs:
            # (in slices on the main thread, as the queue's wait: SIGTERM's handler runs meanwhile)
            _sync.interruptible_wait(lambda timeout, p=proc: _joined(p, timeout), 60, forever=None)
    finally:
        # A child still running (the others, when one failed; every one, at Ctrl-C or SIGTERM)
        # would go on committing into the prefix the bench's cleanup deletes: none outlives the row.
        _ended(started)
    return counts


def _rss_in_child(target: Target, prefix: str, count: int) -> float:
    target.init()
    handles = [BenchCounter.get_or_create(f"warmup-{prefix}-{i}") for i in range(4)]
    vc.get([h.incr.run_async() for h in handles])
    gc.collect()
    before = _rss_mb()

    async def touch() -> None:
        semaphore = asyncio.Semaphore(_CONCURRENCY)

        async def one(i: int) -> None:
            async with semaphore:
                handle = await BenchCounter.get_or_create_async(f"{prefix}-{i}")
                await handle.incr.run_async()

        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(touch())
    gc.collect()
    growth = _rss_mb() - before
    vc.shutdown()
    return growth


@contextlib.contextmanager
def _memory_runtime(run_id: str) -> Iterator[None]:
    """Switch this process to a private memory store for a while, then back."""
    settings = get_runtime().settings
    vc.init(f"memory://bench-{run_id}-cpu")
    try:
        yield
    finally:
        vc.init(settings.storage, settings=settings, **settings.storage_options)


# -- orchestration ----------------------------------------------------------------------------------
ROW_GROUPS = (
    "warm",
    "cold",
    "one_actor",
    "fan_out",
    "processes",
    "long",
    "store_cpu",
    "cpu",
    "rss",
    "cold_start",
)
#: row groups run only when asked for with ``--rows`` (they take a minute or more)
OPTIONAL_ROW_GROUPS = ("timers",)


def run_bench(
    target: Target,
    profile: Profile,
    *,
    progress: Callable[[str], None] | None = None,
    keep: bool = False,
    groups: Sequence[str] = ROW_GROUPS,
    kept: Callable[[str], None] | None = None,
    not_deleted: Callable[[str, Exception], None] | None = None,
) -> list[Row]:
    """Run the rows of ``groups`` (default: all) against ``target`` and return the table rows.

    With ``keep``, ``kept`` is called with the URL of the prefix left behind (also when interrupted);
    without, ``not_deleted`` with that URL and the error when deleting what it holds failed.
    """
    run_id = uuid.uuid4().hex[:10]
    scoped = target.sub(f"vactor-bench-{run_id}")
    advance = progress or (lambda _label: None)
    rows: list[Row] = []
    try:
        # (Inside the try: an interrupt as soon as the prefix exists still removes it.)
        scoped.init()
        bench = Bench(scoped, profile, run_id, advance)
        if "warm" in groups:
            rows.extend(bench.warm_rows())
        if "cold" in groups:
            rows.append(bench.cold_row())
            scoped.init()
        if "one_actor" in groups:
            rows.append(bench.one_actor_row())
        if "fan_out" in groups:
            rows.append(bench.fan_out_row())
        if "processes" in groups:
            rows.append(bench.processes_row())
        if "long" in groups:
            rows.extend(bench.long_rows())
        if "store_cpu" in groups:
            rows.append(bench.store_cpu_row())
        if "cpu" in groups:
            rows.append(bench.cpu_row())
        if "rss" in groups:
            rows.append(bench.rss_row())
        if "cold_start" in groups:
            rows.append(bench.cold_start_row())
        if "timers" in groups:
            timers = scoped.sub("timers")
            try:
                rows.append(_timers_row(timers, profile))
            finally:
                if timers.scheme == "file":  # its own store: its lock files are not objects either
                    shutil.rmtree(timers.url.removeprefix("file://"), ignore_errors=True)
            advance("timers")
    finally:
        # (An interrupted row's coroutine was cancelled and waited for by _run_on_loop: none
        # of its writes lands after this.)
        if not keep:
            try:
                scoped.init()
                _run_on_loop(_delete_prefix(get_runtime().store))
            except Exception as exc:  # (the rows stand; where their objects stay is said)
                if not_deleted is not None:
                    not_deleted(scoped.url, exc)
        elif kept is not None:
            kept(scoped.url)
        vc.shutdown()
        if not keep and scoped.scheme == "file":
            # The local store's lock files are not objects: the directory is ours to remove.
            shutil.rmtree(scoped.url.removeprefix("file://"), ignore_errors=True)
    return rows


#: row groups that need a store other processes reach: on ``memory://`` each is one "n/a" row
#: at once (no repeats, no progress steps)
_OTHER_PROCESSES_GROUPS = ("processes", "cold_start")


def _steps_for(profile: Profile, groups: Sequence[str] = ROW_GROUPS, multiprocess: bool = True) -> int:
    """Progress steps: one per repeat of each row group that runs (on a store of one process,
    ``multiprocess`` false, not those of :data:`_OTHER_PROCESSES_GROUPS`), plus the long
    actor's setup, plus one for the timers row."""
    skipped = ("timers",) if multiprocess else ("timers", *_OTHER_PROCESSES_GROUPS)
    per_repeat = len([g for g in groups if g not in skipped])
    return profile.repeats * per_repeat + (1 if "long" in groups else 0) + (1 if "timers" in groups else 0)

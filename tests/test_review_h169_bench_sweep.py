"""Review h169: a mutation sweep of the benchmark code (``vactor bench``: ``cli/bench.py``,
``cli/bench_harness.py``; ``timer_bench.py``).

The rows are what ``docs/performance.md`` rests on, so a wrong median, ratio, share or count is
a defect. Each row's arithmetic is driven here with its measurements replaced by the test's
figures (the drivers, the child processes, the timers' child), so that a mutation of the
arithmetic changes a figure the test knows; the lifecycle with fake processes, threads and a
fake boto3 client.

Defects found (each test failed before its fix):

* the processes row left its writer processes running when one failed or at Ctrl-C / SIGTERM
  (committing on into the prefix the cleanup deletes): every started one is killed and reaped;
  a report that never came was a bare ``queue.Empty``, now a one-line error;
* the boto3 baseline dropped a worker thread's exception (the baseline slower, the ratio
  better): raised after the join; interrupted, its threads ran on to the row's end: stopped;
* the timers row's child was killed alone: its runner processes, orphaned, ran on to the end
  of their window: the child's process group is killed;
* the timers row was "ok" with index entries left or runner errors (timer_bench printed five
  errors, no count): both make a MISS, in the note; ``error_count`` printed;
* timer_bench's requests per timer left out ``delete_many`` / ``delete_unchanged`` (the index
  entries' and the claims' deletes); its percentiles were one rank high (``int(p * n)``); its
  max lateness ignored the figures a runner trimmed; its runners were not killed when one
  failed or hung past the join;
* RSS, cold start and timers rows were judged on the unrounded figure ("100.0 MB | MISS");
* the progress total counted the processes and cold start repeats on ``memory://`` (n/a rows);
* a failed deletion of the bench's prefix was suppressed unsaid: it is said, with the prefix.

Mutations (S: survived the existing bench tests; "(d)": the test of a defect above). Each was
run against this module and test_latency_store, then those it missed against the existing
bench tests (test_bench_smoke, test_cli_edges, test_review_main_thread_waits, ... -k bench):

 1 median -> mean: processes_row_figures     |  40 latency < 0 accepted: negative_latency
 2 warm requests == 1 -> <= 1: S, equivalent  |  41 --rows "," accepted: empty_rows_list
   (a commit sends >= 1 request on its path)  |  42 raw PUTs delete the store: raw_puts_leave
 3 warm ratio inverted: S, warm_ratio         |  43 _shown unrounded: store_cpu_row_figures
 4 warm judged unrounded: S, warm_ratio       |  44 cleanup with --keep: test_cli_edges
 5 cold listed max -> min: cold_row_figures   |  45 kept() dropped: test_review_newcomer
 6 cold depth <= 4 -> < 4: cold_row_figures   |  46 memory sub-URL stem dropped: S, cleanup_failed
 7 cold median -> first: S, cold_row_figures  |  47 interrupted row not cancelled: test_cli_edges
 8 one actor ratio inverted: one_actor_row    |  48 cancelled task cancelled again: test_cli_edges
 9 one actor >= 20 -> > 20: one_actor_row     |  49 timers child not killed: S, timers_child (d)
10 fan-out raw + 1: fan_out_row_figures       |  50 SIGTERM handler not restored: S, sigterm
11 fan-out >= 0.7 -> > 0.7: fan_out_row       |  51 step LISTs not counted: S, counts_a_listing
12 aggregate max(many): processes_row         |  52 doubled c > 2: S, summary_figures
13 share max(many): processes_row             |  53 unfired 0: summary_figures
14 alone rate from many: processes_row        |  54 error count of the five: summary_figures
15 share >= 1/16 dropped: processes_row       |  56 writer count + 1: S, writer_reports_the_calls
16 children not ended: writer_ends_every (d)  |  57 _drive counts 2 a call: S, drive_counts
17 queue.Empty bare: no_report_in_time (d)    |  58 requests per runner: summary_figures
18 worker error dropped: boto3_worker (d)     |  59 max of kept lateness: summary_figures (d)
19 412 not retried: retries_a_lost_race       |  60 ChildProcessError bare: writer_ends_every
20 commit - PUT inverted: store_cpu_row       |  61 group kill dropped: timers_child (d)
21 store CPU judged off memory: store_cpu_row |  62 interrupt event unset: interrupted_boto3 (d)
22 RSS scale inverted: rss_row                |  63 not_deleted unsaid: cleanup_failed (d)
23 RSS unrounded: rss_row (d)                 |  64 no 5 ms on memory: cold_call_on_a_memory
24 cold start inverted: cold_start_row        |  65 reported writer still awaited: reported_and_ended
25 cold start judged off S3: cold_start_row   |  66 dead writer not seen: writers_to_load
26 index_left ignored: timers_row_misses (d)  |  67 raw PUTs 1 in flight: raw_baselines
27 error_count ignored: timers_row_misses (d) |  68 _write_steps AlreadyExists raised: S,
28 doubled ignored: timers_row_misses         |     equivalent (each step is taken by one
29 p99 < 2.0: timers_row_misses               |     worker from one shared iterator)
30 percentile int(p n) + 1: nearest_rank (d)  |  71 three latency parts: negative_latency
31 put_now not counted: counts_every_request  |  72 _ended without join: writer_ends_every
32 runners not killed: stops_its_runners (d)  |  73 _stopped without join: stops_its_runners
33 n/a rows in the total: progress_total (d)  |  74 delete_many wrapper left: rows_per_deleted
34 progress on every advance: plain_progress  |  75 --quick ignored: quick_picks
35 last group unsaid: plain_progress          |  76 runner counts 5 errors: every_error_it_met
36 round trips <= -> <: round_trips_chain     |
37 1 + max -> max: round_trips_chain          |  (55 was a typo of 56; 69, 70 are 50, 51
38 HEAD gets dropped: on_path_leaves_out      |  again on the new code)
39 one row per delete_many: rows_per_deleted  |
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import queue
import subprocess
import threading
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import timer_bench
from vactor_cloud.cli import bench_baselines, bench_processes, request_trace
from vactor_cloud.cli import bench_harness as harness
from vactor_cloud.cli._options import CliError
from vactor_cloud.cli.bench import PlainProgress
from vactor_cloud.storage import MemoryStore

#: three repeats (a median of three differs from the mean, the first and the last)
PROFILE = harness.Profile(
    "t", repeats=3, samples=3, duration=0.5, long_steps=12, rss_actors=1000, processes=2
)


@pytest.fixture
def memory_runtime() -> Iterator[str]:
    name = f"h169-{uuid.uuid4().hex[:8]}"
    vc.init(f"memory://{name}")
    try:
        yield name
    finally:
        vc.shutdown()
        MemoryStore.wipe(name)


def _bench(url: str = "file:///nowhere/h169") -> harness.Bench:
    return harness.Bench(harness.Target(url), PROFILE, "h169", lambda _label: None)


def _feed(values: list[Any]) -> Any:
    """A function returning ``values`` one after the other, whatever its arguments."""
    it = iter(values)
    return lambda *_args, **_kwargs: next(it)


def _afeed(values: list[Any]) -> Any:
    it = iter(values)

    async def next_value(*_args: Any, **_kwargs: Any) -> Any:
        return next(it)

    return next_value


# -- each row computes what the docs say --------------------------------------------------------
def test_processes_row_figures(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Aggregate calls/s of the many ÷ one process alone, both of the same repeat; the slowest
    process's share of the calls; medians over the repeats; judged on share >= 1/16 too."""
    counts = [
        [100],
        [30, 10],  # ratio 0.40, share 0.25
        [50],
        [40, 40],  # ratio 1.60, share 0.50
        [80],
        [76, 4],  # ratio 1.00, share 0.05
    ]
    monkeypatch.setattr(harness, "_processes", _feed(counts))
    row = _bench().processes_row()
    assert row.value == "1.00, min share 0.250"
    assert row.ok is True
    assert "one process alone 160 calls/s" in row.note  # median of 200, 100, 160 calls/s
    monkeypatch.setattr(harness, "_processes", _feed([[100], [96, 4]] * 3))
    row = _bench().processes_row()
    assert row.value == "1.00, min share 0.040" and row.ok is False


def test_one_actor_row_figures(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "_drive", _afeed([1000.0, 4000.0, 2000.0]))
    monkeypatch.setattr(harness, "_store_cas_loop", _afeed([100.0, 100.0, 100.0]))
    row = _bench().one_actor_row()
    assert row.value == "20.0" and row.ok is True  # median of 10, 40, 20; ">= 20" holds at 20.0
    assert row.note.startswith("2000 calls/s vs 100/s")


def test_fan_out_row_figures(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "_drive", _afeed([70.0, 10.0, 90.0]))
    monkeypatch.setattr(harness, "_raw_puts", _afeed([100.0, 100.0, 100.0]))
    row = _bench().fan_out_row()
    assert row.value == "0.70" and row.ok is True  # median of 0.7, 0.1, 0.9
    assert row.note.startswith("70 calls/s vs 100 PUTs/s")


def test_store_cpu_row_figures(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit CPU and raw PUT CPU, each the median of its repeats; the difference shown; the
    target judged on memory:// only."""
    monkeypatch.setattr(harness, "_cpu_per_call", _feed([150e-6, 30e-6, 120e-6, 40e-6, 90e-6, 20e-6]))
    row = _bench().store_cpu_row()
    assert row.value == "120 us" and row.ok is None
    assert "raw create-only PUT 30 us CPU, commit - PUT 90 us" in row.note
    monkeypatch.setattr(harness, "_cpu_per_call", _feed([100.4e-6, 1e-6] * 3))
    row = _bench(f"memory://{memory_runtime}").store_cpu_row()
    assert row.value == "100 us" and row.ok is True


def test_cold_row_figures(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round trips: the median over the repeats; a LIST of steps in any repeat is a MISS."""
    runs = [
        {"round_trips": 4, "step_lists": 0, "elapsed_us": 3000},
        {"round_trips": 9, "step_lists": 1, "elapsed_us": 1000},
        {"round_trips": 3, "step_lists": 0, "elapsed_us": 2000},
    ]
    monkeypatch.setattr(harness, "_cold_call_fresh_runtime", _feed(runs))
    row = _bench(f"memory://{memory_runtime}").cold_row()
    assert row.value == "4" and row.ok is False
    assert "LIST of steps: 1; 2 ms" in row.note
    monkeypatch.setattr(
        harness, "_cold_call_fresh_runtime", _feed([dict(runs[0], round_trips=n) for n in (5, 4, 1)])
    )
    row = _bench(f"memory://{memory_runtime}").cold_row()
    assert row.value == "4" and row.ok is True


class _Pool:
    def __init__(self, values: Iterator[float]) -> None:
        self.values = values

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def apply_async(self, *_args: Any) -> Any:
        value = next(self.values)

        class Answer:
            def get(self, _timeout: float) -> float:
                return value

        return Answer()


def test_rss_row_is_scaled_and_judged_on_its_shown_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Growth per 10,000 actors (a run of 1,000 scaled by 10), judged on the figure it prints."""
    growths = iter([3.0, 10.004, 50.0])

    class Context:
        def Pool(self, _n: int) -> _Pool:
            return _Pool(growths)

    monkeypatch.setattr(harness.multiprocessing, "get_context", lambda _method: Context())
    row = _bench().rss_row()
    assert row.value == "100.0 MB" and row.ok is True, row
    assert "measured 10.0 MB, scaled to 10,000" in row.note


def test_cold_start_row_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ours ÷ a bare one-PUT script, of the same repeat; judged on S3 only, on the shown figure."""
    monkeypatch.setattr(harness, "_time_child", _feed([1.504, 1.0, 3.0, 1.0, 1.2, 1.0]))
    row = _bench("s3://bucket/prefix").cold_start_row()
    assert row.value == "1.50" and row.ok is True, row
    assert "vactor_cloud 1504 ms, boto3 put_object 1000 ms" in row.note
    monkeypatch.setattr(harness, "_time_child", _feed([2.0, 1.0] * 3))
    assert _bench("file:///x").cold_start_row().ok is None


def _timer_row(monkeypatch: pytest.MonkeyPatch, **figures: Any) -> harness.Row:
    row = {
        "lateness_p99_s": 0.5,
        "lateness_p50_s": 0.1,
        "requests_per_timer": 3.0,
        "fired": 40,
        "doubled": 0,
        "unfired_when_runners_stopped": 0,
        "index_left": 0,
        "error_count": 0,
        "errors": [],
        **figures,
    }
    row = {name: figure for name, figure in row.items() if figure is not ...}
    done = subprocess.CompletedProcess(["timer_bench"], 0, "warning\n" + json.dumps(row) + "\n", "")
    monkeypatch.setattr(harness, "_run_captured", lambda *_args: done)
    return harness._timers_row(harness.Target("file:///nowhere/h169"), harness.PROFILES["tiny"])


def test_the_timers_row_misses_on_what_timer_bench_found(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _timer_row(monkeypatch).ok is True
    assert _timer_row(monkeypatch, lateness_p99_s=2.0004).ok is True  # shown "2.000 s"
    assert _timer_row(monkeypatch, lateness_p99_s=2.001).ok is False
    assert _timer_row(monkeypatch, doubled=1).ok is False
    assert _timer_row(monkeypatch, unfired_when_runners_stopped=1).ok is False
    left = _timer_row(monkeypatch, index_left=3)
    assert left.ok is False and "3 index entries left" in left.note
    failed = _timer_row(monkeypatch, error_count=7, errors=["alarm-1: boom"])
    assert failed.ok is False and "7 runner errors (first: alarm-1: boom)" in failed.note
    assert _timer_row(monkeypatch, error_count=...).value == "error"  # (no such figure printed)


# -- lifecycle: children ended, errors raised -------------------------------------------------------
class _Child:
    """A writer process that runs until it is killed."""

    def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
        self.alive = False
        self.killed = False
        self.joined = False
        self.exitcode: int | None = None

    def start(self) -> None:
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.killed, self.alive, self.exitcode = True, False, -9

    def join(self, _timeout: float | None = None) -> None:
        self.joined = True


class _Context:
    def __init__(self) -> None:
        self.children: list[_Child] = []
        self.Event = threading.Event
        self.Queue = queue.Queue

    def Process(self, target: Any, args: tuple[Any, ...]) -> _Child:
        child = _Child(target, args)
        self.children.append(child)
        return child


@pytest.mark.parametrize(
    "failure", [ChildProcessError("a bench process exited with code 3"), KeyboardInterrupt()]
)
def test_a_failed_or_interrupted_writer_ends_every_child(
    failure: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One writer failed (or Ctrl-C / SIGTERM while the row waited): the others went on
    committing for the rest of their duration, into the prefix the cleanup was deleting."""
    context = _Context()
    monkeypatch.setattr(harness.multiprocessing, "get_context", lambda _method: context)
    monkeypatch.setattr(harness, "_wait_ready", lambda *_args: None)

    def take(*_args: Any) -> Any:
        raise failure

    monkeypatch.setattr(bench_processes, "take_report", take)
    with pytest.raises((CliError, KeyboardInterrupt)):
        harness._processes(harness.Target("file:///x"), "a", 3, 0.1)
    assert [(c.killed, c.joined) for c in context.children] == [(True, True)] * 3


def test_no_report_in_time_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def take(*_args: Any) -> Any:
        raise queue.Empty

    monkeypatch.setattr(bench_processes, "take_report", take)
    with pytest.raises(CliError, match=r"did not report within 30 s; the bench stops"):
        bench_processes._taken(queue.Queue(), 30, [])


class _Boto3Client:
    """GET and PUT If-Match on one object; ``failing`` puts raise a ClientError of that code."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.lock = threading.Lock()

    def get_object(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(json.dumps({"n": 0}).encode()), "ETag": '"e"'}

    def put_object(self, **kwargs: Any) -> None:
        import botocore.exceptions

        with self.lock:
            code = self.codes.pop(0) if "IfMatch" in kwargs and self.codes else None
        if code is not None:
            raise botocore.exceptions.ClientError({"Error": {"Code": code}}, "PutObject")

    def delete_object(self, **_kwargs: Any) -> None:
        return None


def _ticking_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows' clock (``time.perf_counter``) moves 1 ms each time it is read: a row's window
    then ends after so many looks at it, not after so much of the host's time (a short window
    on a loaded host passed before a worker ran, and the row made no call)."""
    ticks = itertools.count()
    monkeypatch.setattr(
        bench_baselines, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks) / 1000)
    )


def test_an_error_in_a_boto3_worker_reaches_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread's error was printed by the thread and dropped: the baseline went on with
    one thread fewer, slower, and the row's ratio looked better."""
    import boto3
    import botocore.exceptions

    monkeypatch.setattr(boto3, "client", lambda *_args, **_kwargs: _Boto3Client(["AccessDenied"]))
    _ticking_clock(monkeypatch)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        bench_baselines._boto3_cas_loop(harness.Target("s3://bucket/prefix"), "cas", 2, 0.2)


def test_the_boto3_baseline_retries_a_lost_race(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setattr(
        boto3, "client", lambda *_args, **_kwargs: _Boto3Client(["PreconditionFailed", "412"])
    )
    _ticking_clock(monkeypatch)
    assert bench_baselines._boto3_cas_loop(harness.Target("s3://bucket/prefix"), "cas", 2, 0.1) > 0


def test_timer_bench_stops_its_runners() -> None:
    """A runner still alive after its report and the 60 s join (hung), or the others of one that
    failed: killed and reaped, never left to the interpreter's exit (which waits for them)."""
    context = _Context()
    children = [context.Process(None, ()) for _ in range(3)]
    for child in children[:2]:
        child.start()
        child.pid = 1  # type: ignore[attr-defined]
    children[2].pid = None  # type: ignore[attr-defined]  # (never started)
    timer_bench._stopped(children)
    assert [(c.killed, c.joined) for c in children] == [(True, True), (True, True), (False, False)]


# -- timer_bench's figures ----------------------------------------------------------------------------
def test_timer_bench_percentiles_are_nearest_rank() -> None:
    figures = [float(i) for i in range(1, 101)]
    assert timer_bench.nearest_rank(figures, 0.99) == 99.0  # int(0.99 * 100) took the 100th
    assert timer_bench.nearest_rank(figures, 0.5) == 50.0
    assert timer_bench.nearest_rank(figures, 0.29) == 29.0
    assert timer_bench.nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert timer_bench.nearest_rank([7.0], 0.99) == 7.0
    assert timer_bench.nearest_rank([], 0.99) is None


def test_timer_bench_counts_every_request_path() -> None:
    """``delete_many`` (the index entries) and ``delete_unchanged`` (the claims) sent requests the
    count did not see (they go by ``_delete``, not the wrapped ``delete``). The synchronous
    ``*_now`` requests are counted too (unused while the store is wrapped: wrapping turns
    ``inline`` off; counted should that change)."""
    name = f"h169-count-{uuid.uuid4().hex[:8]}"
    store = MemoryStore(name)
    try:
        counts = timer_bench._count_requests(store)

        async def requests() -> None:
            await store.put("a/timers/1", b"x")
            version = await store.put("a/timer-claims/1", b"x")
            await store.delete_many(["a/timers/1"])
            await store.delete_unchanged({"a/timer-claims/1": version})
            await store.list("a/")

        store.put_now("a/steps/1", b"x", mode="create")
        store.get_now("a/steps/1")
        store.list_now("a/")
        asyncio.run(requests())
        assert sum(counts.values()) == store.requests.total() == 8
        assert counts["put step"] == 1 and counts["delete index"] == 1 and counts["delete claim"] == 1
    finally:
        MemoryStore.wipe(name)


# -- progress, traces ------------------------------------------------------------------------------
def test_the_progress_total_is_the_steps_taken(memory_runtime: str) -> None:
    """On memory:// the processes and cold start rows are "n/a" at once: no steps were taken for
    them, yet the total counted their repeats (the bar ended at 10/13)."""
    taken: list[str] = []
    groups = ("processes", "cold_start", "cpu")
    profile = harness.Profile(
        "t", repeats=2, samples=1, duration=0.01, long_steps=12, rss_actors=10, processes=2
    )
    rows = harness.run_bench(
        harness.Target(f"memory://{memory_runtime}"), profile, progress=taken.append, groups=groups
    )
    assert [row.ok for row in rows if row.value == "n/a"] == [None, None]
    assert len(taken) == harness._steps_for(profile, groups, multiprocess=False) == 2
    assert harness._steps_for(profile, groups) == 6


def test_plain_progress_says_each_group_once() -> None:
    said: list[str] = []
    progress = PlainProgress(5, said.append)
    for label in ("warm", "warm", "cold", "cold", "cpu"):
        progress.advance(label)
    progress.finish()
    assert [line.split(" done ")[0] for line in said] == ["bench: warm", "bench: cold", "bench: cpu"]
    assert "(2/5 steps" in said[0] and "(5/5 steps" in said[2]


def test_round_trips_chain_only_what_ended_before() -> None:
    request = request_trace.Request
    # a then (b, c together, both after a) then d after c: 3; e touching d's end starts after it
    trace = [
        request("get", "a", 0.0, 1.0),
        request("get", "b", 1.0, 2.0),
        request("get", "c", 1.5, 3.0),
        request("put", "d", 3.0, 4.0),
    ]
    assert request_trace.sequential_round_trips(trace) == 3
    assert request_trace.sequential_round_trips(trace[:1]) == 1
    assert request_trace.sequential_round_trips([]) == 0


def test_on_path_leaves_out_head_moves_only() -> None:
    trace = request_trace.RequestTrace(MemoryStore(f"h169-{uuid.uuid4().hex[:8]}"))
    request = request_trace.Request
    trace.requests = [
        request("put", "x/HEAD", 0, 1),
        request("get", "x/HEAD", 0, 1),
        request("put", "x/steps/1", 0, 1),
    ]
    assert [(r.kind, r.key) for r in trace.on_path()] == [("get", "x/HEAD"), ("put", "x/steps/1")]


def test_request_trace_rows_per_deleted_key() -> None:
    name = f"h169-trace-{uuid.uuid4().hex[:8]}"
    store = MemoryStore(name)
    try:
        trace = request_trace.RequestTrace(store)

        async def deletes() -> None:
            version = await store.put("c", b"x")
            await store.delete_many(["a", "b"])
            await store.delete_unchanged({"c": version})

        with trace.installed():
            asyncio.run(deletes())
        assert [(r.kind, r.key) for r in trace.requests] == [
            ("put", "c"),
            ("delete", "a"),
            ("delete", "b"),
            ("delete", "c"),
        ]
        assert "delete_many" not in vars(store)  # uninstalled
    finally:
        MemoryStore.wipe(name)


def test_raw_puts_leave_nothing_but_their_own(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = vc.get_runtime().store
    _ticking_clock(monkeypatch)

    async def run() -> list[str]:
        await store.put("keep/1", b"x")
        rate = await bench_baselines._raw_puts(store, "fanraw/r", b"x", 0.05)
        assert rate > 0
        return await store.list("")

    assert asyncio.run(run()) == ["keep/1"]


# -- usage errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("latency", ["-1", "inf", "5,-2", "1,2,3", "nan"])
def test_a_negative_or_infinite_latency_is_a_usage_error(latency: str) -> None:
    from vactor_cloud.cli import bench

    with pytest.raises(CliError) as refused:
        bench._check_latency(latency)
    assert refused.value.code == 2 and "\n" not in str(refused.value)


def test_an_empty_rows_list_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from vactor_cloud.cli import main as vactor

    with pytest.raises(SystemExit) as refused:
        vactor(["bench", "memory://h169-rows", "--rows", " , "])
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--rows" in line


# -- the rest of the survivors ---------------------------------------------------------------------------
def test_warm_ratio_is_commit_over_put(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit p50 ÷ raw create-only PUT p50, of the same repeat: raw PUTs made 20 ms slower
    than commits give a ratio well under 1 (its inverse, over 10, was a MISS)."""
    import time

    from vactor_cloud import _sync

    class SlowRawPuts:
        """The harness's ``_sync``, its ``sync`` (the raw PUTs' only use of it here) 20 ms slower."""

        def __getattr__(self, name: str) -> Any:
            return getattr(_sync, name)

        @staticmethod
        def sync(coro: Any) -> Any:
            time.sleep(0.02)
            return _sync.sync(coro)

    monkeypatch.setattr(harness, "_sync", SlowRawPuts())
    commits, ratio, reads = _bench(f"memory://{memory_runtime}").warm_rows()
    assert commits.value == reads.value == "1"
    assert float(ratio.value) < 0.5 and ratio.ok is True, ratio
    # judged on the figure shown: 1.2504 shows as 1.25, within "<= 1.25"
    monkeypatch.setattr(harness, "_p50", _feed([1.2504, 1.0] * 2 * PROFILE.repeats))
    ratio = _bench(f"memory://{memory_runtime}").warm_rows()[1]
    assert ratio.value == "1.25" and ratio.ok is True, ratio


def test_a_writer_process_reports_the_calls_it_made(memory_runtime: str) -> None:
    """The processes row's figure is each writer's count of the calls it committed."""
    actor_id = "writer"
    harness.BenchCounter.get_or_create(actor_id).incr.run()
    start = threading.Event()
    start.set()
    results: queue.Queue[tuple[int, int]] = queue.Queue()
    ready: queue.Queue[int] = queue.Queue()
    harness._process_writer(
        harness.Target(f"memory://{memory_runtime}"), actor_id, start, 0.2, results, 5, ready
    )
    assert ready.get_nowait() == 5  # (said it had loaded, before its window)
    index, done = results.get_nowait()
    vc.init(f"memory://{memory_runtime}")
    assert index == 5 and done > 0
    assert vc.get_actor(actor_id).value.run() == 1 + done


def test_drive_counts_each_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls per second of the clock: calls that each take one (fake) second give 1.0."""
    clock = [0.0]

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock[0]

    async def call(_i: int) -> None:
        clock[0] += 1.0

    monkeypatch.setattr(bench_baselines, "time", FakeTime)
    assert asyncio.run(bench_baselines._drive(call, 1, 3.5)) == 1.0


def _runner_report(fired: int, lateness: list[float], **more: Any) -> dict[str, Any]:
    report = {"index": 0, "fired": fired, "stale": 0, "lateness": lateness, "views": {1: 2}}
    report.update(errors=[], error_count=0, requests={"put step": 2 * fired}, max_lateness=max(lateness))
    return {**report, **more}


def test_timer_bench_summary_figures() -> None:
    """fired and requests summed over the runners, requests per timer fired, doubled = timers
    that rang more than once, unfired = timers that never rang, every runner's errors counted."""
    import argparse

    args = argparse.Namespace(
        url="file:///x", timers=5, actors=2, runners=2, poll=1.0, sharded=False, split="runners"
    )
    results = [
        _runner_report(3, [0.1, 0.2, 0.3], errors=["a: x"], error_count=4, max_lateness=9.0),
        _runner_report(2, [0.4, 0.5], requests={"put step": 4, "list index": 6}),
    ]
    row = timer_bench._summary(args, results, {"t0": 1, "t1": 2, "t2": 1, "t3": 3}, 0, 1.0)
    assert row["fired"] == 5
    assert row["requests"] == {"put step": 10, "list index": 6}
    assert row["requests_per_timer"] == 3.2
    assert (row["doubled"], row["unfired_when_runners_stopped"]) == (2, 1)
    assert (row["error_count"], row["errors"]) == (4, ["a: x"])
    assert row["lateness_max_s"] == 9.0  # (a figure trimmed from a runner's list still counts)
    assert (row["lateness_p50_s"], row["lateness_p99_s"]) == (0.3, 0.5)
    assert [r["p50_s"] for r in row["per_runner"]] == [0.2, 0.4]


def test_a_cleanup_that_failed_says_where_the_objects_stay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deletion of the bench's prefix at the end was in ``suppress(Exception)``: a store that
    refused it left every object the bench wrote, and nothing said so (nor where)."""
    from vactor_cloud.cli import main as vactor
    from vactor_cloud.errors import StorageError

    async def refused(*_args: Any) -> None:
        raise StorageError("the store said no")

    monkeypatch.setattr(harness, "_delete_prefix", refused)
    name = f"h169-left-{uuid.uuid4().hex[:8]}"
    try:
        assert vactor(["bench", f"memory://{name}", "--profile", "tiny", "--rows", "cpu", "--json"]) == 0
    finally:
        MemoryStore.wipe(name)
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "could not delete" in line]
    assert f"memory://{name}-vactor-bench-" in line and "the store said no" in line, err


def test_an_interrupted_boto3_baseline_stops_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM) while the boto3 baseline waited for its threads: they went on with
    GET + PUT to the end of the row's duration, writing the object again after the bench's
    cleanup had deleted its prefix. They now stop at their next round before the interrupt
    goes on."""
    import time

    import boto3

    from vactor_cloud import _sync

    client = _Boto3Client([])
    puts: list[int] = []
    #: puts sent once the interrupt was raised: one round each at most (the one in flight)
    late: list[int] = []
    raised = threading.Event()
    put_object = client.put_object

    def counted_put(**kwargs: Any) -> None:
        puts.append(1)
        if raised.is_set():
            late.append(1)
        time.sleep(0.001)
        put_object(**kwargs)

    client.put_object = counted_put  # type: ignore[method-assign]

    class Interrupted:
        def __getattr__(self, name: str) -> Any:
            return getattr(_sync, name)

        @staticmethod
        def wait_aside(*_args: Any, **_kwargs: Any) -> Any:
            time.sleep(0.05)
            raised.set()
            raise KeyboardInterrupt

    monkeypatch.setattr(boto3, "client", lambda *_args, **_kwargs: client)
    monkeypatch.setattr(bench_baselines, "_sync", Interrupted())
    with pytest.raises(KeyboardInterrupt):
        bench_baselines._boto3_cas_loop(harness.Target("s3://bucket/prefix"), "cas", 4, 5.0)
    before = len(puts)
    time.sleep(0.3)
    assert len(puts) == before
    # (about one round each, a few more while the interrupt reaches the except under the GIL;
    # going on to the row's end, they sent over a thousand)
    assert len(late) < 100, len(late)


def test_the_timers_child_is_ended_with_its_runner_processes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timers row's child (timer_bench) starts runner processes of its own. Interrupted (or
    timed out), the row killed the child only: its runners, orphaned, went on polling and
    committing until their own end (the window and more), into the prefix the cleanup deleted.
    The child's whole process group is killed now. (A grandchild ``sleep`` stands for a runner.)"""
    import os
    import sys
    import time

    from vactor_cloud import _sync

    said = tmp_path / "grandchild"
    script = (
        "import subprocess, time\n"
        "p = subprocess.Popen(['sleep', '20'])\n"
        f"open({str(said)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(20)\n"
    )

    class Interrupted:
        def __getattr__(self, name: str) -> Any:
            return getattr(_sync, name)

        @staticmethod
        def interruptible_wait(*_args: Any, **_kwargs: Any) -> Any:
            deadline = time.monotonic() + 30
            while not (said.exists() and said.read_text()) and time.monotonic() < deadline:
                time.sleep(0.02)
            raise KeyboardInterrupt

    monkeypatch.setattr(bench_processes, "_sync", Interrupted())
    with pytest.raises(KeyboardInterrupt):
        bench_processes._run_captured([sys.executable, "-c", script], dict(os.environ), 60)
    grandchild = int(said.read_text())
    deadline = time.monotonic() + 10
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(grandchild)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_cold_call_on_a_memory_store_shows_the_protocols_round_trips(memory_runtime: str) -> None:
    """A store that answers at once gets 5 ms per request in the cold row, so that requests sent
    together overlap: without it every request is its own round trip (7 here, not <= 4)."""
    harness.BenchCounter.get_or_create("cold").incr.run()
    harness.Target(f"memory://{memory_runtime}").init()  # a fresh runtime, as a new process's
    figures = harness._cold_call("cold")
    assert figures["round_trips"] <= 4 < figures["requests"], figures
    assert figures["step_lists"] == 0


class _Reporting:
    """A writer process on a thread of this process: ``exitcode`` 0 once its writer returned."""

    def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
        self.exitcode: int | None = None

        def run() -> None:
            target(*args)
            self.exitcode = 0

        self.thread = threading.Thread(target=run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def kill(self) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)


def test_a_writer_that_reported_and_ended_is_not_taken_for_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first writer reports and exits; the second reports 1.5 s later. The row waits for the
    second among the writers yet to report only: the first one's exit is no failure."""
    import time

    class Context:
        Event = threading.Event
        Queue = queue.Queue
        Process = _Reporting

    def writer(
        _target: Any, _actor_id: str, start: Any, _duration: float, results: Any, index: int, _ready: Any
    ) -> None:
        assert start.wait(30)
        if index == 1:
            time.sleep(1.5)
        results.put((index, 10 + index))

    monkeypatch.setattr(harness.multiprocessing, "get_context", lambda _method: Context())
    monkeypatch.setattr(harness, "_process_writer", writer)
    monkeypatch.setattr(harness, "_wait_ready", lambda *_args: None)
    assert harness._processes(harness.Target("file:///x"), "a", 2, 0.1) == [10, 11]


def test_the_wait_for_writers_to_load_ends_when_one_died(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock starts after the writers had time to load; one that died ends that wait at once
    (its failure is then said within a second), not after the whole 3 s + 0.5 s a process."""
    slept: list[float] = []

    class FakeTime:
        @staticmethod
        def monotonic() -> float:
            return sum(slept)

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)

    class Proc:
        def __init__(self, alive: bool) -> None:
            self.alive = alive

        def is_alive(self) -> bool:
            return self.alive

    monkeypatch.setattr(bench_processes, "time", FakeTime)
    bench_processes._wait_ready([Proc(True), Proc(False)], 5.0)
    assert slept == []
    bench_processes._wait_ready([Proc(True), Proc(True)], 1.0)
    assert sum(slept) == pytest.approx(1.0, abs=0.11)


class _CountingStore:
    """Enough of an ObjectStore for the raw baselines: counts the requests in flight at once."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.in_flight = 0
        self.peak = 0
        self.version = 0
        #: the clock the rows read (``time.perf_counter``): 1 ms per request answered, so that
        #: every worker starts before the row's window ends however loaded the host is (on
        #: the host's clock, a 0.05 s window passed before any worker ran: 0 puts, in a run)
        self.clock = 0.0

    async def _request(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.005)
        self.in_flight -= 1
        self.clock += 0.001

    async def put(self, key: str, data: bytes, *, mode: Any = "overwrite") -> str:
        await self._request()
        self.objects[key] = data
        self.version += 1
        return str(self.version)

    async def get(self, key: str) -> Any:
        await self._request()

        class Blob:
            pass

        blob = Blob()
        blob.data = self.objects[key]  # type: ignore[attr-defined]
        blob.version = str(self.version)  # type: ignore[attr-defined]
        return blob

    async def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)


def test_the_raw_baselines_run_at_the_rows_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fan-out row's raw PUTs and the one-actor row's CAS loop: 64 in flight, as the rows
    say (the library side is driven at 64 too); one at a time would flatter the library."""
    store = _CountingStore()
    monkeypatch.setattr(bench_baselines, "time", types.SimpleNamespace(perf_counter=lambda: store.clock))
    assert asyncio.run(bench_baselines._raw_puts(store, "raw", b"x", 0.05)) > 0  # type: ignore[arg-type]
    assert store.peak == bench_baselines._CONCURRENCY == 64
    assert store.objects == {}  # (its objects deleted again)
    store = _CountingStore()
    assert asyncio.run(bench_baselines._store_cas_loop(store, "cas", 0.05)) > 0  # type: ignore[arg-type]
    assert store.peak == 64


def test_sigterm_interrupts_the_bench_and_only_while_it_runs() -> None:
    """SIGTERM raises KeyboardInterrupt inside (the bench cleans up, exit 130); the handler the
    process had before is back afterwards."""
    import os
    import signal

    from vactor_cloud.cli import bench

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), bench._sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(5)  # (the handler runs at the next bytecode; never this long)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_cold_call_counts_a_listing_of_the_steps(
    memory_runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cold row's MISS on a LIST of the log's steps rests on this count (the inbox's listing,
    once per process, is not one)."""
    from vactor_cloud import _sync

    store = vc.get_runtime().store

    class Handle:
        class incr:
            @staticmethod
            def run() -> None:
                _sync.sync(store.list("actors/a/steps/"))
                _sync.sync(store.list("actors/a/inbox/"))

    monkeypatch.setattr(vc, "get_actor", lambda _actor_id: Handle())
    figures = harness._cold_call("a")
    assert (figures["lists"], figures["step_lists"], figures["requests"]) == (2, 1, 2)


def test_quick_picks_the_quick_profile_and_profile_overrides_it(capsys: pytest.CaptureFixture[str]) -> None:
    from vactor_cloud.cli import main as vactor

    for flags, profile in ((["--quick"], "quick"), (["--quick", "--profile", "tiny"], "tiny"), ([], "full")):
        name = f"h169-profile-{uuid.uuid4().hex[:8]}"
        try:
            assert vactor(["bench", f"memory://{name}", *flags, "--rows", "processes", "--json"]) == 0
        finally:
            MemoryStore.wipe(name)
        shown = json.loads(capsys.readouterr().out)
        assert shown["profile"] == profile and shown["latency_ms"] is None
        assert [row["value"] for row in shown["rows"]] == ["n/a"]


def test_a_runner_reports_every_error_it_met(memory_runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner sends its first five errors and the count of all of them (the row's MISS and
    its note rest on the count)."""
    from vactor_cloud.timer_runner import TickReport

    errors = [f"actor-{i}: boom" for i in range(7)]
    monkeypatch.setattr(timer_bench, "run_timers", lambda **_kwargs: TickReport(fired=3, errors=list(errors)))
    out: queue.Queue[dict[str, Any]] = queue.Queue()
    timer_bench._runner(0, f"memory://{memory_runtime}", 1.0, 0.0, out, None, "runners", {})
    report = out.get_nowait()
    assert (report["fired"], report["error_count"], report["errors"]) == (3, 7, errors[:5])

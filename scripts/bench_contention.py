"""Many processes, one actor: aggregate throughput, fairness and tail latency (issue 13's rows).

    python scripts/bench_contention.py STORE_URL [--processes 1,8,32] [--duration 5] [--repeats 3]
        [-o KEY=VALUE ...] [--latency MS] [--no-combine] [--no-post-names] [--think MS]

Each process calls ``incr.run()`` on one shared actor in a loop for ``--duration``
seconds, from one moment once every process has started and loaded the actor.
Printed per process count (medians over ``--repeats`` rounds; every round measures
one process alone first, and each ratio divides by that round's): calls/s in all,
that ÷ one process alone, the slowest process's share of the calls (fair = 1/N),
p99 latency, and errors; before them, the requests each call cost (by kind, summed over
the processes of the last round) and the commits, lost races and posted calls per call.
Load is bounded by count and time. ``-o`` takes storage options and ``Settings`` fields alike.
``--no-combine`` runs with ``Settings(combine=False)`` (every process races for
each step, as before contention combining): the "before" column in one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from typing import Any

import vactor_cloud as vc
from vactor_cloud import counters
from vactor_cloud.child_reports import take_report
from vactor_cloud.testing.latency import Latency, install
from vactor_cloud.timer_bench import nearest_rank


@vc.virtual_actor
class SharedCounter:
    def __init__(self) -> None:
        self.value = 0

    def incr(self) -> int:
        self.value += 1
        return self.value

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


def _init(url: str, options: dict[str, Any]) -> None:
    think = options.pop("think", 0.0)
    combine = options.pop("combine", True)
    latency = options.pop("latency", None)
    names = options.pop("post_names", True)
    try:
        fields = set(vc.Settings.__dataclass_fields__)
        tuning = {k: v for k, v in options.items() if k in fields}
        rest = {k: v for k, v in options.items() if k not in fields}
        vc.init(url, settings=vc.Settings(storage="", combine=combine, post_names=names, **tuning), **rest)
    finally:
        options["combine"] = combine
        options["latency"] = latency
        options["post_names"] = names
        options["think"] = think
    if latency is not None:
        install(Latency.parse(latency))  # every request waits as long as a real bucket's would


def _worker(
    url: str, options: dict[str, Any], actor_id: str, start: Any, duration: float, queue: Any, ready: Any
) -> None:
    _init(url, options)
    handle = vc.get_actor(actor_id)
    handle.get.run()  # loaded and warm before the clock starts
    latencies: list[float] = []
    errors: list[str] = []
    vc.get_runtime().store.requests.reset()
    counters.reset()
    ready.put(os.getpid())
    while start.value == 0.0:
        time.sleep(0.005)
    while time.time() < start.value:
        time.sleep(0.001)
    end = start.value + duration
    think = options.get("think", 0.0)
    cpu = time.process_time()
    while time.time() < end:
        if think:
            time.sleep(think)  # work between calls (a Dask task's overhead): light contention
        began = time.perf_counter()
        try:
            handle.incr.run()
        except Exception as exc:
            errors.append(type(exc).__name__)
            continue
        latencies.append(time.perf_counter() - began)
    requests = vc.get_runtime().store.requests.snapshot()
    requests["(cpu_ms)"] = round(1000 * (time.process_time() - cpu))
    stats = counters.stats()
    for name in ("commits", "commit_conflicts", "posted_calls", "folded_calls", "leases_taken"):
        requests[f"({name})"] = stats.get(name, 0)
    vc.shutdown()
    report = {"calls": len(latencies), "latencies": latencies, "errors": errors, "requests": requests}
    queue.put({"pid": os.getpid(), **report})


def p99_ms(latencies: list[float]) -> float:
    """The p99 of ``latencies`` (sorted, in seconds), in milliseconds; nan if there are none.
    Nearest rank, as ``vactor bench`` and timer_bench take theirs (``int(0.99 * (n - 1))`` was
    a rank low for most n: of 10 calls the 9th)."""
    p99 = nearest_rank(latencies, 0.99)
    return float("nan") if p99 is None else 1000 * p99


def run_once(url: str, options: dict[str, Any], processes: int, duration: float) -> dict[str, Any]:
    _init(url, options)
    actor_id = f"contention-{uuid.uuid4().hex[:8]}"
    SharedCounter.get_or_create(actor_id)
    vc.shutdown()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    ready = ctx.Queue()
    start = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_worker, args=(url, options, actor_id, start, duration, queue, ready))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    # Every child imported, loaded and warm first: on a busy machine 32 interpreters take
    # longer to start than a run lasts, and a late child would count as starved.
    # (a child that died, or exited without reporting, stops the run at once: take_report, not a
    # wait of minutes; a child counts among those still to report until its report is taken)
    waiting = list(procs)
    for _ in procs:
        pid = take_report(ready, 300, waiting)
        waiting = [p for p in waiting if p.pid != pid]
    start.value = time.time() + 0.2
    waiting, results = list(procs), []
    for _ in procs:
        results.append(take_report(queue, duration + 120, waiting))
        waiting = [p for p in waiting if p.pid != results[-1]["pid"]]
    for p in procs:
        p.join(30)
        if p.is_alive():
            p.kill()
    calls = [r["calls"] for r in results]
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = [e for r in results for e in r["errors"]]
    requests: dict[str, int] = {}
    for r in results:
        for kind, n in r["requests"].items():
            requests[kind] = requests.get(kind, 0) + n
    _init(url, options)
    final = vc.get_actor(actor_id).get.run()
    vc.shutdown()
    total = sum(calls)
    return {
        "rate": total / duration,
        "min_share": min(calls) / total if total else 0.0,
        "p99_ms": p99_ms(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "lost_or_doubled": final - total,
        "requests_per_call": {k: round(n / total, 2) for k, n in sorted(requests.items())} if total else {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--processes", default="1,8,32")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-o", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--no-combine", action="store_true", help="Settings(combine=False): race for every step"
    )
    parser.add_argument(
        "--no-post-names",
        action="store_true",
        help="Settings(post_names=False): every post under a bare name, read by GET",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        metavar="MS",
        help="sleep this long before each call (light contention, as between a Dask worker's tasks)",
    )
    parser.add_argument(
        "--latency", metavar="MS[,JITTER]", help="delay every request (LatencyStore), as a real bucket would"
    )
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.latency:
        Latency.parse(args.latency)  # a bad value fails here, not in every child
        options["latency"] = args.latency
    if args.think:
        options["think"] = args.think / 1000
    if args.no_combine:
        options["combine"] = False
    if args.no_post_names:
        options["post_names"] = False
    for item in args.o:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    counts = [int(n) for n in args.processes.split(",")]
    # One process alone is measured again in every round, right before the others: on a
    # local store its rate moves with the disk's state (fsync) by as much as 3x between
    # rounds, so each ratio divides two rates of the same round (medians over the rounds).
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    ratios: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.repeats):
        alone = run_once(args.url, options, 1, args.duration)
        for n in counts:
            result = alone if n == 1 else run_once(args.url, options, n, args.duration)
            runs[n].append(result)
            ratios[n].append(result["rate"] / alone["rate"] if alone["rate"] else float("nan"))
    print("requests per call (and events per call, in brackets), last round:")
    for n in counts:
        print(f"  {n} processes: {runs[n][-1]['requests_per_call']}")
    print()
    print("| processes | calls/s | ÷ one alone | slowest share (fair) | p99 ms | errors | total - calls |")
    print("|---|---|---|---|---|---|---|")
    for n in counts:
        rate = statistics.median(r["rate"] for r in runs[n])
        share = statistics.median(r["min_share"] for r in runs[n])
        p99 = statistics.median(r["p99_ms"] for r in runs[n])
        errors = sum(r["errors"] for r in runs[n])
        drift = [r["lost_or_doubled"] for r in runs[n]]
        ratio = statistics.median(ratios[n])
        print(
            f"| {n} | {rate:.0f} | {ratio:.2f} | {share:.3f} ({1 / n:.3f}) | {p99:.0f} | "
            f"{errors} {sorted({k for r in runs[n] for k in r['error_kinds']})} | {drift} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark row for durable timers (issue 16): many timers due within one minute, several runners.

::

    python -m vactor_cloud.timer_bench URL [--timers 10000] [--actors 1000] [--runners 4]
        [--window 60] [--poll 1.0] [--split runners|claims|none] [--sharded] [--storage-options JSON]

Arms ``--timers`` timers spread over ``--actors`` actors, due uniformly within
``--window`` seconds from a start a few seconds ahead; starts ``--runners``
runner processes (``run_timers`` with ``--poll`` and ``--split``; ``--sharded``
gives runner i the shard i/N); waits until the index is empty; checks that
every timer was applied exactly once; prints one JSON row:
p50/p99/max lateness (commit time minus due time, as the runners measured
it) and requests per fired timer (every request of the runner processes,
LIST, heartbeats, claims, loads, commits and deletes included, divided by
timers fired; each store call counts once: a runner's listing asks for at
most 1,000 keys, one S3 page). Exits 1 unless every timer was applied exactly once, the
index emptied and no runner reported an error (``error_count``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.actor import ActorClass
from vactor_cloud.child_reports import take_report
from vactor_cloud.timer_report import TickReport
from vactor_cloud.timer_runner import Split, run_timers
from vactor_cloud.timers import list_index

__all__ = ["main"]


class _Alarm:
    def __init__(self) -> None:
        self.fired: dict[str, int] = {}

    def arm(self, timers: list[tuple[str, float]]) -> int:
        call = vc.current_call()
        assert call is not None
        for key, at in timers:
            call.schedule("ring", at=at, key=key, args=(key,))
        return len(timers)

    def ring(self, key: str) -> None:
        self.fired[key] = self.fired.get(key, 0) + 1

    @vc.virtual_actor.readonly
    def counts(self) -> dict[str, int]:
        return dict(self.fired)


BenchAlarm: ActorClass[Any] = vc.virtual_actor(_Alarm)


def _category(key: str) -> str:
    for part, name in (
        ("timer-claims/", "claim"),
        ("timer-runners/", "heartbeat"),
        ("timers/", "index"),
        ("/steps/", "step"),
    ):
        if part in key:
            return name
    return key.rstrip("/").rsplit("/", 1)[-1] if "/inbox" in key or key.endswith("HEAD") else "other"


#: the store's methods that send one request each, and the kind each is counted as: one batch
#: of a ``delete_many`` or ``delete_unchanged`` (S3: up to 1,000 keys a request; elsewhere one),
#: which go by ``_delete``, not ``delete``; the synchronous ones too (unused while the store is
#: wrapped: wrapping its methods turns ``inline`` off)
_COUNTED = {
    "get": "get",
    "head": "head",
    "put": "put",
    "list": "list",
    "delete": "delete",
    "get_now": "get",
    "put_now": "put",
    "list_now": "list",
    "_delete_batch": "delete",
    "_delete_unchanged_batch": "delete",
}


def _count_requests(store: Any) -> dict[str, int]:
    """Count ``store``'s requests from now on by kind and object ("put step", "delete claim", ...)."""
    counts: dict[str, int] = {}
    for name, kind in _COUNTED.items():
        method = getattr(store, name)

        def wrapped(key: Any, *args: Any, _m: Any = method, _k: str = kind, **kwargs: Any) -> Any:
            first = key if isinstance(key, str) else next(iter(key))  # (a batch: its first key)
            label = f"{_k} {_category(first)}"
            counts[label] = counts.get(label, 0) + 1
            return _m(key, *args, **kwargs)

        setattr(store, name, wrapped)
    return counts


def _runner(
    index: int,
    url: str,
    poll: float,
    until: float,
    out: Any,
    shard: tuple[int, int] | None,
    split: str,
    options: dict[str, Any],
) -> None:
    vc.init(
        url,
        settings=vc.Settings(storage="", head_interval=1.0, max_workers=16),
        storage_options=options,
    )
    counts = _count_requests(vc.get_runtime().store)
    stop = threading.Event()
    views: dict[int, int] = {}  # runners this one saw alive -> ticks

    def on_tick(tick: TickReport) -> None:
        views[tick.runners] = views.get(tick.runners, 0) + 1
        if time.time() > until:
            stop.set()

    total = run_timers(
        poll=poll, stop=stop, lease=30.0, on_tick=on_tick, shard=shard, split=cast(Split, split)
    )
    vc.shutdown()
    out.put(
        {
            "index": index,
            "fired": total.fired,
            "stale": total.stale,
            "lateness": total.lateness,
            "max_lateness": total.max_lateness,
            "errors": [str(error) for error in total.errors[:5]],
            "error_count": total.error_count,
            "requests": counts,
            "views": views,
        }
    )


def nearest_rank(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``ordered`` (sorted): the smallest figure with at least
    ``fraction`` of them at or below it (p99 of 100 figures: the 99th; ``None``: no figures)."""
    if not ordered:
        return None
    rank = math.ceil(round(fraction * len(ordered), 9))  # (0.29 * 100 is 28.999999999999996)
    return ordered[min(len(ordered), max(rank, 1)) - 1]


def _rounded(figure: float | None) -> float | None:
    return None if figure is None else round(figure, 3)


def _stopped(procs: Sequence[Any]) -> None:
    """Kill each started runner of ``procs`` still alive and reap it (5 s at most each)."""
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            proc.kill()
    for proc in procs:
        if proc.pid is not None:
            proc.join(5)


def _summary(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    counts: dict[str, int],
    left: int,
    arm_seconds: float,
) -> dict[str, Any]:
    """The printed row, from the runners' reports (``results``), how many times each timer rang
    (``counts``, by timer key) and the index entries ``left``."""
    fired = sum(r["fired"] for r in results)
    lateness = sorted(x for r in results for x in r["lateness"])
    requests: dict[str, int] = {}
    for r in results:
        for k, v in r["requests"].items():
            requests[k] = requests.get(k, 0) + v
    tops = [r["max_lateness"] for r in results if r["max_lateness"] is not None]
    return {
        "backend": args.url.split(":", 1)[0] if "://" in args.url else "local",
        "timers": args.timers,
        "actors": args.actors,
        "runners": args.runners,
        "poll_s": args.poll,
        "sharded": args.sharded,
        "split": args.split,
        "arm_s": round(arm_seconds, 2),
        "fired": fired,
        "stale_met": sum(r.get("stale", 0) for r in results),
        "doubled": sum(1 for c in counts.values() if c > 1),
        "unfired_when_runners_stopped": args.timers - len(counts),
        "index_left": left,
        "lateness_p50_s": _rounded(nearest_rank(lateness, 0.5)),
        "lateness_p99_s": _rounded(nearest_rank(lateness, 0.99)),
        "lateness_max_s": max(tops) if tops else None,
        "requests_per_timer": round(sum(requests.values()) / max(fired, 1), 2),
        "requests": requests,
        "errors": [e for r in results for e in r["errors"]][:5],
        "error_count": sum(r["error_count"] for r in results),
        # per runner: timers fired, median lateness, how many runners it saw alive (-> ticks)
        "per_runner": [
            {
                "fired": r["fired"],
                "p50_s": _rounded(nearest_rank(sorted(r["lateness"]), 0.5)),
                "views": r["views"],
            }
            for r in results
        ],
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vactor_cloud.timer_bench", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--actors", type=int, default=1_000)
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--sharded", action="store_true", help="runner i takes shard i/N (else claims only)")
    parser.add_argument(
        "--split", choices=["runners", "claims", "none"], default="runners", help="how runners share actors"
    )
    parser.add_argument("--no-claims", action="store_true", help="the same as --split none (older spelling)")
    parser.add_argument("--lead", type=float, default=10.0, help="seconds before the first timer is due")
    parser.add_argument(
        "--storage-options", default="{}", metavar="JSON", help="the store's options (endpoint_url, key, ...)"
    )
    args = parser.parse_args(argv)
    if args.no_claims:
        args.split = "none"
    options = json.loads(args.storage_options)
    if not isinstance(options, dict):
        parser.error('--storage-options: a JSON object, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'')

    vc.init(args.url, storage_options=options)
    rng = random.Random(16)
    start = time.time() + args.lead
    per_actor: dict[str, list[tuple[str, float]]] = {}
    for i in range(args.timers):
        actor_id = f"timer-bench-{i % args.actors}"
        per_actor.setdefault(actor_id, []).append((f"t{i}", start + rng.random() * args.window))
    armed_at = time.monotonic()
    futures = [BenchAlarm.get_or_create(a).arm.run_async(t) for a, t in per_actor.items()]
    vc.get(futures, timeout=600)
    arm_seconds = time.monotonic() - armed_at
    if time.time() > start:
        print(f"warning: arming took {arm_seconds:.1f}s, past --lead; lateness is inflated", file=sys.stderr)

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    until = start + args.window + 3 * args.poll + 5
    procs = [
        ctx.Process(
            target=_runner,
            args=(
                i,
                args.url,
                args.poll,
                until,
                out,
                (i, args.runners) if args.sharded else None,
                args.split,
                options,
            ),
        )
        for i in range(args.runners)
    ]
    results = []
    try:
        for p in procs:
            p.start()
        waiting = list(procs)
        for _ in procs:
            results.append(take_report(out, until - time.time() + 600, waiting))
            waiting.remove(procs[results[-1]["index"]])
        for p in procs:
            p.join(60)
    finally:
        # (a runner still alive here is hung, or the others of one that failed: none is left behind)
        _stopped(procs)

    left = len(_sync.sync(list_index(vc.get_runtime().store)))
    counts: dict[str, int] = {}
    for actor_id in per_actor:
        counts.update(vc.get_actor(actor_id).counts.run())
    row = _summary(args, results, counts, left, arm_seconds)
    print(json.dumps(row))
    vc.shutdown()
    return exit_status(row)


def exit_status(row: dict[str, Any]) -> int:
    """0 if the printed ``row`` shows a whole run: every timer applied once, the index emptied,
    no runner's error (what ``vactor bench``'s timers row also requires); else 1. Errors
    counted only in the row (``error_count``), a run by itself exited 0 with them."""
    whole = (
        row["doubled"] == 0
        and row["unfired_when_runners_stopped"] == 0
        and row["index_left"] == 0
        and row["error_count"] == 0
    )
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())

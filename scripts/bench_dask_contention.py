"""Many Dask tasks, one actor: each task increments one shared counter (issue 13's Dask row).

    python scripts/bench_dask_contention.py STORE_URL [--tasks 1000] [--workers 4] [--repeats 3]
        [-o KEY=VALUE ...] [--no-combine]

``-o`` takes storage options and ``Settings`` fields alike (``-o combine_after=2``).

Starts a ``distributed.LocalCluster`` on 127.0.0.1 (``--workers`` processes, one
thread each), submits ``--tasks`` tasks that each call ``incr.run()`` on one
actor, and prints per run: the wall time from the first submit to the last
result, the errors, and the actor's final value against the number of tasks.
``--no-combine`` runs with ``Settings(combine=False)`` (the "before" column).
The cluster is closed after each run; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from typing import Any

import vactor_cloud as vc


@vc.virtual_actor
class DaskCounter:
    def __init__(self) -> None:
        self.value = 0

    def incr(self) -> int:
        self.value += 1
        return self.value

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


def _init(url: str, options: dict[str, Any], combine: bool) -> None:
    fields = set(vc.Settings.__dataclass_fields__)
    tuning = {k: v for k, v in options.items() if k in fields}
    rest = {k: v for k, v in options.items() if k not in fields}
    if not combine:
        tuning["combine"] = False
    vc.init(url, settings=vc.Settings(storage="", **tuning), **rest)


_initialised: set[tuple[str, bool]] = set()


def _task(url: str, options: dict[str, Any], combine: bool, actor_id: str, index: int) -> str | None:
    """One task: increment the actor once; the error's type name, or None."""
    key = (url, combine)
    if key not in _initialised:  # once per worker process
        _init(url, options, combine)
        _initialised.add(key)
    try:
        vc.get_actor(actor_id).incr.run()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def run_once(url: str, options: dict[str, Any], combine: bool, tasks: int, workers: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    _init(url, options, combine)
    actor_id = f"dask-{uuid.uuid4().hex[:8]}"
    DaskCounter.get_or_create(actor_id)
    vc.shutdown()
    with (
        LocalCluster(
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
        ) as cluster,
        Client(cluster) as client,
    ):
        # Warm every worker (imports, init) outside the timed part.
        client.run(_init, url, options, combine)
        client.run(lambda: _initialised.add((url, combine)))
        began = time.perf_counter()
        futures = client.map(
            _task, [url] * tasks, [options] * tasks, [combine] * tasks, [actor_id] * tasks, range(tasks)
        )
        results = client.gather(futures)
        wall = time.perf_counter() - began
        client.run(vc.shutdown)
    _init(url, options, combine)
    final = vc.get_actor(actor_id).get.run()
    vc.shutdown()
    errors = [r for r in results if r is not None]
    return {"wall": wall, "errors": errors, "final": final, "tasks": tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-o", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--no-combine", action="store_true", help="Settings(combine=False): race for every step"
    )
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    for item in args.o:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    combine = not args.no_combine
    runs = []
    print("| run | tasks | wall s | tasks/s | errors | final value |")
    print("|---|---|---|---|---|---|")
    for i in range(args.repeats):
        r = run_once(args.url, options, combine, args.tasks, args.workers)
        runs.append(r)
        print(
            f"| {i + 1} | {r['tasks']} | {r['wall']:.2f} | {r['tasks'] / r['wall']:.0f} | "
            f"{len(r['errors'])} {sorted({e.split(':')[0] for e in r['errors']})} | {r['final']} |",
            flush=True,
        )
    wall = statistics.median(r["wall"] for r in runs)
    ok = all(r["final"] == r["tasks"] and not r["errors"] for r in runs)
    print(f"median wall {wall:.2f} s; combine={combine}; every total correct, no errors: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

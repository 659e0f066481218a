"""What an S3 endpoint gives N processes that each make K requests per call, against one process making one.

    python scripts/bench_request_floor.py [--endpoint URL] [--processes 1,8] [--requests 1,2,3]
        [--duration 5] [--repeats 3]

No library code runs: each process holds one botocore client (keep-alive, as
the S3 store's default transport) and loops, for ``--duration`` seconds from
one shared start, over calls of K sequential requests on keys of its own: a
create-only PUT (``If-None-Match: *``, 40 bytes, as a step's commit), then
K - 1 GETs of the key just written (as a poster's look at its result).
Printed per (processes, K): calls/s in all ÷ one process making one PUT per
call, and ÷ the library's own one process alone (``bench_contention.py``'s
denominator: ``incr.run()`` in a loop on one actor), both measured in the same
round (medians over ``--repeats`` rounds).

Why: issue 13's moto row asks 8 processes on one actor for ≥ 0.6 times the calls/s
of one process alone, and one process alone commits with one PUT per call. A
call that another process applies costs its caller at least two requests (it
must write its call and read its outcome: S3 answers a PUT with nothing of
another's), before any share of the applier's own LIST and PUT. The row for
K = 2 at 8 processes is therefore a ceiling for any protocol that combines
calls through the store, measured on the same endpoint and host.

Without ``--endpoint`` a moto server of the test lane's kind is started on
127.0.0.1 (and stopped at the end). Load is bounded by count and time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from typing import Any

_REGION = "us-east-1"
_MAX_CALLS = 200_000


def _client(endpoint: str) -> Any:
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=15),
    )


def _conditional_put(client: Any, bucket: str, key: str) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=b"x" * 40, IfNoneMatch="*")


def _worker(endpoint: str, bucket: str, k: int, start: Any, duration: float, ready: Any, out: Any) -> None:
    client = _client(endpoint)
    me = uuid.uuid4().hex[:12]
    _conditional_put(client, bucket, f"warm/{me}")  # connection and service model loaded before the start
    ready.put(me)
    while start.value == 0.0 or time.time() < start.value:
        time.sleep(0.001)
    calls = 0
    end = start.value + duration
    while time.time() < end and calls < _MAX_CALLS:
        key = f"w/{me}/{calls}"
        _conditional_put(client, bucket, key)
        for _ in range(k - 1):
            client.get_object(Bucket=bucket, Key=key)["Body"].read()
        calls += 1
    out.put(calls)


def run_once(endpoint: str, processes: int, k: int, duration: float) -> float:
    """Calls per second of ``processes`` processes making ``k`` requests per call on ``endpoint``."""
    bucket = f"floor-{uuid.uuid4().hex[:16]}"
    _client(endpoint).create_bucket(Bucket=bucket)
    ctx = multiprocessing.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Queue()
    start = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_worker, args=(endpoint, bucket, k, start, duration, ready, out), daemon=True)
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # every process started, connected and warm before the clock starts
        ready.get(timeout=300)
    start.value = time.time() + 0.1
    total = sum(out.get(timeout=duration + 120) for _ in procs)
    for proc in procs:
        proc.join(30)
    return total / duration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="an S3 endpoint (default: start a moto server on 127.0.0.1)")
    parser.add_argument("--processes", default="1,8", help="process counts (default 1,8)")
    parser.add_argument("--requests", default="1,2,3", help="requests per call (default 1,2,3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are printed (default 3)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    ks = [int(k) for k in args.requests.split(",")]
    if not 0 < args.duration <= 60 or not 0 < args.repeats <= 10 or max(counts) > 64 or min(ks) < 1:
        parser.error("--duration in (0, 60], --repeats in 1..10, at most 64 processes, K >= 1")
    lane = None
    endpoint = args.endpoint
    if endpoint is None:
        from vactor_cloud.testing._moto import MotoLane

        lane = MotoLane()
        lane.start()
        endpoint = lane.endpoint
    assert endpoint is not None
    raw_alone: list[float] = []
    library_alone: list[float] = []
    rows: dict[tuple[int, int], list[float]] = {}
    try:
        for _ in range(args.repeats):
            raw_alone.append(run_once(endpoint, 1, 1, args.duration))
            library_alone.append(_library_alone(endpoint, args.duration))
            for n in counts:
                for k in ks:
                    rate = raw_alone[-1] if (n, k) == (1, 1) else run_once(endpoint, n, k, args.duration)
                    rows.setdefault((n, k), []).append(rate)
    finally:
        if lane is not None:
            lane.stop()
    print(f"one process, one PUT per call: {', '.join(f'{r:.0f}' for r in raw_alone)} calls/s")
    print(f"the library, one process alone: {', '.join(f'{r:.0f}' for r in library_alone)} calls/s")
    head = f"{'processes':>9}  {'requests/call':>13}  {'÷ one PUT alone':>15}  {'÷ library alone':>15}"
    print(f"{head}  runs (÷ one PUT)")
    for (n, k), rates in sorted(rows.items()):
        by_raw = [rate / alone for rate, alone in zip(rates, raw_alone, strict=True)]
        by_library = [rate / alone for rate, alone in zip(rates, library_alone, strict=True)]
        runs = ", ".join(f"{r:.2f}" for r in by_raw)
        ratios = f"{statistics.median(by_raw):>15.2f}  {statistics.median(by_library):>15.2f}"
        print(f"{n:>9}  {k:>13}  {ratios}  {runs}")
    return 0


def _library_alone(endpoint: str, duration: float) -> float:
    """The library's one process alone on ``endpoint``, as ``bench_contention.py`` measures it."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_contention

    bucket = f"floor-lib-{uuid.uuid4().hex[:12]}"
    _client(endpoint).create_bucket(Bucket=bucket)
    options = {
        "endpoint_url": endpoint,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": _REGION},
    }
    return float(bench_contention.run_once(f"s3://{bucket}/store", options, 1, duration)["rate"])


if __name__ == "__main__":
    sys.exit(main())

"""Issue 17's LIST row on moto: 10 steps after ``start_after`` at N steps against at 100.

    python scripts/bench_moto_list.py [--steps 100000] [--samples 20]

Starts moto's S3 server as its own process on 127.0.0.1, writes the step keys
of two actors directly (boto3, 16 threads, empty bodies: only the listing is
timed), then times, medians of ``--samples``: the vactor_cloud S3 store's
``list(prefix, start_after=..., limit=10)`` and the same ``ListObjectsV2``
sent with boto3 alone, on the large actor and on the small one. The boto3
column separates the emulator's own cost from the client's. Load is bounded
by count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from bench_all import MotoProcessLane

from vactor_cloud.storage import open_store


def _median_ms(fn: Callable[[], object], samples: int) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    lane = MotoProcessLane()
    lane.start()
    try:
        spec = lane.new_store()
        bucket, _, prefix = spec.url.removeprefix("s3://").partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=lane.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

        def key(actor: str, step: int) -> str:
            return f"{prefix}/actors/{actor}/steps/{step:020d}".lstrip("/")

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            jobs = [("big", i) for i in range(args.steps)] + [("small", i) for i in range(100)]
            for _ in pool.map(lambda job: client.put_object(Bucket=bucket, Key=key(*job), Body=b""), jobs):
                pass
        print(f"wrote {len(jobs)} keys in {time.monotonic() - started:.0f} s", file=sys.stderr)
        store = open_store(spec.url, **spec.options)
        loop = asyncio.new_event_loop()
        rows = []
        for actor, steps in (("big", args.steps), ("small", 100)):
            steps_prefix = f"actors/{actor}/steps/"
            after = f"{steps_prefix}{steps - 20:020d}"

            def ours(steps_prefix: str = steps_prefix, after: str = after) -> None:
                keys = loop.run_until_complete(store.list(steps_prefix, start_after=after, limit=10))
                assert len(keys) == 10, keys

            def bare(steps_prefix: str = steps_prefix, after: str = after) -> None:
                full = f"{prefix}/{steps_prefix}".lstrip("/")
                start = f"{prefix}/{after}".lstrip("/")
                got = client.list_objects_v2(Bucket=bucket, Prefix=full, StartAfter=start, MaxKeys=10)
                assert got["KeyCount"] == 10

            ours()
            bare()
            rows.append((steps, _median_ms(ours, args.samples), _median_ms(bare, args.samples)))
        loop.run_until_complete(store.close())
        loop.close()
        (n_big, ours_big, bare_big), (_, ours_small, bare_small) = rows
        print("| LIST of 10 steps after start_after (moto) | target | vactor_cloud store | boto3 alone |")
        print("|---|---|---|---|")
        print(
            f"| at {n_big:,} steps / at 100 | ≤ 2 | {ours_big / ours_small:.2f} "
            f"({ours_big:.1f} ms vs {ours_small:.1f} ms) | {bare_big / bare_small:.2f} "
            f"({bare_big:.1f} ms vs {bare_small:.1f} ms) |"
        )
    finally:
        lane.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

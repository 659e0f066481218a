"""One run of the execution-model before/after comparison (docs/performance.md).

    PYTHONPATH=<worktree> python scripts/bench_before_after.py URL [OPTIONS_JSON]

Prints one JSON line: the harness's own warm rows (warm commit p50 against a
raw create-only PUT p50 of the same bytes, requests on the critical path) and
process CPU (all threads) per sequential ``run()`` commit and per raw PUT.
Works with the harness of either version: ``vactor_cloud.cli.bench_harness``
(after) or ``vactor_cloud.bench`` (before, commit 781b24a).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.runtime import get_runtime

try:
    harness: Any = importlib.import_module("vactor_cloud.cli.bench_harness")
    VERSION = "after"
except ImportError:
    harness = importlib.import_module("vactor_cloud.bench")
    VERSION = "before"


def cpu_per_call(call: Callable[[int], Any], n: int) -> float:
    started = time.process_time()
    for i in range(n):
        call(i)
    return (time.process_time() - started) / n


def main(url: str, options: dict[str, Any]) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:10]
    target = harness.Target(url, options).sub(f"drv-{run_id}")
    target.init()
    profile = harness.Profile(
        "drv", repeats=1, samples=100, duration=1.0, long_steps=10, rss_actors=10, processes=1
    )
    rows = harness.Bench(target, profile, run_id, lambda _label: None).warm_rows()
    found = re.search(r"commit ([\d.]+) ms, PUT ([\d.]+) ms", rows[1].note)
    assert found is not None
    out: dict[str, Any] = {
        "version": VERSION,
        "url": target.scheme,
        "requests": rows[0].value,
        "ratio": float(rows[1].value),
        "commit_ms": float(found.group(1)),
        "put_ms": float(found.group(2)),
    }
    n = {"memory": 2000, "file": 500}.get(target.scheme, 300)
    handle = harness.BenchCounter.get_or_create(f"cpu-{run_id}")
    for _ in range(20):
        handle.incr.run()
    store = get_runtime().store
    core = get_runtime().core(handle.actor_id)
    _, data = harness._step_bytes(core.log.prefix, core.record.state)
    out["n"] = n
    out["commit_cpu_us"] = cpu_per_call(lambda _i: handle.incr.run(), n) * 1e6
    out["put_cpu_us"] = (
        cpu_per_call(lambda i: _sync.sync(store.put(f"cpuraw/{run_id}/{i}", data, mode="create")), n) * 1e6
    )
    with contextlib.suppress(Exception):
        harness._run_on_loop(harness._delete_prefix(store))
    vc.shutdown()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})))

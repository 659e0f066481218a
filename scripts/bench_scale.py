"""Scale rows of issue #17: costs that must not grow with what an operation does not touch.

    python scripts/bench_scale.py --out rows.json [--steps 100000] [--actors 30000] [--keys 10000]
    python scripts/bench_scale.py --compare OLD_TREE NEW_TREE [...]   # before/after, one run each

Measures, in the vactor_cloud found on ``sys.path`` (so the same script runs
against an older checkout):

* LIST of 10 steps after ``start_after``, ``history(10)`` and a cold
  ``get_actor`` + read whose HEAD lags 8 steps, on an actor with ``--steps``
  steps against one with 100 (local store);
* ``list_actors(limit=5)`` among ``--actors`` actors against among 100 (local store);
* with ``--keys`` keys in the idempotency window against none: an unkeyed and
  a keyed commit (p50 wall time, and CPU per commit), and the size of the
  step each writes (memory store, and local).

Setup writes objects directly (with fsync switched off while building, on
both trees alike); every timed operation goes through the public API or the
store as usual. ``--compare`` runs the measurement once per tree, each in a
fresh process, and prints one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any


def _p50(samples: list[float]) -> float:
    return statistics.median(samples)


@contextlib.contextmanager
def _no_fsync() -> Iterator[None]:
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


def _timed(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return _p50(samples)


def _run(coro: Any) -> Any:
    from vactor_cloud import _sync

    async def wrapper() -> Any:
        return await coro

    return _sync.sync(wrapper())


async def _gather_bounded(coros: Iterator[Any], limit: int = 32) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> None:
        async with semaphore:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


def _lag_head(actor_id: str, lag: int) -> None:
    """Point HEAD ``lag`` steps behind the newest (as after a crash or a quiet writer)."""
    from vactor_cloud import codec
    from vactor_cloud.runtime import get_runtime

    log = get_runtime().log(actor_id)
    newest = _run(log.load_latest(_run(log.read_head())))
    data = codec.encode(
        log.head_key,
        {"kind": "head", "step": newest.step - lag, "class": newest.class_ref.to_json()},
        signing_key=log.signing_key,
    )
    _run(log.store.put(log.head_key, data))


def _lag_head_raw(url: str, actor_id: str, step: int) -> None:
    """Rewrite HEAD to ``step`` with a store of its own (no runtime, no cache warmed)."""
    from vactor_cloud import codec
    from vactor_cloud.storage import open_store

    store = open_store(url)
    key = f"actors/{actor_id}/HEAD"
    meta = codec.decode(key, _run(store.get(key)).data).meta
    data = codec.encode(key, {"kind": "head", "step": step, "class": meta["class"]})
    _run(store.put(key, data))


def measure_steps(root: str, steps: int, out: dict[str, Any]) -> None:
    from vactor_cloud.bench import BenchCounter, _write_steps

    import vactor_cloud as vc
    from vactor_cloud.history import history
    from vactor_cloud.runtime import get_runtime

    url = f"file://{root}/steps"
    vc.init(url)
    with _no_fsync():
        for name, count in (("short", 100), ("long", steps)):
            BenchCounter.get_or_create(name).incr.run()
            _run(_write_steps(name, count))
    for name in ("short", "long"):
        _lag_head(name, 8)
    store = get_runtime().store
    log = {name: get_runtime().log(name) for name in ("short", "long")}
    last = {"short": 99, "long": steps - 1}

    def list_10(name: str) -> None:
        start = log[name].step_key(last[name] - 20)
        keys = _run(store.list(log[name].steps_prefix, start_after=start, limit=10))
        assert len(keys) == 10

    lists = {n: _timed(lambda n=n: list_10(n), 30) for n in ("short", "long")}
    hist = {n: _timed(lambda n=n: history(n, 10), 10) for n in ("short", "long")}
    vc.shutdown()

    def cold(name: str) -> float:
        _lag_head_raw(url, name, last[name] - 8)  # a read moves HEAD on: put it back each time
        vc.init(url)
        started = time.perf_counter()
        vc.get_actor(name).value.run()
        took = time.perf_counter() - started
        vc.shutdown()
        return took

    colds: dict[str, list[float]] = {"short": [], "long": []}
    for _ in range(10):
        for name in ("short", "long"):
            colds[name].append(cold(name))
    out["steps"] = {
        "count": steps,
        "list_ms": {n: v * 1e3 for n, v in lists.items()},
        "history_ms": {n: v * 1e3 for n, v in hist.items()},
        "cold_ms": {n: _p50(v) * 1e3 for n, v in colds.items()},
    }


def measure_actors(root: str, actors: int, out: dict[str, Any]) -> None:
    from vactor_cloud.bench import BenchCounter

    import vactor_cloud as vc
    from vactor_cloud.runtime import get_runtime

    results: dict[str, float] = {}
    for label, count in (("small", 100), ("big", actors)):
        url = f"file://{root}/actors-{label}"
        vc.init(url)
        with _no_fsync():
            for i in range(10):
                BenchCounter.get_or_create(f"a-{i:05d}").incr.run()
            store = get_runtime().store

            def fake(i: int, store: Any = store) -> Iterator[Any]:
                for leaf in ("HEAD", f"class/{uuid.uuid4().hex}", f"steps/{0:020d}"):
                    yield store.put(f"actors/z-{i:06d}/{leaf}", b"x" * 64)

            _run(_gather_bounded(c for i in range(count - 10) for c in fake(i)))
        vc.shutdown()
        vc.init(url)
        assert [a.actor_id for a in vc.list_actors(limit=5)] == [f"a-{i:05d}" for i in range(5)]
        results[label] = _timed(lambda: vc.list_actors(limit=5), 5)
        vc.shutdown()
    out["actors"] = {"count": actors, "list_actors_ms": {k: v * 1e3 for k, v in results.items()}}


def _legacy_table_step(actor_id: str, keys: int) -> None:
    """Give ``actor_id`` a step holding ``keys`` idempotency entries, as any writer's table would be."""
    from vactor_cloud.dedup import DedupTable, Outcome
    from vactor_cloud.runtime import get_runtime

    runtime = get_runtime()
    core = runtime.core(actor_id)
    _run(core.ensure_loaded())
    base = core.record
    table = DedupTable()
    now = time.time()
    for i in range(keys):
        table.record(f"key-{i:06d}", Outcome(True, i), now - 1)
    record = replace(
        base,
        step=base.step + 1,
        parent=base.step,
        writer=uuid.uuid4().hex,
        calls=(),
        dedup=table.dump(base.serializer, runtime.settings.dedup_window, now),
    )
    _run(core.log.put_step(record))


def measure_keys(url: str, keys: int, samples: int) -> dict[str, Any]:
    from vactor_cloud.bench import BenchCounter

    import vactor_cloud as vc
    from vactor_cloud.runtime import get_runtime

    vc.init(url)
    for name in ("none", "table"):
        BenchCounter.get_or_create(name).incr.run()
    _legacy_table_step("table", keys)
    vc.shutdown()
    vc.init(url)
    handles = {name: vc.get_actor(name) for name in ("none", "table")}
    for h in handles.values():
        for _ in range(5):
            h.incr.run()
    counter = iter(range(10**9))
    result: dict[str, Any] = {}
    for kind in ("unkeyed", "keyed"):
        wall: dict[str, list[float]] = {name: [] for name in handles}
        cpu: dict[str, float] = dict.fromkeys(handles, 0.0)
        # Interleaved, so that whatever else the machine does hits both actors alike.
        for _ in range(samples):
            for name, h in handles.items():
                key = f"new-{next(counter)}" if kind == "keyed" else None
                method = h.incr.options(idempotency_key=key) if key else h.incr
                cpu_started = time.process_time()
                started = time.perf_counter()
                method.run()
                wall[name].append(time.perf_counter() - started)
                cpu[name] += time.process_time() - cpu_started
        for name in handles:
            log = get_runtime().log(name)
            newest = _run(log.load_latest(_run(log.read_head())))
            size = len(_run(log.store.get(log.step_key(newest.step))).data)
            result[f"{kind}/{name}"] = {
                "p50_ms": _p50(wall[name]) * 1e3,
                "mean_ms": statistics.fmean(wall[name]) * 1e3,
                "cpu_ms": cpu[name] / samples * 1e3,
                "step_bytes": size,
                "state_bytes": len(newest.state),
            }
    vc.shutdown()
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    root = tempfile.mkdtemp(prefix="vactor-scale-", dir=args.dir)
    try:
        if "steps" in args.parts:
            measure_steps(root, args.steps, out)
        if "actors" in args.parts:
            measure_actors(root, args.actors, out)
        if "keys" in args.parts:
            out["keys"] = {
                "count": args.keys,
                "memory": measure_keys(f"memory://scale-{uuid.uuid4().hex}", args.keys, args.samples),
                "local": measure_keys(f"file://{root}/keys", args.keys, args.samples),
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _table(before: dict[str, Any], after: dict[str, Any]) -> str:
    rows = ["| row | target | before | after |", "|---|---|---|---|"]

    def ratio(d: dict[str, float], a: str, b: str) -> str:
        return f"{d[a] / d[b]:.2f} ({d[a]:.2f} ms vs {d[b]:.2f} ms)"

    if "steps" in after:
        n = f"{after['steps']['count']:,}"
        for key, what, target in (
            ("list_ms", "LIST of 10 steps after start_after", "≤ 2"),
            ("history_ms", "history(10)", "≤ 1.5"),
            ("cold_ms", "cold get_actor + read, HEAD 8 steps behind", "≤ 1.5"),
        ):
            old, new = before["steps"][key], after["steps"][key]
            rows.append(
                f"| {what}: at {n} steps / at 100 (local) | {target} | "
                f"{ratio(old, 'long', 'short')} | {ratio(new, 'long', 'short')} |"
            )
    if "actors" in after:
        n = f"{after['actors']['count']:,}"
        b, a = before["actors"]["list_actors_ms"], after["actors"]["list_actors_ms"]
        rows.append(
            f"| list_actors(limit=5) among {n} actors (local) | ≤ 100 ms | "
            f"{b['big']:.1f} ms | {a['big']:.1f} ms |"
        )
        rows.append(
            f"| list_actors(limit=5): among {n} / among 100 (local) | ≤ 2 | "
            f"{ratio(b, 'big', 'small')} | {ratio(a, 'big', 'small')} |"
        )
    if "keys" in after:
        n = f"{after['keys']['count']:,}"
        for backend in ("memory", "local"):
            bk, ak = before["keys"][backend], after["keys"][backend]
            for kind, target in (("unkeyed", "≤ 1.2"), ("keyed", "≤ 1.5")):

                def r(d: dict[str, Any], field: str, kind: str = kind) -> str:
                    t, z = d[f"{kind}/table"][field], d[f"{kind}/none"][field]
                    return f"{t / z:.2f} ({t:.2f} ms vs {z:.2f} ms)"

                rows.append(
                    f"| {kind} commit p50, {n} keys in the window / none ({backend}) | {target} | "
                    f"{r(bk, 'p50_ms')} | {r(ak, 'p50_ms')} |"
                )
                if backend == "memory":
                    rows.append(
                        f"| {kind} commit CPU (mean), {n} keys / none (memory) | | "
                        f"{r(bk, 'cpu_ms')} | {r(ak, 'cpu_ms')} |"
                    )
                    rows.append(
                        f"| {kind} commit wall mean (incl. checkpoints), {n} keys / none (memory) | | "
                        f"{r(bk, 'mean_ms')} | {r(ak, 'mean_ms')} |"
                    )
                st = ak[f"{kind}/table"]
                bt = bk[f"{kind}/table"]
                rows.append(
                    f"| step size after a {kind} commit, {n} keys ({backend}) | ≤ state + 2 KB + added | "
                    f"{bt['step_bytes']:,} B (state {bt['state_bytes']:,} B) | "
                    f"{st['step_bytes']:,} B (state {st['state_bytes']:,} B) |"
                )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--actors", type=int, default=30_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200, help="commits per idempotency sample")
    parser.add_argument("--parts", default="steps,actors,keys")
    parser.add_argument("--dir", default=None, help="where to build the local stores (default: $TMPDIR)")
    parser.add_argument("--out", help="write the measurement as JSON here")
    parser.add_argument("--compare", nargs=2, metavar=("OLD_TREE", "NEW_TREE"))
    args = parser.parse_args()
    if args.compare:
        results = []
        for tree in args.compare:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = f.name
            argv = [a for a in sys.argv[1:] if a not in args.compare and a != "--compare"]
            env = {**os.environ, "PYTHONPATH": tree}
            subprocess.run(
                [sys.executable, os.path.abspath(__file__), *argv, "--out", path], env=env, check=True
            )
            with open(path) as f:
                results.append(json.load(f))
            os.unlink(path)
        print(_table(results[0], results[1]))
        print(json.dumps({"before": results[0], "after": results[1]}, indent=1), file=sys.stderr)
        return 0
    args.parts = [p.strip() for p in args.parts.split(",")]
    result = measure(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

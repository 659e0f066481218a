"""Actors, children and child-process entry points of the sub-workflow tests.

Kept in an importable module so ``spawn``-started children can find them;
Dask workers get the functions by value (``cloudpickle.register_pickle_by_value``).
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import cloudpickle

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

BARRIER_SECONDS = 60.0
HOLD_SECONDS = 120.0


def record(log_path: str, **event: Any) -> None:
    """Append one JSON line; O_APPEND keeps lines whole across threads and processes."""
    line = (json.dumps(event) + "\n").encode()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def events(log_path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    path = Path(log_path)
    if not path.exists():
        return []
    out = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [e for e in out if kind is None or e["kind"] == kind]


def sleep_and_record(
    index: int, *, log_path: str, tag: str = "", together: int = 0, hold_path: str | None = None
) -> int:
    """A child with a side effect: it records its start and end in ``log_path``.

    ``together``: wait until that many children (of any process) have started,
    which only happens if they run in parallel. ``hold_path``: children from
    index 5 on wait for that file before finishing.
    """
    record(log_path, kind="start", tag=tag, index=index, pid=os.getpid(), time=time.time())
    deadline = time.monotonic() + BARRIER_SECONDS
    while together and len(events(log_path, "start")) < together:
        if time.monotonic() > deadline:
            raise TimeoutError(f"child {index}: fewer than {together} children started together")
        time.sleep(0.01)
    time.sleep(0.05)
    if hold_path is not None and index >= 5:
        deadline = time.monotonic() + HOLD_SECONDS
        while not os.path.exists(hold_path) and time.monotonic() < deadline:
            time.sleep(0.01)
    record(log_path, kind="end", tag=tag, index=index, pid=os.getpid(), time=time.time())
    return index * index


def flaky(index: int, *, log_path: str, failures: int) -> int:
    """Fails its first ``failures`` attempts (counted in ``log_path``), then returns ``index``."""
    attempts = sum(1 for e in events(log_path, "attempt") if e["index"] == index)
    record(log_path, kind="attempt", index=index)
    if index == 1 and attempts < failures:
        raise ValueError(f"child {index} failed on attempt {attempts + 1}")
    return index


def bump_counter(index: int, *, counter_id: str) -> int:
    """A child that calls another actor."""
    return int(vc.get_actor(counter_id).incr.run(index))


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.value_ = 0

    def incr(self, delta: int = 1) -> int:
        self.value_ += delta
        return self.value_

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.value_


@vc.virtual_actor
class Trainer:
    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def fan_out(
        self,
        n: int,
        log_path: str,
        tag: str = "",
        together: int = 0,
        hold_path: str | None = None,
        executor: Any = None,
    ) -> list[int]:
        record(log_path, kind="method", tag=tag, pid=os.getpid())
        child = functools.partial(
            sleep_and_record, log_path=log_path, tag=tag, together=together, hold_path=hold_path
        )
        results = vc.subtask(child, executor=executor).map(range(n))
        self.runs.append(results)
        return results

    def retrying(self, log_path: str, failures: int, max_retries: int) -> list[int]:
        results = vc.subtask(
            functools.partial(flaky, log_path=log_path, failures=failures), max_retries=max_retries
        ).map(range(4))
        self.runs.append(results)
        return results

    def via_other_actor(self, counter_id: str, executor: Any = None) -> list[int]:
        # The method calls another actor itself, and its children do too.
        vc.get_actor(counter_id).incr.run(100)
        results = vc.subtask(functools.partial(bump_counter, counter_id=counter_id), executor=executor).map(
            [1, 1, 1, 1]
        )
        self.runs.append(sorted(results))
        return results

    def count_runs_of(self, trainer_id: str) -> int:
        return int(vc.get_actor(trainer_id).run_count.run())

    @vc.virtual_actor.readonly
    def run_count(self) -> int:
        return len(self.runs)


def init_from_spec(spec: StoreSpec, **kwargs: Any) -> None:
    spec.init(**kwargs)


def call_fan_out(
    spec: StoreSpec,
    actor_id: str,
    key: str | None,
    out_path: str,
    kwargs: dict[str, Any],
) -> None:
    """Child process: run ``fan_out`` once (with idempotency ``key``) and write its result."""
    init_from_spec(spec)
    method = vc.get_actor(actor_id).fan_out
    if key is not None:
        method = method.options(idempotency_key=key)
    result = method.run(**kwargs)
    Path(out_path).write_text(json.dumps(result))
    vc.shutdown()


def send_by_value() -> None:
    """Dask workers cannot import this test module: ship its functions by value."""
    import sys

    cloudpickle.register_pickle_by_value(sys.modules[__name__])

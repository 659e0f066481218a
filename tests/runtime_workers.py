"""Actor classes and child-process entry points shared by the runtime tests.

Kept in an importable module so ``spawn``-started children can find them.
"""

from __future__ import annotations

import os
import time
from typing import Any

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Counter:
    def __init__(self, value: int = 0) -> None:
        self.value_ = value

    def incr(self, delta: int = 1) -> int:
        self.value_ += delta
        return self.value_

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.value_


def init_from_spec(spec: StoreSpec, **kwargs: Any) -> None:
    spec.init(**kwargs)


def increment_many(spec: StoreSpec, actor_id: str, count: int) -> None:
    init_from_spec(spec)
    handle = vc.get_actor(actor_id)
    for _ in range(count):
        handle.incr.run(1)
    vc.shutdown()


def read_until(spec: StoreSpec, actor_id: str, stop_file: str, out_file: str, max_seconds: float) -> None:
    """Record read-only results until ``stop_file`` exists (or the time bound passes)."""
    init_from_spec(spec)
    handle = vc.get_actor(actor_id)
    values: list[int] = []
    deadline = time.monotonic() + max_seconds
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        values.append(handle.value.run())
    values.append(handle.value.run())
    with open(out_file, "w") as f:
        f.write(",".join(map(str, values)))
    vc.shutdown()


def read_value(spec: StoreSpec, actor_id: str, out_file: str) -> None:
    init_from_spec(spec)
    with open(out_file, "w") as f:
        f.write(str(vc.get_actor(actor_id).value.run()))


def commit_then_hang(spec: StoreSpec, actor_id: str, count: int, ready_file: str) -> None:
    """Commit ``count`` increments with HEAD moves held back, then wait to be SIGKILLed."""
    init_from_spec(spec, settings=vc.Settings(storage="", head_interval=3600.0))
    handle = vc.get_actor(actor_id)
    for _ in range(count):
        handle.incr.run(1)
    with open(ready_file, "w") as f:
        f.write("committed")
    time.sleep(120)

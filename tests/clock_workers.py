"""Child-process entry points of test_review_clocks: ``hammer`` with this process's wall clock
off by a schedule of offsets (a clock running ahead or behind, or stepped while calls run).

Kept in an importable module so ``spawn``-started children can find them."""

from __future__ import annotations

import os
import time
from typing import Any

from child_processes import report_stacks_on_request
from combining_workers import commit_behind_its_back

import vactor_cloud as vc
from vactor_cloud.errors import VactorError
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()


def skewed_hammer(
    schedule: list[tuple[float, float]],
    spec: StoreSpec,
    actor_id: str,
    who: str,
    calls: int,
    out_path: str,
    settings: dict[str, Any],
    start: Any,
    delay: float,
    ready: Any,
) -> None:
    """``combining_workers.hammer`` (its log lines; it loses its first race on purpose, so
    that it posts) with ``time.time`` patched in this whole process: honest until its calls
    start (``delay`` seconds after ``start``, set by the parent's clock), then off by the
    offset of the last entry ``(seconds after that, offset)`` of ``schedule`` that has come."""
    real = time.time
    began = -1.0

    def clock() -> float:
        now = real()
        offset = 0.0
        if began >= 0.0:
            for after, off in schedule:
                if now >= began + after:
                    offset = off
        return now + offset

    time.time = clock  # every module reads the clock as time.time(): this is the seam
    spec.init(settings=vc.Settings(storage="", **settings))
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    handle = vc.get_actor(actor_id)
    handle.applied.run()  # loads the newest step into this process's cache
    commit_behind_its_back(actor_id)  # it loses its first race, and posts
    ready.put(who)
    while start.value == 0.0:
        time.sleep(0.005)
    while real() < start.value + delay:
        time.sleep(0.002)
    began = real()
    for i in range(calls):
        token = f"{who}/{i}"
        os.write(fd, f"try {token}\n".encode())
        took = time.monotonic()
        try:
            handle.add.run(token)
        except VactorError as exc:
            os.write(fd, f"err {token} {type(exc).__name__}\n".encode())
        except Exception as exc:  # untyped: a defect the checks report
            os.write(fd, f"untyped {token} {type(exc).__name__}\n".encode())
        else:
            os.write(fd, f"ack {token}\n".encode())
        os.write(fd, f"took {token} {time.monotonic() - took:.3f}\n".encode())  # (diagnostics)
    stats = vc.stats()
    posted = stats.get("posted_calls", 0) if isinstance(stats, dict) else 0
    leases = stats.get("leases_taken", 0) if isinstance(stats, dict) else 0
    took = time.monotonic()
    vc.shutdown()
    os.write(fd, f"took shutdown {time.monotonic() - took:.3f}\n".encode())
    os.write(fd, f"done posted={posted} leases={leases}\n".encode())
    os.close(fd)

"""Child-process entry points of test_review_clocks: ``hammer`` with this process's wall clock
off by a schedule of offsets (a clock running ahead or behind, or stepped while calls run).

Kept in an importable module so ``spawn``-started children can find them."""

from __future__ import annotations

import os
import time
from typing import Any

from child_processes import report_stacks_on_request, wait_for_start
from combining_workers import call_and_log, commit_behind_its_back, posting_stats

import vactor_cloud as vc
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
    wait_for_start(start, delay, clock=real)
    began = real()
    call_and_log(fd, handle, who, calls, timed=True)
    posted, leases = posting_stats()
    took = time.monotonic()
    vc.shutdown()
    os.write(fd, f"took shutdown {time.monotonic() - took:.3f}\n".encode())
    os.write(fd, f"done posted={posted} leases={leases}\n".encode())
    os.close(fd)

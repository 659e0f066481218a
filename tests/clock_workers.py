"""Child-process entry points of test_review_clocks: ``hammer`` with this process's wall clock
off by a schedule of offsets (a clock running ahead or behind, or stepped while calls run).

Kept in an importable module so ``spawn``-started children can find them."""

from __future__ import annotations

import time
from typing import Any

from child_processes import report_stacks_on_request
from combining_workers import hammer

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
    ready: Any,
    lose_first: bool,
) -> None:
    """``hammer`` with ``time.time`` patched in this whole process: honest until the calls
    start (``start``, set by the parent's clock), then off by the offset of the last entry
    ``(seconds after the start, offset)`` of ``schedule`` that has come (entries after 0.5 s
    only: ``hammer`` waits for the start by ``time.time``)."""
    assert all(after >= 0.5 for after, _ in schedule)
    real = time.time

    def clock() -> float:
        now = real()
        began = float(start.value)
        offset = 0.0
        if began > 0.0:
            for after, off in schedule:
                if now >= began + after:
                    offset = off
        return now + offset

    time.time = clock  # every module reads the clock as time.time(): this is the seam
    hammer(spec, actor_id, who, calls, out_path, settings, None, None, start, 0.0, ready, lose_first)

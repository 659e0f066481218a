"""Waiting for the reports of child processes (the benches' workers) on a queue.

A child that died before it reported (an import error, a kill, a store it could
not reach), or that returned without reporting (exit code 0), puts nothing on the
queue; a plain ``queue.get(timeout=...)`` waits out the whole timeout, then says
only ``queue.Empty``. :func:`take_report` says at once that the child is gone
without a report, and with what exit code.

A child's report is in the queue's pipe before the child has exited (its queue's
feeder thread is flushed at exit), so once a child yet to report is seen gone,
a short grace (:data:`GRACE`) for reading the pipe is enough.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from typing import Any

from vactor_cloud import _sync

__all__ = ["GRACE", "take_report"]

GRACE = 0.5
"""Seconds to read a report still in the pipe once a child yet to report is seen gone."""


def take_report(results: Any, timeout: float, procs: Sequence[Any]) -> Any:
    """``results.get(timeout=timeout)`` (``queue.Empty`` past it), on the main thread in slices
    (``_sync.interruptible_wait``: signal handlers run meanwhile). ``ChildProcessError`` as soon
    as one of ``procs`` (the children yet to put on ``results``) has exited, whatever its exit
    code, and nothing more came on ``results`` within :data:`GRACE`."""
    taken: list[Any] = []

    def take(timeout: float | None) -> bool:
        end = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            # (a second at a time at most: a child's exit is seen within one)
            try:
                taken.append(results.get(timeout=max(0.0, min(1.0, end - time.monotonic()))))
                return True
            except queue.Empty:
                pass
            gone = [p.exitcode for p in procs if p.exitcode is not None]
            if gone:
                try:  # (what it put before it exited is in the pipe by now)
                    taken.append(results.get(timeout=GRACE))
                    return True
                except queue.Empty:
                    raise ChildProcessError(
                        f"a bench process exited with code {gone[0]} before it reported "
                        "(its error, if it printed one, is above)"
                    ) from None
            if time.monotonic() >= end:
                return False

    if not _sync.interruptible_wait(take, timeout, forever=None):
        raise queue.Empty
    return taken[0]

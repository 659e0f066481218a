"""Waiting for the reports of child processes (the benches' workers) on a queue.

A child that died before it reported (an import error, a kill, a store it could
not reach) puts nothing on the queue; a plain ``queue.get(timeout=...)`` waits
out the whole timeout, then says only ``queue.Empty``. :func:`take_report` says
at once that the child failed, and how.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from typing import Any

from vactor_cloud import _sync

__all__ = ["take_report"]


def take_report(results: Any, timeout: float, procs: Sequence[Any]) -> Any:
    """``results.get(timeout=timeout)`` (``queue.Empty`` past it), on the main thread in slices
    (``_sync.interruptible_wait``: signal handlers run meanwhile). ``ChildProcessError`` as soon
    as one of ``procs`` (the children yet to put on ``results``) exited with an error."""
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
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed:
                try:  # (what it put before it failed is in the pipe by now)
                    taken.append(results.get(timeout=0.5))
                    return True
                except queue.Empty:
                    raise ChildProcessError(
                        f"a bench process exited with code {failed[0]} before it reported "
                        "(its error, if it printed one, is above)"
                    ) from None
            if time.monotonic() >= end:
                return False

    if not _sync.interruptible_wait(take, timeout, forever=None):
        raise queue.Empty
    return taken[0]

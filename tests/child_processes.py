"""Running child processes in tests: start them all, wait a bounded time, never leave one behind."""

from __future__ import annotations

from collections.abc import Iterable
from multiprocessing.process import BaseProcess

#: how long a test waits for its child processes (a hung child fails the test, not the suite)
JOIN_TIMEOUT = 240.0


def run_to_end(procs: Iterable[BaseProcess], timeout: float = JOIN_TIMEOUT) -> list[int | None]:
    """Start ``procs``, join each within ``timeout``, kill any still alive; their exit codes, in order.

    A child still running at the end is killed and reported as ``None``.
    """
    started = list(procs)
    for p in started:
        p.start()
    return join_all(started, timeout)


def join_all(procs: Iterable[BaseProcess], timeout: float = JOIN_TIMEOUT) -> list[int | None]:
    """Join started ``procs`` each within ``timeout``, kill any still alive; their exit codes, in order."""
    started = list(procs)
    for p in started:
        p.join(timeout)
    codes = [p.exitcode for p in started]
    for p in started:
        if p.is_alive():
            p.kill()
            p.join(10)
    return codes

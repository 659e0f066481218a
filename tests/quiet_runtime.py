"""Waiting until a runtime is quiet, for tests that count what it holds once nothing runs.

``ActorCore.idle`` (no write queued or running, nobody waiting) is what the cache evicts by; it
is not "nothing of the runtime's refers to the core". A folder-lease holder is idle between two
rounds of serving others' posts (its next round queued on the pool, or waiting for a CPU on a
loaded host), is evicted so, and goes on serving, kept alive by that next round, until its lease
goes idle (``Settings.combine_window`` after the last post of another process it folded); a
background coroutine then releases the lease, referring to the core until it is done. A test
that waited until every core was ``idle`` and then counted what was alive met, on a loaded
host, every such holder alive: its wait ended between two rounds.
"""

from __future__ import annotations

import math
import time

import pytest

from vactor_cloud.core import ActorCore
from vactor_cloud.runtime import Runtime

#: the longest a runtime may take to go quiet before the wait is called a hang
HANG = 60.0

#: how long a lease-holder round waits for its start in :func:`late_serving_rounds`
ROUND_LATE = 0.1


def late_serving_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every lease holder's round of serving starts ``ROUND_LATE`` seconds after it was queued,
    as on a loaded host where the pool thread that takes it waits for a CPU: meanwhile the
    holder is idle, still holding its lease and serving."""
    serve = ActorCore._serve

    def late(core: ActorCore) -> None:
        time.sleep(ROUND_LATE)
        serve(core)

    monkeypatch.setattr(ActorCore, "_serve", late)


def serving_over(core: ActorCore) -> bool:
    """``core`` is idle and serves no more: no folder lease held, no round queued or running."""
    return core.idle and not core._serving and not core._serve_queued and core._held_until == -math.inf


def still_running(runtime: Runtime) -> list[str]:
    """What of ``runtime`` still runs (none: it is quiet, and stays so until it is called again):
    cores serving or busy, pool tasks (each holds its function until its thread lets it go, a
    little after its future is done), work in flight (background coroutines, held actors)."""
    running = [f"{core.actor_id} serving or busy" for core in runtime._all_cores() if not serving_over(core)]
    for pool in (runtime.executor, runtime.read_executor):
        if pool.queued() or pool.running():
            running.append(f"{pool.queued()} task(s) queued, {pool.running()} running")
    pieces = len(runtime._work._items)  # (a runtime's pool tasks, trips to its loop, coroutines)
    if pieces:
        running.append(f"{pieces} piece(s) of work in flight")
    return running


def wait_until_quiet(runtime: Runtime, seconds: float = HANG) -> None:
    """Wait until nothing of ``runtime`` runs (see :func:`still_running`): what is alive then is
    what it keeps, not what a round of serving, or a task ending, still refers to for a moment."""
    deadline = time.monotonic() + seconds
    while running := still_running(runtime):
        if time.monotonic() > deadline:
            raise AssertionError(f"hang: {runtime} never went quiet in {seconds} s: {running}")
        time.sleep(0.01)

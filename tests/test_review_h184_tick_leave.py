"""Review h184: a tick's end, where it stops its heartbeat renewals and then leaves (deletes its
heartbeat): Ctrl-C in the stop's wait for a renewal in flight; and a long-running runner's end
(``TimerRunner.run``), Ctrl-C in its wait for the deletes of fired entries.

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

import threading
import types
from typing import Any

import pytest
from test_review_h179_tick_renewals import (
    HANG,
    SlowTick,
    no_renewal_left_behind,
    renewals_not_cut,
    renewals_timed,
)

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_membership, timer_renewals, timer_runner
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_runner import TickReport, TimerRunner

pytestmark = pytest.mark.vactor_lanes("memory", "local")

__all__ = ["no_renewal_left_behind"]  # (h179's autouse fixture, run here too)


def counted_leaves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The runner ids of the ``Membership.leave`` calls from now on."""
    leaves: list[str] = []
    leave = timer_membership.Membership.leave

    async def counted(membership: timer_membership.Membership) -> None:
        leaves.append(membership.runner_id)
        await leave(membership)

    monkeypatch.setattr(timer_membership.Membership, "leave", counted)
    return leaves


def waits_replaced(monkeypatch: pytest.MonkeyPatch, wait_futures: Any) -> None:
    """The ``_sync.wait_futures`` of ``timer_runner`` (a run's wait for its deletes) and of
    ``timer_renewals`` (a tick's wait for its renewal in flight) is ``wait_futures`` from now on."""
    seen = types.SimpleNamespace(**{n: getattr(_sync, n) for n in dir(_sync) if not n.startswith("__")})
    seen.wait_futures = wait_futures
    monkeypatch.setattr(timer_runner, "_sync", seen)
    monkeypatch.setattr(timer_renewals, "_sync", seen)


def test_ctrl_c_in_a_ticks_wait_for_its_renewal_still_leaves_once(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the tick's ``finally`` stopped the renewals (waiting for the one in flight),
    then left; Ctrl-C in that wait went up past the leave: the heartbeat, renewed once more
    as the interrupt went by, stayed a whole lease, and the other runners left this one's
    share of the actors unfired until it expired."""
    vc.fire_due_timers(runner_id="warm")  # (the IO loop and the runtime up already)
    runtime = vc.get_runtime()
    store = SlowTick(runtime.store)  # (a tick slower than the renewal cut-off: a loaded host)
    runtime.store = store
    leaves = counted_leaves(monkeypatch)
    waits: list[Any] = []

    def interrupted(futures: Any, timeout: float | None = None) -> bool:
        """The stop's wait for the renewal in flight: Ctrl-C there (the renewal then lands)."""
        waits.append(futures)
        store.release.set()
        raise KeyboardInterrupt

    waits_replaced(monkeypatch, interrupted)
    renewals_not_cut(monkeypatch)  # (cut off at 0.1 s, a slow tick found none in flight: CI)
    with pytest.raises(KeyboardInterrupt):
        vc.fire_due_timers(runner_id="cut", lease=0.3)
    assert len(waits) == 1, "the tick ended without waiting for its renewal in flight"
    assert store.landed.wait(HANG)
    assert leaves == ["cut"]
    assert _sync.sync(store.inner.list(keys.TIMER_RUNNERS)) == [], "the heartbeat outlived the tick"
    assert renewals_timed() == []


def test_ctrl_c_in_a_runners_wait_for_its_deletes_still_leaves_once(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``run``'s ``finally`` waited for the fires in flight, the deletes of fired
    entries and its threads, then left; Ctrl-C in those waits (a second Ctrl-C, the first
    having stopped it) went up past the leave, and the heartbeat stayed a lease."""
    vc.fire_due_timers(runner_id="warm")
    leaves = counted_leaves(monkeypatch)
    waits = 0

    def interrupted(futures: Any, timeout: float | None = None) -> bool:
        """``run``'s wait for the deletes of fired entries: Ctrl-C there."""
        nonlocal waits
        waits += 1
        raise KeyboardInterrupt

    waits_replaced(monkeypatch, interrupted)
    stop = threading.Event()

    def stop_after_the_first_listing(report: TickReport) -> None:
        stop.set()

    runner = TimerRunner(runner_id="long", lease=60.0, poll=0.05)
    with pytest.raises(KeyboardInterrupt):
        runner.run(stop, on_tick=stop_after_the_first_listing)
    assert waits == 1
    assert leaves == ["long"]
    assert _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS)) == [], "the heartbeat outlived the run"

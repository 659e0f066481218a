"""Review h184: a tick's end, where it stops its heartbeat renewals and then leaves (deletes its
heartbeat): Ctrl-C in the stop's wait for a renewal in flight.

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from test_review_h179_tick_renewals import HANG, HeldRenewal, no_renewal_left_behind, renewals_timed

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_runner
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

__all__ = ["no_renewal_left_behind"]  # (h179's autouse fixture, run here too)


def test_ctrl_c_in_a_ticks_wait_for_its_renewal_still_leaves_once(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the tick's ``finally`` stopped the renewals (waiting for the one in flight),
    then left; Ctrl-C in that wait went up past the leave: the heartbeat, renewed once more
    as the interrupt went by, stayed a whole lease, and the other runners left this one's
    share of the actors unfired until it expired."""
    vc.fire_due_timers(runner_id="warm")  # (the IO loop and the runtime up already)
    runtime = vc.get_runtime()
    store = HeldRenewal(runtime.store)
    runtime.store = store
    leaves: list[str] = []
    leave = timer_runner.Membership.leave

    async def counted(membership: timer_runner.Membership) -> None:
        leaves.append(membership.runner_id)
        await leave(membership)

    monkeypatch.setattr(timer_runner.Membership, "leave", counted)
    waits: list[Any] = []

    def interrupted(futures: Any, timeout: float | None = None) -> bool:
        """The stop's wait for the renewal in flight: Ctrl-C there (the renewal then lands)."""
        waits.append(futures)
        store.release.set()
        raise KeyboardInterrupt

    seen = types.SimpleNamespace(**{n: getattr(_sync, n) for n in dir(_sync) if not n.startswith("__")})
    seen.wait_futures = interrupted
    monkeypatch.setattr(timer_runner, "_sync", seen)
    with pytest.raises(KeyboardInterrupt):
        vc.fire_due_timers(runner_id="cut", lease=0.3)
    assert len(waits) == 1, "the tick ended without waiting for its renewal in flight"
    assert store.landed.wait(HANG)
    assert leaves == ["cut"]
    assert _sync.sync(store.inner.list(keys.TIMER_RUNNERS)) == [], "the heartbeat outlived the tick"
    assert renewals_timed() == []

"""Review h187: a tick's leave after Ctrl-C cut its wait for a renewal that stalls.

h184 made the tick leave (delete its heartbeat) even when Ctrl-C cut short the stop's wait for
the renewal in flight; ``Membership.leave`` first waits for that renewal's write. A write that
stalls was so waited for until the leave's ``Settings.deadline`` (30 s, measured: 30.1 s with a
0.3 s lease), and then the delete was never sent: the Ctrl-C that used to end the tick at once
kept it 30 s for nothing. A renewal landing later than a lease after it began writes a
heartbeat already expired (its ``until`` is its start plus the lease): the leave waits for
writes in flight a lease at most, then deletes.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_review_h179_tick_renewals import (
    HANG,
    SlowTick,
    no_renewal_left_behind,
    renewals_not_cut,
    renewals_timed,
)
from test_review_h184_tick_leave import counted_leaves, waits_replaced

import vactor_cloud as vc
from vactor_cloud import keys
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

__all__ = ["no_renewal_left_behind"]  # (h179's autouse fixture, run here too)


class HeldRenewalCountingDeletes(SlowTick):
    """:class:`SlowTick`, and the heartbeat deletes sent while the renewal is held."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.deletes_while_held: list[str] = []

    async def _delete(self, key: str) -> None:
        if key.startswith(keys.TIMER_RUNNERS) and not self.release.is_set():
            self.deletes_while_held.append(key)
        await self.inner.delete(key)


def test_ctrl_c_in_a_ticks_wait_for_a_stalled_renewal_leaves_within_a_lease(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    vc.fire_due_timers(runner_id="warm")  # (the IO loop and the runtime up already)
    runtime = vc.get_runtime()
    store = HeldRenewalCountingDeletes(runtime.store)
    runtime.store = store
    leaves = counted_leaves(monkeypatch)

    def interrupted(futures: Any, timeout: float | None = None) -> bool:
        """The stop's wait for the renewal in flight: Ctrl-C there, the renewal still held."""
        raise KeyboardInterrupt

    waits_replaced(monkeypatch, interrupted)
    renewals_not_cut(monkeypatch)  # (cut off at 0.1 s, a slow tick found none in flight)
    try:
        with pytest.raises(KeyboardInterrupt):
            vc.fire_due_timers(runner_id="cut", lease=0.3)
        assert leaves == ["cut"]
        assert store.deletes_while_held == [keys.timer_runner_key("cut")], (
            "the leave waited for the stalled renewal past its deadline and sent no delete"
        )
    finally:
        store.release.set()
    assert store.landed.wait(HANG)
    assert renewals_timed() == []

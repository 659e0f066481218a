"""Review h184: a tick's heartbeat renewals (``TickRenewals``) after the IO loop was blocked
for more than a renewal period (lease/3): the late renewal replaces the ones missed, the next
is due a period after it, not at once.

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from test_review_h179_tick_renewals import HANG, loop_turned, no_renewal_left_behind, renewals_timed

import vactor_cloud as vc
from vactor_cloud import _sync, timer_renewals
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")  # (no store request: the renewals are stubbed)

__all__ = ["no_renewal_left_behind"]  # (h179's autouse fixture, run here too)

LEASE = 0.6
PERIOD = LEASE / 3


class NotingMembership:
    """A membership whose renewals note when each began (monotonic), when the next was then due
    (read off the renewals), and how many ran at once."""

    def __init__(self) -> None:
        self.lease = LEASE
        self.renewals: timer_renewals.TickRenewals | None = None
        self.began: list[float] = []
        self.next_due: list[float] = []
        self.running = 0
        self.most_at_once = 0
        self.renewed = threading.Event()

    async def beat(self, within: float | None = None) -> None:
        assert self.renewals is not None
        self.began.append(time.monotonic())
        self.next_due.append(self.renewals._due)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0)
        finally:
            self.running -= 1
            self.renewed.set()


def test_a_renewal_made_late_by_a_blocked_loop_is_followed_a_period_later(actor_store: StoreSpec) -> None:
    """Before: the renewal due at ``joined + lease/3``, started once the loop was free again
    (more than a period late), set the next one due at its own start: a second renewal, one
    more heartbeat write, followed it at once, back to back."""
    runtime = vc.get_runtime()
    membership = NotingMembership()
    joined = time.monotonic()
    renewals = timer_renewals.TickRenewals(runtime, membership, "stub", joined)  # type: ignore[arg-type]
    membership.renewals = renewals
    freed: list[float] = []

    def begun_then_blocked() -> None:
        """(IO loop) Begins the renewals (their first timer is armed once this returns), then
        blocks the loop until that renewal is more than a period late (a bounded poll of the
        clock: a condition, not a duration asserted)."""
        renewals.begin()
        while time.monotonic() < joined + 2.5 * PERIOD:
            time.sleep(0.01)
        freed.append(time.monotonic())

    _sync.get_loop().call_soon_threadsafe(begun_then_blocked)
    try:
        assert membership.renewed.wait(HANG), "no renewal began"
        loop_turned()
    finally:
        renewals.stop(True)
    assert freed and membership.began[0] >= freed[0]  # (the first renewal was the late one)
    assert membership.next_due[0] >= freed[0] + PERIOD, "the next renewal was due at once"
    assert membership.most_at_once == 1
    assert renewals_timed() == []

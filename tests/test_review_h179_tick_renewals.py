"""Attacks on a tick's heartbeat renewals timed on the IO loop (``_TickRenewals``): Ctrl-C as
they begin, ticks in a tight loop, ticks of one runner on two threads at once, a tick from
inside the IO loop."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_runner
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

HANG = 60.0


def loop_turned() -> None:
    """Once the IO loop ran what was queued before this call (its callbacks run in order)."""
    assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0), _sync.get_loop()).result(HANG) is None


def renewals_timed() -> list[asyncio.TimerHandle]:
    """The IO loop's timers, not cancelled, that start a tick's heartbeat renewal."""
    loop_turned()
    scheduled: list[asyncio.TimerHandle] = list(_sync.get_loop()._scheduled)  # type: ignore[attr-defined]
    return [
        handle
        for handle in scheduled
        if not handle.cancelled()
        and isinstance(getattr(handle._callback, "__self__", None), timer_runner._TickRenewals)  # type: ignore[attr-defined]
    ]


@pytest.fixture(autouse=True)
def no_renewal_left_behind() -> Any:
    """(A failing test's renewals would go on in the process: cancelled after each test.)"""
    yield
    for handle in renewals_timed():
        _sync.get_loop().call_soon_threadsafe(handle.cancel)


class InterruptedAsItArms:
    """The IO loop as ``timer_runner`` sees it, whose ``call_soon_threadsafe`` queues the
    callback and then raises ``KeyboardInterrupt`` (Ctrl-C landing as the call returns: a
    signal's handler runs once the loop's wake-up write returns), once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> Any:
        handle = self.loop.call_soon_threadsafe(callback, *args)
        if not self.fired and getattr(callback, "__name__", "") == "_arm":
            self.fired = True
            raise KeyboardInterrupt
        return handle


def test_ctrl_c_as_a_ticks_renewals_are_armed_leaves_none_timed(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewals' first timer queued on the IO loop, then the interrupt, before the tick
    held their stop: nobody stopped them, and they renewed the heartbeat every lease/3 for the
    process's life (the runner counted live by the others, its share never fired)."""
    vc.fire_due_timers(runner_id="warm")  # (the IO loop and the runtime up already)
    assert renewals_timed() == []
    loop = InterruptedAsItArms(_sync.get_loop())
    seen = types.SimpleNamespace(**{n: getattr(_sync, n) for n in dir(_sync) if not n.startswith("__")})
    seen.get_loop = lambda: loop
    monkeypatch.setattr(timer_runner, "_sync", seen)
    with pytest.raises(KeyboardInterrupt):
        vc.fire_due_timers(runner_id="cut", lease=60.0)
    assert loop.fired
    assert renewals_timed() == [], "a renewal left timed after its tick ended"
    assert _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS)) == []

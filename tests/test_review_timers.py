"""Hostile review of timers, events, workflow steps, sub-tasks and idempotency keys.

Each test here failed before its fix (or is marked xfail with the fix it needs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

GATE = threading.Event()
ENTERED = threading.Event()


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.paid = 0

    def hold(self) -> int:
        ENTERED.set()
        GATE.wait(30)
        return self.paid

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: Any) -> int:
        self.paid += int(payload)
        return self.paid


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()


# -- events: wait_for_event(timeout=) -----------------------------------------------------------
def test_wait_for_event_times_out_while_a_writer_method_of_the_actor_runs(actors: StoreSpec) -> None:
    # docs/events.md: "polls ... until `timeout` seconds have passed, then raises TimeoutError".
    GATE.clear()
    ENTERED.clear()
    ledger = Ledger.get_or_create("busy-ledger")
    running = ledger.hold.run_async()
    try:
        assert ENTERED.wait(30)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ledger.wait_for_event("paid", timeout=0.3)
        assert time.monotonic() - started < 2.0
    finally:
        GATE.set()
        running.exception(30)

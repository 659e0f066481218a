"""Small leftovers of the day's reviews (h33). Each test failed before its fix."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cli_harness import Vactor

import vactor_cloud as vc

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Planner:
    def __init__(self) -> None:
        self.n = 0

    def bump(self, by: int = 1) -> int:
        self.n += by
        return self.n


def _timer_history(store: str) -> None:
    vc.init(store)
    try:
        planner = Planner.get_or_create("p1")
        planner.bump.options(at=time.time() - 1, timer_key="renewal").run(5)
        planner.bump.options(at=4102444800.0, timer_key="later").run()  # 2100-01-01
        assert planner.cancel_timer("later")
        assert vc.fire_due_timers().fired == 1
    finally:
        vc.shutdown()


def test_history_shows_timers_scheduled_fired_and_cancelled_in_words_not_internal_calls(
    store: str, vactor: Vactor
) -> None:
    # `vactor history` showed `__vactor_schedule_timer__('bump', args=(5,), ...)`,
    # `__vactor_cancel_timer__('later')` and a fired call's key as `\x00timer\x00renewal\x00...`.
    _timer_history(store)
    piped = vactor("history", "p1")
    assert piped.code == 0, piped.err
    assert "__vactor_" not in piped.out and "\\x00" not in piped.out, piped.out
    lines = piped.out.splitlines()[1:]
    assert "timer fired: key='renewal'" in lines[0] and "bump(5) -> 5" in lines[0], lines
    assert "timer cancelled: key='later'" in lines[1], lines
    assert "timer scheduled: bump() key='later' due 2100-01-01T00:00:00Z" in lines[2], lines
    assert "timer scheduled: bump() key='renewal' due " in lines[3], lines
    entries: Any = vactor("history", "p1", "--json").json()
    calls = [e["calls"][0] for e in entries]
    # the old fields are kept as they were; the meaning is a field of its own
    assert calls[2]["method"] == "__vactor_schedule_timer__" and "at=4102444800.0" in calls[2]["args"]
    assert [c.get("meaning") for c in calls] == [
        calls[0].get("meaning"),
        "timer cancelled: key='later'",
        "timer scheduled: bump() key='later' due 2100-01-01T00:00:00Z",
        calls[3].get("meaning"),
        None,
    ]
    assert calls[0]["meaning"].startswith("timer fired: key='renewal' due ")
    assert calls[3]["meaning"].startswith("timer scheduled: bump() key='renewal' due ")
    for line, call in zip(lines[:4], calls[:4], strict=True):
        assert call["meaning"] in line, (line, call)

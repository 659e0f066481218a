"""Four small gaps a new user met (the h103 review), each case failing before its fix.

``vactor ls`` on the parent of a store, ``vactor doctor``'s block of zero counters, a short
signing key taken silently, and the suite's own fixtures dropping a store under a live runtime.
"""

from __future__ import annotations

import pytest
from cli_harness import Vactor

from vactor_cloud import counters

# -- vactor doctor: only the counters that moved -----------------------------------------------------


def _counter_lines(out: str) -> list[str]:
    names = set(counters.COUNTERS)
    return [line for line in out.splitlines() if line.split() and line.split()[0] in names]


def test_doctor_prints_only_the_counters_that_moved_and_json_keeps_them_all(
    vactor: Vactor, store: str
) -> None:
    """After its checks ``doctor`` printed every counter of ``vc.stats()``, a block of 13 zeros
    that read as something to look at; now one line when none moved, else the ones that did."""
    counters.reset()
    quiet = vactor("doctor")
    assert quiet.code == 0, quiet
    assert _counter_lines(quiet.out) == [], quiet.out
    assert "counters" in quiet.out and "all 0" in quiet.out, quiet.out
    counters.reset()
    counters.count("storage_timeouts", 2)
    moved = vactor("doctor")
    assert [line.split() for line in _counter_lines(moved.out)] == [["storage_timeouts", "2"]], moved.out
    counters.reset()
    report = vactor("doctor", "--json").json()
    assert isinstance(report, dict) and set(report["stats"]) >= set(counters.COUNTERS)
    assert all(value == 0 for value in report["stats"].values()), report["stats"]

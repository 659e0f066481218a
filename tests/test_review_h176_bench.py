"""Review h176: the bench's open edges left by h169/h172: timer_bench's exit code, the p99 of
``scripts/bench_contention.py``, and a baseline of 0 calls in the rows that divide by one.

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_review_h169_bench_sweep import _afeed, _feed, memory_runtime

from vactor_cloud import timer_bench
from vactor_cloud.cli import bench_harness as harness

ROOT = Path(__file__).resolve().parents[1]

#: three repeats (a median of three differs from the mean, the first and the last)
PROFILE = harness.Profile("t", repeats=3, samples=3, duration=0.5, long_steps=12, rss_actors=10, processes=2)


# -- timer_bench's exit code ----------------------------------------------------------------------
def _row(**figures: Any) -> dict[str, Any]:
    return {
        "doubled": 0,
        "unfired_when_runners_stopped": 0,
        "index_left": 0,
        "error_count": 0,
        **figures,
    }


def test_timer_bench_exits_1_on_what_its_row_misses_on() -> None:
    """Before: ``timer_bench`` alone exited 0 with runner errors (``error_count``): the harness's
    row checked the count, a script or CI running timer_bench by itself saw success."""
    assert timer_bench.exit_status(_row()) == 0
    assert timer_bench.exit_status(_row(error_count=2)) == 1
    assert timer_bench.exit_status(_row(doubled=1)) == 1
    assert timer_bench.exit_status(_row(unfired_when_runners_stopped=1)) == 1
    assert timer_bench.exit_status(_row(index_left=3)) == 1


#: timer_bench run in a child whose runners' reports are said to hold 2 errors
_ERRING_TIMER_BENCH = """
import sys
from vactor_cloud import timer_bench
real = timer_bench._summary
def erring(*args):
    row = real(*args)
    row.update(error_count=2, errors=["bench-alarm-0: injected"])
    return row
timer_bench._summary = erring
sys.exit(timer_bench.main(sys.argv[1:]))
"""


def test_timer_bench_run_whose_runners_erred_exits_1(tmp_path: Path) -> None:
    """Before: exited 0 (every timer fired once, the index empty), its printed row saying
    ``"error_count": 2``. (A small real run: one runner process, 4 timers due within 0.2 s.)"""
    sizes = ["--timers", "4", "--actors", "2", "--runners", "1", "--window", "0.2", "--lead", "0.5"]
    done = subprocess.run(
        [sys.executable, "-c", _ERRING_TIMER_BENCH, f"file://{tmp_path}", *sizes, "--poll", "0.2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert '"error_count": 2' in done.stdout, (done.stdout, done.stderr[-2000:])
    assert '"doubled": 0' in done.stdout and '"index_left": 0' in done.stdout, done.stdout
    assert done.returncode == 1, (done.stdout, done.stderr[-2000:])


# -- bench_contention's p99 ------------------------------------------------------------------------
def _bench_contention() -> ModuleType:
    path = ROOT / "scripts" / "bench_contention.py"
    spec = importlib.util.spec_from_file_location("bench_contention_h176", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_contention_p99_is_nearest_rank() -> None:
    """Before: ``latencies[int(0.99 * (n - 1))]``, a rank low for most n (of 10 figures the 9th,
    of 50 the 49th): the script's p99 beside the bench's (nearest rank since h169) told of a
    lower tail than the same figures there."""
    script = _bench_contention()
    ten = [float(ms) / 1000 for ms in range(1, 11)]
    assert script.p99_ms(ten) == pytest.approx(10.0)
    fifty = [float(ms) / 1000 for ms in range(1, 51)]
    assert script.p99_ms(fifty) == pytest.approx(50.0)
    hundred = [float(ms) / 1000 for ms in range(1, 101)]
    assert script.p99_ms(hundred) == pytest.approx(99.0)
    assert script.p99_ms([0.007]) == pytest.approx(7.0)
    assert script.p99_ms([]) != script.p99_ms([])  # (nan: no call returned)


# -- a baseline of 0 calls -------------------------------------------------------------------------
def _bench(url: str = "file:///nowhere/h176") -> harness.Bench:
    return harness.Bench(harness.Target(url), PROFILE, "h176", lambda _label: None)


def _missed_for_no_baseline(row: harness.Row) -> None:
    assert row.ok is False, row
    assert row.value == "no baseline", row
    assert "0 calls" in row.note, row


@pytest.mark.usefixtures(memory_runtime.__name__)
def test_one_actor_row_with_a_cas_loop_of_0_commits_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a CAS loop that committed nothing (every try failed) gave the ratio ``inf``,
    printed "inf | ok" (``inf >= 20``)."""
    monkeypatch.setattr(harness, "_drive", _afeed([1000.0, 4000.0, 2000.0]))
    monkeypatch.setattr(harness, "_store_cas_loop", _afeed([0.0, 0.0, 0.0]))
    _missed_for_no_baseline(_bench().one_actor_row())


@pytest.mark.usefixtures(memory_runtime.__name__)
def test_one_actor_row_with_one_repeat_s_baseline_of_0_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: one repeat's ``inf`` among the three moved the median up a place ("ok" on the
    two others' figures and an infinite one)."""
    monkeypatch.setattr(harness, "_drive", _afeed([1000.0, 1900.0, 2000.0]))
    monkeypatch.setattr(harness, "_store_cas_loop", _afeed([100.0, 0.0, 100.0]))
    _missed_for_no_baseline(_bench().one_actor_row())


@pytest.mark.usefixtures(memory_runtime.__name__)
def test_fan_out_row_with_raw_puts_of_0_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "inf | ok" (``inf >= 0.7``)."""
    monkeypatch.setattr(harness, "_drive", _afeed([70.0, 10.0, 90.0]))
    monkeypatch.setattr(harness, "_raw_puts", _afeed([0.0, 100.0, 100.0]))
    _missed_for_no_baseline(_bench().fan_out_row())


@pytest.mark.usefixtures(memory_runtime.__name__)
def test_processes_row_with_one_process_alone_of_0_calls_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the repeat's ratio was ``nan``, and the median of [nan, 1.0, 1.0] (a nan sorts
    anywhere) was 1.00: "1.00, min share 0.250 | ok", one process alone having made no call."""
    monkeypatch.setattr(harness, "_processes", _feed([[0], [30, 10], [50], [40, 40], [80], [76, 4]]))
    _missed_for_no_baseline(_bench().processes_row())


@pytest.mark.usefixtures(memory_runtime.__name__)
def test_rows_with_their_baselines_are_judged_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """(The figures of h169's tests, unchanged by the fix.)"""
    monkeypatch.setattr(harness, "_drive", _afeed([1000.0, 4000.0, 2000.0, 70.0, 10.0, 90.0]))
    monkeypatch.setattr(harness, "_store_cas_loop", _afeed([100.0, 100.0, 100.0]))
    monkeypatch.setattr(harness, "_raw_puts", _afeed([100.0, 100.0, 100.0]))
    one = _bench().one_actor_row()
    assert (one.value, one.ok) == ("20.0", True)
    fan = _bench().fan_out_row()
    assert (fan.value, fan.ok) == ("0.70", True)
    monkeypatch.setattr(harness, "_processes", _feed([[100], [30, 10], [50], [40, 40], [80], [76, 4]]))
    procs = _bench().processes_row()
    assert (procs.value, procs.ok) == ("1.00, min share 0.250", True)

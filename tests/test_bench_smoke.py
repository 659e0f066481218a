"""``vactor bench`` keeps working: every row runs with the tiny profile on memory and local stores."""

from __future__ import annotations

import json
import multiprocessing.context
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vactor_cloud.cli import bench, build_parser
from vactor_cloud.cli._options import CliError
from vactor_cloud.cli.bench_harness import COLD_START_ROW, PROFILES, TIMERS_ROW
from vactor_cloud.cli.bench_processes import _taken


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vactor_cloud", "bench", "--profile", "tiny", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            **(env or {}),
        },
        check=False,
    )


@pytest.mark.parametrize("scheme", ["memory", "local"])
def test_bench_runs_every_row_and_prints_json_rows(scheme: str, tmp_path: Path) -> None:
    url = "memory://bench-smoke" if scheme == "memory" else f"file://{tmp_path / 'store'}"
    done = _bench("--json", env={"VACTOR_STORAGE": url})  # the store from the environment, as everywhere
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["rows"]
    names = [row["name"] for row in rows]
    assert len(names) == 13
    assert any(name.startswith("warm commit: requests") for name in names)
    # the request counts are exact even in the tiny profile
    by_name = {row["name"]: row for row in rows}
    assert by_name["warm commit: requests on the critical path"]["value"] == "1"
    assert by_name["warm linearizable read-only call: requests"]["value"] == "1"
    # the measured column is the figure compared with the target: never "<= 100 MB | 0.4 MB | MISS"
    rss = by_name["RSS growth after touching 10,000 actors"]
    assert (float(rss["value"].split()[0]) <= 100) == rss["ok"]
    # CPU per sequential commit on the benchmarked store: judged on memory://, reported elsewhere
    cpu = by_name["CPU per sequential commit, 1 KB state, this store"]
    assert float(cpu["value"].split()[0]) > 0
    if scheme == "memory":
        assert cpu["ok"] == (float(cpu["value"].split()[0]) <= 100)
    else:
        assert cpu["ok"] is None and "raw create-only PUT" in cpu["note"]
    cold = by_name[COLD_START_ROW]
    if scheme == "memory":
        assert cold["ok"] is None
    else:
        assert float(cold["value"]) > 0 and "ms" in cold["note"]
    if scheme == "local":
        # what the benchmark wrote is gone again
        assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


def test_the_timers_row_runs_only_when_named_and_fires_each_timer_once(tmp_path: Path) -> None:
    """``--rows timers``: runner processes fire timers due together; not part of the default set
    (the row above counts 13 without it); an unknown group names it among the choices."""
    done = _bench("--json", "--rows", "timers", env={"VACTOR_STORAGE": f"file://{tmp_path / 'store'}"})
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)["rows"]
    assert row["name"] == TIMERS_ROW
    assert "40 fired, 0 doubled" in row["note"], row
    assert row["ok"] == (float(row["value"].split()[0]) <= 2.0)
    refused = _bench("--rows", "timerz", env={"VACTOR_STORAGE": "memory://x"})
    assert refused.returncode != 0 and "timers" in refused.stderr


def test_bench_prints_a_plain_table_when_piped() -> None:
    done = _bench("memory://bench-plain")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vactor bench memory://bench-plain" in done.stdout
    assert not any(ch in done.stdout for ch in "┏━│┃╭─"), done.stdout[:500]
    assert "warm commit: requests on the critical path" in done.stdout


def test_bench_takes_the_shared_options() -> None:
    args = build_parser().parse_args(
        ["bench", "--storage", "memory://x", "--quick", "-o", "anon=true", "--json"]
    )
    assert args.quick and args.storage == "memory://x" and args.storage_option == ["anon=true"] and args.json
    args = build_parser().parse_args(["--storage", "memory://y", "bench", "memory://x"])
    assert args.url == "memory://x" and args.storage == "memory://y"


def test_bench_profile_names_match_the_harness() -> None:
    assert sorted(bench.PROFILE_NAMES) == sorted(PROFILES)


def _exit_at_once(code: int) -> None:
    os._exit(code)


def test_a_bench_process_that_dies_before_it_reports_fails_the_row_at_once(
    process_context: multiprocessing.context.ForkServerContext,
) -> None:
    """A bench child that died (an import error, a kill, a store it cannot reach) put nothing on
    the queue; the bench waited out its whole timeout (the row's duration + 120 s), then failed
    with a bare ``queue.Empty``. It now fails as soon as the child has exited, saying how."""
    results = process_context.Queue()
    child = process_context.Process(target=_exit_at_once, args=(3,))
    child.start()
    child.join(60)
    with pytest.raises(CliError, match=r"exited with code 3 before it reported.*the bench stops"):
        _taken(results, 30, [child])


def _report_then_fail(results: Any) -> None:
    results.put((0, 7))
    results.close()
    results.join_thread()
    os._exit(1)


def test_what_a_bench_process_reported_before_it_failed_is_taken(
    process_context: multiprocessing.context.ForkServerContext,
) -> None:
    """A child that reported, then failed (in its shutdown, say), is no error of the row."""
    results = process_context.Queue()
    child = process_context.Process(target=_report_then_fail, args=(results,))
    child.start()
    child.join(60)
    assert child.exitcode == 1
    assert _taken(results, 30, [child]) == (0, 7)


def _return_without_reporting() -> None:
    pass


def test_a_bench_process_that_exits_cleanly_without_a_report_fails_the_row_at_once(
    process_context: multiprocessing.context.ForkServerContext,
) -> None:
    """A child that exited with code 0 but put nothing (a worker that returned early, say) was
    waited for to the end of the timeout (the row's duration + 120 s), then a bare
    ``queue.Empty``. Its exit is now seen as a failure to report, within about a second."""
    results = process_context.Queue()
    child = process_context.Process(target=_return_without_reporting)
    child.start()
    child.join(60)
    assert child.exitcode == 0
    with pytest.raises(CliError, match=r"exited with code 0 before it reported.*the bench stops"):
        _taken(results, 20, [child])


def _report_then_return(results: Any) -> None:
    results.put((0, 5))  # (no join: the queue's feeder thread flushes it as the child exits)


def test_what_a_bench_process_reported_just_before_it_exited_cleanly_is_taken(
    process_context: multiprocessing.context.ForkServerContext,
) -> None:
    """A child that put its report and exited at once (code 0): the report may still be in the
    queue's pipe when the exit is seen; it is taken, not a failure to report."""
    results = process_context.Queue()
    children = [process_context.Process(target=_report_then_return, args=(results,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    assert _taken(results, 20, children) == (0, 5)
    assert _taken(results, 20, children[1:]) == (0, 5)
    with pytest.raises(CliError, match=r"exited with code 0 before it reported"):
        _taken(results, 20, children[1:])

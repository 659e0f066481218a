"""``scripts/bench_request_floor.py``: the requests-per-call ceiling of issue 13's moto row keeps running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_request_floor_script_prints_its_rows_and_both_denominators() -> None:
    pytest.importorskip("moto.server", reason="the script starts a moto server of its own")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    argv = ["--processes", "1,2", "--requests", "2", "--duration", "0.3", "--repeats", "1"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_request_floor.py"), *argv],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    rows = {tuple(line.split()[:2]): line.split()[2:4] for line in lines if line.split()[0].isdigit()}
    assert set(rows) == {("1", "2"), ("2", "2")}, done.stdout
    for by_put, by_library in rows.values():
        assert float(by_put) > 0 and float(by_library) > 0, done.stdout
    assert "one process, one PUT per call:" in done.stdout, done.stdout
    assert "the library, one process alone:" in done.stdout, done.stdout


def test_request_floor_script_refuses_unbounded_load() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_request_floor.py"), "--duration", "600"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--duration in (0, 60]" in done.stderr, done.stderr

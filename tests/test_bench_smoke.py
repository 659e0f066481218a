"""``vactor bench`` keeps working: every row runs with the tiny profile on memory and local stores."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vactor_cloud import bench


@pytest.mark.parametrize("scheme", ["memory", "local"])
def test_bench_runs_every_row_and_prints_one_table(scheme: str, tmp_path: Path) -> None:
    url = "memory://bench-smoke" if scheme == "memory" else f"file://{tmp_path / 'store'}"
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "vactor_cloud.bench", url, "--profile", "tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    names = [row["name"] for row in rows]
    assert len(names) == 11
    assert any(name.startswith("warm commit: requests") for name in names)
    # the request counts are exact even in the tiny profile
    by_name = {row["name"]: row for row in rows}
    assert by_name["warm commit: requests on the critical path"]["value"] == "1"
    assert by_name["warm linearizable read-only call: requests"]["value"] == "1"
    assert "vactor bench" in done.stdout
    if scheme == "local":
        # what the benchmark wrote is gone again
        assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


def test_bench_arguments_register_on_a_parser() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["memory://x", "--quick", "--option", "anon=true"])
    assert args.quick and args.url == "memory://x" and args.option == ["anon=true"]

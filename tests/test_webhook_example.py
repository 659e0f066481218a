"""examples/webhook_handler.py runs and applies its retried webhook once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhook_handler.py"


def test_webhook_example_applies_a_retried_delivery_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "delivery 1: crashed before answering"
    assert lines[1] == lines[2].replace("delivery 3", "delivery 2")  # both retries got the same answer
    assert "'payments': ['pay_1']" in lines[3] and "'paid': 120" in lines[3]

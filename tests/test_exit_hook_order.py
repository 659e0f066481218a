"""Importing vactor_cloud does not import ``concurrent.futures.thread``.

Importing it registers ``concurrent.futures``' exit hook, and its place among the interpreter's
exit hooks decides whether a thread pool's leftover work runs before or after vactor's own exit
hook (``test_review_processes``: calls a pool still made at exit left HEAD unmoved once
``fork_guard`` imported ``ThreadPoolExecutor`` at import time). A fresh interpreter, so that
nothing else in the test process has imported it first.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import vactor_cloud, vactor_cloud.runtime, vactor_cloud.batch, vactor_cloud.cli
print(sorted(m for m in ("concurrent.futures.thread", "concurrent.futures.process") if m in sys.modules))
"""


def test_importing_vactor_cloud_registers_no_thread_pool_exit_hook() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

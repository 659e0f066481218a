"""What the examples print last: a ``vactor`` command that shows the history they wrote."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from vactor_cloud.cli import EXIT_OK


def check_printed_inspect_command(stdout: str, env: dict[str, str]) -> None:
    """The example's last line ends with a ``vactor ... --storage ...`` command, and that
    command, run as printed (with ``env``: not the example's store as the default), shows
    a piped history."""
    command = stdout.strip().splitlines()[-1].split(": ", 1)[-1]
    argv = shlex.split(command)
    assert argv[0] == "vactor" and "--storage" in argv, command
    console = os.path.join(os.path.dirname(sys.executable), "vactor")
    shown = subprocess.run(
        [console, *argv[1:]], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert shown.returncode == EXIT_OK, shown.stderr
    assert shown.stdout.startswith("STEP"), shown.stdout  # piped history, on the example's store

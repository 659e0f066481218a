"""Ctrl-C while a program exits (review h101).

A script that ends with ``run_async`` calls it never waited for has them applied at its exit
(the exit hook waits for them). A Ctrl-C during that wait printed Python's ``Exception ignored
in: <module 'threading'>`` traceback, exited 0, and said nothing of the calls it abandoned. Run
for real: a child process on a local store, sent SIGINT once the exit hook waits (the child
says so on stdout: a call applied after the script's last line); each wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import atexit, sys, time
atexit.register(lambda: print("the program's own exit callback ran", flush=True))
import vactor_cloud as vc


@vc.virtual_actor
class Slow:
    def __init__(self) -> None:
        self.done = 0

    def work(self, tag: str) -> int:
        time.sleep(0.2)  # calls queue behind it: the exit hook has several to wait for
        self.done += 1
        print("applied", tag, flush=True)
        return self.done


vc.init(sys.argv[1])
# threading's exit hooks run latest first: this one just before vactor_cloud's, which waits
import threading
threading._register_atexit(lambda: print("exiting", flush=True))
slow = Slow.get_or_create("slow-1")
for n in range(40):
    slow.work.run_async(f"a{n}")  # never waited for
print("script done", flush=True)
"""

#: how long the child may take to reach each point (a hang bound, not a measure)
_BOUND = 60.0


def _lines_until(child: subprocess.Popen[str], wanted: str) -> list[str]:
    """stdout lines of ``child`` up to one starting with ``wanted`` (bounded by ``_BOUND``)."""
    seen: list[str] = []
    until = time.monotonic() + _BOUND
    assert child.stdout is not None
    while time.monotonic() < until:
        line = child.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(wanted):
            return seen
    child.kill()
    pytest.fail(f"the child never printed {wanted!r}: {seen}")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_while_the_exit_waits_for_queued_calls_says_which_were_abandoned(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    script = tmp_path / "fire_and_forget.py"
    script.write_text(SCRIPT)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(
        [sys.executable, "-u", str(script), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=here),
    )
    try:
        before = _lines_until(child, "exiting")
        # a call applied after the hook before vactor_cloud's ran: the main thread waits in
        # vactor_cloud's (an "applied" after the script's last line alone did not say so: on a
        # loaded host the main thread had not reached the hook yet, the Ctrl-C ended the script
        # itself, and the hook then applied every call)
        after = _lines_until(child, "applied")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=_BOUND)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    applied = sum(line.startswith("applied") for line in before + after + out.splitlines())
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("vactor_cloud: interrupted at exit"), line
    if applied < 40:
        assert "'slow-1'" in line and "work" in line, line  # which calls were abandoned
        assert "vactor history slow-1" in line, line  # how to check what did apply
    else:
        # On a loaded host the calls left were all taken into the batch running when the Ctrl-C
        # came (group commit): it completes, and none was left queued, which the line says.
        assert "no call was left queued" in line, line
    # The exit goes on: a callback registered before vactor_cloud was imported still runs (an
    # os._exit(130) there skipped it, and logging's flush with it).
    assert "the program's own exit callback ran" in out, out
    assert child.returncode == 0, (child.returncode, err)


# -- the vactor command: a Ctrl-C once its output is complete ---------------------------------------

#: the console script (sys.exit(main())), with an exit callback of the user's that waits, as
#: the interpreter's exit work does: the test's SIGINT lands there, after the command's output
COMMAND = """
import atexit, sys, time
from vactor_cloud.cli import main


def exit_work() -> None:
    print("exiting", flush=True)
    time.sleep(60)  # (a hang bound: the SIGINT ends it)


atexit.register(exit_work)
sys.exit(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_as_the_vactor_command_exits_is_exit_130_and_one_line(tmp_path: Path) -> None:
    """Before, a Ctrl-C after the command's output, while the interpreter exited, printed
    Python's ``Exception ignored in atexit callback`` traceback and exited 0 (later in the
    teardown, where Python no longer handles signals: killed, -2, silently). The command's
    process now says one line and exits 130 for such a Ctrl-C, and ends without the teardown
    (where a Ctrl-C could not be answered) once its exit callbacks ran."""
    store = tmp_path / "store"
    store.mkdir()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", COMMAND, "ls", "--storage", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=here),
    )
    try:
        _lines_until(child, "exiting")
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=_BOUND)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("no actors under"), err  # the command's own output (on stderr)
    assert lines[1:] == ["vactor: interrupted (Ctrl-C) as it exited; the command had finished"], err
    assert child.returncode == 130, (child.returncode, err)

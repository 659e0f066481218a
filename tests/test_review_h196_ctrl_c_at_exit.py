"""Ctrl-C at the edges of a process's exit (review h196), run for real in child processes.

A second Ctrl-C during the close that follows a first one: the close then waits only its
floors (a second or so each to release leases and flush HEAD pointers, and to join the pool's
threads), and the second interrupt lands there. And a Ctrl-C while the exit waits for the
program's own non-daemon threads. Each exit must end (bounded), say one line, lose no
acknowledged commit, and leave the post nobody folded to the next process that asks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_review_h189_exit_budget import (
    _CHILD,
    _INTERRUPTED_BOUND,
    _then_applied_once,
    assert_one_line_said_the_interrupt,
    exit_of_a_child,
)

from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.vactor_lanes("local"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process"),
]

#: h189's child (every put of its store held: ``silent``), which once the exit's close began
#: after the first Ctrl-C and waits in its floor to release and flush (``aclose``, run through
#: ``_sync.sync`` on the main thread), sends itself a second SIGINT, and says so; and says
#: each Ctrl-C the exit hooks took ("Ctrl-C taken at exit")
_CTRL_C_AGAIN = (
    _CHILD
    + """
import os, signal

said = runtime_module._interrupted_at_exit


def saying(*args, **kwargs):
    print("Ctrl-C taken at exit", flush=True)
    return said(*args, **kwargs)


runtime_module._interrupted_at_exit = saying


def ctrl_c_again_in_the_close():
    until = time.monotonic() + 60
    while time.monotonic() < until:
        frame = sys._current_frames().get(main.ident)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        if runtime_module._exit_interrupted and "_close" in names and "sync" in names:
            print("Ctrl-C again in the close's floor", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            return
        time.sleep(0.005)


threading.Thread(target=ctrl_c_again_in_the_close, daemon=True).start()
"""
)


def test_a_second_ctrl_c_in_the_close_after_the_first_ends_the_exit_and_loses_nothing_acknowledged(
    shared: StoreSpec, tmp_path: Path
) -> None:
    call_id, seen, took, err, returncode, out = exit_of_a_child(
        shared, tmp_path, "silent", 120.0, sigint_at="waiting at exit", script=_CTRL_C_AGAIN
    )
    print(f"after two Ctrl-C the exit took {took:.2f} s; stdout after the first: {out!r}; stderr: {err!r}")
    assert "acknowledged 2" in "".join(seen), seen
    taken = out.splitlines()
    assert taken[:3] == [
        "Ctrl-C taken at exit",
        "Ctrl-C again in the close's floor",
        "Ctrl-C taken at exit",
    ], out
    assert took < _INTERRUPTED_BOUND, f"after two Ctrl-C at exit the exit took {took:.1f} s: {err}"
    assert returncode == 0, (returncode, err)
    assert_one_line_said_the_interrupt(err)
    _then_applied_once(shared, call_id, "silent")

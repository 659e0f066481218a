"""Ctrl-C at the edges of a process's exit (review h196), run for real in child processes.

A second Ctrl-C during the close that follows a first one: the close then waits only its
floors (a second or so each to release leases and flush HEAD pointers, and to join the pool's
threads), and the second interrupt lands there. And a Ctrl-C while the exit waits for the
program's own non-daemon threads. Each exit must end (bounded), say one line, lose no
acknowledged commit, and leave the post nobody folded to the next process that asks.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from actors import OrderLog
from test_review_ctrl_c_at_exit import _lines_until
from test_review_h189_exit_budget import (
    _CHILD,
    _INTERRUPTED_BOUND,
    WHEN_THE_MAIN_THREAD,
    _then_applied_once,
    assert_one_line_said_the_interrupt,
    exit_of_a_child,
    start_child,
)

import vactor_cloud as vc
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


def ctrl_c_again(_):
    print("Ctrl-C again in the close's floor", flush=True)
    os.kill(os.getpid(), signal.SIGINT)


runtime_module._interrupted_at_exit = saying
when_the_main_thread(
    lambda names: runtime_module._exit_interrupted and "_close" in names and "sync" in names, ctrl_c_again
)
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


#: a program whose non-daemon thread ("worker") calls ``add`` on actor ``a`` until a file
#: (argv[3]) appears (120 s at most), noting each acknowledged call in argv[2]; its main thread
#: returns, and it prints "waiting at exit in join_threads" once the exit hook waits for the
#: thread there
_THREAD_AT_EXIT = (
    """
import os, sys, threading, time
import vactor_cloud as vc

url, acks_path, stop_path = sys.argv[1], sys.argv[2], sys.argv[3]
vc.init(url)
handle = vc.get_actor("a")
called = threading.Event()


def worker():
    acks = open(acks_path, "a", buffering=1)
    until = time.monotonic() + 120
    n = 0
    while not os.path.exists(stop_path) and time.monotonic() < until:
        try:
            handle.add.run(f"t/{n}")
        except Exception:
            pass
        else:
            acks.write(f"t/{n}\\n")
        called.set()
        n += 1
        time.sleep(0.02)


threading.Thread(target=worker, name="worker").start()
assert called.wait(60), "the worker never called"
"""
    + WHEN_THE_MAIN_THREAD
    + """
when_the_main_thread(
    lambda names: "_shutdown_at_exit" in names and "join_threads" in names,
    lambda _: print("waiting at exit in join_threads", flush=True),
)
"""
)


def test_ctrl_c_while_the_exit_waits_for_a_thread_ends_the_exit_and_loses_nothing_acknowledged(
    shared: StoreSpec, tmp_path: Path
) -> None:
    """The exit waits for the program's thread, which goes on calling; a Ctrl-C: the exit
    ends (as Python's own wait for such a thread ends at a Ctrl-C), the thread left running
    named in the one line said, and every call it was told had committed is in the store."""
    OrderLog.get_or_create("a").add.run("me/0")
    vc.shutdown()
    acks, stop = tmp_path / "acks", tmp_path / "stop"
    child = start_child(shared, tmp_path, _THREAD_AT_EXIT, str(acks), str(stop))
    try:
        _lines_until(child, "waiting at exit in join_threads")
        child.send_signal(signal.SIGINT)
        try:
            _, err = child.communicate(timeout=_INTERRUPTED_BOUND + 15.0)
            ended = True
        except subprocess.TimeoutExpired:
            stop.touch()  # (the thread ends: the exit goes on)
            _, err = child.communicate(timeout=60.0)
            ended = False
    finally:
        stop.touch()
        if child.poll() is None:
            child.kill()
            child.wait()
    print(f"stderr: {err!r}")
    assert ended, f"after a Ctrl-C the exit still waited for the program's thread: {err}"
    assert child.returncode == 0, (child.returncode, err)
    assert_one_line_said_the_interrupt(err)
    assert "'worker'" in err, err  # (the thread it no longer waits for)
    acknowledged = acks.read_text().split()
    assert acknowledged, "the worker's calls were never acknowledged"
    shared.init()
    applied = vc.get_actor("a").applied.run()
    assert set(acknowledged) <= set(applied), (acknowledged, applied)
    assert len(applied) == len(set(applied)), applied  # (each once)

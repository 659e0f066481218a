"""How long a process takes to exit when the store stalls, and Ctrl-C at exit (review h189).

A child process on a local store wraps its store (``HoldOne``) so that one request never gets
an answer, starts work that sends it, and returns from its main code: an ask's background fold
whose lease take stalls (``ask_fold``), or which took the lease and whose step put stalls
(``lease_held``); a ``run_async`` call whose step put lands and whose answer stalls
(``run_async``); or both, every put of the store held (``silent``: ``HoldEvery``). Its exit
hook waits for that work up to the exit budget (``_EXIT_WAIT``, shortened in the child), then
shuts the runtime down.

Before, the shutdown then waited up to 30 s more (``Runtime.close``'s own timeout) for the
work already running: with a 3 s budget the exit took 30.0-30.1 s (the stalled request's own
``Settings.deadline`` ended it first). And a Ctrl-C during the exit's wait printed a line (not
naming the ask's fold) and then waited those 30 s all the same. Now the exit is bounded by the
one budget (plus the close's floor to release and flush, a second each at most: 3.03 s, and
4.03 s with every put silent), and a Ctrl-C stops the waiting at once (0.02-1.06 s). Nothing
acknowledged is lost by the cut: a call whose commit was acknowledged stays committed; the post
left pending is folded by the next process that asks, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import Popen
from typing import NamedTuple

import pytest
from actors import OrderLog
from test_combining import foreign_box, post_adds
from test_posting import outcome_once_folded
from test_review_ctrl_c_at_exit import _lines_until

import vactor_cloud as vc
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.vactor_lanes("local"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process"),
]

#: (a child's code, after ``sys``, ``threading`` and ``time`` are imported)
#: ``when_the_main_thread(where, then)``: a daemon thread looks at the functions the main thread
#: is in (their names, innermost first) every few milliseconds (60 s at most); once
#: ``where(names)`` returns something true, it calls ``then`` with that
WHEN_THE_MAIN_THREAD = """

def when_the_main_thread(where, then):
    def watch():
        until = time.monotonic() + 60
        while time.monotonic() < until:
            frame = sys._current_frames().get(threading.main_thread().ident)
            names = []
            while frame is not None:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            found = where(names)
            if found:
                then(found)
                return
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
"""

#: the child: argv = store url, call id, what stalls, exit budget (s). Prints "exiting" from a
#: threading exit hook that runs just before vactor_cloud's, and "waiting at exit in <wait>" once
#: its main thread waits (blocked in ``_sync.interruptible_wait``) in vactor_cloud's hook (the
#: stalled request held): for the queued calls and asks' folds (``finish_queued_calls``), or in
#: the shutdown for what runs (``wait_done``).
_CHILD = (
    """
import sys, threading, time
import vactor_cloud as vc
import vactor_cloud.runtime as runtime_module
from vactor_cloud.errors import CallPendingError
from vactor_cloud.testing.faults import HoldEvery, HoldOne

url, call_id, stall, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
runtime_module._EXIT_WAIT = budget
vc.init(url)
runtime = vc.get_runtime()
if stall == "silent":
    store = runtime.store = HoldEvery(runtime.store, "put", "", timeout=3600)
    store.ended.set()  # (it holds from the start: not until hold() below)
else:
    held = {"ask_fold": ("/lease", False), "lease_held": ("/steps/", False), "run_async": ("/steps/", True)}
    fragment, answer_first = held[stall]
    store = runtime.store = HoldOne(runtime.store, "put", fragment, answer_first=answer_first, timeout=3600)
handle = vc.get_actor("a")
print("acknowledged", handle.add.run("me/1"), flush=True)  # (committed and answered)
store.hold()
if stall != "run_async":
    try:
        print("outcome", handle.call_outcome(call_id), flush=True)
    except CallPendingError:
        print("pending", flush=True)  # (the ask queued the fold, whose request stalls)
if stall in ("run_async", "silent"):
    handle.add.run_async("me/2")  # (never waited for; its step put lands, its answer stalls)
assert store.held.wait(60), "the stalled request was never sent"
"""
    + WHEN_THE_MAIN_THREAD
    + """

def waits_at_exit(names):
    waits = [name for name in names if name in ("finish_queued_calls", "wait_done")]
    # (blocked in the wait: finish_queued_calls passes through at once with nothing queued,
    # and a main thread held up there by a loaded host must not be reported waiting in it)
    if "_shutdown_at_exit" in names and waits and "interruptible_wait" in names:
        return waits[0]


threading._register_atexit(lambda: print("exiting", flush=True))  # (runs before vactor_cloud's)
when_the_main_thread(waits_at_exit, lambda wait: print("waiting at exit in", wait, flush=True))
"""
)

#: what stalls in the child (its argv[3]): see the module's docstring
_STALLS = ["ask_fold", "lease_held", "run_async", "silent"]
#: the exit budget the child is given, and how long its exit may take (from its "exiting"): the
#: budget, the close's floor to cancel and release, and a load margin. Before, 30 s more.
_BUDGET = 3.0
_EXIT_BOUND = 20.0
#: how long the exit may take after a Ctrl-C during its wait (before: 30 s)
_INTERRUPTED_BOUND = 15.0


def _store_with_a_post_nobody_folds(spec: StoreSpec) -> str:
    """Actor ``a`` (step 1: ``me/0``), and another sender's post ``other/1`` waiting; its call id."""
    vc.shutdown()
    spec.init(settings=Settings(storage=spec.url, fresh_window=300.0, combine_after=1))
    OrderLog.get_or_create("a").add.run("me/0")
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    vc.shutdown()
    return call_id


def start_child(spec: StoreSpec, cwd: Path, script: str, *argv: str) -> Popen[str]:
    """``script`` run in a child process on ``spec``'s store (its argv: the store's url, then
    ``argv``), in ``cwd``; its stdout and stderr piped, as text."""
    return subprocess.Popen(
        [sys.executable, "-u", "-c", script, spec.url, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **spec.env, "PYTHONPATH": os.pathsep.join(sys.path)},
        cwd=cwd,
    )


class ChildExit(NamedTuple):
    """How a child's exit went (:func:`exit_of_a_child`)."""

    call_id: str  #: the other sender's post, waiting
    seen: list[str]  #: its stdout lines up to the one waited for (the last)
    took: float  #: seconds from that line until it exited
    err: str  #: its stderr
    returncode: int
    out: str  #: its stdout after ``seen``


def exit_of_a_child(
    spec: StoreSpec, cwd: Path, stall: str, budget: float, *, sigint_at: str = "", script: str = _CHILD
) -> ChildExit:
    """A store with a post nobody folds, and a child on it (``script``) whose ``stall`` stalls;
    once it printed a line starting with ``sigint_at`` (sent SIGINT then), or "exiting" (none
    sent), how its exit went (killed past its bound + 60 s)."""
    call_id = _store_with_a_post_nobody_folds(spec)
    child = start_child(spec, cwd, script, call_id, stall, str(budget))
    try:
        seen = _lines_until(child, sigint_at or "exiting")
        if sigint_at:
            child.send_signal(signal.SIGINT)
        took, out, err = _exit_time(child, _INTERRUPTED_BOUND if sigint_at else _EXIT_BOUND)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return ChildExit(call_id, seen, took, err, child.returncode, out)


def _exit_time(child: Popen[str], bound: float) -> tuple[float, str, str]:
    """Seconds from now until ``child`` exits (killed past ``bound`` + 60 s), its stdout and
    its stderr."""
    began = time.monotonic()
    try:
        out, err = child.communicate(timeout=bound + 60.0)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    return time.monotonic() - began, out, err


def _then_applied_once(spec: StoreSpec, call_id: str, stall: str) -> None:
    """A new process (this one, a new runtime) asks: the post's outcome. Each call applied once,
    the acknowledged ``me/1`` among them (and ``me/2``, whose step landed as its answer stalled;
    held before it was sent on the silent store: not applied)."""
    spec.init()
    handle = vc.get_actor("a")
    assert outcome_once_folded(handle, call_id) >= 2
    applied = handle.applied.run()
    expected = ["me/0", "me/1", "other/1"] + (["me/2"] if stall == "run_async" else [])
    assert sorted(applied) == sorted(expected), applied


@pytest.mark.parametrize("stall", _STALLS)
def test_the_exit_is_bounded_by_one_budget_when_the_store_stalls(
    shared: StoreSpec, tmp_path: Path, stall: str
) -> None:
    call_id, seen, took, err, returncode, _ = exit_of_a_child(shared, tmp_path, stall, _BUDGET)
    print(f"{stall}: the exit took {took:.2f} s (budget {_BUDGET:g} s); stderr: {err!r}")
    assert "acknowledged 2" in "".join(seen), seen
    assert took < _EXIT_BOUND, f"the exit took {took:.1f} s with a {_BUDGET:g} s budget: {err}"
    assert returncode == 0, (returncode, err)
    assert "Traceback" not in err, err
    assert f"the exit's budget ({_BUDGET:g} s" in err, err  # (what it cut off, and after how long)
    _then_applied_once(shared, call_id, stall)  # (nothing acknowledged lost; the post folded once)


@pytest.mark.parametrize("stall", _STALLS)
def test_ctrl_c_during_the_exit_wait_ends_it_and_names_what_was_abandoned(
    shared: StoreSpec, tmp_path: Path, stall: str
) -> None:
    # (a budget the test never waits out)
    call_id, seen, took, err, *_ = exit_of_a_child(
        shared, tmp_path, stall, 120.0, sigint_at="waiting at exit"
    )
    print(f"{stall}: after Ctrl-C the exit took {took:.2f} s; stderr: {err!r}")
    # (the ask's fold is waited for as queued work; the run_async call, running, by the shutdown)
    where = "wait_done" if stall == "run_async" else "finish_queued_calls"
    assert seen[-1].split()[-1] == where, seen[-1]
    assert took < _INTERRUPTED_BOUND, f"after a Ctrl-C at exit the exit took {took:.1f} s: {err}"
    assert_one_line_said_the_interrupt(err)
    lines = [line for line in err.splitlines() if line.startswith("vactor_cloud:")]
    if stall != "run_async":
        assert "'a'" in lines[0] and "call_outcome" in lines[0], lines[0]  # the fold named, what to do
    _then_applied_once(shared, call_id, stall)


def assert_one_line_said_the_interrupt(err: str) -> None:
    """No traceback, and one line of vactor_cloud's own on stderr: the interrupt's."""
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("vactor_cloud:")]  # (its own lines)
    assert len(lines) == 1 and lines[0].startswith("vactor_cloud: interrupted at exit"), err

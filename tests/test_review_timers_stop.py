"""``vactor timers run`` (and ``tick``, and ``vactor events drain``) stopped by a user: the first
Ctrl-C lets fires (or the event applied) in flight finish, the second stops at once, and nothing is
lost or applied twice either way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gated_timer_workers import GatedAlarm, GatedInbox

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli import EXIT_INTERRUPTED
from vactor_cloud.events import process_events
from vactor_cloud.timer_runner import fire_due_timers
from vactor_cloud.timers import list_index

TESTS = Path(__file__).resolve().parent

#: every wait on the child is bounded by this (the gated fire alone would hold it 120 s)
WAIT = 60.0


def _lines_of(stream: object) -> list[str]:
    """Lines read off ``stream`` by a daemon thread, as they come."""
    lines: list[str] = []

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(condition: object, what: str, proc: subprocess.Popen[str], lines: list[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never: {what}; stderr so far: {''.join(lines)}"
        assert proc.poll() is None, f"exited {proc.returncode} before: {what}; {''.join(lines)}"
        time.sleep(0.05)


def _ctrl_c_twice(store: str, command: list[str], started: Path, gate: Path, what: str) -> tuple[int, str]:
    """``vactor --storage STORE COMMAND`` in a child, sent Ctrl-C once ``what`` (its gated method)
    has ``started``, and again once it says it stops; its exit code and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vactor_cloud", "--storage", store, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines_of(proc.stderr)
        _wait_for(started.exists, f"{what} started", proc, lines)
        proc.send_signal(signal.SIGINT)
        _wait_for(lambda: any("Ctrl-C again" in s for s in lines), "a line saying it stops", proc, lines)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(WAIT)  # the gated method would hold it 120 s
        except subprocess.TimeoutExpired:
            pytest.fail(f"a second Ctrl-C did not stop it; stderr: {''.join(lines)}")
        time.sleep(0.2)  # (the reader thread takes the last lines: ordering, not timing)
        return code, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        gate.unlink(missing_ok=True)


@pytest.mark.parametrize("command", [["run", "--poll", "0.2"], ["tick"]], ids=["run", "tick"])
def test_a_second_ctrl_c_stops_timers_at_once_and_the_fire_it_cut_short_fires_once_later(
    tmp_path: Path, command: list[str]
) -> None:
    """Before, a second Ctrl-C did nothing while a long fire ran (``run``: the first had asked
    the fires in flight to finish; ``tick``: its KeyboardInterrupt waited for them, unsaid), and
    even a KeyboardInterrupt would have hung at exit joining the firing threads. Now the first
    says it stops and how to stop at once; the second ends the process at once (exit 130) with
    a line saying the cut-short fire stays due; the next runner fires it, once."""
    store = str(tmp_path / "store")
    gate, started = tmp_path / "gate", tmp_path / "started"
    gate.touch()
    vc.init(store)
    try:
        GatedAlarm.get_or_create("a1").arm.run("k", str(gate), str(started))
    finally:
        vc.shutdown()
    code, said = _ctrl_c_twice(store, ["timers", *command], started, gate, "the timer's method")
    assert code == EXIT_INTERRUPTED, said
    assert "Traceback" not in said, said
    last = [line for line in said.splitlines() if line.startswith("vactor: ")][-1]
    assert "stays due" in last and "fired again" in last, said
    vc.init(store)
    try:
        assert [e.key for e in _sync.sync(list_index(vc.get_runtime().store))] == ["k"]
        assert vc.get_actor("a1").counts.run() == {}  # the cut-short fire committed nothing
        assert fire_due_timers(split="none").fired == 1
        assert fire_due_timers(split="none").fired == 0
        assert vc.get_actor("a1").counts.run() == {"k": 1}
        assert _sync.sync(list_index(vc.get_runtime().store)) == []
    finally:
        vc.shutdown()


def test_a_second_ctrl_c_stops_events_drain_at_once_and_the_event_it_cut_short_is_applied_later(
    tmp_path: Path,
) -> None:
    """``vactor events drain`` had no "stop at once": the first Ctrl-C waited, unsaid, for the
    event being applied, and a second one interrupted that wait only to have the process wait
    for it again at exit (the gated handler held it 120 s). Now, as ``timers tick``: the first
    says it stops and how to stop at once; the second ends the process at once (exit 130) with a
    line saying the event cut short waits in its inbox; the next drain applies it, once."""
    store = str(tmp_path / "store")
    gate, started = tmp_path / "gate", tmp_path / "started"
    gate.touch()
    vc.init(store)
    try:
        GatedInbox.get_or_create("box")
        payload = {"gate": str(gate), "started": str(started)}
        vc.send_event("box", "gated", payload, event_id="e1")
    finally:
        vc.shutdown()
    code, said = _ctrl_c_twice(store, ["events", "drain"], started, gate, "the event's handler")
    assert code == EXIT_INTERRUPTED, said
    assert "Traceback" not in said, said
    last = [line for line in said.splitlines() if line.startswith("vactor: ")][-1]
    assert "stopped at once" in last and "inbox" in last, said
    vc.init(store)
    try:
        box = vc.get_actor("box")
        assert box.count.run() == 0  # the cut-short application committed nothing
        assert process_events("box") == 1
        assert process_events("box") == 0
        assert box.count.run() == 1
    finally:
        vc.shutdown()

"""``vactor timers tick`` on long work (review-h130): its progress, and what Ctrl-C or SIGTERM leaves.

Before, ``tick`` said nothing until its totals (a backlog of thousands of due timers: minutes of
silence), and its first Ctrl-C (or SIGTERM) let every fire of the slice it had listed run (up to
20,000, queued behind the 16 in flight), then said only that the timers not fired stay due.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from child_processes import vactor_child
from cli_harness import Vactor
from gated_timer_workers import GatedAlarm

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK
from vactor_cloud.timers import list_index

TESTS = Path(__file__).resolve().parent

#: every wait on the child is bounded by this (a gated fire alone would hold it 120 s)
WAIT = 60.0
#: actors with a due timer; the tick fires 16 at once
ACTORS = 40
IN_FLIGHT = 16


@vc.virtual_actor
class Chime:
    def __init__(self) -> None:
        self.rung = 0

    def arm(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("ring", after=0, key="k")

    def ring(self) -> None:
        self.rung += 1

    @vc.virtual_actor.readonly
    def rings(self) -> int:
        return self.rung


def test_a_piped_tick_says_its_progress_on_stderr_first_and_last(vactor: Vactor, store: str) -> None:
    vc.init(store)
    try:
        for n in range(3):
            Chime.get_or_create(f"c{n}").arm.run()
    finally:
        vc.shutdown()
    result = vactor("timers", "tick", "--split", "none")
    assert result.code == EXIT_OK, result
    lines = result.err.splitlines()
    assert lines[0].startswith("firing 1/3 c"), result.err
    assert lines[-1].startswith("firing 3/3 c"), result.err
    assert "fired=3" in result.out, result.out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_tick_finishes_the_fires_in_flight_only_and_says_how_many_fired_and_are_left(
    tmp_path: Path, signum: signal.Signals
) -> None:
    store = str(tmp_path / "store")
    gate, started = tmp_path / "gate", tmp_path / "started"
    gate.touch()
    vc.init(store)
    try:
        for n in range(ACTORS):
            GatedAlarm.get_or_create(f"g{n:02d}").arm.run("k", str(gate), str(started))
    finally:
        vc.shutdown()
    proc = vactor_child(
        store, "timers", "tick", "--split", "none", pythonpath=[str(TESTS.parent), str(TESTS)]
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + WAIT
        while not started.exists() or len(started.read_text().splitlines()) < IN_FLIGHT:
            assert time.monotonic() < deadline and proc.poll() is None, "".join(err)
            time.sleep(0.05)
        proc.send_signal(signum)
        while not any("stopping" in line for line in err):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(err)
            time.sleep(0.05)
        gate.unlink()  # the fires in flight finish
        code = proc.wait(WAIT)
        reader.join(WAIT)
        out = proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    said = "".join(err)
    assert code == EXIT_INTERRUPTED, said
    assert "Traceback" not in said, said
    assert len(started.read_text().splitlines()) == IN_FLIGHT, said  # no fire started after the signal
    (last,) = [line for line in err if line.startswith("vactor: error:")]
    assert f"interrupted after firing {IN_FLIGHT} of the {ACTORS} due timers it listed" in last, said
    assert f"the other {ACTORS - IN_FLIGHT} stay due" in last and "vactor timers tick" in last, said
    assert f"fired={IN_FLIGHT}" in out, out  # its totals, as when it ends
    vc.init(store)
    try:
        left = _sync.sync(list_index(vc.get_runtime().store))
        assert len(left) == ACTORS - IN_FLIGHT
    finally:
        vc.shutdown()


# -- events drain --json writes each actor's element as it is drained --------------------------------


def test_events_drain_json_writes_each_actors_element_as_it_is_drained(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``events drain --json`` held every actor's line and wrote the array at the end: a drain of
    thousands of actors (a commit each) showed nothing for minutes, and one interrupted wrote
    nothing at all. Now the one array, an element as each actor is drained (as ``compact --all``)."""
    from vactor_cloud.cli import events

    vc.init(store)
    try:
        for n in range(3):
            Chime.get_or_create(f"c{n}")
            vc.send_event(f"c{n}", "ping", {}, event_id=f"e{n}")
    finally:
        vc.shutdown()
    before_last: list[str] = []
    real = events._drain_one

    async def drain_one(actor_id: str) -> dict[str, object]:
        if actor_id == "c2":
            before_last.append(capsys.readouterr().out)
        return await real(actor_id)

    monkeypatch.setattr(events, "_drain_one", drain_one)
    result = vactor("events", "drain", "--json")
    assert result.code == EXIT_OK, result
    (written,) = before_last
    assert '"actor": "c0"' in written and '"actor": "c1"' in written, written
    lines = json.loads(written + result.out)
    assert [line["actor"] for line in lines] == ["c0", "c1", "c2"]
    assert set(lines[0]) == {"actor", "created", "deleted", "applied", "left", "text"}


# -- piped, the listing before long work says how far it got -------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["compact", "--all", "--keep-last", "1", "--min-age", "0", "--force"],
        ["timers", "repair"],
        ["events", "drain"],
    ],
    ids=["compact", "repair", "drain"],
)
def test_a_piped_listing_before_long_work_says_how_many_it_listed_at_each_interval(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Piped (a cron job's log), ``compact --all``, ``timers repair`` and ``events drain`` said
    nothing while they listed every actor (on S3, a LIST per 64 keys; drain, one per inbox too):
    on a bucket of a million actors, minutes of silence before the first progress line. On a
    terminal the count was shown already; piped, a line now at most each interval (0 here: one
    per actor listed)."""
    from vactor_cloud.cli import _output

    vc.init(store)
    try:
        for n in range(3):
            Chime.get_or_create(f"c{n}").arm.run()
    finally:
        vc.shutdown()
    monkeypatch.setattr(_output, "PLAIN_PROGRESS_EVERY", 0.0)
    result = vactor(*command)
    assert result.code == EXIT_OK, result
    counts = [line for line in result.err.splitlines() if "so far" in line]
    assert counts and counts[-1].endswith(" 3 so far"), result.err


def test_fire_due_timers_stopped_before_it_starts_fires_none_and_counts_them_left(store: str) -> None:
    """(The library under ``vactor timers tick``) ``stop`` set: no fire starts; ``left`` counts
    the due timers listed, which stay in the index; ``on_due`` was told of them, ``on_done`` of none."""
    vc.init(store)
    try:
        for n in range(3):
            Chime.get_or_create(f"c{n}").arm.run()
        stop = threading.Event()
        stop.set()
        due: list[int] = []
        done: list[str] = []
        report = vc.fire_due_timers(
            split="none", stop=stop, on_due=due.append, on_done=lambda actor_id, n: done.append(actor_id)
        )
        assert (report.fired, report.left, report.due) == (0, 3, 3), report
        assert due == [3] and done == []
        assert len(_sync.sync(list_index(vc.get_runtime().store))) == 3
        report = vc.fire_due_timers(split="none", on_done=lambda actor_id, n: done.append(actor_id))
        assert (report.fired, report.left) == (3, 0), report
        assert sorted(done) == ["c0", "c1", "c2"]
    finally:
        vc.shutdown()

"""``vactor`` on long work (review-h123): what an operator sees while it runs, on Ctrl-C and on SIGTERM.

Each test runs the console script in a subprocess on a local store of a few hundred actors,
with one piece of the work held (a compaction, a LIST) until the test releases it: what the
test reads while it is held was printed before the work ended. Not by timing.

Before: ``compact --all`` printed its table (and ``--json`` its array) only at the end; SIGTERM
ended it (and every command) silently, killed by the signal; Ctrl-C cancelled the compactions
in flight and said only that they "may keep some old steps"; ``timers ls`` read the whole due
index before printing its first row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from actors import Tally
from cli_harness import made_once_per_run

import vactor_cloud as vc
from vactor_cloud import keys
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK

#: actors in the store: many batches of 8 compactions
ACTORS = 200
#: the actor whose compaction the test holds (in the batch of 96..103)
HELD_ACTOR = "a-0100"
#: the actors compacted when the batch holding HELD_ACTOR ends
THROUGH_HELD_BATCH = 104
#: how long a test waits for what must come while the work is held (only a failure waits this long)
WAIT = 60.0
#: a held piece of work goes on unreleased after this long (a test that failed does not hang)
HOLD = 150.0

#: the child: the console script, with the held piece of work patched in before it starts
_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time
    ready, release, held_actor, held_list = sys.argv[1:5]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # (not ignored as a job's may be)

    async def wait_for_release():
        open(ready, "w").close()
        until = time.monotonic() + {hold}
        while not os.path.exists(release) and time.monotonic() < until:
            await asyncio.sleep(0.01)

    from vactor_cloud import compaction
    real_compact = compaction.compact

    async def held_compact(log, *args, **kwargs):
        if log.actor_id == held_actor:
            await wait_for_release()
        return await real_compact(log, *args, **kwargs)

    compaction.compact = held_compact
    from vactor_cloud.storage import LocalStore
    real_list = LocalStore._list

    # held_list "PREFIX": its LISTs past the first page are held; "PREFIX#N": its Nth LIST
    held_prefix, _, held_call = held_list.partition("#")
    calls = []

    async def held_lister(store, prefix, start_after, limit):
        if held_prefix and prefix == held_prefix:
            calls.append(prefix)
            if (len(calls) == int(held_call)) if held_call else start_after is not None:
                await wait_for_release()
        return await real_list(store, prefix, start_after, limit)

    LocalStore._list = held_lister
    # (a held LIST must not end at the request's own timeout, 10 s, on a loaded machine)
    import vactor_cloud.runtime
    real_init = vactor_cloud.runtime.init

    def patient_init(*args, **kwargs):
        return real_init(*args, **kwargs, settings=vactor_cloud.Settings(timeout={hold}, deadline={hold}))

    vactor_cloud.runtime.init = patient_init
    from vactor_cloud.cli import main
    sys.argv = ["vactor", *sys.argv[5:]]
    sys.exit(main())
    """
).format(hold=HOLD)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local store of ACTORS actors with 3 steps each, and 300 due-index entries: made once
    per run (2-3 s of CPU, 12,000 files), copied for each test."""
    return made_once_per_run(tmp_path_factory, "long-work-store", _seed)


def _seed(root: Path) -> None:
    vc.init(str(root))

    async def three_steps(actor_id: str) -> None:
        tally = await Tally.get_or_create_async(actor_id)
        await tally.incr.run_async()
        await tally.incr.run_async()

    async def seed() -> None:
        # (All actors at once: one after another, the 600 commits were 10-13 s of each run's setup.)
        await asyncio.gather(*(three_steps(f"a-{n:04d}") for n in range(ACTORS)))

    try:
        asyncio.run(seed())
        store = vc.get_runtime().store
        for n in range(300):
            key = keys.timer_index_key(1_700_000_000_000 + n, f"a-{n % ACTORS:04d}", f"t{n}", 1)
            vc.get_runtime().run(store.put(key, b""))
    finally:
        vc.shutdown()


@pytest.fixture
def store(seeded: Path, tmp_path: Path) -> str:
    copy = tmp_path / "store"
    shutil.copytree(seeded, copy)
    return str(copy)


class Child:
    """The console script running in a subprocess; its stdout and stderr read line by line."""

    def __init__(
        self,
        tmp_path: Path,
        argv: list[str],
        *,
        held_actor: str = "",
        held_list: str = "",
        stderr_terminal: bool = False,
        stdout_lines: int | None = None,
    ) -> None:
        #: the reader of stdout leaves (closes it) after this many lines, as ``| head -N`` does
        self.stdout_lines = stdout_lines
        self.ready = tmp_path / "ready"
        self.release_file = tmp_path / "release"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "COLUMNS": "150"}
        terminal = None
        if stderr_terminal:  # (its reader: the pseudo-terminal's other end, read as text lines)
            import pty

            master, terminal = pty.openpty()
            self._terminal: Any = os.fdopen(master, "r", encoding="utf-8", errors="replace")
        child = [sys.executable, "-c", _CHILD, str(self.ready), str(self.release_file), held_actor, held_list]
        self.process = subprocess.Popen(
            [*child, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if terminal is None else terminal,
            text=True,
            env=env,
        )
        if terminal is not None:
            os.close(terminal)
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: dict[str, queue.Queue[str]] = {"out": queue.Queue(), "err": queue.Queue()}
        assert self.process.stdout is not None
        err = self.process.stderr if terminal is None else self._terminal
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out, "out"), daemon=True),
            threading.Thread(target=self._read, args=(err, self.err, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, into: list[str], name: str) -> None:
        with contextlib.suppress(OSError):  # (a pseudo-terminal whose other end closed: EIO)
            for line in stream:
                into.append(line)
                self._lines[name].put(line)
                if name == "out" and self.stdout_lines is not None and len(into) >= self.stdout_lines:
                    stream.close()  # (the reader left: the child's next write finds no reader)
                    return

    def wait_for_line(self, name: str, text: str) -> str:
        """The first line of stdout (``out``) or stderr (``err``) holding ``text``, read within WAIT."""
        while True:
            try:
                line = self._lines[name].get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} on std{name} within {WAIT} s: {self}") from None
            if text in line:
                return line

    def wait_held(self) -> None:
        for _ in range(int(WAIT * 10)):
            if self.ready.exists():
                return
            assert self.process.poll() is None, f"ended before the held work: {self}"
            threading.Event().wait(0.1)
        raise AssertionError(f"the held work was not reached within {WAIT} s: {self}")

    def release(self) -> None:
        self.release_file.touch()

    def finish(self) -> int:
        self.release()
        code = self.process.wait(2 * WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        return code

    def __str__(self) -> str:
        return f"stdout={''.join(self.out)[-2000:]!r} stderr={''.join(self.err)[-2000:]!r}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def _steps_left(store: str, actor_id: str) -> int:
    from vactor_cloud.history import history

    vc.init(store)
    try:
        return len(history(actor_id, None))
    finally:
        vc.shutdown()


COMPACT_ALL = ["compact", "--all", "--keep-last", "1", "--min-age", "0", "--force"]


# -- compact --all prints each batch's rows as it is done ----------------------------------------------


def test_compact_all_prints_its_first_rows_while_it_still_compacts(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    child = Child(tmp_path, ["--storage", store, *COMPACT_ALL], held_actor=HELD_ACTOR)
    children.append(child)
    child.wait_held()
    header = child.wait_for_line("out", "ACTOR")
    first = child.wait_for_line("out", "a-0000")
    assert child.process.poll() is None, child  # printed while a compaction is held
    assert header.split() == ["ACTOR", "DELETED", "KEPT", "HELD"], child
    assert first.split()[:2] == ["a-0000", "2"], child
    assert not any(HELD_ACTOR in line for line in child.out), child
    assert child.finish() == EXIT_OK, child
    rows = [line.split() for line in child.out[1:]]
    assert sorted(row[0] for row in rows) == [f"a-{n:04d}" for n in range(ACTORS)], child
    assert {row[1] for row in rows} == {"2"}, child
    assert sum(1 for line in child.out if line.startswith("ACTOR")) == 1, child  # the header once


def test_compact_all_json_writes_its_first_reports_while_it_still_compacts_and_stays_one_array(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    child = Child(tmp_path, ["--storage", store, *COMPACT_ALL, "--json"], held_actor=HELD_ACTOR)
    children.append(child)
    child.wait_held()
    child.wait_for_line("out", '"actor_id": "a-0000"')
    assert child.process.poll() is None, child
    assert child.finish() == EXIT_OK, child
    reports = json.loads("".join(child.out))
    assert sorted(r["actor_id"] for r in reports) == [f"a-{n:04d}" for n in range(ACTORS)]
    assert {r["deleted_steps"] for r in reports} == {2}
    assert not [line for line in child.err if line.startswith("vactor:")], child


def test_compact_all_counts_the_actors_it_lists_on_a_terminal_before_it_compacts(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    """Listing 10,000 actors takes a while (on S3, a LIST per 64 keys) before the first
    compaction; on a terminal nothing was shown meanwhile. Now a count, on stderr."""
    child = Child(tmp_path, ["--storage", store, *COMPACT_ALL], held_list="actors/", stderr_terminal=True)
    children.append(child)
    child.wait_held()
    said = child.wait_for_line("err", "listing the actors under")
    assert child.process.poll() is None, child
    assert "so far" in said, child
    assert child.finish() == EXIT_OK, child
    assert len(child.out) == ACTORS + 1, child


def test_compact_all_whose_reader_left_compacts_every_actor_all_the_same(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    """``vactor compact --all | head -2``: the reader leaves after the first rows. The work the
    command was asked for is not its output: it goes on, quietly, and compacts every actor
    (exit 0), as its progress lines on stderr do when their reader leaves. (Printing as it goes
    first made the second batch's rows a BrokenPipeError, which ended the command there, exit 0.)"""
    child = Child(tmp_path, ["--storage", store, *COMPACT_ALL], held_actor=HELD_ACTOR, stdout_lines=2)
    children.append(child)
    child.wait_held()
    child.wait_for_line("out", "a-0000")
    assert child.finish() == EXIT_OK, child
    assert not [line for line in child.err if line.startswith("vactor:")], child
    assert _steps_left(store, f"a-{ACTORS - 1:04d}") == 1, child  # the last actor compacted too


# -- Ctrl-C and SIGTERM: the compactions in flight finish, and it says what it did -----------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_compact_all_finishes_the_compactions_in_flight_and_says_what_it_did(
    store: str, tmp_path: Path, children: list[Child], signum: signal.Signals
) -> None:
    """Before, Ctrl-C cancelled the 8 compactions in flight (each left wherever it was) and SIGTERM
    killed the process without a word (exit -15, the rows of what it had done never printed)."""
    child = Child(tmp_path, ["--storage", store, *COMPACT_ALL], held_actor=HELD_ACTOR)
    children.append(child)
    child.wait_held()
    child.process.send_signal(signum)
    said = child.wait_for_line("err", "stopping")
    assert "in flight" in said and "again stops at once" in said, child
    assert child.process.poll() is None, child  # waiting for the held compaction
    assert child.finish() == EXIT_INTERRUPTED, child
    last = [line for line in child.err if line.startswith("vactor: error:")]
    assert len(last) == 1 and "Traceback" not in "".join(child.err), child
    assert f"interrupted after compacting {THROUGH_HELD_BATCH} of {ACTORS} actors" in last[0], child
    assert f"the other {ACTORS - THROUGH_HELD_BATCH} were not touched" in last[0], child
    rows = [line.split()[0] for line in child.out[1:]]
    assert sorted(rows) == [f"a-{n:04d}" for n in range(THROUGH_HELD_BATCH)], child
    assert _steps_left(store, HELD_ACTOR) == 1  # the held one finished its compaction
    assert _steps_left(store, f"a-{THROUGH_HELD_BATCH:04d}") == 3  # the next was not started


def test_a_second_sigterm_stops_compact_all_at_once_saying_what_may_remain(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    child = Child(tmp_path, ["--storage", store, *COMPACT_ALL], held_actor=HELD_ACTOR)
    children.append(child)
    child.wait_held()
    child.process.send_signal(signal.SIGTERM)
    child.wait_for_line("err", "stopping")
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(WAIT) == EXIT_INTERRUPTED, child
    child.finish()
    last = [line for line in child.err if line.startswith("vactor: error:")]
    assert len(last) == 1, child
    assert "stopped at once after compacting 96 of 200 actors" in last[0], child
    assert "may keep some old steps below their watermark" in last[0], child
    rows = [line.split()[0] for line in child.out[1:]]
    assert sorted(rows) == [f"a-{n:04d}" for n in range(96)], child  # printed before the stop


# -- SIGTERM is Ctrl-C for every command ---------------------------------------------------------


def test_sigterm_ends_a_command_as_ctrl_c_does_with_its_message_and_exit_130(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    """``vactor ls`` held at its second LIST: SIGTERM killed it (exit -15, stderr empty)."""
    child = Child(tmp_path, ["--storage", store, "ls"], held_list="actors/")
    children.append(child)
    child.wait_held()
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(WAIT) == EXIT_INTERRUPTED, child
    child.finish()
    assert [line for line in child.err if line.startswith("vactor: ")] == ["vactor: error: interrupted\n"], (
        child
    )


# -- timers ls prints a page of the index at a time ----------------------------------------------------


def test_timers_ls_prints_its_first_rows_before_it_has_read_the_whole_index(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    child = Child(tmp_path, ["--storage", store, "timers", "ls"], held_list=keys.TIMER_INDEX)
    children.append(child)
    child.wait_held()
    header = child.wait_for_line("out", "DUE")
    child.wait_for_line("out", " t0 ")
    assert child.process.poll() is None, child
    assert header.split() == ["DUE", "LATE", "ACTOR", "KEY", "GEN"], child
    assert child.finish() == EXIT_OK, child
    rows = [line.split() for line in child.out[1:]]
    assert [row[3] for row in rows] == [f"t{n}" for n in range(300)], child


def test_timers_ls_json_writes_its_first_entries_before_it_has_read_the_whole_index(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    child = Child(tmp_path, ["--storage", store, "timers", "ls", "--json"], held_list=keys.TIMER_INDEX)
    children.append(child)
    child.wait_held()
    child.wait_for_line("out", '"key": "t0"')
    assert child.process.poll() is None, child
    assert child.finish() == EXIT_OK, child
    entries = json.loads("".join(child.out))
    assert [e["key"] for e in entries] == [f"t{n}" for n in range(300)]
    assert set(entries[0]) == {"due", "late_s", "actor", "key", "gen"}


# -- events: ls prints as it reads; drain under SIGTERM says how far it got ---------------------------


def _send_events(store: str, actor_ids: list[str]) -> None:
    vc.init(store)
    try:
        for actor_id in actor_ids:
            vc.send_event(actor_id, "ping", {"n": 1}, event_id=f"e-{actor_id}")
    finally:
        vc.shutdown()


def test_events_ls_prints_the_first_actors_events_before_every_inbox_is_asked(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    """Before, every actor's inbox was asked (a LIST each) and every event read before the
    first row: on a bucket of thousands, minutes of nothing. Held at the sixth LIST of actors/,
    past the first 32 actors (a page of inboxes asked at once)."""
    _send_events(store, ["a-0000", "a-0001", "a-0150"])
    child = Child(tmp_path, ["--storage", store, "events", "ls"], held_list="actors/#6")
    children.append(child)
    child.wait_held()
    child.wait_for_line("out", "e-a-0000")
    assert child.process.poll() is None, child
    assert child.finish() == EXIT_OK, child
    assert child.out[0].split()[:4] == ["ACTOR", "EVENT", "NAME", "SENT"], child
    assert [line.split()[1] for line in child.out[1:]] == ["e-a-0000", "e-a-0001", "e-a-0150"], child


def test_events_ls_json_stays_one_array_of_the_same_keys(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    _send_events(store, ["a-0000", "a-0150"])
    child = Child(tmp_path, ["--storage", store, "events", "ls", "--json"], held_list="actors/#6")
    children.append(child)
    child.wait_held()
    child.wait_for_line("out", '"event_id": "e-a-0000"')
    assert child.process.poll() is None, child
    assert child.finish() == EXIT_OK, child
    rows = json.loads("".join(child.out))
    assert [r["event_id"] for r in rows] == ["e-a-0000", "e-a-0150"]
    assert set(rows[0]) == {"actor", "event_id", "name", "sent", "status"}


def test_sigterm_during_events_drain_says_how_many_actors_were_drained(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    """SIGTERM killed ``events drain`` without a word (exit -15); it is Ctrl-C now."""
    _send_events(store, ["a-0000", "a-0001", "a-0002", "a-0003"])
    # (a-0002's inbox: its first LIST is the probe, its second the drain's)
    child = Child(tmp_path, ["--storage", store, "events", "drain"], held_list="actors/a-0002/inbox/#2")
    children.append(child)
    child.wait_held()
    child.process.send_signal(signal.SIGTERM)
    child.wait_for_line("err", "vactor: stopping")  # taken: the drain in flight may end now
    child.release()
    assert child.process.wait(WAIT) == EXIT_INTERRUPTED, child
    child.finish()
    last = [line for line in child.err if line.startswith("vactor: error:")]
    assert len(last) == 1 and "interrupted after draining 2 of 4 actors" in last[0], child


def test_events_drain_whose_reader_left_drains_every_actor_all_the_same(
    store: str, tmp_path: Path, children: list[Child]
) -> None:
    """``vactor events drain | head -1``: the line of the third actor drained met a
    BrokenPipeError, which ended the drain there (exit 0, the rest not drained). The lines after
    the reader left go nowhere now, and every actor is drained (its progress lines on stderr say)."""
    _send_events(store, ["a-0000", "a-0001", "a-0002", "a-0003"])
    drain = ["--storage", store, "events", "drain"]
    child = Child(tmp_path, drain, held_list="actors/a-0002/inbox/#2", stdout_lines=1)
    children.append(child)
    child.wait_held()
    child.wait_for_line("out", "a-0000")
    assert child.finish() == EXIT_OK, child
    assert any(line.startswith("draining 4/4 a-0003") for line in child.err), child
    assert not [line for line in child.err if line.startswith("vactor:")], child


def test_plain_progress_says_the_first_and_last_item_and_at_most_one_line_each_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Piped, a long command's progress went to stderr a line per actor: a cron job compacting
    10,000 actors logged 10,000 lines. Now the first, the last, and one per interval between."""
    from vactor_cloud.cli._output import progress

    with progress(500, "compacting", enabled=False, every=3600.0) as advance:
        for i in range(500):
            advance(f"a-{i}")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["compacting 1/500 a-0", "compacting 500/500 a-499"], lines
    with progress(3, "draining", enabled=False, every=0.0) as advance:
        for i in range(3):
            advance(f"b-{i}")
    assert capsys.readouterr().err.splitlines() == [f"draining {i + 1}/3 b-{i}" for i in range(3)]

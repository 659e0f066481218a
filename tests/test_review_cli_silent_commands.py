"""The ``vactor`` commands that were still silent, or held their output back (review-h132).

``compact ID`` said nothing while it deleted an actor's old steps (a 0/1 bar on a terminal);
``doctor`` printed its checks only at the end; ``events ls ID`` read every event of the inbox
before its first row; ``compact --all`` kept every actor's report for its summary; ``timers
tick`` left a "firing 0/0" bar on a terminal when nothing was due. Each test looks at what was
printed while the work still ran (by a hook at the moment of interest), not at timings.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from actors import Tally
from cli_harness import Vactor, copy_long_actor, seed_long_actor

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK
from vactor_cloud.compaction import compact

#: the actor's steps: compacted to the newest, 39 old ones go, in batches of 16, 16 and 7
STEPS = 40
FORCED = ["--keep-last", "1", "--min-age", "0", "--force"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_long_actor(tmp_path_factory.mktemp("silent-commands") / "store", STEPS)


@pytest.fixture
def long_actor(store: str, seeded: Path) -> str:
    return copy_long_actor(seeded, store)


def _interrupt_at_the_steps_delete(monkeypatch: pytest.MonkeyPatch, number: int, signum: int) -> None:
    """At the ``number``-th ``delete_many`` of steps, before it is sent: send ``signum`` to the
    main thread and hold that delete (until the interrupt cancels it; a minute at most)."""
    from vactor_cloud.storage import LocalStore

    real = LocalStore.delete_many
    calls = 0

    async def delete_many(store: Any, keys: Any) -> Any:
        nonlocal calls
        keys = list(keys)
        if keys and "/steps/" in keys[0]:
            calls += 1
            if calls == number:
                signal.pthread_kill(threading.main_thread().ident or 0, signum)
                await asyncio.sleep(60)
        return await real(store, keys)

    monkeypatch.setattr(LocalStore, "delete_many", delete_many)


# -- 1. compact ID: the steps deleted so far -----------------------------------------------------------


def test_compaction_tells_its_hook_the_steps_deleted_as_each_batch_lands(long_actor: str, store: str) -> None:
    told: list[tuple[int, int]] = []
    vc.init(store)
    try:
        log = vc.get_runtime().log(long_actor)
        report = _sync.sync(
            compact(log, 1, min_age=0, fresh_window=0, on_deleted=lambda n, of: told.append((n, of)))
        )
    finally:
        vc.shutdown()
    assert report.deleted_steps == STEPS - 1
    assert told == [(16, 39), (32, 39), (39, 39)], told


def test_compact_of_one_actor_says_the_steps_deleted_first_and_last_when_piped(
    vactor: Vactor, long_actor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped, ``vactor compact ID`` said ``compacting 1/1 long`` once it had deleted every step
    (an actor of a million steps: minutes of nothing). Now the steps deleted: the first batch,
    the last, and at most one line each interval between (an hour here: none between)."""
    from vactor_cloud.cli import _output

    monkeypatch.setattr(_output, "PLAIN_PROGRESS_EVERY", 3600.0)
    result = vactor("compact", long_actor, *FORCED)
    assert result.code == EXIT_OK, result
    assert result.err.splitlines() == ["deleting steps 16/39 long", "deleting steps 39/39 long"], result.err
    assert result.out.splitlines()[1].split()[:2] == ["long", "39"], result.out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_compact_of_one_actor_stops_and_says_how_many_steps_it_deleted(
    vactor: Vactor, long_actor: str, store: str, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM) on ``vactor compact ID`` waited for the whole compaction ("the
    compactions in flight finish"), then exited 0: an actor of a million steps could not be
    stopped. It stops now (safe anywhere: the steps left below the watermark are deleted by the
    next compaction) and says how far it got, exit 130."""
    _interrupt_at_the_steps_delete(monkeypatch, 3, signum)
    result = vactor("compact", long_actor, *FORCED)
    assert result.code == EXIT_INTERRUPTED, result
    last = [line for line in result.err.splitlines() if line.startswith("vactor: error:")]
    assert len(last) == 1 and "Traceback" not in result.err, result.err
    assert "interrupted after deleting 32 of the 39 old steps of actor 'long'" in last[0], last
    assert "run it again to finish" in last[0], last
    vc.init(store)
    try:
        left = _sync.sync(vc.get_runtime().log(long_actor).list_steps())
    finally:
        vc.shutdown()
    assert len(left) >= 1 and left[-1] == STEPS - 1, left  # the newest stays, whatever was cut short
    result = vactor("compact", long_actor, *FORCED)  # and the next run finishes the job
    assert result.code == EXIT_OK, result
    vc.init(store)
    try:
        assert _sync.sync(vc.get_runtime().log(long_actor).list_steps()) == [STEPS - 1]
    finally:
        vc.shutdown()


# -- 5. a bar whose total stays 0 is not left on the terminal ------------------------------------------


def test_a_progress_bar_whose_total_stays_0_is_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """``vactor timers tick`` with nothing due left ``firing 0/0`` on the terminal (its total grows
    as the index is listed, from 0). Shown once the total is above 0; never, if it stays 0."""
    from vactor_cloud.cli._output import progress

    capsys.readouterr()
    with progress(0, "firing", enabled=True):
        pass
    assert "0/0" not in capsys.readouterr().err
    with progress(0, "firing", enabled=True) as advance:
        advance.grow(2)
        advance("a")
        advance.many(1, "b")
    assert "2/2" in capsys.readouterr().err


# -- 4. compact --all keeps running totals, not every actor's report ---------------------------------


def test_compact_all_holds_no_report_of_the_batches_it_printed(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compact --all`` kept every actor's report for its summary (the HELD line, the
    unresumable calls, the count of those compacted): memory grew with the bucket. Counted when
    the last actor is compacted: the reports alive then are at most a batch's (8)."""
    import gc

    from vactor_cloud import compaction

    vc.init(store)
    try:
        for n in range(24):
            Tally.get_or_create(f"a-{n:02d}").incr.run()
    finally:
        vc.shutdown()
    alive: list[int] = []
    real = compaction.compact

    async def counting_compact(log: Any, *args: Any, **kwargs: Any) -> Any:
        if log.actor_id == "a-23":
            alive.append(sum(isinstance(o, compaction.CompactionReport) for o in gc.get_objects()))
        return await real(log, *args, **kwargs)

    monkeypatch.setattr(compaction, "compact", counting_compact)
    result = vactor("compact", "--all", *FORCED)
    assert result.code == EXIT_OK, result
    assert len(result.out.splitlines()) == 25, result.out
    (count,) = alive
    assert count <= 8, count


# -- 2. doctor prints each check as it is done -------------------------------------------------------


def test_doctor_prints_each_check_as_it_is_done(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vactor doctor`` printed its checks at the end: on a stalled endpoint, up to ~20 s of
    nothing, then everything. What stdout held when the third check's request (the read back)
    was sent: the rows of the first two. The exit code and the verdict as before."""
    from vactor_cloud.storage import LocalStore

    real = LocalStore.get
    before_read: list[str] = []

    async def get(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if "_vactor_doctor/" in key and not before_read:
            before_read.append(capsys.readouterr().out)
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", get)
    result = vactor("doctor", store)
    assert result.code == EXIT_OK, result
    (before,) = before_read
    assert [line.split()[:2] for line in before.splitlines()] == [["ok", "write"], ["ok", "atomic"]], before
    rows = (before + result.out).splitlines()
    assert [row.split()[1] for row in rows[:6]] == ["write", "atomic", "read", "if-match", "if-match", "list"]
    assert rows[-1].endswith("every guarantee vactor_cloud needs holds"), rows


# -- 3. events ls of one actor: a page of its inbox at a time ----------------------------------------


#: events in the inbox: pages of 128, 128 and 44
EVENTS = 300


def test_events_ls_of_one_actor_prints_its_first_events_before_it_reads_the_last(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vactor events ls --actor ID`` listed, read and sorted every event of the inbox before its
    first row: an inbox of a million events was held whole, and waited for. Now a page of keys
    at a time, in key (event id) order: stdout holds the first page's rows when the last event
    is read."""
    from vactor_cloud.storage import LocalStore

    vc.init(store)
    try:
        Tally.get_or_create("inbox")
        for n in range(EVENTS):
            vc.send_event("inbox", "ping", {"n": n}, event_id=f"e-{n:03d}")
    finally:
        vc.shutdown()
    real = LocalStore.get
    before_last: list[str] = []

    async def get(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith(f"/inbox/e-{EVENTS - 1:03d}"):
            before_last.append(capsys.readouterr().out)
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", get)
    result = vactor("events", "ls", "--actor", "inbox")
    assert result.code == EXIT_OK, result
    (before,) = before_last
    lines = before.splitlines()
    assert lines and lines[0].split()[:4] == ["ACTOR", "EVENT", "NAME", "SENT"], before
    assert [line.split()[1] for line in lines[1:3]] == ["e-000", "e-001"], before
    everything = (before + result.out).splitlines()
    assert [line.split()[1] for line in everything[1:]] == [f"e-{n:03d}" for n in range(EVENTS)]
    assert {line.split(maxsplit=4)[4][:16] for line in everything[1:]} == {"kept: no handler"}

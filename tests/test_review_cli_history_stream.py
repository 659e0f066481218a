"""``vactor history --limit all`` (review-h130): printed as it is read, a page at a time.

Before, ``history`` read every step (``history(limit=None)``, all held in one list, within one
``Settings.deadline``) and only then printed its table or its JSON array: on an actor of tens of
thousands of steps it looked hung, held every row, and could end in a deadline error having
shown nothing. Each test here looks at what stdout holds when the oldest step is read: the
first rows were printed by then. Not by timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_harness import BrokenStream, Vactor, copy_long_actor, seed_long_actor

from vactor_cloud import history as history_module
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK
from vactor_cloud.log import ActorLog

#: steps of the actor: pages of 64, 64 and 2
STEPS = 130


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_long_actor(tmp_path_factory.mktemp("history-stream") / "store", STEPS)


@pytest.fixture
def long_actor(store: str, seeded: Path) -> str:
    return copy_long_actor(seeded, store)


@pytest.fixture
def out_when_step_0_is_read(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What stdout held (the text written since the command began) when step 0 was read."""
    seen: list[str] = []
    real_read_step = ActorLog.read_step

    async def read_step(log: ActorLog, step: int) -> Any:
        if step == 0 and not seen:
            seen.append(capsys.readouterr().out)
        return await real_read_step(log, step)

    monkeypatch.setattr(ActorLog, "read_step", read_step)
    return seen


def test_history_limit_all_prints_its_first_rows_before_it_reads_the_oldest_step(
    vactor: Vactor, long_actor: str, out_when_step_0_is_read: list[str]
) -> None:
    result = vactor("history", long_actor, "--limit", "all")
    assert result.code == EXIT_OK, result
    (before,) = out_when_step_0_is_read
    lines = before.splitlines()
    assert lines and lines[0].split() == ["STEP", "TIME", "WRITER", "CALLS"], before
    assert lines[1].split()[0] == str(STEPS - 1), before
    everything = (before + result.out).splitlines()
    assert [line.split()[0] for line in everything[1:]] == [str(n) for n in reversed(range(STEPS))]
    assert sum(1 for line in everything if line.startswith("STEP")) == 1  # the header once


def test_history_limit_all_json_writes_its_first_elements_before_it_reads_the_oldest_step(
    vactor: Vactor, long_actor: str, out_when_step_0_is_read: list[str]
) -> None:
    result = vactor("history", long_actor, "--limit", "all", "--json")
    assert result.code == EXIT_OK, result
    (before,) = out_when_step_0_is_read
    assert f'"step": {STEPS - 1},' in before, before[:300]
    entries = json.loads(before + result.out)
    assert [e["step"] for e in entries] == list(reversed(range(STEPS)))
    assert set(entries[0]) >= {"step", "parent", "time", "when", "writer", "class", "calls"}


def test_history_holds_a_page_of_steps_at_a_time(
    vactor: Vactor, long_actor: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The entries made (read) and not yet printed, as each page is read: at most a page (64)."""
    made = []
    real = history_module.HistoryEntry.from_record

    def counted(record: Any) -> Any:
        made.append(record.step)
        return real(record)

    monkeypatch.setattr(history_module.HistoryEntry, "from_record", counted)
    printed: list[str] = []
    held: list[int] = []
    real_page = history_module._history_pages

    async def watched(*args: Any, **kwargs: Any) -> Any:
        async for page in real_page(*args, **kwargs):
            printed.append(capsys.readouterr().out)
            held.append(len(made) - len("".join(printed).splitlines()[1:]))
            yield page

    monkeypatch.setattr(history_module, "_history_pages", watched)
    result = vactor("history", long_actor, "--limit", "all")
    assert result.code == EXIT_OK, result
    rows = "".join([*printed, result.out]).splitlines()[1:]
    assert [line.split()[0] for line in rows] == [str(n) for n in reversed(range(STEPS))]
    assert len(held) == 3 and max(held) <= 64, held


def _interrupted_after_first_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C as the second page is asked for (a KeyboardInterrupt on the main thread)."""
    real = history_module.iter_history

    def interrupted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        pages = real(*args, **kwargs)
        try:
            yield next(pages)
            raise KeyboardInterrupt
        finally:
            pages.close()

    monkeypatch.setattr(history_module, "iter_history", interrupted)


def test_an_interrupted_history_says_how_many_steps_it_printed(
    vactor: Vactor, long_actor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupted_after_first_page(monkeypatch)
    result = vactor("history", long_actor, "--limit", "all")
    assert result.code == EXIT_INTERRUPTED, result
    rows = result.out.splitlines()[1:]
    assert [line.split()[0] for line in rows] == [str(n) for n in reversed(range(STEPS - 64, STEPS))]
    (line,) = [line for line in result.err.splitlines() if line.startswith("vactor:")]
    assert "interrupted after printing 64 steps" in line, result.err
    as_json = vactor("history", long_actor, "--limit", "all", "--json")
    assert as_json.code == EXIT_INTERRUPTED, as_json
    assert as_json.out.startswith("[\n") and not as_json.out.rstrip().endswith("]"), as_json.out[-200:]
    assert "interrupted after printing 64 steps" in as_json.err, as_json.err


def test_history_whose_reader_left_ends_quietly(
    vactor: Vactor, long_actor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor history ID --limit all | head``: as ``ls | head``, exit 0 and nothing said."""
    import sys

    monkeypatch.setattr(sys, "stdout", BrokenStream())
    result = vactor("history", long_actor, "--limit", "all")
    assert result.code == EXIT_OK, result
    assert result.err == "", result.err

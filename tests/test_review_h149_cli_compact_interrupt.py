"""Review h149: ``vactor compact --all`` interrupted between two batches says none was in flight.

Its last line said "the actors being compacted at the time (up to 8) may keep some old steps
until their next compaction" wherever the Ctrl-C landed: also while the next chunk of ids was
being listed, or between two batches, when no compaction was running and every actor not
compacted yet was untouched. It now says so there, and keeps the old words for a Ctrl-C that
stops a batch (which, on the main thread, only a second one does: ``SettledInterrupts``).
"""

from __future__ import annotations

from typing import Any

import pytest
from actors import Tally
from cli_harness import Vactor, interrupt_the_second_chunk_listing

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_INTERRUPTED
from vactor_cloud.cli import compact as compact_cli

pytestmark = pytest.mark.vactor_lanes("local")

IDS = [f"m{n}" for n in range(6)]
COMPACT = ("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force")


def _seed(store: str) -> None:
    vc.init(store)
    try:
        for actor_id in IDS:
            Tally.get_or_create(actor_id).incr.run()
            Tally.get_or_create(actor_id).incr.run()
    finally:
        vc.shutdown()


def _last_line(result: Any) -> str:
    assert result.code == EXIT_INTERRUPTED, result
    lines = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def test_interrupted_while_the_next_chunk_is_listed_says_no_actor_was_being_compacted(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: "interrupted after compacting 2 of the 2 actors listed so far; the actors being
    compacted at the time (up to 8) may keep some old steps until their next compaction". (And
    where it said what was untouched, "the other 0 listed so far, and those after them".)"""
    _seed(store)
    interrupt_the_second_chunk_listing(monkeypatch, 2)
    line = _last_line(vactor(*COMPACT))
    assert "interrupted after compacting 2 of the 2 actors listed so far" in line, line
    assert "being compacted at the time" not in line, line
    assert "none was being compacted" in line and "those not listed yet were not touched" in line, line
    assert "run it again to finish" in line, line


def test_interrupted_between_two_batches_of_a_chunk_says_no_actor_was_being_compacted(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of 6 ids in batches of 2: the Ctrl-C lands as the second batch is handed out."""
    _seed(store)
    monkeypatch.setattr(compact_cli, "_COMPACT_CONCURRENCY", 2)
    real = compact_cli._batches
    handed: list[list[str]] = []

    def batches_then_interrupt(*args: Any) -> Any:
        for batch in real(*args):
            if handed:
                raise KeyboardInterrupt
            handed.append(batch)
            yield batch

    monkeypatch.setattr(compact_cli, "_batches", batches_then_interrupt)
    line = _last_line(vactor(*COMPACT))
    assert "interrupted after compacting 2 of 6 actors" in line, line
    assert "being compacted at the time" not in line, line
    assert "none was being compacted" in line and "the other 4 were not touched" in line, line


def test_interrupted_during_a_batch_still_says_those_in_flight_may_keep_old_steps(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other case keeps its words: a batch cut short (here its compactions raise the
    interrupt, as a second Ctrl-C or one off the main thread would leave them)."""
    _seed(store)

    def gathered_then_interrupt(coroutines: list[Any]) -> Any:
        for coroutine in coroutines:
            coroutine.close()
        raise KeyboardInterrupt  # (on the command's thread, as the batch is handed to the loop)

    monkeypatch.setattr(compact_cli, "_gathered", gathered_then_interrupt)
    line = _last_line(vactor(*COMPACT))
    assert "interrupted after compacting 0 of 6 actors" in line, line
    assert "the actors being compacted at the time (up to 8) may keep some old steps" in line, line

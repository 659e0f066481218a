"""The ``vactor`` command as an operator of a store of many actors uses it (review h117): its
tables with long and wide ids, on a terminal and piped.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from actors import Shelf
from cli_harness import Vactor
from rich.cells import cell_len

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_OK
from vactor_cloud.storage import ObjectStore

#: ids a terminal shows wider (CJK, emoji: two columns a character) or narrower (a combining
#: accent: none) than their ``len``
WIDE_IDS = ("日本語のアクター", "emoji-🎉🎉", "e\u0301-accent", "plain")


def _create(store: str, *actor_ids: str) -> None:
    vc.init(store)
    try:
        for actor_id in actor_ids:
            Shelf.get_or_create(actor_id)
    finally:
        vc.shutdown()


def _column_starts(line: str) -> list[int]:
    """The display column at which each field of a plain table's line starts."""
    starts: list[int] = []
    shown = 0
    previous = " "
    for character in line:
        if character != " " and previous == " ":
            starts.append(shown)
        shown += cell_len(character)
        previous = character
    return starts


@pytest.mark.parametrize("command", [("ls",), ("compact", "--all", "--keep-last", "1")])
def test_piped_tables_stay_aligned_with_wide_and_combining_characters(
    vactor: Vactor, store: str, command: tuple[str, ...]
) -> None:
    """docs/cli.md: piped output is aligned text. Before, columns were padded by ``len``: an id
    of CJK characters or emoji (two columns each on a terminal) pushed its row's other columns
    right of the header's, and a combining accent (no column) pulled them left. Now padding
    counts the columns a terminal shows."""
    _create(store, *WIDE_IDS)
    result = vactor(*command)
    assert result.code == EXIT_OK, result
    lines = result.out.splitlines()
    assert len(lines) == 1 + len(WIDE_IDS), result.out
    header = _column_starts(lines[0])
    for line in lines[1:]:
        assert _column_starts(line)[: len(header)] == header, (lines[0], line)


def test_ls_on_a_narrow_terminal_keeps_every_column_of_an_id_longer_than_the_width(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``vactor ls`` on a terminal narrower than an id (``COLUMNS=80``, an id of 120
    characters) printed the ACTOR column alone, the id cut at the terminal's edge: its columns
    kept the width of their widest cell as a minimum, which rich honoured by dropping CLASS,
    STEP and CHANGED. Now the widest columns give way, and a long id wraps in its cell."""
    long_id = "a" * 110 + "-tail"
    _create(store, long_id, "short")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    result = vactor("ls")
    assert result.code == EXIT_OK, result
    shown = re.sub(r"\x1b\[[0-9;]*m", "", result.out)  # (NO_COLOR keeps bold)
    assert all(name in shown for name in ("ACTOR", "CLASS", "STEP", "CHANGED")), result.out
    assert "-tail" in shown, shown  # the id's end is shown (wrapped), not cut
    assert "actors:Shelf" in shown and "UTC" in shown, shown
    assert max(cell_len(line) for line in shown.splitlines()) <= 80, shown


# -- events without --actor on a store of many actors -------------------------------------------


def test_events_ls_looks_at_many_actors_inboxes_at_once(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``vactor events ls`` (and ``drain``) without ``--actor`` asked each actor's inbox
    for a key one actor after another: on S3 (tens of ms a LIST) a bucket of thousands of actors
    was minutes of silence before the first line. The inboxes are now asked a page of actors at
    a time. Pinned by ordering, not time: each inbox's LIST waits (2 s at most) until another is
    in flight, which one after another never is."""
    _create(store, "a", "b", "c")
    in_flight = 0
    most = 0
    two_at_once = asyncio.Event()
    gave_up = False
    listing = ObjectStore.list

    async def list_waiting_for_another(self: ObjectStore, prefix: str, **kwargs: Any) -> list[str]:
        nonlocal in_flight, most, gave_up
        if not prefix.endswith("/inbox/"):
            return await listing(self, prefix, **kwargs)
        in_flight += 1
        most = max(most, in_flight)
        try:
            if in_flight >= 2:
                two_at_once.set()
            if not gave_up:
                try:
                    await asyncio.wait_for(two_at_once.wait(), 2.0)
                except TimeoutError:
                    gave_up = True
            return await listing(self, prefix, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(ObjectStore, "list", list_waiting_for_another)
    result = vactor("events", "ls", "--json")
    assert result.code == EXIT_OK, result
    assert result.json() == []
    assert most >= 2, "the inboxes were asked one after another"


# -- --json: the keys docs/cli.md lists -----------------------------------------------------------


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int) -> int:
        self.n += by
        return self.n

    def remind(self) -> None:
        vc.current_call().schedule("add", after=3600, args=(1,), key="later")


#: documented rows not run here: ``bench`` (test_bench_smoke runs it) and ``timers run`` (a
#: long-running process; its document is ``timers tick``'s, as the row says)
_NOT_RUN = {"bench", "timers run"}


def _documented_json() -> dict[str, tuple[set[str], set[str]]]:
    """docs/cli.md's "JSON documents" table: command -> (keys always there, keys when they hold)."""
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    table = text.split("## JSON documents", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, tuple[set[str], set[str]]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        keys, optional = (set(re.findall(r"`([a-z_]+)`", cell)) for cell in cells[1:])
        for command in re.findall(r"`([a-z ]+)`", cells[0]):
            name = command + (" calls" if "calls" in cells[0] else " checks" if "checks" in cells[0] else "")
            documented[name] = (keys, optional)
    return documented


def test_every_json_document_has_the_keys_docs_cli_md_lists(vactor: Vactor, store: str) -> None:
    """docs/cli.md promised ``--json`` for every command but named no key: a script had to guess
    them from one run, and ``events drain`` gave ``deleted`` to a deleted actor's line only (a
    script reading ``line["deleted"]`` failed on every other line). The keys are now listed, and
    each object of each command's document has its row's keys (``deleted`` on every drain line)."""
    vc.init(store)
    try:
        acct = Ledger.get_or_create("acct")
        acct.add.run(2)
        acct.remind.run()
        vc.send_event("acct", "ping", 1, event_id="e1")  # no handler: kept, listed, drained
        Ledger.get_or_create("doomed")
        Ledger.get_or_create("gone")
        vc.send_event("gone", "ping", 2, event_id="e2")
        vc.delete_actor("gone")
    finally:
        vc.shutdown()

    def run(*argv: str) -> Any:
        result = vactor(*argv, "--json")
        assert result.code == EXIT_OK, result
        return result.json()

    history = run("history", "acct")
    doctor = run("doctor")
    found: dict[str, list[dict[str, Any]]] = {
        "ls": run("ls"),
        "show": [run("show", "acct")],
        "history": history,
        "history calls": [call for entry in history for call in entry["calls"]],
        "call": [run("call", "acct", "add", "1")],
        "compact": run("compact", "acct", "--keep-last", "1"),
        "delete": [run("delete", "doomed", "--yes")],
        "doctor": [doctor],
        "doctor checks": doctor["checks"],
        "events ls": run("events", "ls"),
        "events drain": run("events", "drain"),
        "timers tick": [run("timers", "tick")],
        "timers ls": run("timers", "ls"),
        "timers repair": [run("timers", "repair")],
    }
    documented = _documented_json()
    assert set(documented) - _NOT_RUN == set(found), "a documented command is not run here, or not documented"
    assert any(line.get("deleted") for line in found["events drain"]), found["events drain"]
    for command, objects in found.items():
        keys, optional = documented[command]
        assert objects, command
        for value in objects:
            assert keys <= set(value) <= keys | optional, (command, sorted(value), sorted(keys))


# -- Ctrl-C while a long command lists the actors ---------------------------------------------------


@pytest.mark.parametrize(
    ("module", "lister", "command", "said"),
    [
        ("compact", "_all_actor_ids", ("compact", "--all", "--keep-last", "1"), "nothing was compacted"),
        ("timers", "_every_actor_id", ("timers", "repair"), "nothing was repaired"),
    ],
)
def test_ctrl_c_while_listing_the_actors_says_nothing_was_done_yet(
    vactor: Vactor,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    lister: str,
    command: tuple[str, ...],
    said: str,
) -> None:
    """``compact --all`` and ``timers repair`` first list every actor (seconds on a bucket of
    thousands, before the first progress line). Before, a Ctrl-C then said ``vactor: error:
    interrupted`` alone, where a Ctrl-C later says how many actors were done: now it says that
    none was (exit 130, as before)."""
    import importlib

    from vactor_cloud.cli import EXIT_INTERRUPTED

    _create(store, "a", "b")

    def ctrl_c_as_it_lists(*_counted: object) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(f"vactor_cloud.cli.{module}"), lister, ctrl_c_as_it_lists)
    result = vactor(*command)
    assert result.code == EXIT_INTERRUPTED, result
    assert result.err.strip().splitlines() == [
        f"vactor: error: interrupted while listing the actors: {said}"
    ], result.err


# -- compact --all on a store of many actors --------------------------------------------------------


def test_compact_all_compacts_several_actors_at_once(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``vactor compact --all`` compacted one actor after another: a few round trips
    each, so on S3 a bucket of thousands of actors took hours (300 actors: 12 s on a local moto
    server). Actors are now compacted a few at a time. Pinned by ordering, not time: each
    compaction waits (2 s at most) until another is in flight, which one after another never is;
    the report still lists every actor, in id order."""
    from vactor_cloud import compaction

    _create(store, "a", "b", "c")
    in_flight = 0
    most = 0
    two_at_once = asyncio.Event()
    gave_up = False
    real_compact = compaction.compact

    async def compact_waiting_for_another(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most, gave_up
        in_flight += 1
        most = max(most, in_flight)
        try:
            if in_flight >= 2:
                two_at_once.set()
            if not gave_up:
                try:
                    await asyncio.wait_for(two_at_once.wait(), 2.0)
                except TimeoutError:
                    gave_up = True
            return await real_compact(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(compaction, "compact", compact_waiting_for_another)
    result = vactor("compact", "--all", "--keep-last", "1", "--json")
    assert result.code == EXIT_OK, result
    assert [report["actor_id"] for report in result.json()] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert most >= 2, "the actors were compacted one after another"

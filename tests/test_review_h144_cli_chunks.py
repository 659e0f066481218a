"""``vactor timers repair`` over every actor (review-h144): it listed every actor id into one
list before the first actor was repaired (ten million actors: gigabytes of ids, and nothing
done until the listing ended), as ``compact --all`` and ``events drain`` did before h142. It now
lists a chunk of ids (``vactor_cloud/cli/_chunks.py``), repairs it, then lists the next: the ids
held at once are a chunk's, whatever the bucket holds; its output and totals are as before.

The watch on the local store's requests is h142's (``test_review_h142_cli_chunks.HeldIds``): at
each page of the id listing, the ids listed and not yet worked on are the ones the command holds.
No timing assertions."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from actors import Tally
from cli_harness import Vactor
from test_review_h142_cli_chunks import CHUNK, PAGE, HeldIds
from test_review_h142_cli_chunks import held as h142_held

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK
from vactor_cloud.cli import timers as timers_cli

#: actors in the store (each with one pending timer); actors ``repair`` repairs at a time
ACTORS = 40
SLICE = 4

held = h142_held  # (the fixture, under the name the tests ask for)


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch, held: HeldIds) -> Iterator[HeldIds]:
    monkeypatch.setattr(timers_cli, "_REPAIR_SLICE", SLICE)
    yield held


def _seed(store: str) -> list[str]:
    ids = [f"a-{n:03d}" for n in range(ACTORS)]
    vc.init(store)
    try:
        for actor_id in ids:
            Tally.get_or_create(actor_id).incr.options(delay=3600).run()
    finally:
        vc.shutdown()
    return ids


def test_timers_repair_holds_a_chunk_of_ids_at_most_and_repairs_every_actor(
    store: str, vactor: Vactor, sliced: HeldIds
) -> None:
    """Before: every id listed (40) before the first repair."""
    ids = _seed(store)
    sliced.clear()
    result = vactor("timers", "repair", "--json")
    assert result.code == EXIT_OK, result
    assert json.loads(result.out) == {"indexed": ACTORS}
    assert sliced.listed == set(ids) and sliced.worked >= set(ids)
    # (a chunk, and the rest of the page that completed it)
    assert sliced.most <= CHUNK + PAGE, sliced.most
    plain = vactor("timers", "repair")
    assert plain.code == EXIT_OK, plain
    assert plain.out.strip() == f"indexed {ACTORS} pending timers", plain


def test_timers_repair_interrupted_before_the_listing_ended_names_the_actors_listed_so_far(
    store: str, vactor: Vactor, sliced: HeldIds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C in the second slice: "1 slice of the actors listed so far" (the total is not
    known yet), and running it again is harmless, as before."""
    _seed(store)
    real_repair = timers_cli.repair_timer_index
    calls: list[list[str]] = []

    def repair_then_interrupt(actor_ids: list[str]) -> int:
        calls.append(list(actor_ids))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_repair(actor_ids)

    monkeypatch.setattr(timers_cli, "repair_timer_index", repair_then_interrupt)
    result = vactor("timers", "repair")
    assert result.code == EXIT_INTERRUPTED, result
    (line,) = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    assert f"interrupted after repairing {SLICE} of the " in line and "actors listed so far" in line, line
    assert "run it again" in line, line

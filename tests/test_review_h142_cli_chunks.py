"""``vactor compact --all`` and ``vactor events drain`` over every actor (review-h142): each
listed every actor id into one list before the first actor was worked on (ten million actors:
gigabytes of ids, and nothing done until the listing ended). They now list a chunk of ids, work
through it, then list the next: the ids held at once are a chunk's, whatever the bucket holds;
their output and totals are as before.

A watch on the local store's requests tells the id listing (LIST of ``actors/``) from the work
on one actor (any request under ``actors/<id>/``): at each page of the listing, the ids listed
and not yet worked on are the ones the command holds. No timing assertions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from actors import Tally
from cli_harness import Vactor

import vactor_cloud as vc
from vactor_cloud import history
from vactor_cloud.cli import EXIT_OK, _chunks
from vactor_cloud.cli import events as events_cli
from vactor_cloud.events import send_event
from vactor_cloud.storage import LocalStore

#: actors in the store; the chunk the commands list at most at once; keys per listing page;
#: inboxes ``events drain`` asks at once
ACTORS = 40
CHUNK = 6
PAGE = 8
PROBES = 4


class HeldIds:
    """Watches the local store's requests: the actor ids listed and not yet worked on, at their
    most (``most``), as each page of the id listing is asked for."""

    def __init__(self) -> None:
        self.listed: set[str] = set()
        self.worked: set[str] = set()
        self.most = 0

    def clear(self) -> None:
        """Forget the requests so far (the seeding's)."""
        self.__init__()  # type: ignore[misc]

    def listing(self, keys: list[str]) -> None:
        self.most = max(self.most, len(self.listed - self.worked))
        self.listed.update(key.split("/")[1] for key in keys)

    def touched(self, key: str) -> None:
        parts = key.split("/")
        if len(parts) > 2 and parts[0] == "actors":
            self.worked.add(parts[1])


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldIds]:
    watch = HeldIds()
    # (the lowest functions both paths reach: a request on the IO loop and one on the calling thread)
    real_scan, real_read = LocalStore._scan, LocalStore._read

    def _scan(store: Any, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        keys: list[str] = real_scan(store, prefix, start_after, limit)
        if prefix == "actors/":
            watch.listing(keys)
        elif not prefix.endswith("/inbox/"):  # (``events drain`` asks each inbox first: no work yet)
            watch.touched(prefix)
        return keys

    def _read(store: Any, key: str, **options: Any) -> Any:
        watch.touched(key)
        return real_read(store, key, **options)

    monkeypatch.setattr(LocalStore, "_scan", _scan)
    monkeypatch.setattr(LocalStore, "_read", _read)
    monkeypatch.setattr(_chunks, "CHUNK", CHUNK)
    monkeypatch.setattr(history, "_ID_PAGE", PAGE)
    monkeypatch.setattr(events_cli, "_PROBE_CONCURRENCY", PROBES)
    yield watch


def _seed(store: str, *, events: bool) -> list[str]:
    ids = [f"a-{n:03d}" for n in range(ACTORS)]
    vc.init(store)
    try:
        for actor_id in ids:
            Tally.get_or_create(actor_id).incr.run()
            if events:
                send_event(actor_id, "nothing-handles-it", 1, event_id=f"e-{actor_id}")
    finally:
        vc.shutdown()
    return ids


def test_compact_all_holds_a_chunk_of_ids_at_most_and_compacts_every_actor(
    store: str, vactor: Vactor, held: HeldIds
) -> None:
    """Before: every id listed (40) before the first compaction."""
    ids = _seed(store, events=False)
    held.clear()
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force", "--json")
    assert result.code == EXIT_OK, result
    assert sorted(r["actor_id"] for r in json.loads(result.out)) == ids
    assert held.listed == set(ids) and held.worked >= set(ids)
    # (a chunk, and the rest of the page that completed it)
    assert held.most <= CHUNK + PAGE, held.most


def test_events_drain_holds_a_chunk_of_ids_at_most_and_drains_every_actor(
    store: str, vactor: Vactor, held: HeldIds
) -> None:
    """Before: every id with events listed (40) before the first drain."""
    ids = _seed(store, events=True)
    held.clear()
    result = vactor("events", "drain", "--json")
    assert result.code == EXIT_OK, result
    assert sorted(line["actor"] for line in json.loads(result.out)) == ids
    assert held.listed == set(ids) and held.worked >= set(ids)
    # (a chunk, the inboxes asked with its last, and the rest of the page that completed those)
    assert held.most <= CHUNK + PROBES + PAGE, held.most


def test_id_chunks_say_how_far_the_listing_got_and_name_a_total_not_known_yet() -> None:
    """What an interrupted command says of its progress: "N of M actors" once the listing has
    ended, "N of the M actors listed so far" before."""

    async def pages(found: Any) -> Any:
        for page in (["a", "b", "c", "d"], ["e", "f", "g", "h"], ["i"]):
            for _ in page:
                found()
            yield page

    vc.init("memory://h142-chunks")
    try:
        counted: list[int] = []
        chunks = _chunks.IdChunks(pages)
        chunks.found = lambda: counted.append(1)
        original = _chunks.CHUNK
        _chunks.CHUNK = 5
        try:
            assert chunks.next() == list("abcdefgh")  # (whole pages, to at least a chunk)
            assert chunks.of_listed(3) == "3 of the 8 actors listed so far"
            assert chunks.next() == ["i"] and chunks.complete
            assert chunks.of_listed(9) == "9 of 9 actors"
            assert chunks.next() == []
        finally:
            _chunks.CHUNK = original
        assert len(counted) == 9
    finally:
        vc.shutdown()

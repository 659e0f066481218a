"""``vactor_cloud.timer_runner.repair_timer_index()`` without ``actor_ids`` (review-h144): it
listed every object key under ``actors/`` in one LIST (every step of every actor, its inbox and
HEAD: on a bucket of ten million actors, far more keys than actors) and held them all before the
first actor was repaired. It now pages through the actor ids (``history.iter_actor_ids``) and
repairs them a chunk at a time, each chunk listed once the one before is repaired.

The watch on the local store's requests is h142's idea: at each page of the ``actors/`` listing,
the actor ids listed and not yet worked on are the ones held. No timing assertions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from actors import Tally

import vactor_cloud as vc
from vactor_cloud import history, timer_repair, timer_runner
from vactor_cloud.storage import LocalStore

pytestmark = pytest.mark.vactor_lanes("local")

#: actors in the store (each with one pending timer and a few steps); ids repaired at a time;
#: keys per listing page
ACTORS = 30
CHUNK = 6
PAGE = 8


class Held:
    """The actor ids listed under ``actors/`` and not yet worked on, at their most, and the
    keys each listing returned at most."""

    def __init__(self) -> None:
        self.listed: set[str] = set()
        self.worked: set[str] = set()
        self.most = 0
        self.widest = 0

    def listing(self, keys: list[str]) -> None:
        self.listed.update(key.split("/")[1] for key in keys)
        self.most = max(self.most, len(self.listed - self.worked))
        self.widest = max(self.widest, len(keys))

    def touched(self, key: str) -> None:
        parts = key.split("/")
        if len(parts) > 2 and parts[0] == "actors":
            self.worked.add(parts[1])


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    watch = Held()
    real_scan, real_read = LocalStore._scan, LocalStore._read

    def _scan(store: Any, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        keys: list[str] = real_scan(store, prefix, start_after, limit)
        if prefix == "actors/":
            watch.listing(keys)
        else:
            watch.touched(prefix)
        return keys

    def _read(store: Any, key: str, **options: Any) -> Any:
        watch.touched(key)
        return real_read(store, key, **options)

    monkeypatch.setattr(LocalStore, "_scan", _scan)
    monkeypatch.setattr(LocalStore, "_read", _read)
    monkeypatch.setattr(timer_repair, "_REPAIR_CHUNK", CHUNK, raising=False)
    monkeypatch.setattr(history, "_ID_PAGE", PAGE)
    yield watch


def test_repair_timer_index_of_every_actor_holds_a_chunk_of_ids_and_repairs_them_all(
    store: str, held: Held
) -> None:
    """Before: one LIST of every key under ``actors/`` (30 actors' steps, HEADs...), every id held
    before the first repair."""
    vc.init(store)
    try:
        for n in range(ACTORS):
            handle = Tally.get_or_create(f"a-{n:03d}")
            handle.incr.run()
            handle.incr.options(delay=3600).run()
        held.__init__()  # type: ignore[misc]  # (the seeding's requests forgotten)
        assert timer_runner.repair_timer_index() == ACTORS
    finally:
        vc.shutdown()
    assert held.listed == {f"a-{n:03d}" for n in range(ACTORS)}
    assert held.worked >= held.listed
    assert held.widest <= PAGE, held.widest  # (pages, not one LIST of everything)
    # (a chunk, and the rest of the page that completed it)
    assert held.most <= CHUNK + PAGE, held.most

"""The local store's remembered versions (review-h167 of h166's ``_versions_read``).

Every read remembers its object's version, the oldest read forgotten past ``_VERSIONS_READ``.
The oldest was found by ``next(iter(dict))``: a plain dict keeps the slots of the keys deleted
from its front until it is next resized, and iteration walks over them from the start, so once a
store had read more than the bound (a runtime touching 16,384 keys: a few thousand actors),
every read walked thousands of dead slots (7 to 13 µs a read against 0.3 µs under the bound, where a
warm ``get`` costs about 15 µs: ``scripts/bench_versions_read.py``). The oldest are now forgotten a
sixteenth of the bound at a time: one walk per that many reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vactor_cloud.storage import _local
from vactor_cloud.storage._local import LocalStore

_KEYS = [f"actors/a/inbox/evt-{n}" for n in range(6)]


class _CountedWalks(dict[str, object]):
    """Remembered versions that count the walks from their front (iterations)."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        _CountedWalks.walks += 1
        return super().__iter__()


def test_forgetting_the_oldest_versions_walks_them_once_per_sixteenth_of_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound, a walk from the front forgets a sixteenth of it at once: 400 reads past
    a bound of 64 walk at most 400 / 4 times (one walk a read before), the newest kept."""
    monkeypatch.setattr(_local, "_VERSIONS_READ", 64)
    monkeypatch.setattr(_CountedWalks, "walks", 0)
    store = LocalStore(tmp_path)
    keys = [f"actors/a/inbox/evt-{n:04d}" for n in range(464)]
    for key in keys:
        store.put_now(key, b"payload", mode="create")
    store._versions_read = _CountedWalks()  # type: ignore[assignment]
    for key in keys:
        store.get_now(key)
    assert _CountedWalks.walks <= 400 // 4
    remembered = list(dict.keys(store._versions_read))
    assert 64 <= len(remembered) <= 64 + 4
    assert remembered == keys[-len(remembered) :]


def test_versions_read_past_the_bound_stay_bounded_and_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many more keys read than the bound: the newest kept, each listed at its version."""
    monkeypatch.setattr(_local, "_VERSIONS_READ", 50)
    store = LocalStore(tmp_path)
    keys = [f"actors/a/inbox/evt-{n:04d}" for n in range(400)]
    versions = {key: store.put_now(key, b"p", mode="create") for key in keys}
    for key in keys:
        store.get_now(key)
    kept = len(store._versions_read)
    assert 50 <= kept <= 50 + 50 // 16
    listed = store.list_now("actors/a/inbox/").versions  # type: ignore[attr-defined]
    assert listed == {key: versions[key] for key in keys[-kept:]}

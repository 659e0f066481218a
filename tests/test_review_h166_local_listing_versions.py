"""The local store's listings name versions (review-h166).

Its listings named none (a version lives inside each file), so an inbox event deleted by hand
and sent again under its id stayed cached as the old one there
(``test_review_h156_inbox_deletes``, a strict xfail on this lane until now). A listing now names
the versions of the objects this store read, checked by a ``stat`` of each file against the
one read; the conformance suite's ``test_a_listed_version_changes_when_its_object_is_replaced``
runs on every backend. These pin what the listing costs and what it remembers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vactor_cloud.storage import _local
from vactor_cloud.storage._base import Listing
from vactor_cloud.storage._local import LocalStore

_KEYS = [f"actors/a/inbox/evt-{n}" for n in range(4)]


def _store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path)
    for key in _KEYS:
        store.put_now(key, b"payload", mode="create")
    return store


def _opens(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys a listing opens a file of to read its version."""
    opened: list[str] = []
    read = store._read_version_remembered

    def counted(key: str, path: str) -> str:
        opened.append(key)
        return read(key, path)

    monkeypatch.setattr(store, "_read_version_remembered", counted)
    return opened


def test_a_listing_opens_no_file_it_did_not_see_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects never read are named at no version (and no file is opened for them); objects
    read and left alone are named at the version read, by a ``stat`` each; only the one
    replaced since is opened."""
    store = _store(tmp_path)
    opened = _opens(store, monkeypatch)
    listed = store.list_now("actors/a/inbox/")
    assert isinstance(listed, Listing) and listed.versions == {}
    read = {key: store.get_now(key).version for key in _KEYS[:2]}
    assert store.list_now("actors/a/inbox/").versions == read  # type: ignore[attr-defined]
    assert opened == []
    again = store.put_now(_KEYS[0], b"payload")
    assert store.list_now("actors/a/inbox/").versions == {**read, _KEYS[0]: again}  # type: ignore[attr-defined]
    assert opened == [_KEYS[0]]


def test_a_file_whose_metadata_changed_is_listed_at_the_same_version(tmp_path: Path) -> None:
    """A changed ctime (a chmod, a backup tool's touch) is no new object: the token read again
    is the same, and the listing names it (a reader would otherwise read the object again, or
    take it for another event)."""
    store = _store(tmp_path)
    version = store.get_now(_KEYS[0]).version
    os.chmod(store._fspath(_KEYS[0]), 0o600)
    os.utime(store._fspath(_KEYS[0]), ns=(1, 1))
    assert store.list_now("actors/a/inbox/").versions == {_KEYS[0]: version}  # type: ignore[attr-defined]


def test_versions_remembered_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``_VERSIONS_READ`` objects are remembered, the oldest read forgotten first."""
    monkeypatch.setattr(_local, "_VERSIONS_READ", 3)
    store = _store(tmp_path)
    for key in _KEYS:
        store.get_now(key)
    assert list(store._versions_read) == _KEYS[1:]
    store.get_now(_KEYS[1])  # read again: the newest
    assert list(store._versions_read) == [_KEYS[2], _KEYS[3], _KEYS[1]]


def test_an_object_deleted_by_this_store_and_written_again_is_listed_at_its_new_version(
    tmp_path: Path,
) -> None:
    """(Pin.) A delete by this store object does not forget the version read: a reader may still
    hold what it read (the inbox, when the event is deleted by hand through the same store), and
    must see the object written again there as another. Forgetting it named no version, and the
    inbox applied the old event in the new one's place."""
    store = _store(tmp_path)
    store.get_now(_KEYS[0])
    store._remove(_KEYS[0])
    again = store.put_now(_KEYS[0], b"another", mode="create")
    assert store.list_now("actors/a/inbox/").versions == {_KEYS[0]: again}  # type: ignore[attr-defined]

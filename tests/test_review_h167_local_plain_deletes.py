"""A plain delete of a missing key on the local store (review-h167).

h166 made plain deletes take the conditional deletes' stripe lock (``_delete_lock``), which
makes the store's lock directory when it is missing. A delete of a key that is not there
then made the store's root and its lock directory (a mistyped ``file://`` root came to exist,
``.vactor-locks`` in it), and failed where the lock cannot be made (a read-only mount), where
it did nothing before. Nothing there, nothing to race with: such a delete now takes no lock
(it takes effect at its look, as a delete that found the key gone).
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from vactor_cloud.storage import _local
from vactor_cloud.storage._local import LocalStore


def test_deleting_a_missing_key_of_a_missing_root_makes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "mistyped"
    store = LocalStore(root)
    asyncio.run(store.delete("actors/a/HEAD"))
    assert not root.exists()


def test_deleting_a_missing_key_where_no_lock_can_be_made_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(A read-only mount: every lock file's open fails.)"""
    store = LocalStore(tmp_path)
    store.put_now("actors/a/HEAD", b"x")
    store.put_now("actors/b/HEAD", b"y")

    def read_only(path: object, flags: int) -> int:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(_local, "_open_lock_file", read_only)
    asyncio.run(store.delete("actors/a/gone"))
    asyncio.run(store.delete_many(["actors/a/gone", "actors/c/HEAD"]))


def test_a_delete_of_a_key_there_still_takes_the_stripe_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Pin: the h166 race needs the lock wherever there is an object to unlink.)"""
    store = LocalStore(tmp_path)
    store.put_now("actors/a/HEAD", b"x")
    taken: list[str] = []
    lock = store._delete_lock

    def counted(key: str):  # type: ignore[no-untyped-def]
        taken.append(key)
        return lock(key)

    monkeypatch.setattr(store, "_delete_lock", counted)
    asyncio.run(store.delete("actors/a/HEAD"))
    assert taken == ["actors/a/HEAD"]
    assert not os.path.exists(store._fspath("actors/a/HEAD"))

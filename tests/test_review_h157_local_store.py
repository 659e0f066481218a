"""The local and memory stores and the store contract hold what no test held (review h157).

A mutation sweep of ``storage/_local.py``, ``storage/_memory.py`` and ``storage/_base.py``:
each test here kills a mutation the rest of the suite let through (it fails with the mutation
applied and passes without); the mutation it holds is named in its docstring.

TABLE
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vactor_cloud.errors import AlreadyExistsError, StorageError
from vactor_cloud.storage import LocalStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a//b", "a/", "a/b/"])
def test_a_local_key_with_an_empty_component_is_refused_not_aliased(tmp_path: Path, key: str) -> None:
    """Killed mutation: ``_fspath`` without its empty-component check. ``a//b`` was then the file
    of ``a/b`` (two keys on S3, one here: a create of one said the other already exists), and
    ``a/`` the file of ``a``."""
    store = LocalStore(tmp_path / "root")
    run(store.put("a/b" if key != "a/" else "a", b"first", mode="create"))
    with pytest.raises(StorageError) as info:
        run(store.put(key, b"x", mode="create"))
    assert not isinstance(info.value, AlreadyExistsError)
    assert info.value.key == key


def test_only_an_actor_s_own_post_is_written_unsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed mutation: ``_ephemeral`` without its ``"/" not in owner`` check. A key ending in
    ``mail/<name>`` deeper under an actor (a timer's due-index entry ``timers/<due>/mail/<key>``
    of an actor named ``mail``) is no post: it is synced like any object."""
    store = LocalStore(tmp_path)
    run(store.put("actors/a/HEAD", b"x"))  # (the root's layout marker, written and synced once)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    run(store.put("actors/a/mail/p1", b"post", mode="create"))
    assert not synced
    run(store.put("actors/mail/timers/00000000000000000005/mail/t1", b"due", mode="create"))
    assert synced, "a timer's index entry was written without fsync"


@pytest.mark.parametrize("key", ["mail/abcdef", "x/mail/abcdef", "actors/abc/mail/0123456789"])
def test_a_key_under_a_mail_component_is_one_file_at_any_depth(tmp_path: Path, key: str) -> None:
    """Killed mutation: the whole-name rule for ``mail/<name>`` applied from the third component
    only (``len(parts) > 2``). The layout is what a later process reads: objects written under
    one mapping are missing under another, so it is pinned where the docstring states it."""
    store = LocalStore(tmp_path)
    run(store.put(key, b"x", mode="create"))
    assert store._path(key).name == key.rsplit("/", 1)[1]
    assert store._path(key).parent.name == "il"  # "mail" itself is chained: ma+/il

"""Review h145: a HEAD of a local object torn short of its write token.

The local store keeps each object's version as the 16-byte token in front of its bytes. A
file shorter than that (a write torn by a machine crash: an unsynced mailbox post; or bytes
vactor_cloud did not write) has no version: ``get`` refused it (``TruncatedObjectError``),
but ``head`` returned what there was of the token as hex: ``""`` for an empty file, shared by
every empty file and never handed out by a write, and an if-match on it replaced the file as
if that were its version. The contract (``ObjectStore.head``) now says: a backend whose
version lives in the object's bytes raises ``TruncatedObjectError`` from ``head`` as ``get``
does; an if-match never matches such an object; an overwrite replaces it and a delete
removes it (the repairs).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from vactor_cloud.errors import PreconditionFailedError, TruncatedObjectError
from vactor_cloud.storage import IfMatch, LocalStore


def _torn(tmp_path: Path, length: int) -> tuple[LocalStore, str]:
    store = LocalStore(tmp_path / "root")
    key = "actors/a/mail/torn"
    asyncio.run(store.put(key, b"whole", mode="create"))
    path = store._fspath(key)
    with open(path, "r+b") as f:
        f.truncate(length)
    assert os.path.getsize(path) == length
    return store, key


@pytest.mark.parametrize("length", [0, 1, 15])
def test_a_head_of_an_object_torn_short_of_its_token_raises_as_its_get_does(
    tmp_path: Path, length: int
) -> None:
    store, key = _torn(tmp_path, length)
    with pytest.raises(TruncatedObjectError) as info:
        asyncio.run(store.get(key))
    assert info.value.key == key
    with pytest.raises(TruncatedObjectError) as info:
        version = asyncio.run(store.head(key))
        pytest.fail(f"head of a {length}-byte file returned the version {version!r}")
    assert info.value.key == key


@pytest.mark.parametrize("length", [0, 7])
def test_an_if_match_never_matches_a_torn_object(tmp_path: Path, length: int) -> None:
    store, key = _torn(tmp_path, length)
    partial = Path(store._fspath(key)).read_bytes().hex()
    with pytest.raises(PreconditionFailedError):
        asyncio.run(store.put(key, b"new", mode=IfMatch(partial)))


def test_a_torn_object_is_repaired_by_an_overwrite_or_a_delete(tmp_path: Path) -> None:
    store, key = _torn(tmp_path, 3)
    version = asyncio.run(store.put(key, b"new"))
    assert asyncio.run(store.head(key)) == version
    assert asyncio.run(store.get(key)).data == b"new"
    store, key = _torn(tmp_path / "again", 0)
    asyncio.run(store.delete(key))
    assert asyncio.run(store.head(key)) is None

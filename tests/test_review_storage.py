"""Hostile review of the storage layer's contract (branch review-h3).

Each test pins one promise that the existing storage tests did not exercise; the
docstring says which.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_timers import Session, index
from timer_workers import init_from_spec

import vactor_cloud as vc
from vactor_cloud.batch import PendingCall
from vactor_cloud.errors import AlreadyExistsError, IntegrityError, StorageError
from vactor_cloud.future import ActorFuture
from vactor_cloud.keys import post_key
from vactor_cloud.posting import post_name
from vactor_cloud.runtime import Runtime
from vactor_cloud.settings import Settings
from vactor_cloud.storage import LocalStore
from vactor_cloud.testing.lanes import StoreSpec


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- torn local writes ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 7])
def test_a_local_object_shorter_than_its_write_token_is_an_integrity_error_naming_the_key(
    tmp_path: Path, size: int
) -> None:
    """A file cut short of its 16-byte token (what a machine crash leaves of an unsynced
    mailbox write: ext4 often keeps a zero-length file) is a damaged object: it must be an
    :class:`IntegrityError` (the runtime's damaged-post handling keys on it), and stays a
    :class:`StorageError` for callers that catch those."""
    store = LocalStore(tmp_path)
    run(store.put("actors/a/mail/x", b"post"))
    path = Path(store._fspath("actors/a/mail/x"))
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(IntegrityError) as info:
        run(store.get("actors/a/mail/x"))
    assert isinstance(info.value, StorageError)
    assert info.value.key == "actors/a/mail/x"
    with pytest.raises(IntegrityError):
        store.get_now("actors/a/mail/x")


@vc.virtual_actor
class ReviewTally:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> list[Any]:
        self.items.append(item)
        return list(self.items)


@pytest.fixture
def local_root(tmp_path: Path) -> Iterator[str]:
    root = str(tmp_path / "store")
    try:
        yield root
    finally:
        vc.shutdown()


def test_a_torn_post_left_by_a_crash_does_not_wedge_the_actor(local_root: str) -> None:
    """docs (local store, module docstring): a post "that reads back damaged after [a crash]
    is never applied". A torn post file (zero bytes) made every fold fail with "not written
    by vactor_cloud (no version)": every later call of the actor was retried for the whole
    ``commit_timeout`` and then ended in ``CallPendingError``, for ever."""
    settings = Settings(
        storage=local_root, fresh_window=300.0, combine_after=1, timeout=2.0, deadline=4.0, commit_timeout=8.0
    )
    vc.init(settings=settings)
    tally = ReviewTally.get_or_create("t")
    assert tally.add.run("a") == ["a"]
    store = LocalStore(local_root)
    torn = post_key("t", post_name(int(time.time() * 1000) - 5, 7))
    path = store._fspath(torn, writing=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(b"")  # the crash kept the name and none of the bytes
    # Another runtime commits behind our back: our next put loses, and our call is posted.
    other = Runtime(Settings(storage=local_root))
    try:
        call = PendingCall.by_value("add", ("b",), {}, readonly=False, future=ActorFuture(), call_id="xb")
        other.load("t").call(call)
        assert call.future.result(30) == ["a", "b"]
    finally:
        other.close()
    assert tally.add.run("c") == ["a", "b", "c"]
    assert tally.add.run("d") == ["a", "b", "c", "d"]


# -- local keys the store cannot hold faithfully --------------------------------------------------


@pytest.mark.parametrize("key", [".", "a/.", "a/./b", "./a"])
def test_a_local_key_with_a_dot_component_is_refused_not_aliased(tmp_path: Path, key: str) -> None:
    """Keys are opaque strings: ``a/./b`` and ``a/b`` are two keys on S3. The local store mapped
    ``a/./b`` onto the file of ``a/b`` (a create of one then said the other "already exists",
    and the listing showed a key nobody wrote) and answered a create of ``.`` with
    "already exists" for a key that ``head`` said was absent. It refuses ``..`` already."""
    store = LocalStore(tmp_path / "root")
    with pytest.raises(StorageError) as info:
        run(store.put(key, b"x", mode="create"))
    assert not isinstance(info.value, AlreadyExistsError)
    assert run(store.list("")) == []


@pytest.mark.parametrize("key", [".hidden", "a/.b", "actors/x/mail/.tmp-abc"])
def test_a_local_key_the_store_would_never_list_is_refused(tmp_path: Path, key: str) -> None:
    """``list`` returns every key under the prefix (ObjectStore contract). The local store
    skips names starting with ``.`` (its temp files, locks and layout marker live there), so
    such a key was written, readable, and never listed; under a mailbox it was also taken
    for a temp file and removed by ``remove_stale_temp_files``. A put must refuse it."""
    store = LocalStore(tmp_path / "root")
    with pytest.raises(StorageError) as info:
        run(store.put(key, b"x", mode="create"))
    assert info.value.key == key
    assert run(store.list("")) == []


def test_a_local_key_with_a_nul_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    """Errors are vactor_cloud errors naming the key (conformance suite); a NUL in a key
    escaped from the local store as a bare ``ValueError: embedded null byte``."""
    store = LocalStore(tmp_path / "root")
    with pytest.raises(StorageError) as info:
        run(store.put("a\x00b", b"x"))
    assert info.value.key == "a\x00b"
    with pytest.raises(StorageError) as info:
        run(store.get("a\x00b"))
    assert info.value.key == "a\x00b"


@pytest.mark.vactor_lanes("local")
def test_a_timer_whose_key_starts_with_a_dot_fires_on_the_local_store(store_spec: StoreSpec) -> None:
    """``validate_timer_key`` accepts ``.x``; its due-index entry (``timers/<due>/<id>/.x``)
    was written on the local store and never listed, so the timer never fired. Either the key
    is refused when scheduled (as event ids starting with ``.`` are) or the timer fires."""
    init_from_spec(store_spec)
    try:
        session = Session.get_or_create("dotted")
        try:
            session.touch.run(0.0, key=".x")
        except ValueError:
            return  # refused up front, as event ids are: fine
        assert [e.key for e in index()] == [".x"]
        deadline = time.monotonic() + 10
        while vc.fire_due_timers().fired == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.entries.run() == ["expired .x"]
    finally:
        vc.shutdown()

"""The local and memory stores and the store contract hold what no test held (review h157).

A mutation sweep of ``storage/_local.py``, ``storage/_memory.py`` and ``storage/_base.py``:
each test here kills a mutation the rest of the suite let through (it fails with the mutation
applied and passes without); the mutation it holds is named in its docstring.

One survivor was a defect, fixed: a key holding lone surrogates was another key's file on the
local store (``test_a_key_that_is_no_utf8_text_is_refused_not_aliased``).

The sweep: 76 mutations, run on the memory and local lanes against the conformance suite,
``test_storage_edges``, ``test_local_store``, ``test_review_storage``, ``test_delete_many`` and
the timeout/deadline text modules; survivors then against every module naming the function.

* ``_local`` (46): killed by the suite: component split without its ``.``/``..`` case, dot
  components allowed, torn ``get`` and directory ``get`` checks, temp file kept on a failed
  write, create by rename, overwrite and delete outside the key lock, if-match accepting a
  missing object, lock files not opened or not locked, temp files left after a write, the
  directory sync's ``FileNotFoundError``, dot names listed at the top, ``start_after`` and
  ``limit`` off by one, the mailbox listing's ``start_after``/dot names/limit/nested keys,
  no pruning, a flat root taken for chunked, write retries cut short; killed by wider modules:
  torn ``head`` and torn if-match (``test_review_h145_torn_head``), a child keeping the
  parent's lock descriptors (``test_review_process_lifecycle``); killed here: empty
  components, the ``mail/<name>`` rule's depth, ``_ephemeral``'s nesting check, the local
  mode check, ``.tmp-`` in a chain listed, ``limit=0``, the sweep's age, name and prefix,
  ``listed_at_one_moment``'s size and layout checks, the layout marker's text,
  ``holds_no_store``, ``STORES_BELOW``.
* ``_memory`` (10): killed by the suite: create check, if-match of a missing key, the key
  list's insert and delete, ``start_after`` and ``limit``, ``put_now``'s key check; killed
  here: the fork hook, ``put_now``'s copy.
* ``_base`` (19): killed by the suite: ``/k`` accepted, ``get``/``delete`` without key checks,
  keys checked lazily in ``delete_many``, no stop after a timeout, bug-before-storage-error
  order, senders unbounded, a wrapped store's timeout re-labelled, operation failures not
  noted, the instance-wrap check of ``inline``, failures dropped in ``delete_many``, a delete
  batch's ``write=True``; killed here: ``put``'s copy, ``delete_many``'s de-duplication,
  ``put``'s ``write=True``, both ``trouble_meanwhile`` windows, ``listed_at_one_moment``'s ``<= 1`` and
  ``<``, the default ``_delete_many`` dropping failures.
* An in-place (non-atomic) overwrite is caught by the killed-writer test in about one run of
  three (a kill must land mid-copy); a temp file listed, every run.

Survivors left without a test, each judged so:

* equivalent: ``_walk``'s heap ``<`` as ``<=`` (no key equals a later sibling's lower bound
  but its own, yielded in order either way); ``_walk``'s ``break`` on leaving the prefix
  dropped or made ``continue`` (``_entries`` already drops what is outside it);
* cost only: ``MemoryStore._list_now`` scanning on past the prefix (keys are sorted: none
  after holds it; a LIST then costs the tail of the key space, not its answer);
* a race only: ``_entries`` catching ``FileNotFoundError`` alone (``NotADirectoryError``
  needs a directory replaced by a file between two reads: then "listing failed" instead of
  nothing under it).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vactor_cloud.errors import AlreadyExistsError, StorageError, StorageTimeoutError
from vactor_cloud.storage import Blob, LocalStore, MemoryStore, ObjectStore
from vactor_cloud.storage._base import Listing, OperationTrouble, PutMode

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _memory_store(root: Path) -> ObjectStore:
    return MemoryStore(f"h157-{root.name}")


#: a store of each embedded backend, opened from a test's ``tmp_path``
OPENERS: list[Callable[[Path], ObjectStore]] = [LocalStore, _memory_store]


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


def test_only_an_actor_s_own_post_is_written_unsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed mutation: ``_ephemeral`` without its ``"/" not in owner`` check. A key ending in
    ``mail/<name>`` deeper under an actor (a timer's due-index entry ``timers/<due>/mail/<key>``
    of an actor named ``mail``) is no post: it is synced like any object."""
    store = LocalStore(tmp_path)
    run(store.put("actors/a/HEAD", b"x"))  # (the root's layout marker, written and synced once)
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
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


def test_a_local_put_of_an_unknown_mode_is_a_value_error_and_writes_nothing(tmp_path: Path) -> None:
    """Killed mutation: the local ``_write`` without its mode check (the unknown mode then went
    the if-match way and failed on ``mode.version``, an ``AttributeError``, after a temp file
    and a lock file were made). The suite checked the memory store only."""
    store = LocalStore(tmp_path)
    run(store.put("k", b"original", mode="create"))
    with pytest.raises(ValueError, match="unknown put mode"):
        run(store.put("k", b"clobbered", mode="create_only"))  # type: ignore[arg-type]
    assert run(store.get("k")).data == b"original"
    assert not (tmp_path / ".vactor-locks").exists()


# -- a writer killed mid-write --------------------------------------------------------------

_WRITER = """
import sys
from vactor_cloud.errors import AlreadyExistsError
from vactor_cloud.storage import LocalStore
store = LocalStore(sys.argv[1])
size = int(sys.argv[2])
first = int(sys.argv[3])
for i in range(first, first + 100000):
    fill = i % 251
    store.put_now("crash/over", bytes([fill]) * size)
    store.put_now(f"crash/new-{i:07d}", bytes([fill]) * size, mode="create")
    try:
        store.put_now("crash/once", b"forged" * size, mode="create")
    except AlreadyExistsError:
        pass
    else:
        raise SystemExit("a create overwrote crash/once")
    if i == first:
        print("writing", flush=True)
"""


def _whole(data: bytes, size: int) -> bool:
    return len(data) == size and data == bytes(data[:1]) * size


def test_a_writer_killed_mid_write_leaves_whole_objects_and_no_listed_leftover(tmp_path: Path) -> None:
    """A process killed (SIGKILL) at any moment of its writes leaves every object whole (the old
    bytes or the new), a created object untouched, and temp files that are never listed, never
    block a create, and are swept by ``remove_stale_temp_files``. (Guards the temp-file-then-
    link/rename write against a write made in place.)"""
    import random
    import signal
    import subprocess
    import sys
    import time

    size = 1 << 20
    store = LocalStore(tmp_path)
    store.put_now("crash/once", b"first", mode="create")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for round in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(size), str(round * 100000)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"writing\n"
            time.sleep(random.uniform(0.0, 0.05))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
        keys = store.list_now("crash/")
        assert "crash/over" in keys and "crash/once" in keys
        assert all(".tmp" not in key for key in keys), keys
        for key in keys:
            data = store.get_now(key).data
            assert data == b"first" if key == "crash/once" else _whole(data, size), key
    run(store.put("crash/after", b"x", mode="create"))
    run(store.remove_stale_temp_files("crash/", older_than=0))
    assert not list(tmp_path.rglob(".tmp-*"))
    assert store.get_now("crash/once").data == b"first"
    assert _whole(store.get_now("crash/over").data, size)


def test_a_temp_file_beside_a_chained_key_is_never_listed(tmp_path: Path) -> None:
    """Killed mutation: ``_entries`` without its skip of ``.tmp-*`` names inside a chain
    directory. A write's temp file sits beside its target, and most keys' last segments live in
    a chain directory (``steps/…12345`` is ``…/23+/45``): a listing made during a write, or
    after a writer was killed, showed ``…0123.tmp-<hex>``, a key nobody wrote."""
    store = LocalStore(tmp_path)
    key = f"actors/abc/steps/{12345:020d}"
    run(store.put(key, b"x", mode="create"))
    chain = store._path(key).parent
    assert chain.name.endswith("+")
    (chain / ".tmp-0123456789abcdef").write_bytes(b"a killed writer's")
    assert run(store.list("actors/abc/")) == [key]
    assert run(store.list("actors/abc/steps/", start_after=key[:-3])) == [key]


@pytest.mark.parametrize("opener", OPENERS)
def test_a_listing_of_limit_zero_returns_no_key(
    tmp_path: Path, opener: Callable[[Path], ObjectStore]
) -> None:
    """Killed mutation: the local store's ``limit <= 0`` as ``limit < 0`` (its walk appended a
    key before it compared the count with the limit: ``limit=0`` returned one key)."""
    store = opener(tmp_path)
    run(store.put("a/k", b"x", mode="create"))
    assert run(store.list("a/", limit=0)) == []
    assert run(store.list("", limit=0)) == []


@pytest.mark.parametrize("opener", OPENERS)
def test_a_key_that_is_no_utf8_text_is_refused_not_aliased(
    tmp_path: Path, opener: Callable[[Path], ObjectStore]
) -> None:
    """Found by the sweep (a defect, not a mutation): a key holding lone surrogates, such as
    ``"\\udcc3\\udca9"``, is stored by the local store under the bytes of another key (the file
    system encodes it as ``é``'s UTF-8), so its create answered "already exists" and its get
    returned ``é``'s object; the memory store took it as a key of its own, and S3 and GCS
    cannot send it at all. Every store refuses it now, before any request."""
    store = opener(tmp_path)
    run(store.put("k/é", b"one", mode="create"))
    forged = "k/\udcc3\udca9"
    for request in (
        lambda: store.put(forged, b"two", mode="create"),
        lambda: store.get(forged),
        lambda: store.head(forged),
        lambda: store.delete(forged),
        lambda: store.delete_many(["k/x", forged]),
        lambda: store.delete_unchanged({"k/x": "1", forged: "1"}),
    ):
        with pytest.raises(StorageError, match="UTF-8") as info:
            run(request())
        assert not isinstance(info.value, AlreadyExistsError)
        assert info.value.key == forged
    assert store.requests.snapshot() == {"put": 1}
    assert run(store.get("k/é")).data == b"one"


def test_the_temp_file_sweep_removes_only_old_temp_files_under_its_prefix(tmp_path: Path) -> None:
    """Killed mutations of ``_sweep_temp``: the age check reversed or dropped (a write in
    progress lost its temp file), the ``.tmp-`` name check dropped (objects as old as the
    cutoff were deleted), and the walk started at the root, not the prefix's directory (another
    actor's leftovers, outside the prefix, removed)."""
    store = LocalStore(tmp_path)
    mine, other = f"actors/mine/steps/{7:020d}", f"actors/other/steps/{7:020d}"
    for key in (mine, other):
        run(store.put(key, b"state", mode="create"))
    old = time.time() - 7200

    def leftover(key: str, name: str, *, aged: bool) -> Path:
        path = store._path(key).parent / name
        path.write_bytes(b"half")
        if aged:
            os.utime(path, (old, old))
        return path

    stale = leftover(mine, ".tmp-killedwriter0", aged=True)
    in_progress = leftover(mine, ".tmp-writing00000", aged=False)
    elsewhere = leftover(other, ".tmp-killedwriter1", aged=True)
    for key in (mine, other):
        os.utime(store._path(key), (old, old))  # objects as old as the leftovers
    assert run(store.remove_stale_temp_files("actors/mine/", older_than=3600)) == 1
    assert not stale.exists()
    assert in_progress.exists(), "a write in progress lost its temp file"
    assert elsewhere.exists(), "a leftover outside the prefix was removed"
    assert run(store.get(mine)).data == run(store.get(other)).data == b"state"


# -- listings at one moment -----------------------------------------------------------------


def _mailbox_of(store: LocalStore, count: int, name_length: int) -> list[str]:
    keys = [f"actors/abc/mail/{i:0{name_length}d}" for i in range(count)]
    for key in keys:
        store.put_now(key, b"post", mode="create")
    return store.list_now("actors/abc/mail/")


def test_a_mailbox_listing_is_one_moment_only_while_its_names_fit_one_readdir(tmp_path: Path) -> None:
    """Killed mutation: ``listed_at_one_moment`` answering yes for any chunked mailbox listing,
    whatever its size. A directory larger than one ``getdents`` buffer is read by several
    calls, and a post created between two of them may be missed while a later one is seen:
    the reader must then list again before it trusts the order."""
    store = LocalStore(tmp_path)
    small = _mailbox_of(store, 3, 20)
    assert store.listed_at_one_moment("actors/abc/mail/", small)
    large = _mailbox_of(store, 400, 40)  # 400 * (32 + 40) bytes: over a quarter of 32 KB
    assert not store.listed_at_one_moment("actors/abc/mail/", large)


def test_a_mailbox_listing_of_a_flat_root_is_not_one_moment(tmp_path: Path) -> None:
    """Killed mutation: ``listed_at_one_moment`` without its chunked-layout check. A root of the
    flat layout (earlier versions) lists a mailbox by the ordered walk from the root, directory
    after directory: never one moment."""
    (tmp_path / "actors" / "old-one").mkdir(parents=True)
    (tmp_path / "actors" / "old-one" / "HEAD").write_bytes(bytes(16) + b"head")
    store = LocalStore(tmp_path)
    keys = _mailbox_of(store, 2, 10)
    assert (tmp_path / "actors" / "abc" / "mail").is_dir()  # (flat: stored as the keys read)
    assert not store.listed_at_one_moment("actors/abc/mail/", keys)


def test_a_root_of_an_unknown_layout_is_refused_not_misread(tmp_path: Path) -> None:
    """Killed mutation: ``_layout_chunked`` without its check of the marker's text. A root a
    later version laid out otherwise (``chunked-3``) was read and written as ``chunked-2``:
    its objects missing, new ones written where that version never looks."""
    (tmp_path / ".vactor-layout").write_bytes(b"chunked-3\n")
    store = LocalStore(tmp_path)
    with pytest.raises(StorageError, match="unknown directory layout"):
        run(store.put("actors/a/HEAD", b"x"))
    with pytest.raises(StorageError, match="unknown directory layout"):
        run(store.list("actors/"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".vactor-layout"]


# -- finding stores ---------------------------------------------------------------------------


def test_a_flat_root_holding_actors_is_a_store(tmp_path: Path) -> None:
    """Killed mutation: ``holds_no_store`` without its look for the keys' first components. A
    root of the flat layout (no marker, an ``actors`` directory) was said to hold no store,
    and every command refused it."""
    (tmp_path / "flat" / "actors" / "a").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("notes")
    (tmp_path / "empty").mkdir()
    roots = {"actors", "timers"}
    assert not LocalStore.holds_no_store(tmp_path / "flat", roots)
    assert LocalStore.holds_no_store(tmp_path / "docs", roots)
    assert not LocalStore.holds_no_store(tmp_path / "empty", roots)


def test_stores_below_a_directory_are_named_up_to_their_bound_in_name_order(tmp_path: Path) -> None:
    """Killed mutation: ``directories_holding_a_store`` without its stop at ``STORES_BELOW``
    (a directory of thousands of stores was read whole for a hint)."""
    from vactor_cloud.storage._base import STORES_BELOW

    for i in range(STORES_BELOW + 3):
        LocalStore(tmp_path / f"store-{i:02d}").put_now("actors/a/HEAD", b"x")
    (tmp_path / "not-a-store").mkdir()
    found = LocalStore.directories_holding_a_store(tmp_path)
    assert found == [tmp_path / f"store-{i:02d}" for i in range(STORES_BELOW)]


# -- the memory store and the store contract --------------------------------------------------


@pytest.mark.parametrize("opener", OPENERS)
def test_a_put_keeps_the_bytes_it_was_given_not_the_buffer(
    tmp_path: Path, opener: Callable[[Path], ObjectStore]
) -> None:
    """Killed mutations: ``put`` (``ObjectStore``) and ``put_now`` (``MemoryStore``) without their
    ``bytes(data)`` copy. The memory store then kept the caller's ``bytearray``: changed after
    the put, the stored object changed with it, under the same version."""
    store = opener(tmp_path)
    buffer = bytearray(b"state one")
    version = run(store.put("k/async", buffer, mode="create"))  # type: ignore[arg-type]  # (a buffer)
    store.put_now("k/now", buffer, mode="create")  # type: ignore[arg-type]
    buffer[:5] = b"XXXXX"
    assert run(store.get("k/async")) == Blob(b"state one", version)
    assert store.get_now("k/now").data == b"state one"


def test_a_memory_put_now_refuses_a_key_no_backend_can_store(tmp_path: Path) -> None:
    """Killed mutation: ``MemoryStore.put_now`` without its ``_check_key`` (the runtime's inline
    writes then stored ``/k``, which S3 would store as another object and a directory
    refuses)."""
    store = _memory_store(tmp_path)
    with pytest.raises(StorageError, match="invalid key"):
        store.put_now("/k", b"x")
    assert store.list_now("") == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_held_the_memory_store_s_lock_can_use_it(tmp_path: Path) -> None:
    """Killed mutation: ``_memory``'s fork hook (a new ``_LOCK`` in the child) not registered.
    A child forked while another thread of the parent was inside a memory-store request
    inherited the lock held, by a thread it does not have: its first request waited for ever."""
    from child_processes import fork_and_report, held_by_another_thread

    from vactor_cloud.storage import _memory

    store = _memory_store(tmp_path)

    def in_the_child() -> bytes:
        store.put_now("k", b"child", mode="create")
        return store.get_now("k").data

    with held_by_another_thread(_memory._LOCK, 10.0):
        report = fork_and_report(in_the_child, 10.0)
    assert report == b"child"


@pytest.mark.parametrize("opener", OPENERS)
def test_a_key_named_twice_in_delete_many_is_deleted_by_one_request(
    tmp_path: Path, opener: Callable[[Path], ObjectStore]
) -> None:
    """Killed mutation: ``delete_many`` without its ``dict.fromkeys`` (the keys as given): a
    caller's repeated keys each cost a request of their own (on S3, a batch naming one key
    twice)."""
    store = opener(tmp_path)
    for key in ("d/a", "d/b"):
        run(store.put(key, b"x", mode="create"))
    store.requests.reset()
    run(store.delete_many(["d/a", "d/a", "d/b", "d/a"]))
    assert store.requests["delete"] == 2
    assert run(store.list("d/")) == []


class _Stalling(MemoryStore):
    """Every request waits far longer than the store's ``request_timeout``."""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        await asyncio.sleep(30)
        return await super()._put(key, data, mode)

    async def _get(self, key: str) -> Blob:
        await asyncio.sleep(30)
        return await super()._get(key)

    async def _delete(self, key: str) -> None:
        await asyncio.sleep(30)
        await super()._delete(key)


@pytest.mark.parametrize(
    ("request_made", "a_write"),
    [
        (lambda store: store.put("k", b"x"), True),
        (lambda store: store.delete("k"), True),
        (lambda store: store.delete_many(["k", "j"]), True),
        (lambda store: store.get("k"), False),
    ],
    ids=["put", "delete", "delete_many", "get"],
)
def test_a_write_that_timed_out_says_it_may_have_been_applied_and_a_read_does_not(
    tmp_path: Path, request_made: Callable[[ObjectStore], Coroutine[Any, Any, object]], a_write: bool
) -> None:
    """Killed mutation: ``put`` bounded without ``write=True`` (``_delete_batch``'s, which
    ``test_delete_many`` holds too). Its timeout then said nothing of the write having maybe
    landed, and ``write_in_flight`` was False: a caller that trusts it takes an unanswered put
    for one never applied."""
    store = _Stalling(f"h157-stall-{tmp_path.name}")
    store.request_timeout = 0.05
    with pytest.raises(StorageTimeoutError) as info:
        run(request_made(store))
    assert info.value.write_in_flight is a_write
    assert ("may or may not have been applied" in str(info.value)) is a_write


def test_an_operation_s_own_failure_is_told_only_within_the_window(tmp_path: Path) -> None:
    """Killed mutation: ``trouble_meanwhile`` without its age check of the operation's own
    last failure: a failure from long before the deadline's window was told as the reason."""
    store = _memory_store(tmp_path)
    operation = OperationTrouble()
    operation.last = (time.monotonic() - 100.0, "an old 503")
    assert store.trouble_meanwhile(10.0, operation) is None
    operation.last = (time.monotonic() - 1.0, "a recent 503")
    told = store.trouble_meanwhile(10.0, operation)
    assert told is not None and "a recent 503" in told
    # (and the store's other requests' failures: killed mutation, that window's check dropped)
    store._failed_lately = (time.monotonic() - 100.0, "another's old 503")
    assert store.trouble_meanwhile(10.0, OperationTrouble()) is None
    store._failed_lately = (time.monotonic() - 1.0, "another's recent 503")
    told = store.trouble_meanwhile(10.0, OperationTrouble())
    assert told is not None and "another's recent 503" in told


def test_a_listing_is_one_moment_only_if_one_request_below_the_snapshot_size_made_it(tmp_path: Path) -> None:
    """Killed mutations of ``ObjectStore.listed_at_one_moment``: a :class:`Listing` of two
    requests taken for one (``requests <= 2``), and a plain listing of exactly
    ``snapshot_list_keys`` keys taken for one request (``<=`` for ``<``: a page that full may
    have more behind it)."""
    store = _memory_store(tmp_path)
    assert store.listed_at_one_moment("p/", Listing(["p/a"], 1))
    assert not store.listed_at_one_moment("p/", Listing(["p/a", "p/b"], 2))
    store.snapshot_list_keys = 3
    assert store.listed_at_one_moment("p/", ["p/a", "p/b"])
    assert not store.listed_at_one_moment("p/", ["p/a", "p/b", "p/c"])


class _FailingDelete(MemoryStore):
    """Its ``_delete`` of ``d/bad`` fails; batches of several keys go through the default
    ``_delete_many`` (no batch request of its own)."""

    delete_batch = 4

    async def _delete(self, key: str) -> None:
        if key == "d/bad":
            raise StorageError(f"{self.url}/{key}: injected delete failure", key)
        await super()._delete(key)


def test_a_failed_delete_in_a_batch_of_the_default_delete_many_is_raised(tmp_path: Path) -> None:
    """Killed mutation: the default ``_delete_many`` (a batch of several keys, each its own
    ``_delete``) without its check of the outcomes: a failed delete was reported done."""
    store = _FailingDelete(f"h157-failing-{tmp_path.name}")
    for key in ("d/a", "d/bad", "d/c"):
        run(store.put(key, b"x", mode="create"))
    with pytest.raises(StorageError, match="injected delete failure"):
        run(store.delete_many(["d/a", "d/bad", "d/c"]))
    assert run(store.list("d/")) == ["d/bad"]

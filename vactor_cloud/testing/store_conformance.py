"""The object-store conformance suite: every backend must pass it unchanged.

Subclass :class:`StoreConformance` in a test module; with the vactor_cloud
pytest plugin loaded, each inherited test runs once per lane::

    from vactor_cloud.testing.store_conformance import StoreConformance

    class TestStoreConformance(StoreConformance):
        pass

The tests take the plugin's ``store_spec`` fixture (a fresh, empty store) and
open it inside the event loop that uses it: a store object belongs to one
loop. Concurrency tests open one store per thread or per process, as
independent clients would.

What is proved, for every backend (the contract in
:class:`vactor_cloud.storage.ObjectStore`): whole-object round trips for
binary, empty and multi-megabyte objects, as ``bytes``, each read answering the
version of the write it reads, and for keys with unicode, spaces (at a
component's ends too), ``%``, ``?`` and ``#``, and keys as long as the runtime
writes; sorted listing with ``start_after`` (before the prefix too) and
``limit`` that reads the store, not a cache, naming the versions of the objects
read (a replaced one's new version), and never reported as one moment when it
shows a write without one made before it; create-only puts with exactly one winner among racing threads
and racing processes; compare-and-swap puts that refuse stale versions and
missing keys; versions that are never reused (no ABA); no torn reads; deletes
of many keys at once (missing ones fine, one counted request per batch); deletes
conditional on each object's version (``delete_unchanged``: an object written
again since stays, also against a delete sent twice and racing deleters, and an
overwrite racing them); deletes that leave the keys their key is a prefix of; a
key that only prefixes others (a directory on a filesystem) named as no object;
``remove_stale_temp_files`` never removing an object;
errors from :mod:`vactor_cloud.errors` that name the key; empty, absolute
(``/``-led) and non-UTF-8 (lone surrogate) keys refused alike, before any request; and, where a store is
``inline``, its synchronous requests keeping the contract of the async ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing.context
import multiprocessing.synchronize
import pickle
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from vactor_cloud import keys
from vactor_cloud._sync import sync
from vactor_cloud.errors import (
    AlreadyExistsError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
)
from vactor_cloud.ids import MAX_ID_BYTES
from vactor_cloud.keys import LONGEST_KEY
from vactor_cloud.storage import IfMatch, ObjectStore, PutMode
from vactor_cloud.storage._base import Listing
from vactor_cloud.testing.lanes import Lane, StoreSpec

__all__ = ["StoreConformance", "run_on_store"]

T = TypeVar("T")

MiB = 1024 * 1024


async def _with_store(spec: StoreSpec, body: Callable[[ObjectStore], Awaitable[T]]) -> T:
    store = spec.open()
    try:
        return await body(store)
    finally:
        await store.close()


def run_on_store(spec: StoreSpec, body: Callable[[ObjectStore], Awaitable[T]]) -> T:
    """Open ``spec`` in a new event loop, run ``body(store)`` there, close the store, return the result."""
    return asyncio.run(_with_store(spec, body))


@dataclass(frozen=True)
class _Outcome:
    """What one contender of a create race saw: ``won`` (detail = version), ``exists`` or ``error``."""

    who: int
    kind: str
    detail: str
    error_type: str = ""


async def _race_create(
    store: ObjectStore, key: str, who: int, payload: bytes, wait_for_start: Callable[[], object]
) -> _Outcome:
    # Open the connection before the race so that all contenders reach the store together.
    await store.head(f"{key}.warmup")
    await asyncio.to_thread(wait_for_start)
    try:
        version = await store.put(key, payload, mode="create")
    except AlreadyExistsError as exc:
        return _Outcome(who, "exists", str(exc), type(exc).__name__)
    except Exception as exc:
        return _Outcome(who, "error", repr(exc), type(exc).__name__)
    return _Outcome(who, "won", version)


async def _conditional_deletes(store: ObjectStore) -> bool:
    """Whether ``store``'s conditional deletes are atomic, once it has made one: a store may
    find out at its first that the endpoint ignores the condition (an S3 store's probe)."""
    version = await store.put("race/deletes/probe", b"x")
    await store.delete_unchanged({"race/deletes/probe": version})
    return store.conditional_deletes


def _head_of(key: str) -> Callable[[ObjectStore], Awaitable[str | None]]:
    async def head(store: ObjectStore) -> str | None:
        return await store.head(key)

    return head


def _race_deletes_and_a_create(spec: StoreSpec, key: str, *, deleters: int, timeout: float) -> str:
    """Create ``key``; then ``deleters`` threads each delete it twice on its first version while
    another creates it again as soon as it is gone; the version that one wrote."""

    async def create(store: ObjectStore) -> str:
        return await store.put(key, b"v1", mode="create")

    first = run_on_store(spec, create)
    start = threading.Barrier(deleters + 1)

    async def delete_twice(store: ObjectStore) -> None:
        await store.head(f"{key}.warmup")
        await asyncio.to_thread(start.wait, timeout)
        for _ in range(2):
            await store.delete_unchanged({key: first})

    async def create_again(store: ObjectStore) -> str:
        await asyncio.to_thread(start.wait, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return await store.put(key, b"v2", mode="create")
            except AlreadyExistsError:
                await asyncio.sleep(0)
        raise AssertionError(f"{key} was never deleted")

    with concurrent.futures.ThreadPoolExecutor(max_workers=deleters + 1) as pool:
        done = [pool.submit(run_on_store, spec, delete_twice) for _ in range(deleters)]
        second = pool.submit(run_on_store, spec, create_again).result(timeout=timeout)
        for future in done:
            future.result(timeout=timeout)
    return second


def _race_deletes_and_an_overwrite(
    spec: StoreSpec, key: str, *, deleters: int, delay: float, timeout: float
) -> str:
    """Write ``key``; then ``deleters`` threads each delete it twice on that version while
    another overwrites it ``delay`` s after they start; the version the overwrite answered."""
    first = run_on_store(spec, lambda store: store.put(key, b"v1"))
    start = threading.Barrier(deleters + 1)

    async def delete_twice(store: ObjectStore) -> None:
        await store.head(f"{key}.warmup")
        await asyncio.to_thread(start.wait, timeout)
        for _ in range(2):
            await store.delete_unchanged({key: first})

    async def overwrite(store: ObjectStore) -> str:
        await store.head(f"{key}.warmup")
        await asyncio.to_thread(start.wait, timeout)
        await asyncio.sleep(delay)
        return await store.put(key, b"v2")

    with concurrent.futures.ThreadPoolExecutor(max_workers=deleters + 1) as pool:
        done = [pool.submit(run_on_store, spec, delete_twice) for _ in range(deleters)]
        second = pool.submit(run_on_store, spec, overwrite).result(timeout=timeout)
        for future in done:
            future.result(timeout=timeout)
    return second


def _payload_of(who: int) -> bytes:
    return f"contender {who} ".encode() * 64


@dataclass(frozen=True)
class _ProcessRace:
    """What every child of the multi-process create race needs (picklable for "spawn")."""

    spec: StoreSpec
    key: str
    timeout: float


def _create_in_process(
    race: _ProcessRace,
    who: int,
    start: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[_Outcome],
) -> None:
    """Child of the multi-process create race; reports its outcome on ``results``."""
    try:
        outcome = run_on_store(
            race.spec,
            lambda store: _race_create(
                store, race.key, who, _payload_of(who), lambda: start.wait(race.timeout)
            ),
        )
    except Exception as exc:
        outcome = _Outcome(who, "error", repr(exc), type(exc).__name__)
    results.put(outcome)


class _ReadCount:
    """The reads a reader has finished, for a writer that waits for the next one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._reads = 0
        self._over = False

    def one_more(self) -> None:
        with self._changed:
            self._reads += 1
            self._changed.notify_all()

    def over(self) -> None:
        with self._changed:
            self._over = True
            self._changed.notify_all()

    def wait_for_one_more(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the reader finishes a read it had not finished
        when called, or stops reading."""
        with self._changed:
            target = self._reads + 1
            self._changed.wait_for(lambda: self._reads >= target or self._over, timeout)


def _uniform(fill: int, size: int) -> bytes:
    return bytes([fill]) * size


def _is_uniform(data: bytes, size: int) -> bool:
    return len(data) == size and data.count(data[:1]) == size


class StoreConformance:
    """Behaviour every :class:`~vactor_cloud.storage.ObjectStore` backend must have.

    Subclasses may lower the sizes below for slow backends, but the shipped
    values are what vactor_cloud relies on.
    """

    #: Size of the "large object" tests: 5 MiB, where S3 clients start to think about multipart.
    large_size: int = 5 * MiB
    #: Threads racing to create one key.
    racing_threads: int = 16
    #: OS processes racing to create one key (lanes with ``multiprocess=False`` skip this).
    racing_processes: int = 8
    #: Upper bound, in seconds, for any wait in a concurrency test (never asserted on).
    wait_timeout: float = 120.0
    #: Overwrites the writer performs while the torn-read reader loops.
    torn_read_writes: int = 6

    # -- empty store, round trips ------------------------------------------
    def test_new_store_is_empty(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            assert await store.list("") == []
            assert await store.head("anything") is None

        run_on_store(store_spec, body)

    def test_put_get_head_round_trip(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            version = await store.put("dir/obj", b"hello")
            assert isinstance(version, str) and version
            blob = await store.get("dir/obj")
            # bytes, not a bytearray or a memoryview (equal to bytes, but mutable, unhashable,
            # or without bytes' methods): what the runtime decodes, hashes and keeps
            assert isinstance(blob.data, bytes), type(blob.data)
            assert blob.data == b"hello"
            assert blob.version == version
            assert await store.head("dir/obj") == version

        run_on_store(store_spec, body)

    def test_binary_data_round_trips_byte_for_byte(self, store_spec: StoreSpec) -> None:
        data = bytes(range(256)) * 16 + b"\x00\r\n\x00\xff\xfe" + "ünï".encode("utf-16")

        async def body(store: ObjectStore) -> None:
            await store.put("bin", data)
            assert (await store.get("bin")).data == data

        run_on_store(store_spec, body)

    def test_empty_object_exists_and_reads_empty(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            version = await store.put("empty", b"", mode="create")
            assert await store.head("empty") == version
            blob = await store.get("empty")
            assert blob.data == b""
            assert blob.version == version
            assert await store.list("") == ["empty"]

        run_on_store(store_spec, body)

    @pytest.mark.parametrize("mode", ["overwrite", "create", "if-match"])
    def test_large_object_round_trips(self, store_spec: StoreSpec, mode: str) -> None:
        # One byte over 5 MiB too: a backend that switches to multipart there
        # must keep its create / if-match guarantees.
        data = bytes(range(251)) * (self.large_size // 251 + 1)
        data = data[: self.large_size + 1]

        async def body(store: ObjectStore) -> None:
            if mode == "if-match":
                first = await store.put("large", b"small first")
                version = await store.put("large", data, mode=IfMatch(first))
            else:
                version = await store.put("large", data, mode="create" if mode == "create" else "overwrite")
            blob = await store.get("large")
            assert len(blob.data) == len(data)
            assert blob.data == data
            assert blob.version == version
            if mode == "create":
                with pytest.raises(AlreadyExistsError):
                    await store.put("large", data, mode="create")

        run_on_store(store_spec, body)

    @pytest.mark.parametrize(
        "key",
        [
            "with space/and more spaces.bin",
            "ünïcødé/ключ/鍵/🙂",
            "punct/a+b=c&d;e,f@g!h'(i)~*$",
            "percent/%20%2F%zz",
            "dots/a.b..c",
            "query/a?b=c&d#e?f",
            "edges/ both ends /trailing ",
        ],
        ids=["spaces", "unicode", "punctuation", "percent", "dots", "query", "edges"],
    )
    def test_unusual_keys_round_trip_and_list_verbatim(self, store_spec: StoreSpec, key: str) -> None:
        async def body(store: ObjectStore) -> None:
            version = await store.put(key, key.encode(), mode="create")
            assert (await store.get(key)).data == key.encode()
            assert await store.head(key) == version
            assert await store.list("") == [key]
            prefix = key.split("/", maxsplit=1)[0] + "/"
            assert await store.list(prefix) == [key]
            await store.delete(key)
            assert await store.head(key) is None

        run_on_store(store_spec, body)

    def test_inline_requests_keep_the_contract_of_the_requests_they_stand_for(
        self, store_spec: StoreSpec
    ) -> None:
        # Where a store is ``inline`` (memory, local), the runtime commits its steps and posts
        # with ``put_now(mode="create")``, reads with ``get_now`` and lists posts with
        # ``list_now``: each must keep the contract of the request it stands for, and share
        # its objects and versions (a subclass overriding one of them alone would otherwise
        # pass every other case here).
        async def body(store: ObjectStore) -> None:
            if not store.inline:
                return
            first = store.put_now("inline/k", b"1", mode="create")
            with pytest.raises(AlreadyExistsError):
                store.put_now("inline/k", b"lost", mode="create")
            for blob in (store.get_now("inline/k"), await store.get("inline/k")):
                assert (blob.data, blob.version) == (b"1", first)
            second = store.put_now("inline/k", b"2", mode=IfMatch(first))
            assert second != first
            with pytest.raises(PreconditionFailedError):
                store.put_now("inline/k", b"stale", mode=IfMatch(first))
            with pytest.raises(PreconditionFailedError):
                store.put_now("inline/missing", b"x", mode=IfMatch(first))
            third = store.put_now("inline/k", b"3")
            assert third not in (first, second)
            assert await store.head("inline/k") == third
            blob = store.get_now("inline/k")
            assert isinstance(blob.data, bytes), type(blob.data)
            assert (blob.data, blob.version) == (b"3", third)
            with pytest.raises(NotFoundError):
                store.get_now("inline/missing")
            later = [f"inline/l/{n:02d}" for n in range(6)]
            for key in reversed(later):
                store.put_now(key, b"")
            for start_after, limit in (
                (None, None),
                ("inline/l/01", None),
                ("inline/l/01", 2),
                ("inline", 3),
            ):
                listed = store.list_now("inline/l/", start_after=start_after, limit=limit)
                assert listed == await store.list("inline/l/", start_after=start_after, limit=limit)
                assert listed == [k for k in later if start_after is None or k > start_after][:limit]

        run_on_store(store_spec, body)

    def test_keys_as_long_as_the_runtime_writes_round_trip_distinct(self, store_spec: StoreSpec) -> None:
        # vactor_cloud writes keys of up to keys.LONGEST_KEY bytes (an inbox event of an actor,
        # both ids at their 255-byte limit). A store that cuts long keys or components (a file
        # name limit met silently) would make two such keys one object; one that refuses them
        # must say so in max_key_bytes (the runtime then refuses the store up front).
        async def body(store: ObjectStore) -> None:
            room = min(LONGEST_KEY, store.max_key_bytes or LONGEST_KEY)
            actor_id = "é" * 127 + "i"  # 255 bytes, two-byte characters but the last
            event_id = "e" * (MAX_ID_BYTES - 1)  # and a last character: 255 bytes
            over = len(keys.inbox_key(actor_id, event_id).encode()) + 1 - room
            event_id = event_id[: len(event_id) - max(0, over)]
            # two keys that differ in their last byte only
            pair = [keys.inbox_key(actor_id, event_id + last) for last in "12"]
            assert [len(key.encode()) for key in pair] == [room, room]
            versions = [await store.put(key, key.encode(), mode="create") for key in pair]
            for key, version in zip(pair, versions, strict=True):
                blob = await store.get(key)
                assert (blob.data, blob.version) == (key.encode(), version)
            assert await store.list(keys.ACTORS) == pair
            await store.delete(pair[0])
            assert await store.list(keys.ACTORS) == pair[1:]
            assert (await store.get(pair[1])).data == pair[1].encode()

        run_on_store(store_spec, body)

    def test_overwrite_replaces_bytes_and_version(self, store_spec: StoreSpec) -> None:
        # Read after every write: a store that answered the bytes of one write with the
        # version of an earlier one (a version cached at the first read) would have every
        # compare-and-swap of the runtime's fail, or one against the wrong object succeed.
        async def body(store: ObjectStore) -> None:
            written: list[str] = []
            for data in (b"one", b"two, longer", b"3"):
                written.append(await store.put("k", data))
                blob = await store.get("k")
                assert (blob.data, blob.version) == (data, written[-1])
                assert await store.head("k") == written[-1]
            assert len(set(written)) == len(written), f"a version was reused: {written}"

        run_on_store(store_spec, body)

    def test_delete_removes_object(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            await store.put("a/doomed", b"x")
            await store.put("a/kept", b"y")
            # keys the deleted one is a prefix of stay (steps/1 and steps/10; "a/b" under "a")
            kept = ["a/doomed-not", "a/doomed0", *(["a/doomed/under"] if store.nested_keys else [])]
            for key in kept:
                await store.put(key, b"z")
            await store.delete("a/doomed")
            assert await store.head("a/doomed") is None
            with pytest.raises(NotFoundError):
                await store.get("a/doomed")
            assert await store.list("a/") == sorted(["a/kept", *kept])

        run_on_store(store_spec, body)

    def test_a_key_that_only_prefixes_others_names_no_object(self, store_spec: StoreSpec) -> None:
        # "p/q" while only "p/q/r" exists: a directory on a filesystem, nothing on S3 and GCS.
        # Every request treats it as a missing object (the runtime heads and reads keys whose
        # longer relatives exist), and none touches the object under it.
        async def body(store: ObjectStore) -> None:
            version = await store.put("p/q/r", b"under")
            assert await store.head("p/q") is None
            with pytest.raises(NotFoundError):
                await store.get("p/q")
            with pytest.raises(PreconditionFailedError):
                await store.put("p/q", b"x", mode=IfMatch(version))
            await store.delete("p/q")
            await store.delete_many(["p/q", "p"])
            await store.delete_unchanged({"p/q": version, "p": version})
            assert await store.list("p") == ["p/q/r"]
            blob = await store.get("p/q/r")
            assert (blob.data, blob.version) == (b"under", version)

        run_on_store(store_spec, body)

    def test_removing_stale_temp_files_never_touches_an_object(self, store_spec: StoreSpec) -> None:
        # Compaction calls it under each actor's prefix: only a backend's own leftovers of
        # interrupted writes go, however old the objects are.
        async def body(store: ObjectStore) -> None:
            versions = {key: await store.put(key, b"x") for key in ("t/a", "t/b/c", "t-other")}
            assert await store.remove_stale_temp_files("t/", older_than=0.0) == 0
            assert await store.remove_stale_temp_files("", older_than=0.0) == 0
            assert {key: await store.head(key) for key in versions} == versions

        run_on_store(store_spec, body)

    def test_delete_missing_is_not_an_error(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            await store.delete("never/written")
            await store.put("once", b"x")
            await store.delete("once")
            await store.delete("once")
            assert await store.list("") == []

        run_on_store(store_spec, body)

    def test_create_after_delete_succeeds(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            await store.put("k", b"first", mode="create")
            await store.delete("k")
            await store.put("k", b"second", mode="create")
            assert (await store.get("k")).data == b"second"

        run_on_store(store_spec, body)

    # -- delete_many -----------------------------------------------------------
    #: keys per delete request in the delete_many tests (lower than S3's 1000, so that splitting
    #: a call into several requests is tested without writing a thousand objects)
    delete_batch_under_test: int = 3

    def _small_batches(self, store: ObjectStore) -> int:
        """Lower ``store.delete_batch`` for the test; the keys one request now carries."""
        store.delete_batch = min(store.delete_batch, self.delete_batch_under_test)
        return store.delete_batch

    def test_delete_many_deletes_every_key_and_nothing_else(self, store_spec: StoreSpec) -> None:
        doomed = [f"many/{n:03d}" for n in range(8)]
        kept = ["many-not/0", "many/kept", "other/000"]

        async def body(store: ObjectStore) -> None:
            per_request = self._small_batches(store)
            for key in doomed + kept:
                await store.put(key, key.encode())
            before = store.requests["delete"]
            await store.delete_many(reversed(doomed))
            assert await store.list("") == sorted(kept)
            for key in doomed:
                assert await store.head(key) is None
            # one per request sent: ceil(8 / per_request)
            assert store.requests["delete"] - before == -(-len(doomed) // per_request)

        run_on_store(store_spec, body)

    def test_delete_many_of_missing_and_repeated_keys_is_not_an_error(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            self._small_batches(store)
            await store.delete_many(["never/1", "never/2"])
            await store.put("there/1", b"x")
            await store.put("there/2", b"y")
            await store.delete_many(["never/3", "there/1", "there/1", "never/4", "there/2", "there/2"])
            assert await store.list("") == []
            await store.delete_many(["there/1", "there/2"])  # again: already gone
            assert await store.list("") == []

        run_on_store(store_spec, body)

    def test_delete_unchanged_deletes_only_objects_still_at_their_version(
        self, store_spec: StoreSpec
    ) -> None:
        async def body(store: ObjectStore) -> None:
            per_request = self._small_batches(store)
            same = await store.put("cond/same", b"a")
            old = await store.put("cond/overwritten", b"b")
            await store.put("cond/overwritten", b"b")  # (same bytes: a new version all the same)
            gone = await store.put("cond/created-again", b"c", mode="create")
            await store.delete("cond/created-again")
            again = await store.put("cond/created-again", b"c", mode="create")
            kept = await store.put("cond/not-asked", b"d")
            # asked at a version this store never gave (a torn record): it stays
            unparsed = await store.put("cond/torn-version", b"e")
            before = store.requests.snapshot()
            asked = {
                "cond/same": same,
                "cond/overwritten": old,
                "cond/created-again": gone,
                "cond/never": same,
                "cond/torn-version": "not-a-version",
            }
            await store.delete_unchanged(asked)
            after = store.requests.snapshot()
            assert await store.head("cond/same") is None
            assert await store.head("cond/overwritten") not in (None, old)
            assert await store.head("cond/created-again") == again
            assert await store.head("cond/not-asked") == kept
            assert await store.head("cond/torn-version") == unparsed
            assert await store.list("cond/") == [
                "cond/created-again",
                "cond/not-asked",
                "cond/overwritten",
                "cond/torn-version",
            ]
            # one "delete" per request sent (and where the store reads versions first, a HEAD each)
            assert after.get("delete", 0) - before.get("delete", 0) == -(-len(asked) // per_request)
            heads = after.get("head", 0) - before.get("head", 0)
            assert heads == 0 if store.conditional_deletes else heads <= len(asked)
            settled = store.requests.snapshot()
            await store.delete_unchanged({})  # nothing: no request
            assert store.requests.snapshot() == settled

        run_on_store(store_spec, body)

    def test_delete_unchanged_sent_again_leaves_the_object_created_in_between(
        self, store_spec: StoreSpec
    ) -> None:
        # A transport's retry of a delete whose first attempt landed, after the key was written
        # again (an inbox event id sent again): the retry must not delete the new object.
        async def body(store: ObjectStore) -> None:
            first = await store.put("retry/k", b"one", mode="create")
            await store.delete_unchanged({"retry/k": first})
            assert await store.head("retry/k") is None
            second = await store.put("retry/k", b"one", mode="create")
            await store.delete_unchanged({"retry/k": first})
            assert await store.head("retry/k") == second
            assert (await store.get("retry/k")).data == b"one"

        run_on_store(store_spec, body)

    def test_racing_conditional_deletes_never_delete_an_object_created_meanwhile(
        self, store_spec: StoreSpec
    ) -> None:
        # Deleters of one version, each sending its delete twice, and a writer creating the key
        # again as soon as it is gone: every round ends with the writer's object in place.
        if not run_on_store(store_spec, _conditional_deletes):
            pytest.skip("the store reads a version before deleting (conditional_deletes False): narrows only")
        for round_ in range(8):
            key = f"race/deletes/{round_}"
            second = _race_deletes_and_a_create(store_spec, key, deleters=4, timeout=self.wait_timeout)
            assert run_on_store(store_spec, _head_of(key)) == second, round_

    def test_racing_conditional_deletes_never_delete_an_object_written_meanwhile(
        self, store_spec: StoreSpec
    ) -> None:
        # Deleters of one version, each sending its delete twice, and a writer overwriting the
        # key meanwhile: whichever lands first, the writer's object is there at the end (a
        # delete first: the overwrite creates it again; the overwrite first: the deletes find
        # another version). A store that reads the version and then deletes (claiming
        # conditional_deletes all the same) deletes the new object when the write lands in
        # between. The write starts a little later each round, to meet such a window wherever
        # it is; no round's outcome depends on when it lands.
        if not run_on_store(store_spec, _conditional_deletes):
            pytest.skip("the store reads a version before deleting (conditional_deletes False): narrows only")
        for round_ in range(8):
            key = f"race/overwrite/{round_}"
            second = _race_deletes_and_an_overwrite(
                store_spec, key, deleters=4, delay=round_ * 0.002, timeout=self.wait_timeout
            )
            assert run_on_store(store_spec, _head_of(key)) == second, round_

    def test_delete_many_of_nothing_sends_no_request(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            await store.put("k", b"x")
            before = store.requests.snapshot()
            await store.delete_many([])
            await store.delete_many(iter(()))
            assert store.requests.snapshot() == before
            assert await store.list("") == ["k"]

        run_on_store(store_spec, body)

    def test_delete_many_takes_the_keys_vactor_cloud_writes_verbatim(self, store_spec: StoreSpec) -> None:
        # Post, step, dedup and task keys, and ids with characters that need escaping in
        # a URL or in XML (S3's DeleteObjects sends the keys in an XML body).
        doomed = [
            "actors/a-b_c.d/mail/1k8qll07v5ij",
            "actors/a-b_c.d/mail/1k8qll07v5ik",
            f"actors/a-b_c.d/steps/{12:020d}",
            "actors/ünï cødé 🙂/dedup/00000000000000000003-0a1b",
            "actors/x&y<z>'\"q%20+/tasks/call/0",
            "actors/x&y<z>'\"q%20+/mail/000000000000",
        ]
        kept = ["actors/a-b_c.d/HEAD", "actors/ünï cødé 🙂/HEAD"]

        async def body(store: ObjectStore) -> None:
            self._small_batches(store)
            for key in doomed + kept:
                await store.put(key, b"x")
            await store.delete_many(doomed)
            assert await store.list("") == sorted(kept)

        run_on_store(store_spec, body)

    def test_keys_that_are_no_utf8_text_are_refused_before_any_request(self, store_spec: StoreSpec) -> None:
        # A lone surrogate cannot be sent to S3 or GCS, and a directory would store
        # "\udcc3\udca9" under the bytes of "é", another key's file: refused alike everywhere.
        key = "bad/\udcc3\udca9"

        async def body(store: ObjectStore) -> None:
            for request in (
                lambda: store.get(key),
                lambda: store.head(key),
                lambda: store.put(key, b"x"),
                lambda: store.put(key, b"x", mode="create"),
                lambda: store.delete(key),
                lambda: store.delete_many([key]),
                lambda: store.delete_unchanged({key: "1"}),
            ):
                with pytest.raises(StorageError, match="keys are UTF-8 text"):
                    await request()
            assert store.requests.total() == 0, store.requests.snapshot()
            assert await store.list("") == []

        run_on_store(store_spec, body)

    @pytest.mark.parametrize(
        "key", ["", "/", "/abs", "/abs/deeper"], ids=["empty", "slash", "absolute", "absolute-deep"]
    )
    def test_empty_and_absolute_keys_are_refused_before_any_request(
        self, store_spec: StoreSpec, key: str
    ) -> None:
        # Keys are relative to the store's root: "" names no object and "/k" would be a
        # different object on S3 and GCS ("prefix//k") than on a filesystem. Every backend
        # refuses both alike, with the same error, and sends nothing for them.
        async def body(store: ObjectStore) -> list[StorageError]:
            requests: list[Callable[[], Awaitable[object]]] = [
                lambda: store.get(key),
                lambda: store.head(key),
                lambda: store.put(key, b"x"),
                lambda: store.put(key, b"x", mode="create"),
                lambda: store.put(key, b"x", mode=IfMatch("1")),
                lambda: store.delete(key),
                lambda: store.delete_many(["fine", key]),
            ]
            errors: list[StorageError] = []
            for request in requests:
                with pytest.raises(StorageError) as refused:
                    await request()
                errors.append(refused.value)
            if store.inline:  # the synchronous requests of the memory and local stores
                for now in (lambda: store.put_now(key, b"x"), lambda: store.get_now(key)):
                    with pytest.raises(StorageError) as refused:
                        now()
                    errors.append(refused.value)
            assert store.requests.total() == 0, store.requests.snapshot()
            assert await store.list("") == []
            return errors

        for exc in run_on_store(store_spec, body):
            assert type(exc) is StorageError
            assert exc.key == key
            assert str(exc).endswith(
                f": invalid key {key!r}: keys are non-empty and relative (no leading '/')"
            )

    # -- listing -----------------------------------------------------------
    def test_list_is_sorted_recursive_and_prefix_filtered(self, store_spec: StoreSpec) -> None:
        keys = ["a/10", "a/2", "a/1", "ab", "a/sub/deep/x", "b/1", "a-", "c"]

        async def body(store: ObjectStore) -> None:
            for key in keys:
                await store.put(key, key.encode())
            assert await store.list("") == sorted(keys)
            assert await store.list("a/") == ["a/1", "a/10", "a/2", "a/sub/deep/x"]
            assert await store.list("a") == ["a-", "a/1", "a/10", "a/2", "a/sub/deep/x", "ab"]
            assert await store.list("a/1") == ["a/1", "a/10"]
            assert await store.list("a/sub/") == ["a/sub/deep/x"]
            assert await store.list("zzz") == []
            assert await store.list("a/sub") == ["a/sub/deep/x"]

        run_on_store(store_spec, body)

    def test_key_and_keys_under_it_coexist(self, store_spec: StoreSpec) -> None:
        # Object stores have no directories: "a" and "a/b" are two unrelated keys.
        async def body(store: ObjectStore) -> None:
            if not store.nested_keys:
                with pytest.raises(StorageError):
                    await store.put("a", b"file-like", mode="create")
                    await store.put("a/b", b"under it", mode="create")
                return
            await store.put("a", b"file-like", mode="create")
            await store.put("a/b", b"under it", mode="create")
            assert await store.list("a") == ["a", "a/b"]
            assert (await store.get("a")).data == b"file-like"
            assert (await store.get("a/b")).data == b"under it"
            await store.put("c/d", b"first the longer key", mode="create")
            await store.put("c", b"then the shorter", mode="create")
            assert await store.list("") == ["a", "a/b", "c", "c/d"]

        run_on_store(store_spec, body)

    def test_list_start_after_and_limit(self, store_spec: StoreSpec) -> None:
        keys = [f"steps/{n:020d}" for n in range(12)]

        async def body(store: ObjectStore) -> None:
            for key in reversed(keys):
                await store.put(key, b"s")
            await store.put("steps-other", b"not under the prefix")
            assert await store.list("steps/", start_after=keys[4]) == keys[5:]
            # start_after need not name an existing key.
            assert await store.list("steps/", start_after="steps/00000000000000000004x") == keys[5:]
            assert await store.list("steps/", start_after=keys[-1]) == []
            assert await store.list("steps/", start_after="steps/") == keys
            # start_after sorting before the prefix lists from its start (list_actors' cursor
            # "actors/<start_after>0" does, under a longer prefix); after it, nothing
            assert await store.list("steps/", start_after="steps") == keys
            assert await store.list("steps/", start_after="a", limit=2) == keys[:2]
            assert await store.list("steps/", start_after="steps0") == []
            assert await store.list("steps/", limit=3) == keys[:3]
            assert await store.list("steps/", start_after=keys[2], limit=4) == keys[3:7]
            assert await store.list("steps/", limit=100) == keys
            assert await store.list("steps/", start_after=keys[10], limit=5) == keys[11:]

        run_on_store(store_spec, body)

    def test_a_listing_after_a_key_asks_the_store_to_start_there(self, store_spec: StoreSpec) -> None:
        # A listing costs what it returns (a log or a mailbox listed from its newest entry): a
        # page of one key after the sixth is one request, not one per key before it (S3's
        # StartAfter, GCS's startOffset). Listings made without requests (memory, local) list
        # no Listing and have nothing to count.
        keys = [f"from/{n:02d}" for n in range(8)]

        async def body(store: ObjectStore) -> None:
            for key in keys:
                await store.put(key, b"")
            listed = await store.list("from/", start_after=keys[5], limit=1)
            assert listed == [keys[6]]
            if isinstance(listed, Listing):
                assert listed.requests == 1, f"{listed.requests} requests for one key"

        run_on_store(store_spec, body)

    #: pairs the writer of the one-moment listing test writes while the lister lists
    one_moment_pairs: int = 40

    def test_a_listing_reported_as_one_moment_never_shows_a_write_without_an_earlier_one(
        self, store_spec: StoreSpec
    ) -> None:
        # docs/protocol.md: of two objects written one after the other, a listing the store
        # reports as one moment (listed_at_one_moment) never holds the second without the
        # first; the inbox and the mailbox trust such a listing at once. A writer writes pairs,
        # the first of each sorting before every second ("0-i", then "1-i"), while a lister
        # lists: a listing read in pieces that passed "0-i" before it was written and reached
        # "1-i" after shows the second alone, and must not be reported as one moment. (A
        # mailbox prefix: the local store reports its mailbox listings as one moment, and
        # those only.)
        prefix = "moment/mail/"
        pairs = self.one_moment_pairs
        filler = [f"{prefix}0-{n:04d}" for n in range(pairs)] + [f"{prefix}1-{n:04d}" for n in range(pairs)]
        listing = threading.Event()
        written = threading.Event()

        async def fill(store: ObjectStore) -> None:
            for at in range(0, len(filler), 20):
                await asyncio.gather(*(store.put(key, b"") for key in filler[at : at + 20]))

        async def write(store: ObjectStore) -> None:
            try:
                await asyncio.to_thread(listing.wait, self.wait_timeout)
                for n in range(pairs, 2 * pairs):
                    await store.put(f"{prefix}0-{n:04d}", b"")
                    await store.put(f"{prefix}1-{n:04d}", b"")
                    await asyncio.sleep(0.001)  # (spread over the listings, not a condition)
            finally:
                written.set()

        async def list_meanwhile(store: ObjectStore) -> None:
            deadline = time.monotonic() + self.wait_timeout
            try:
                while time.monotonic() < deadline:
                    done = written.is_set()
                    listed = await store.list(prefix)
                    listing.set()
                    if store.listed_at_one_moment(prefix, listed):
                        present = set(listed)
                        alone = [
                            key
                            for key in listed
                            if key.startswith(f"{prefix}1-") and f"{prefix}0-{key[-4:]}" not in present
                        ]
                        assert not alone, (
                            f"a listing reported as one moment holds {alone[:3]} without the "
                            "objects written before them"
                        )
                    if done:
                        return
            finally:
                listing.set()  # (a lister that failed does not hold the writer back)

        run_on_store(store_spec, fill)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            lister = pool.submit(run_on_store, store_spec, list_meanwhile)
            writer = pool.submit(run_on_store, store_spec, write)
            writer.result(timeout=self.wait_timeout)
            lister.result(timeout=self.wait_timeout)

    def test_a_listing_of_several_pages_is_not_reported_as_one_moment(self, store_spec: StoreSpec) -> None:
        # docs/protocol.md: one request is one moment, a listing of several is not, and readers
        # tell one from the other (the inbox and the mailbox wait for a second listing then).
        async def body(store: ObjectStore) -> None:
            page = store.snapshot_list_keys
            count = 3 if page is None else max(page, 1) + 1
            keys = [f"paged/{n:05d}" for n in range(count)]
            for at in range(0, count, 50):
                await asyncio.gather(*(store.put(key, b"") for key in keys[at : at + 50]))
            listed = await store.list("paged/")
            assert listed == keys
            # None: every listing is one moment (made under the store's lock)
            assert store.listed_at_one_moment("paged/", listed) is (page is None)

        run_on_store(store_spec, body)

    def test_list_sees_writes_and_deletes_of_another_client(self, store_spec: StoreSpec) -> None:
        # Another machine may have written a moment ago: listing must not answer from a cache.
        async def body(store: ObjectStore) -> None:
            other = store_spec.open()
            try:
                await store.put("p/1", b"1")
                assert await store.list("p/") == ["p/1"]
                assert await store.head("p/2") is None
                await other.put("p/2", b"2")
                assert await store.list("p/") == ["p/1", "p/2"]
                assert await store.list("p/", start_after="p/1") == ["p/2"]
                assert (await store.get("p/2")).data == b"2"
                await other.delete("p/1")
                assert await store.list("p/") == ["p/2"]
                assert await store.head("p/1") is None
            finally:
                await other.close()

        run_on_store(store_spec, body)

    def test_a_listed_version_changes_when_its_object_is_replaced(self, store_spec: StoreSpec) -> None:
        # docs/events.md: a reader holding what it read at a key (the inbox, an event) tells by a
        # listing's versions (at least those of the objects this store read) that the object
        # there was replaced since (deleted by another client and written again, same bytes),
        # and that one left alone was not. The local store's listings named no versions.
        async def body(store: ObjectStore) -> None:
            other = store_spec.open()
            try:
                await store.put("held/a", b"same")
                await store.put("held/b", b"same")
                read = {key: (await store.get(key)).version for key in ("held/a", "held/b")}
                listed = await store.list("held/")
                assert isinstance(listed, Listing) and listed.versions is not None
                assert {key: listed.versions.get(key) for key in listed} == read
                await other.delete("held/a")
                again = await other.put("held/a", b"same", mode="create")
                for _ in range(2):  # (the second: what the first learnt is still right)
                    listed = await store.list("held/")
                    assert isinstance(listed, Listing) and listed.versions is not None
                    assert again != read["held/a"]
                    assert {key: listed.versions.get(key) for key in listed} == {
                        "held/a": again,
                        "held/b": read["held/b"],
                    }
                # An object this store never read: a listing may leave its version out, but a
                # version it names is the current one (S3 and GCS name every object's).
                first = await other.put("held/c", b"same")
                await store.list("held/")
                await other.delete("held/c")
                current = await other.put("held/c", b"same", mode="create")
                listed = await store.list("held/")
                assert isinstance(listed, Listing) and listed.versions is not None
                assert listed.versions.get("held/c") in (None, current), (first, current)
            finally:
                await other.close()

        run_on_store(store_spec, body)

    # -- create-only ---------------------------------------------------------
    def test_create_refuses_existing_key_and_keeps_its_bytes(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            version = await store.put("once", b"first", mode="create")
            with pytest.raises(AlreadyExistsError):
                await store.put("once", b"second", mode="create")
            blob = await store.get("once")
            assert blob.data == b"first"
            assert blob.version == version

        run_on_store(store_spec, body)

    def test_racing_threads_create_exactly_one_winner(self, store_spec: StoreSpec) -> None:
        n = self.racing_threads
        start = threading.Barrier(n)
        key = "race/threads"

        def contender(who: int) -> _Outcome:
            return run_on_store(
                store_spec,
                lambda store: _race_create(
                    store, key, who, _payload_of(who), lambda: start.wait(self.wait_timeout)
                ),
            )

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(contender, who) for who in range(n)]
            outcomes = [f.result(timeout=self.wait_timeout) for f in futures]
        self._check_one_winner(store_spec, key, outcomes, n)

    def test_racing_processes_create_exactly_one_winner(
        self,
        store_spec: StoreSpec,
        store_lane: Lane,
        spawn_context: multiprocessing.context.SpawnContext,
    ) -> None:
        if not store_lane.multiprocess:
            pytest.skip(f"lane {store_lane.name!r} stores are not shared between processes")
        n = self.racing_processes
        start = spawn_context.Barrier(n)
        results: multiprocessing.Queue[_Outcome] = spawn_context.Queue()
        key = "race/processes"
        procs = [
            spawn_context.Process(
                target=_create_in_process,
                args=(_ProcessRace(store_spec, key, self.wait_timeout), who, start, results),
                name=f"create-race-{who}",
            )
            for who in range(n)
        ]
        outcomes: list[_Outcome] = []
        try:
            for proc in procs:
                proc.start()
            deadline = time.monotonic() + self.wait_timeout
            while len(outcomes) < n:
                try:
                    outcomes.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
                except queue.Empty:
                    pytest.fail(
                        f"only {len(outcomes)} of {n} processes reported within {self.wait_timeout}s; "
                        f"exit codes {[p.exitcode for p in procs]}"
                    )
            for proc in procs:
                proc.join(timeout=self.wait_timeout)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=10)
            results.close()
        assert [p.exitcode for p in procs] == [0] * n
        self._check_one_winner(store_spec, key, outcomes, n)

    @staticmethod
    def _check_one_winner(spec: StoreSpec, key: str, outcomes: list[_Outcome], n: int) -> None:
        errors = [o for o in outcomes if o.kind == "error"]
        assert not errors, f"contenders failed with errors other than AlreadyExistsError: {errors}"
        winners = [o for o in outcomes if o.kind == "won"]
        assert len(winners) == 1, f"expected exactly one winner of {n}, got {winners}"
        losers = [o for o in outcomes if o.kind == "exists"]
        assert len(losers) == n - 1
        assert {o.error_type for o in losers} == {"AlreadyExistsError"}
        assert all(key in o.detail for o in losers), losers
        winner = winners[0]

        async def read(store: ObjectStore) -> None:
            blob = await store.get(key)
            assert blob.data == _payload_of(winner.who)
            assert blob.version == winner.detail

        run_on_store(spec, read)

    # -- compare-and-swap ----------------------------------------------------
    def test_if_match_with_current_version_succeeds_with_new_version(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            v1 = await store.put("cas", b"1", mode="create")
            v2 = await store.put("cas", b"2", mode=IfMatch(v1))
            assert v2 != v1
            assert await store.head("cas") == v2
            blob = await store.get("cas")
            assert (blob.data, blob.version) == (b"2", v2)
            v3 = await store.put("cas", b"3", mode=IfMatch(v2))
            assert v3 not in (v1, v2)
            assert (await store.get("cas")).data == b"3"

        run_on_store(store_spec, body)

    def test_if_match_with_stale_version_is_refused(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            stale = await store.put("cas", b"old")
            current = await store.put("cas", b"new")
            with pytest.raises(PreconditionFailedError) as info:
                await store.put("cas", b"lost update", mode=IfMatch(stale))
            assert "cas" in str(info.value)
            blob = await store.get("cas")
            assert (blob.data, blob.version) == (b"new", current)

        run_on_store(store_spec, body)

    def test_if_match_on_missing_key_is_refused(self, store_spec: StoreSpec) -> None:
        async def body(store: ObjectStore) -> None:
            version = await store.put("elsewhere", b"x")
            with pytest.raises(PreconditionFailedError):
                await store.put("missing", b"y", mode=IfMatch(version))
            assert await store.head("missing") is None
            # A key that existed and was deleted is missing too.
            gone = await store.put("gone", b"z")
            await store.delete("gone")
            with pytest.raises(PreconditionFailedError):
                await store.put("gone", b"again", mode=IfMatch(gone))
            assert await store.head("gone") is None

        run_on_store(store_spec, body)

    def test_racing_if_match_writers_exactly_one_wins(self, store_spec: StoreSpec) -> None:
        n = 8
        start = threading.Barrier(n)
        base = run_on_store(store_spec, lambda store: store.put("cas", b"base"))

        async def contend(store: ObjectStore, who: int) -> _Outcome:
            await store.head("cas")
            await asyncio.to_thread(start.wait, self.wait_timeout)
            try:
                version = await store.put("cas", _payload_of(who), mode=IfMatch(base))
            except PreconditionFailedError as exc:
                return _Outcome(who, "refused", str(exc), type(exc).__name__)
            except Exception as exc:
                return _Outcome(who, "error", repr(exc), type(exc).__name__)
            return _Outcome(who, "won", version)

        def contender(who: int) -> _Outcome:
            return run_on_store(store_spec, lambda store: contend(store, who))

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            outcomes = [
                f.result(timeout=self.wait_timeout) for f in [pool.submit(contender, w) for w in range(n)]
            ]
        winners = [o for o in outcomes if o.kind == "won"]
        assert [o for o in outcomes if o.kind == "error"] == []
        assert len(winners) == 1, outcomes
        blob = run_on_store(store_spec, lambda store: store.get("cas"))
        assert (blob.data, blob.version) == (_payload_of(winners[0].who), winners[0].detail)

    # -- versions ------------------------------------------------------------
    def test_rewriting_same_bytes_never_reuses_a_version(self, store_spec: StoreSpec) -> None:
        # A, B, A again: a content hash would make the third version equal the
        # first, and a writer holding the first would wrongly win a CAS (ABA).
        async def body(store: ObjectStore) -> None:
            seen = [await store.put("aba", b"A", mode="create")]
            seen.append(await store.put("aba", b"B", mode=IfMatch(seen[-1])))
            seen.append(await store.put("aba", b"A", mode=IfMatch(seen[-1])))
            seen.append(await store.put("aba", b"A"))
            seen.append(await store.put("aba", b"A"))
            await store.delete("aba")
            seen.append(await store.put("aba", b"A", mode="create"))
            assert len(set(seen)) == len(seen), f"a version was reused: {seen}"
            with pytest.raises(PreconditionFailedError):
                await store.put("aba", b"ABA", mode=IfMatch(seen[0]))
            assert (await store.get("aba")).version == seen[-1]

        run_on_store(store_spec, body)

    # -- atomicity -------------------------------------------------------------
    def test_reader_never_sees_a_partial_object(self, store_spec: StoreSpec) -> None:
        # Every object written is one repeated byte; a torn read would mix two
        # fills or come up short.
        size = self.large_size
        key = "torn/object"
        writer_done = threading.Event()
        # Each write waits for the reader to finish one more read, so the writes are spread
        # over the reads, not over before one (on a fast store, in memory, they all were:
        # the reader then saw the last one whole whatever the store did with a read that a
        # write lands in).
        reads = _ReadCount()
        run_on_store(store_spec, lambda store: store.put(key, _uniform(1, size)))

        async def write(store: ObjectStore) -> int:
            version = await store.head(key)
            assert version is not None
            try:
                for i in range(2, 2 + self.torn_read_writes):
                    await asyncio.to_thread(reads.wait_for_one_more, self.wait_timeout)
                    mode: PutMode = IfMatch(version) if i % 2 else "overwrite"
                    version = await store.put(key, _uniform(i, size), mode=mode)
            finally:
                writer_done.set()
            return self.torn_read_writes

        async def read(store: ObjectStore) -> list[int]:
            fills: list[int] = []
            deadline = time.monotonic() + self.wait_timeout
            # One more read after the writer finished, so at least one read always happens.
            try:
                while True:
                    finished = writer_done.is_set()
                    blob = await store.get(key)
                    reads.one_more()
                    assert _is_uniform(blob.data, size), (
                        f"torn read: {len(blob.data)} bytes, first {blob.data[:1]!r}, last {blob.data[-1:]!r}"
                    )
                    fills.append(blob.data[0])
                    if finished or time.monotonic() > deadline:
                        return fills
            finally:
                reads.over()  # (a reader that failed does not hold the writer back)

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            reader = pool.submit(run_on_store, store_spec, read)
            writer = pool.submit(run_on_store, store_spec, write)
            assert writer.result(timeout=self.wait_timeout) == self.torn_read_writes
            fills = reader.result(timeout=self.wait_timeout)
        assert fills, "the reader never read"
        assert fills[-1] == 1 + self.torn_read_writes
        assert set(fills) <= set(range(1, 2 + self.torn_read_writes))

    # -- model-based ------------------------------------------------------------
    def test_store_behaves_like_a_dict_model(self, store_spec: StoreSpec) -> None:
        """Hypothesis drives random operation sequences and compares every answer with a dict."""
        # One store for all runs, used only on the sync bridge's loop.
        store = store_spec.open()
        try:
            self._run_dict_model(store)
        finally:
            sync(store.close())

    @staticmethod
    def _run_dict_model(store: ObjectStore) -> None:
        run_state_machine_as_test(
            _dict_model_machine(store),
            settings=settings(
                max_examples=20,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )

    # -- errors ---------------------------------------------------------------
    def test_errors_are_vactor_errors_naming_the_key(self, store_spec: StoreSpec) -> None:
        key = "errors/some-key"

        async def body(store: ObjectStore) -> tuple[StorageError, StorageError, StorageError]:
            with pytest.raises(NotFoundError) as missing:
                await store.get(key)
            stale = await store.put(key, b"x", mode="create")
            with pytest.raises(AlreadyExistsError) as exists:
                await store.put(key, b"y", mode="create")
            await store.put(key, b"z")
            with pytest.raises(PreconditionFailedError) as refused:
                await store.put(key, b"lost", mode=IfMatch(stale))
            return missing.value, exists.value, refused.value

        missing, exists, refused = run_on_store(store_spec, body)
        # The builtins callers already catch keep working.
        assert isinstance(missing, FileNotFoundError)
        assert isinstance(exists, FileExistsError)
        for exc in (missing, exists, refused):
            assert key in str(exc), f"{type(exc).__name__} does not name the key: {exc}"
            assert exc.key == key
            # Errors cross process boundaries (executors, multiprocessing) intact.
            copy: Any = pickle.loads(pickle.dumps(exc))
            assert type(copy) is type(exc)
            assert (str(copy), copy.key) == (str(exc), exc.key)


# No key is a prefix-directory of another here ("a" with "a/b"): that case has its own test.
_MODEL_KEYS = st.sampled_from(["a", "b/c", "b/d", "b/e/f", "ü k"])
_MODEL_DATA = st.binary(max_size=64)


def _dict_model_machine(store: ObjectStore) -> type[RuleBasedStateMachine]:
    """A state machine comparing a store (used only through the sync bridge's loop) with a dict.

    Each run gets its own key prefix in the test's store, so runs never see
    each other's objects.
    """

    class DictModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.prefix = f"model-{uuid.uuid4().hex}/"
            self.model: dict[str, tuple[bytes, str]] = {}
            self.stale: dict[str, str] = {}

        @rule(key=_MODEL_KEYS, data=_MODEL_DATA)
        def overwrite(self, key: str, data: bytes) -> None:
            old = self.model.get(key)
            version = sync(store.put(self.prefix + key, data))
            if old is not None:
                assert version != old[1]
                self.stale[key] = old[1]
            self.model[key] = (data, version)

        @rule(key=_MODEL_KEYS, data=_MODEL_DATA)
        def create(self, key: str, data: bytes) -> None:
            if key in self.model:
                with pytest.raises(AlreadyExistsError):
                    sync(store.put(self.prefix + key, data, mode="create"))
            else:
                self.model[key] = (data, sync(store.put(self.prefix + key, data, mode="create")))

        @rule(key=_MODEL_KEYS, data=_MODEL_DATA, fresh=st.booleans())
        def compare_and_swap(self, key: str, data: bytes, fresh: bool) -> None:
            current = self.model.get(key)
            expected = current[1] if fresh and current is not None else self.stale.get(key)
            if expected is None:
                return
            if current is not None and expected == current[1]:
                version = sync(store.put(self.prefix + key, data, mode=IfMatch(expected)))
                assert version != current[1]
                self.stale[key] = current[1]
                self.model[key] = (data, version)
            else:
                with pytest.raises(PreconditionFailedError):
                    sync(store.put(self.prefix + key, data, mode=IfMatch(expected)))

        @rule(key=_MODEL_KEYS)
        def delete(self, key: str) -> None:
            sync(store.delete(self.prefix + key))
            old = self.model.pop(key, None)
            if old is not None:
                self.stale[key] = old[1]

        @rule(key=_MODEL_KEYS)
        def get(self, key: str) -> None:
            if key in self.model:
                blob = sync(store.get(self.prefix + key))
                assert (blob.data, blob.version) == self.model[key]
            else:
                with pytest.raises(NotFoundError):
                    sync(store.get(self.prefix + key))

        @invariant()
        def listing_matches(self) -> None:
            listed = sync(store.list(self.prefix))
            assert listed == sorted(self.prefix + k for k in self.model)

        def teardown(self) -> None:
            for key in list(self.model):
                sync(store.delete(self.prefix + key))

    return DictModel

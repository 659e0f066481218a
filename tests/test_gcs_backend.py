"""GCS-specific behaviour of GCSStore, against a real fake-gcs-server over HTTP on 127.0.0.1.

The shared conformance suite covers the contract every backend gives; these
tests cover what is particular to GCS: how 412/404/429/503 are told apart,
that listing reads the bucket and not gcsfs's cache, large single-request
uploads, and that the emulator really arbitrates concurrent creates.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import pickle
import socket
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from loopback_gcs import gcs_answering

from vactor_cloud.errors import (
    AlreadyExistsError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.storage import IfMatch, ObjectStore, open_store
from vactor_cloud.storage._gcs import GCSStore
from vactor_cloud.testing._fakegcs import FakeGCSLane
from vactor_cloud.testing.lanes import LaneUnavailable, StoreSpec

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture(scope="module")
def lane() -> Iterator[FakeGCSLane]:
    lane = FakeGCSLane()
    try:
        lane.start()
    except LaneUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"fake-gcs-server unavailable in CI: {exc}")
        pytest.skip(f"fake-gcs-server unavailable: {exc}")
    yield lane
    lane.stop()


@pytest.fixture
def spec(lane: FakeGCSLane) -> Iterator[StoreSpec]:
    spec = lane.new_store()
    yield spec
    lane.drop_store(spec)


@asynccontextmanager
async def opened(spec: StoreSpec) -> AsyncIterator[ObjectStore]:
    store = spec.open()
    try:
        yield store
    finally:
        await store.close()


# -- conditional writes ---------------------------------------------------------
def test_create_on_existing_key_raises_already_exists(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as store:
            version = await store.put("steps/1", b"first", mode="create")
            with pytest.raises(AlreadyExistsError) as info:
                await store.put("steps/1", b"second", mode="create")
            assert info.value.key == "steps/1"
            assert "steps/1" in str(info.value)
            blob = await store.get("steps/1")
            assert (blob.data, blob.version) == (b"first", version)

    run(scenario())


def test_if_match_with_stale_generation_raises_precondition_failed(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as store:
            old = await store.put("HEAD", b"1", mode="create")
            new = await store.put("HEAD", b"2", mode=IfMatch(old))
            assert new != old
            with pytest.raises(PreconditionFailedError) as info:
                await store.put("HEAD", b"3", mode=IfMatch(old))
            assert not isinstance(info.value, AlreadyExistsError)
            assert (await store.get("HEAD")).data == b"2"
            assert await store.put("HEAD", b"3", mode=IfMatch(new)) not in (old, new)

    run(scenario())


def test_if_match_on_missing_key_raises_precondition_failed(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as store:
            version = await store.put("elsewhere", b"x")
            with pytest.raises(PreconditionFailedError):
                await store.put("missing", b"x", mode=IfMatch(version))
            with pytest.raises(PreconditionFailedError):
                await store.put("missing", b"x", mode=IfMatch("not-a-generation"))
            assert await store.head("missing") is None

    run(scenario())


def test_sixteen_concurrent_creators_of_one_key_exactly_one_wins(spec: StoreSpec) -> None:
    async def create(index: int) -> str | None:
        # One store (one connection pool) per writer, as separate processes would have.
        async with opened(spec) as store:
            try:
                await store.put("steps/00000000000000000007", f"writer {index}".encode(), mode="create")
            except AlreadyExistsError:
                return None
            return f"writer {index}"

    async def scenario() -> None:
        outcomes = await asyncio.gather(*(create(i) for i in range(16)))
        winners = [o for o in outcomes if o is not None]
        assert len(winners) == 1, outcomes
        async with opened(spec) as store:
            assert (await store.get("steps/00000000000000000007")).data == winners[0].encode()

    run(scenario())


# -- reads, heads, deletes --------------------------------------------------------
def test_missing_object_raises_not_found_and_heads_none(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as store:
            with pytest.raises(NotFoundError) as info:
                await store.get("absent")
            assert isinstance(info.value, FileNotFoundError)
            assert info.value.key == "absent"
            assert await store.head("absent") is None
            await store.delete("absent")  # deleting a missing object is fine

    run(scenario())


def test_head_and_get_report_the_generation_put_returned(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as store:
            version = await store.put("obj", b"payload")
            assert version.isdigit()
            assert await store.head("obj") == version
            assert (await store.get("obj")).version == version
            await store.delete("obj")
            assert await store.head("obj") is None

    run(scenario())


# -- listing ----------------------------------------------------------------------
def test_listing_with_start_after_sees_another_clients_writes(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as reader, opened(spec) as writer:
            for n in range(3):
                await writer.put(f"steps/{n:05d}", b"x", mode="create")
            assert await reader.list("steps/", start_after="steps/00000") == ["steps/00001", "steps/00002"]
            # A cached listing would miss these: they are written after the
            # reader listed, by another client.
            await writer.put("steps/00003", b"x", mode="create")
            await writer.delete("steps/00001")
            assert await reader.list("steps/", start_after="steps/00000") == ["steps/00002", "steps/00003"]
            assert await reader.list("steps/", start_after="steps/00002", limit=1) == ["steps/00003"]
            assert await reader.list("steps/", start_after="steps/00003") == []

    run(scenario())


def test_listing_pages_through_more_keys_than_one_page(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vactor_cloud.storage._gcs as gcs_module

    monkeypatch.setattr(gcs_module, "_LIST_PAGE", 3)

    async def scenario() -> None:
        async with opened(spec) as store:
            keys = [f"k/{n:03d}" for n in range(10)]
            await asyncio.gather(*(store.put(k, b"") for k in keys))
            assert await store.list("k/") == keys
            assert await store.list("k/", start_after="k/004") == keys[5:]
            assert await store.list("k/", start_after="k/004", limit=4) == keys[5:9]
            assert await store.list("k/", limit=0) == []

    run(scenario())


def test_stores_under_different_prefixes_of_one_bucket_do_not_see_each_other(spec: StoreSpec) -> None:
    async def scenario() -> None:
        other = StoreSpec(spec.url + "-sibling", spec.options, spec.env)
        async with opened(spec) as store, opened(other) as sibling:
            await store.put("a", b"mine")
            await sibling.put("a", b"theirs")
            assert await store.list("") == ["a"]
            assert (await store.get("a")).data == b"mine"
            assert (await sibling.get("a")).data == b"theirs"

    run(scenario())


def test_unicode_and_space_keys_round_trip_and_list(spec: StoreSpec) -> None:
    keys = ["actors/ünïcødé/steps/1", "actors/with space/HEAD", "actors/日本/a+b%20c?d#e"]

    async def scenario() -> None:
        async with opened(spec) as store:
            for key in keys:
                version = await store.put(key, key.encode(), mode="create")
                assert await store.head(key) == version
                assert (await store.get(key)).data == key.encode()
            assert await store.list("actors/") == sorted(keys)
            assert await store.list("actors/with ") == ["actors/with space/HEAD"]
            for key in keys:
                await store.delete(key)
            assert await store.list("actors/") == []

    run(scenario())


def test_invalid_keys_are_refused_before_any_request(spec: StoreSpec) -> None:
    async def scenario() -> None:
        async with opened(spec) as store:
            for key in ("", "/absolute"):
                with pytest.raises(StorageError):
                    await store.put(key, b"x")
            assert store.requests.total() == 0  # refused before a request is counted or sent

    run(scenario())


def test_uploads_carry_the_md5_gcs_checks_the_body_against() -> None:
    """Real GCS refuses an upload whose body does not match the md5Hash its metadata gives,
    so it must be right: read from the upload the store sends (fake-gcs-server fills in an MD5
    of its own when none is sent, so the object's metadata there shows one either way)."""
    data = os.urandom(1000)
    uploads: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        uploads.append(await request.read())
        return web.json_response({"name": "prefix/checked", "generation": "1"})

    async def scenario() -> None:
        async with gcs_answering(handle) as endpoint:
            store = GCSStore("bucket/prefix", endpoint_url=endpoint, token="anon", project="p")
            try:
                await store.put("checked", data)
            finally:
                await store.close()

    run(scenario())
    metadata = json.loads(uploads[0].split(b"\r\n\r\n", 2)[1].split(b"\r\n", 1)[0])
    assert metadata["name"] == "prefix/checked", metadata
    assert metadata["md5Hash"] == base64.b64encode(hashlib.md5(data).digest()).decode(), metadata


# -- large objects ------------------------------------------------------------------
def test_five_mib_object_round_trips_and_overwrites_atomically(spec: StoreSpec) -> None:
    size = 5 * 1024 * 1024 + 7
    old, new = os.urandom(size), os.urandom(size)

    async def scenario() -> None:
        async with opened(spec) as writer, opened(spec) as reader:
            version = await writer.put("big", old, mode="create")
            assert (await reader.get("big")).data == old

            async def read_while_writing() -> list[bytes]:
                seen = []
                for _ in range(6):
                    seen.append((await reader.get("big")).data)
                return seen

            reads, _ = await asyncio.gather(
                read_while_writing(), writer.put("big", new, mode=IfMatch(version))
            )
            assert all(data in (old, new) for data in reads), "a reader saw a partial object"
            assert (await reader.get("big")).data == new

    run(scenario())


# -- error translation on the wire ----------------------------------------------------
@asynccontextmanager
async def answering(status: int, hits: list[str]) -> AsyncIterator[str]:
    """A loopback HTTP server answering every request with ``status`` and a GCS-style error."""

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.method)
        return web.json_response({"error": {"code": status, "message": f"status {status}"}}, status=status)

    async with gcs_answering(handle) as endpoint:
        yield endpoint


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_answers_raise_rate_limited_without_retrying_conditional_puts(status: int) -> None:
    async def scenario() -> None:
        hits: list[str] = []
        async with answering(status, hits) as endpoint:
            store = GCSStore("bucket/prefix", endpoint_url=endpoint, token="anon", project="p")
            try:
                with pytest.raises(RateLimitedError) as info:
                    await store.put("HEAD", b"x", mode=IfMatch("5"))
                assert "HEAD" in str(info.value) and "back off" in str(info.value)
                assert hits == ["POST"]
                with pytest.raises(RateLimitedError):
                    await store.get("HEAD")
            finally:
                await store.close()

    run(scenario())


def test_server_errors_are_retried_for_reads_then_raise_retryable() -> None:
    async def scenario() -> None:
        hits: list[str] = []
        async with answering(500, hits) as endpoint:
            store = GCSStore("bucket", endpoint_url=endpoint, token="anon", project="p")
            try:
                with pytest.raises(RetryableStorageError):
                    await store.get("k")
                assert hits == ["GET"] * 3
                hits.clear()
                with pytest.raises(RetryableStorageError) as info:
                    await store.put("k", b"x", mode="create")
                assert hits == ["POST"], "a conditional put must not be repeated blindly"
                assert "may or may not" in str(info.value)
            finally:
                await store.close()

    run(scenario())


def test_forbidden_raises_storage_error_with_a_hint() -> None:
    async def scenario() -> None:
        hits: list[str] = []
        async with answering(403, hits) as endpoint:
            store = GCSStore("bucket", endpoint_url=endpoint, token="anon", project="p")
            try:
                with pytest.raises(StorageError) as info:
                    await store.list("")
                assert not isinstance(info.value, RetryableStorageError)
                assert "credentials" in str(info.value)
            finally:
                await store.close()

    run(scenario())


@pytest.mark.parametrize(
    ("status", "expected", "hint"),
    [(401, AuthenticationError, "GOOGLE_APPLICATION_CREDENTIALS"), (403, PermissionDeniedError, "IAM")],
)
def test_refused_credentials_and_denied_permissions_are_not_reported_as_unreachable(
    status: int, expected: type[StorageError], hint: str
) -> None:
    async def scenario() -> None:
        hits: list[str] = []
        async with answering(status, hits) as endpoint:
            store = GCSStore("bucket", endpoint_url=endpoint, token="anon", project="p")
            try:
                with pytest.raises(expected) as info:
                    await store.get("k")
                assert type(info.value) is expected and isinstance(info.value, PermissionError)
                assert hint in str(info.value) and hits == ["GET"]  # not retried: it will not pass
            finally:
                await store.close()

    run(scenario())


def test_unreachable_endpoint_raises_retryable_storage_error() -> None:
    # Bound and never listening for the whole test: it refuses connections, and no server
    # another test starts meanwhile can take the port and answer in its place.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

        async def scenario() -> None:
            store = GCSStore("bucket", endpoint_url=f"http://127.0.0.1:{port}", token="anon", project="p")
            try:
                with pytest.raises(RetryableStorageError):
                    await store.head("k")
            finally:
                await store.close()

        run(scenario())


# -- sessions, processes, lane ----------------------------------------------------------
def test_one_store_works_across_event_loops(spec: StoreSpec) -> None:
    store = spec.open()
    run(store.put("a", b"1"))
    # A new loop: the session made on the first one cannot be reused.
    assert run(store.get("a")).data == b"1"
    run(store.close())


def _child_put(spec: StoreSpec, key: str) -> str:
    async def main() -> str:
        async with opened(spec) as store:
            return await store.put(key, b"from child", mode="create")

    return asyncio.run(main())


def test_store_spec_reaches_the_server_from_a_spawned_process(spec: StoreSpec) -> None:
    assert pickle.loads(pickle.dumps(spec)) == spec
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        version = pool.apply(_child_put, (spec, "child/key"))
    blob = run(_get(spec, "child/key"))
    assert (blob.data, blob.version) == (b"from child", version)


async def _get(spec: StoreSpec, key: str) -> Any:
    async with opened(spec) as store:
        return await store.get(key)


def test_open_store_accepts_gs_and_gcs_urls(spec: StoreSpec) -> None:
    for url in (spec.url, spec.url.replace("gs://", "gcs://", 1)):
        store = open_store(url, **spec.options)
        assert isinstance(store, GCSStore)
        assert store.url == spec.url


def test_lane_listens_on_loopback_only(lane: FakeGCSLane) -> None:
    port = int(lane.endpoint.rsplit(":", 1)[1])
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("no /proc/net/tcp to inspect")
    listening = [
        fields[1]
        for fields in (line.split() for line in table.read_text().splitlines()[1:])
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port
    ]
    assert listening == [f"0100007F:{port:04X}"]


def test_lane_is_unavailable_when_the_binary_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VACTOR_FAKE_GCS_SERVER", str(tmp_path / "no-such-binary"))
    with pytest.raises(LaneUnavailable, match="no-such-binary"):
        FakeGCSLane().start()


def test_lane_is_unavailable_when_the_binary_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "fake-gcs-server"
    broken.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("VACTOR_FAKE_GCS_SERVER", str(broken))
    with pytest.raises(LaneUnavailable, match="cannot start"):
        FakeGCSLane().start()


def test_a_token_file_that_does_not_exist_is_refused_when_the_store_is_opened(tmp_path: Path) -> None:
    """``token=/path/key.json`` naming no file: gcsfs takes the string for an access token and
    asks Google's tokeninfo endpoint about it, so a mistyped path was reported as a network
    failure to oauth2.googleapis.com (or a refused token). It is refused at once, naming the path."""
    missing = tmp_path / "no-such-key.json"
    with pytest.raises(ValueError, match=r"no-such-key\.json.*does not exist"):
        GCSStore("bucket/p", endpoint_url="http://127.0.0.1:9", token=str(missing), project="p")


def test_a_token_file_that_is_not_a_credentials_file_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    """A JSON file that is neither a service-account key nor an authorized-user file: gcsfs
    failed with ``KeyError: 'refresh_token'``, which left the store as it was (``vactor``: exit 1,
    'KeyError: refresh_token'). It is a :class:`StorageError` saying the credentials are at fault."""
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"type": "nonsense"}))

    async def scenario() -> None:
        store = GCSStore("bucket/p", endpoint_url="http://127.0.0.1:9", token=str(odd), project="p")
        try:
            with pytest.raises(StorageError, match=r"refresh_token.*check the credentials"):
                await store.head("k")
        finally:
            await store.close()

    run(scenario())


# -- a store closed under a request (review h111) -------------------------------------------------------
def test_a_request_whose_session_was_closed_under_it_fails_as_a_storage_error_not_sent(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown (at exit: a daemon thread's call on the runtime being closed) closed the
    store's aiohttp session between a request taking it and sending on it: aiohttp's own
    ``RuntimeError('Session is closed')`` reached the caller, past the storage boundary."""

    async def scenario() -> None:
        async with opened(spec) as store:
            assert isinstance(store, GCSStore)
            await store.put("k", b"v")
            taken = GCSStore._filesystem

            async def closed_under_it(self: GCSStore) -> Any:
                fs = await taken(self)
                await self.close()  # (a shutdown's, meanwhile, on the same loop)
                return fs

            monkeypatch.setattr(GCSStore, "_filesystem", closed_under_it)
            with pytest.raises(RetryableStorageError, match="not sent"):
                await store.get("k")
            with pytest.raises(RetryableStorageError, match="not sent"):
                await store.put("k2", b"v", mode="create")  # (nothing sent: no doubt to report)
            monkeypatch.undo()
            assert (await store.get("k")).data == b"v"
            assert await store.head("k2") is None

    run(scenario())

"""The storage boundary under faults, from a hostile review (review-h43): deletes bounded per
folder where each key is its own request (GCS, local, memory), server answers the contract may
not expect (a repeated listing page token, 409 on a GCS conditional upload, a body cut short),
and a silent GCS endpoint: every operation, ``close`` included, ends within its deadline.

No timing assertions: what may hang is bounded by ``HANG``; requests are held by test stores
until the test releases them, or answered by loopback servers written here."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from actors import OrderLog, Shelf
from aiohttp import web
from loopback_gcs import gcs_answering
from silent_listener import TRIES_UNTIL_TOLD, SilentListener, run_until_it_connected
from store_helpers import retune
from test_combining import (
    commit_behind_its_back,
    foreign_box,
    init_switchable,
    pending_posts,
    post_adds,
)
from test_review_backends import FirstUploads, _quick, _upstream
from test_review_events import Till
from test_review_post_deletes import HANG, StalledDeletes, wait_until

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.keys import inbox_prefix
from vactor_cloud.log import ActorLog
from vactor_cloud.storage import IfMatch, MemoryStore, ObjectStore
from vactor_cloud.storage._s3 import S3Store
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore, HoldEvery
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy


@vc.virtual_actor
class Box:
    def __init__(self) -> None:
        self.kept: list[int] = []

    def add(self, item: int) -> int:
        self.kept.append(item)
        return len(self.kept)

    @vc.virtual_actor.readonly
    def items(self) -> list[int]:
        return list(self.kept)


# -- (1) deletes bounded per folder where each key is its own request -------------------------
@pytest.mark.vactor_lanes("memory", "local", "fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_a_folder_on_a_store_without_batch_deletes_keeps_a_bounded_number_of_deletes_in_flight(
    store_spec: StoreSpec,
) -> None:
    """Where each key is its own DELETE (GCS, local, memory), every fold's applied posts went
    as a ``delete_many`` of their own, at once: with deletes stalled (a slow or rate-limited
    endpoint), a folder that kept folding had one more set of requests in flight per fold, with
    no bound (on GCS each holds a connection of the pool its commits need). At most one
    ``delete_many`` round (``ObjectStore.delete_parallel`` requests) per folder; the keys of the
    folds that end meanwhile wait for the next round."""
    spec_store = init_switchable(store_spec, combine_window=60.0)
    runtime = vc.get_runtime()
    store = StalledDeletes(spec_store.inner)
    runtime.store = store
    assert store.delete_batch == 1  # the store's own: one key per request
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["other/0"])
    commit_behind_its_back("a")  # our next commit loses the race, posts, takes the lease, folds
    log.add.run("me/1")
    wait_until(lambda: store.in_flight == 0, "the first fold's delete never ended")
    store.stalled.set()
    folds = store.delete_parallel + 8
    for i in range(1, folds + 1):
        post_adds(foreign_box("a"), [f"other/{i}"])
        assert vc.get(log.add.run_async(f"me/{i + 1}"), timeout=HANG) > 0
    assert store.held.wait(HANG), "no fold's posts were deleted"
    store.release.set()
    wait_until(lambda: not pending_posts("a"), f"posts left behind: {pending_posts('a')}")
    assert store.most_in_flight <= store.delete_parallel, store.sent
    applied: list[str] = log.applied.run()
    assert applied == ["me/0"] + [t for i in range(folds + 1) for t in (f"other/{i}", f"me/{i + 1}")]


# -- (2) answers the contract may not expect -------------------------------------------------
class _RepeatingS3Listing:
    """A loopback S3 whose every ListObjectsV2 page says "more follows" with the same token."""

    def __init__(self) -> None:
        stub = self
        self.pages = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stub.pages += 1
                payload = (
                    b"<?xml version='1.0' encoding='UTF-8'?>"
                    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    b"<Name>bucket</Name><Prefix>p/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
                    b"<IsTruncated>true</IsTruncated><NextContinuationToken>again</NextContinuationToken>"
                    b"<Contents><Key>p/k</Key><Size>1</Size><ETag>&quot;x&quot;</ETag></Contents>"
                    b"</ListBucketResult>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the loopback server's thread never ended"


def _gcs_store(endpoint: str) -> ObjectStore:
    from vactor_cloud.storage._gcs import GCSStore

    return GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p")


@pytest.mark.parametrize("backend", ["s3", "s3+s3fs", "gs"])
def test_a_listing_whose_server_repeats_a_page_token_fails_at_once_instead_of_paging_forever(
    backend: str,
) -> None:
    """A server (an emulator, a proxy's cache) that answers a page with a continuation token
    it sent before would be asked for the same page again and again: the listing looped,
    gathering the same keys without end (memory), until the request timeout if there was one
    (reported as an endpoint giving no answer), forever if not. A repeated token is a
    :class:`StorageError` naming it, after the page that repeated it."""
    pages = 0

    async def gcs_page(request: web.Request) -> web.StreamResponse:
        nonlocal pages
        pages += 1
        return web.json_response({"items": [{"name": "p/k"}], "nextPageToken": "again"})

    async def scenario() -> None:
        if backend == "gs":
            async with gcs_answering(gcs_page) as endpoint:
                await attempt(_gcs_store(endpoint))
        else:
            stub = _RepeatingS3Listing()
            try:
                await attempt(
                    S3Store(
                        "bucket/p",
                        transport="s3fs" if backend == "s3+s3fs" else "botocore",
                        endpoint_url=stub.endpoint,
                        key="k",
                        secret="s",
                        client_kwargs={"region_name": "us-east-1"},
                    )
                )
            finally:
                stub.close()
                nonlocal pages
                pages = stub.pages

    async def attempt(store: ObjectStore) -> None:
        store.request_timeout = 5.0  # (only so that the code before the fix ends)
        try:
            with pytest.raises(StorageError) as info:
                await store.list("")
            assert not isinstance(info.value, StorageTimeoutError), info.value
            assert "again" in str(info.value)
        finally:
            await store.close()

    pytest.importorskip("s3fs" if backend.startswith("s3") else "gcsfs")
    asyncio.run(scenario())
    assert pages == 2  # the second page repeated the token of the first


# -- (3) a silent endpoint: every operation ends within its deadline ----------------------------
#: the request timeout the silent-endpoint tests set, and how long an operation may take at most
#: before it is called a hang (generous: a loaded machine; a hang is minutes or forever)
_TIMEOUT = 1.0


def _silent_store(backend: str, endpoint: str) -> ObjectStore:
    if backend == "gs":
        store = _gcs_store(endpoint)
    else:
        store = S3Store(
            "bucket/p",
            transport="s3fs" if backend == "s3+s3fs" else "botocore",
            endpoint_url=endpoint,
            key="k",
            secret="s",
            client_kwargs={"region_name": "us-east-1"},
        )
    store.request_timeout = _TIMEOUT
    return store


@pytest.mark.parametrize("backend", ["s3", "s3+s3fs", "gs"])
def test_every_operation_on_a_silent_endpoint_ends_within_its_deadline_and_close_returns(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener that accepts connections and never answers: each request (get, head, each
    put mode, list, delete, a delete_many of many keys) is a :class:`StorageTimeoutError`
    within its timeout (a write's says it may have landed), and ``close`` returns with
    requests of the store still stuck on their sockets."""
    pytest.importorskip("s3fs" if backend.startswith("s3") else "gcsfs")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    silent = SilentListener()

    async def scenario() -> None:
        store = _silent_store(backend, silent.endpoint)
        operations: dict[str, Callable[[], Awaitable[Any]]] = {
            "get": lambda: store.get("k"),
            "head": lambda: store.head("k"),
            "create": lambda: store.put("k", b"x", mode="create"),
            "if-match": lambda: store.put("k", b"x", mode=IfMatch("1")),
            "overwrite": lambda: store.put("k", b"x"),
            "list": lambda: store.list("k/"),
            "delete": lambda: store.delete("k"),
            "delete_many": lambda: store.delete_many([f"k/{n}" for n in range(40)]),
        }

        async def times_out(name: str, operation: Callable[[], Awaitable[Any]]) -> None:
            try:
                async with asyncio.timeout(HANG):
                    with pytest.raises(StorageTimeoutError) as info:
                        await operation()
            except TimeoutError:
                pytest.fail(f"{backend} {name}: no answer within {HANG} s (a hang)")
            assert info.value.write_in_flight == (name not in ("get", "head", "list")), name

        try:
            # The client built and connected first (a loaded host's botocore can take longer than
            # the 1 s to load its service model, and no request would reach the socket): one
            # after another, the first operations absorbed that.
            for _ in range(10):
                with pytest.raises(StorageTimeoutError):
                    await store.head("warm-up")
                if silent.accepted:
                    break
            # All at once (each bounded by its own timeout, as one after another: 8 s then).
            await asyncio.gather(*(times_out(name, operation) for name, operation in operations.items()))
            stuck = asyncio.ensure_future(store.get("stuck"))  # in flight while the store closes
            await asyncio.sleep(0.1)
        finally:
            async with asyncio.timeout(HANG):
                await store.close()
        with pytest.raises(StorageTimeoutError):
            async with asyncio.timeout(HANG):
                await stuck

    try:
        asyncio.run(scenario())
    finally:
        silent.close()
    assert silent.accepted >= 1


_GCS_EXIT_SCRIPT = (
    """
import sys, time
import vactor_cloud as vc
vc.init("gs://stalled-bucket/prefix", token="anon", project="p", endpoint_url=sys.argv[1],
        settings=vc.Settings(timeout=1.0, deadline=2.0))
"""
    + TRIES_UNTIL_TOLD
)


def test_a_process_whose_gcs_requests_hang_on_a_silent_endpoint_still_exits_at_once() -> None:
    """As test_stalled_endpoint's for S3: the GCS store's requests (aiohttp on the IO loop)
    stuck on a silent endpoint when the script ends do not hold the process (no timing
    assertion: the subprocess is bounded by ``HANG``; a process held by its requests would
    never exit, aiohttp having no timeout of its own here)."""
    pytest.importorskip("gcsfs")
    silent = SilentListener()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
    }
    env["STORAGE_EMULATOR_HOST"] = silent.endpoint
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    try:
        run_until_it_connected(silent, [sys.executable, "-c", _GCS_EXIT_SCRIPT, silent.endpoint], env)
    finally:
        silent.close()
    assert silent.accepted >= 1


def _service_account_file(directory: Path, token_uri: str) -> str:
    """A service-account key file whose token endpoint is ``token_uri`` (a fresh RSA key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "test",
                "private_key": pem,
                "client_email": "tester@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return str(path)


def test_a_gcs_token_endpoint_that_never_answers_times_the_request_out_and_stalls_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcsfs refreshes an expired access token inside the request, synchronously (``requests``,
    google-auth's 120 s timeout, retried): on the IO loop, where the GCS store's requests run,
    a token endpoint that accepts and never answers stopped the loop, so no deadline could
    fire and every other request of the process (any store, any actor) waited too. The
    request is a :class:`StorageTimeoutError` within its timeout; the loop keeps running
    meanwhile (a heartbeat ticks); the store is usable once the endpoint is."""
    pytest.importorskip("gcsfs")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    silent = SilentListener()
    credentials = _service_account_file(tmp_path, f"{silent.endpoint}/token")
    ticks = 0

    async def object_answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"code": 404, "message": "no such object"}}, status=404)

    async def scenario() -> None:
        nonlocal ticks
        async with gcs_answering(object_answer) as endpoint:
            from vactor_cloud.storage._gcs import GCSStore

            store = GCSStore("bucket/p", endpoint_url=endpoint, token=credentials, project="p")
            store.request_timeout = _TIMEOUT
            heartbeat_stop = asyncio.Event()

            async def heartbeat() -> None:
                nonlocal ticks
                while not heartbeat_stop.is_set():
                    await asyncio.sleep(0.01)
                    ticks += 1

            beating = asyncio.ensure_future(heartbeat())
            try:
                with pytest.raises(StorageTimeoutError) as raised:
                    await store.head("k")
                assert ticks > 0  # the loop ran while the token was being fetched
                # h75: the endpoint that did not answer was the token endpoint: it says so
                assert "access token" in str(raised.value), raised.value
            finally:
                heartbeat_stop.set()
                await beating
                await store.close()

    try:
        _in_daemon_thread(scenario)
    finally:
        silent.close()


def test_a_gcs_token_refresh_the_token_endpoint_refuses_is_an_authentication_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revoked or deleted service-account key: the token endpoint answers 400
    ``invalid_grant``, and gcsfs turns google-auth's RefreshError into its own ``HttpError``
    (401), which left the store untranslated, past the boundary. It is an
    :class:`AuthenticationError` (a ``PermissionError``) naming the credentials, not retried."""
    pytest.importorskip("gcsfs")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    hits: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if request.path == "/token":
            error = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return web.json_response(error, status=400)
        return web.json_response({"error": {"code": 404, "message": "no such object"}}, status=404)

    async def scenario() -> None:
        async with gcs_answering(answer) as endpoint:
            from vactor_cloud.storage._gcs import GCSStore

            credentials = _service_account_file(tmp_path, f"{endpoint}/token")
            store = GCSStore("bucket/p", endpoint_url=endpoint, token=credentials, project="p")
            store.request_timeout = HANG
            try:
                with pytest.raises(AuthenticationError) as info:
                    await store.head("k")
                assert isinstance(info.value, PermissionError)
                assert "GOOGLE_APPLICATION_CREDENTIALS" in str(info.value)
            finally:
                await store.close()

    asyncio.run(scenario())
    assert hits and set(hits) == {"/token"}  # no object request went without a token


@pytest.mark.parametrize("mode", ["create", "if-match"])
def test_a_gcs_409_on_a_conditional_upload_is_a_retryable_conflict_as_on_s3(mode: str) -> None:
    """GCS answers 409 Conflict when a concurrent change to the same object kept a request from
    committing (nothing written); S3's 409 ConditionalRequestConflict is a
    :class:`ConflictError` (retry after a pause). On GCS it was a plain, final
    :class:`StorageError` ("failed with HTTP 409"): the same answer, another contract."""
    pytest.importorskip("gcsfs")
    hits: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        hits.append(request.method)
        await request.read()
        return web.json_response({"error": {"code": 409, "message": "conflict (test)"}}, status=409)

    async def scenario() -> None:
        async with gcs_answering(answer) as endpoint:
            store = _gcs_store(endpoint)
            store.request_timeout = HANG
            try:
                with pytest.raises(ConflictError) as info:
                    await store.put("k", b"x", mode="create" if mode == "create" else IfMatch("7"))
                assert info.value.key == "k"
                assert "retry" in str(info.value)
            finally:
                await store.close()

    asyncio.run(scenario())
    assert hits == ["POST"]  # a conditional put is never repeated here


def test_a_gcs_read_whose_body_ends_before_its_content_length_is_an_error_never_data() -> None:
    """A GET answered 200 with ``Content-Length: 100`` and a connection closed after 10 bytes
    (a proxy or load balancer cut it): retried as a transient failure, then a
    :class:`RetryableStorageError`; never the 10 bytes as the object."""
    pytest.importorskip("gcsfs")
    requests = 0

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nx-goog-generation: 5\r\n"
            b"Content-Length: 100\r\n\r\n0123456789"
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(cut_short, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = _gcs_store(f"http://127.0.0.1:{port}")
        store.request_timeout = HANG
        try:
            with pytest.raises(RetryableStorageError) as info:
                await store.get("k")
            assert not isinstance(info.value, StorageTimeoutError)
        finally:
            await store.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
    assert requests == 3  # a read is repeated on a transient failure, a few times


def pending_events(actor_id: str) -> list[str]:
    """The events in ``actor_id``'s inbox (read past this process's view)."""
    return _sync.sync(vc.get_runtime().store.list(inbox_prefix(actor_id)))


def _server_error(url: str) -> bytes:
    """A whole HTTP 500 answer in the dialect of ``url``'s backend."""
    if url.startswith("s3://"):
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
            b"<Message>We encountered an internal error. Please try again.</Message></Error>"
        )
        kind = b"application/xml"
    else:
        body = json.dumps({"error": {"code": 500, "message": "Backend Error (test)"}}).encode()
        kind = b"application/json"
    return (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: " + kind + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


@pytest.mark.vactor_lanes("moto", "fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_a_write_the_server_applied_and_answered_500_is_resolved_as_this_writers_own(
    store_lane: Lane, store_spec: StoreSpec
) -> None:
    """The server applies an upload (a step's create, a HEAD move, ...) and answers 500
    InternalError. botocore retries it (the create then meets its own object: 412); the GCS
    store reports the write in doubt. Each call is still applied once and answered with its
    result: the commit reads the step back and finds its own write id."""
    with DroppingProxy(
        _upstream(store_lane), drop_share=1.0, replace_with=_server_error(store_spec.url)
    ) as proxy:
        first = FirstUploads()
        proxy.targets = first
        proxy.route(_quick(store_spec)).init()
        box = Box.get_or_create("box")
        results = []
        for item in range(6):
            first.left = 1  # the next upload (the step's create, mostly) is answered 500
            results.append(box.add.run(item))
        assert box.items.run() == list(range(6))
        assert results == list(range(1, 7))
        assert proxy.stats.dropped >= 6, proxy.stats.dropped_targets
        if store_spec.url.startswith("s3://"):  # (GCS names the object in the upload's body)
            assert any("/steps/" in target for target in proxy.stats.dropped_targets)
        vc.shutdown()  # (while the proxy runs)


@pytest.mark.parametrize("status", [429, 503])
def test_a_gcs_read_answered_slow_down_once_is_retried_after_the_pause_the_server_asks_for(
    status: int,
) -> None:
    """GCS answers 429 (rate) or 503 (backend unavailable, GCS's own advice: retry with backoff)
    with ``Retry-After``. botocore retries S3's 503 SlowDown for every request on its own; the
    GCS store gave up on a read at the first one (``RateLimitedError`` from ``get``, for an
    answer a second request would have had). Reads, listings and deletes (harmless to repeat)
    are repeated, after at least the pause asked for (within bounds); conditional puts are
    not (only the caller can tell its own write)."""
    pytest.importorskip("gcsfs")
    hits: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        hits.append(request.method)
        await request.read()
        if len(hits) == 1 or request.method == "POST":
            error = {"error": {"code": status, "message": "slow down (test)"}}
            return web.json_response(error, status=status, headers={"Retry-After": "0"})
        return web.Response(body=b"the object", headers={"x-goog-generation": "5"})

    async def scenario() -> None:
        async with gcs_answering(answer) as endpoint:
            store = _gcs_store(endpoint)
            store.request_timeout = HANG
            try:
                assert (await store.get("k")).data == b"the object"
                assert hits == ["GET", "GET"]
                hits.clear()
                with pytest.raises(RateLimitedError):
                    await store.put("k", b"x", mode="create")
                assert hits == ["POST"]
            finally:
                await store.close()

    asyncio.run(scenario())


def _in_daemon_thread(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``scenario`` on an event loop of its own thread; fail if it has not ended within
    ``HANG`` (code that blocks its loop cannot be timed out from inside it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(scenario())  # type: ignore[arg-type]
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(HANG)
    assert outcome, f"the scenario (and its event loop) did not end within {HANG} s"
    if outcome[0] is not None:
        raise outcome[0]


def test_gcs_credential_discovery_against_a_silent_metadata_server_stalls_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ``token=``, gcsfs looks for credentials when the store first connects: Google's
    defaults, then the GCE metadata server, synchronously (``requests``, seconds per try).
    That ran on the IO loop: a silent metadata server (or a slow one, on a small serverless
    instance) stopped every request of the process for about 12 s, and a 1 s request
    timeout could not fire. The setup runs on a thread of its own; the request ends within
    its timeout and the loop keeps running meanwhile."""
    pytest.importorskip("gcsfs")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "NO_GCE_CHECK"):
        monkeypatch.delenv(name, raising=False)
    silent = SilentListener()
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{silent.port}")
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{silent.port}")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud credentials of this machine
    ticks = 0

    async def scenario() -> None:
        nonlocal ticks
        from vactor_cloud.storage._gcs import GCSStore

        store = GCSStore("bucket/p", endpoint_url="http://127.0.0.1:9", project="p")
        store.request_timeout = _TIMEOUT
        beat = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not beat.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.ensure_future(heartbeat())
        try:
            with pytest.raises(StorageTimeoutError) as raised:
                await store.head("k")
            assert ticks > 0  # the loop ran while the credentials were being looked for
            # h75: it said only "no answer within 1 s: is the endpoint reachable?", though what
            # had not answered was the credential lookup: no credentials configured, the usual cause
            message = str(raised.value)
            assert "still looking for credentials" in message, message
            assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "token=" in message, message
            # h81: and then ended "...: is the endpoint reachable?", about an endpoint never asked
            assert "endpoint reachable" not in message, message
        finally:
            beat.set()
            await beating
            await store.close()

    try:
        _in_daemon_thread(scenario)
    finally:
        silent.close()


def test_gcs_timeout_waiting_for_an_access_token_says_that_alone() -> None:
    """A request that timed out while the access token was still being fetched said so, then
    asked "is the endpoint reachable?" (the storage endpoint, never reached): two advices, one
    wrong. The message now says what it waited for and what to check, then the limit."""
    pytest.importorskip("gcsfs")

    async def scenario() -> None:
        from vactor_cloud.storage._gcs import GCSStore

        store = GCSStore("bucket/p", endpoint_url="http://127.0.0.1:9", project="p", token="anon")
        store.request_timeout = 0.1
        store._token_refresh = asyncio.get_running_loop().create_future()  # (never fetched)
        with pytest.raises(StorageTimeoutError) as raised:
            await store._bounded(asyncio.Event().wait(), "head", "k")
        message = str(raised.value)
        assert "access token" in message, message
        assert "endpoint reachable" not in message, message
        assert message.endswith("(Settings.timeout sets this limit)"), message

    _in_daemon_thread(scenario)


def test_gcs_with_no_credentials_found_says_so_when_gcs_refuses_the_anonymous_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ``token=`` and with no credentials to be found (a laptop without ADC, the
    metadata server refusing at once), gcsfs goes on anonymously and GCS answers 401: the
    error said "the server did not accept the credentials ... and that they are not expired",
    about credentials that were never given. It says none were found and how to give them."""
    pytest.importorskip("gcsfs")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "NO_GCE_CHECK"):
        monkeypatch.delenv(name, raising=False)
    refusing = "127.0.0.1:9"  # (the discard port: nothing listens, the connection is refused)
    monkeypatch.setenv("GCE_METADATA_HOST", refusing)
    monkeypatch.setenv("GCE_METADATA_IP", refusing)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud credentials of this machine
    monkeypatch.setenv("HOME", str(tmp_path))  # (nor gcsfs's token cache)

    async def anonymous_refused(request: web.Request) -> web.StreamResponse:
        error = {"code": 401, "message": "Anonymous caller does not have storage.objects.get access"}
        return web.json_response({"error": error}, status=401)

    async def scenario() -> None:
        async with gcs_answering(anonymous_refused) as endpoint:
            from vactor_cloud.storage._gcs import GCSStore

            store = GCSStore("bucket/p", endpoint_url=endpoint, project="p")
            store.request_timeout = HANG
            try:
                with pytest.raises(AuthenticationError) as raised:
                    await store.get("k")
            finally:
                await store.close()
        message = str(raised.value)
        assert "no credentials were found" in message, message
        assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "expired" not in message, message

    _in_daemon_thread(scenario)


class _S3Answering:
    """A loopback S3 answering GETs with ``answer(path_and_query)`` → (status, headers, body)."""

    def __init__(self, answer: Callable[[str], tuple[int, dict[str, str], bytes]]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the loopback server's thread never ended"


def _s3_store(endpoint: str, transport: str) -> S3Store:
    store = S3Store(
        "bucket/p",
        transport=transport,
        endpoint_url=endpoint,
        key="k",
        secret="s",
        client_kwargs={"region_name": "us-east-1"},
        config_kwargs={"retries": {"max_attempts": 1, "mode": "standard"}},
    )
    store.request_timeout = HANG
    return store


@pytest.mark.parametrize("backend", ["s3", "s3+s3fs", "gs"])
def test_an_answer_missing_what_the_contract_needs_is_a_storage_error_not_a_key_error(backend: str) -> None:
    """A server (an emulator, a proxy rewriting answers) whose listing names an object without
    its key, or whose read comes without the object's version (ETag): the store indexed the
    answer and let ``KeyError`` out, past the boundary, where callers catch only
    :class:`StorageError`. Each is a :class:`StorageError` naming what was missing."""
    pytest.importorskip("s3fs" if backend.startswith("s3") else "gcsfs")

    def s3_answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if "list-type=2" in path:
            listing = (
                b"<?xml version='1.0' encoding='UTF-8'?>"
                b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b"<Name>bucket</Name><Prefix>p/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
                b"<IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents></ListBucketResult>"
            )
            return 200, {"Content-Type": "application/xml"}, listing
        return 200, {"Content-Type": "application/octet-stream"}, b"t" * 16 + b"data"  # no ETag

    async def gcs_answer(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/o"):
            return web.json_response({"items": [{"size": "1"}]})
        return web.json_response({"kind": "storage#object"})  # no generation

    async def check(store: ObjectStore) -> None:
        try:
            for operation in (lambda: store.list(""), lambda: store.get("k"), lambda: store.head("k")):
                with pytest.raises(StorageError):
                    await operation()
        finally:
            await store.close()

    async def scenario() -> None:
        if backend == "gs":
            async with gcs_answering(gcs_answer) as endpoint:
                await check(_gcs_store(endpoint))
            return
        stub = _S3Answering(s3_answer)
        try:
            await check(_s3_store(stub.endpoint, "s3fs" if backend == "s3+s3fs" else "botocore"))
        finally:
            stub.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("operation", ["delete", "list", "delete_many"])
def test_a_local_disk_failure_in_a_delete_or_a_listing_is_a_storage_error_naming_the_key(
    operation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only remount (EROFS) under a delete, an I/O error (EIO) under a listing: reads
    and writes of the local store turn such an ``OSError`` into a :class:`StorageError`
    naming the key, but deletes and listings let the bare ``OSError`` out, past the boundary
    (the runtime's handlers catch StorageError: a post delete's failure, say, is
    suppressed as a StorageError and was not)."""
    import errno

    from vactor_cloud.storage import LocalStore

    store = LocalStore(str(tmp_path / "store"))
    asyncio.run(store.put("a/mail/k", b"x"))
    asyncio.run(store.put("a/mail/j", b"x"))

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system (test)")

    def io_error(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "Input/output error (test)")

    requests: dict[str, Callable[[], Awaitable[Any]]] = {
        "list": lambda: store.list("a/"),
        "delete": lambda: store.delete("a/mail/k"),
        "delete_many": lambda: store.delete_many(["a/mail/k", "a/mail/j"]),
    }
    request = requests[operation]
    if operation == "list":
        monkeypatch.setattr(os, "scandir", io_error)
    else:
        monkeypatch.setattr(os, "unlink", read_only)
    with pytest.raises(StorageError) as info:
        asyncio.run(request())
    monkeypatch.undo()
    assert info.value.key in ("a/", "a/mail/k", "a/mail/j")
    assert "(test)" in str(info.value)


@pytest.mark.parametrize("backend", ["s3", "gs"])
@pytest.mark.usefixtures("runtime_off")
def test_shutdown_after_calls_against_a_silent_endpoint_returns_well_within_its_own_timeout(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls fail against a silent endpoint (reads, a creation, a call to a known actor);
    ``vc.shutdown()`` then has HEAD flushes, lease releases and the store's close to do, each
    request bounded by ``Settings.timeout``: it returns, leaving no store thread behind for
    long, well within ``close``'s own 30 s (no timing assertion: bounded by ``HANG``, run
    on a thread so that a hang fails the test instead of holding it)."""
    pytest.importorskip("s3fs" if backend == "s3" else "gcsfs")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    silent = SilentListener()
    settings = vc.Settings(timeout=_TIMEOUT, deadline=3.0)
    try:
        if backend == "s3":
            vc.init(
                "s3://stalled/p",
                endpoint_url=silent.endpoint,
                key="k",
                secret="s",
                client_kwargs={"region_name": "us-east-1"},
                settings=settings,
            )
        else:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", silent.endpoint)
            vc.init(
                "gs://stalled/p", token="anon", project="p", endpoint_url=silent.endpoint, settings=settings
            )
        for action in (lambda: vc.get_actor("x"), lambda: Box.get_or_create("y")):
            with pytest.raises(vc.StorageTimeoutError):
                action()
        done = threading.Event()

        def shut_down() -> None:
            vc.shutdown()
            done.set()

        threading.Thread(target=shut_down, daemon=True).start()
        assert done.wait(HANG), f"vc.shutdown() had not returned after {HANG} s"
    finally:
        silent.close()


@pytest.mark.vactor_lanes("moto", "fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_shutdown_with_an_actor_loaded_when_the_endpoint_goes_silent_returns_and_closes(
    store_lane: Lane, store_spec: StoreSpec
) -> None:
    """An actor loaded and written (a HEAD move pending), then every answer of the endpoint
    held back (a proxy that keeps them): the next call fails in time; ``vc.shutdown()``
    (HEAD flush, the store's close) returns (bounded by ``HANG``, on a thread)."""
    with DroppingProxy(_upstream(store_lane), drop_share=0.0) as proxy:
        spec = proxy.route(_quick(store_spec))
        spec.init(settings=vc.Settings(storage=""))
        box = Box.get_or_create("box")
        box.add.run(1)
        # The bounds are for what follows the silence, not the setup (0.5 s from the start
        # failed a creation on a loaded moto in another test): as Settings(timeout=1, deadline=3).
        vc.get_runtime().store.request_timeout = _TIMEOUT
        retune(deadline=3.0)
        proxy.hold = lambda method, target: True
        with pytest.raises((vc.StorageTimeoutError, vc.CommitOutcomeUnknownError)):
            box.add.run(2)
        done = threading.Event()

        def shut_down() -> None:
            vc.shutdown()
            done.set()

        threading.Thread(target=shut_down, daemon=True).start()
        try:
            assert done.wait(HANG), f"vc.shutdown() had not returned after {HANG} s"
        finally:
            proxy.release()


@pytest.mark.parametrize("backend", ["s3", "gs"])
def test_a_listing_from_a_server_that_ignores_start_after_and_prefix_keeps_to_the_contract(
    backend: str,
) -> None:
    """``list(prefix, start_after=k)`` promises keys under ``prefix`` strictly after ``k``. A
    server that ignores StartAfter (or startOffset), or answers keys beside the prefix (an
    emulator, a proxy rewriting the query), had its keys passed on as they came on S3
    (and cut to garbage by the prefix's length where they did not carry it): a reader
    probing past the newest step it knows would be handed older ones."""
    pytest.importorskip("s3fs" if backend == "s3" else "gcsfs")
    names = ["p/k/1", "p/k/2", "p/k/3", "p/other/9"]

    def s3_answer(path: str) -> tuple[int, dict[str, str], bytes]:
        contents = "".join(
            f"<Contents><Key>{n}</Key><Size>1</Size><ETag>&quot;e&quot;</ETag></Contents>" for n in names
        )
        listing = (
            "<?xml version='1.0' encoding='UTF-8'?>"
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>bucket</Name><Prefix>p/k/</Prefix><KeyCount>{len(names)}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
        )
        return 200, {"Content-Type": "application/xml"}, listing.encode()

    async def gcs_answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"items": [{"name": n} for n in names]})

    async def check(store: ObjectStore) -> None:
        try:
            assert await store.list("k/", start_after="k/2") == ["k/3"]
            assert await store.list("k/") == ["k/1", "k/2", "k/3"]
        finally:
            await store.close()

    async def scenario() -> None:
        if backend == "gs":
            async with gcs_answering(gcs_answer) as endpoint:
                await check(_gcs_store(endpoint))
            return
        stub = _S3Answering(s3_answer)
        try:
            await check(_s3_store(stub.endpoint, "botocore"))
        finally:
            stub.close()

    asyncio.run(scenario())


@pytest.mark.vactor_lanes("moto")
@pytest.mark.parametrize("transport", ["botocore", "s3fs", "s3fs, one botocore attempt"])
def test_an_if_match_put_whose_answer_was_lost_is_never_a_definite_precondition_failure_on_either_transport(
    store_lane: Lane, store_spec: StoreSpec, transport: str
) -> None:
    """The if-match put lands and its answer is dropped on the wire; the client sends it again,
    and the object is no longer at the version asked for (our own write moved it). botocore's
    retries are counted in the answer (RetryAttempts) and the store reports the write as in
    doubt. On the s3fs transport the request went again out of botocore's sight (an answer
    with RetryAttempts 0), and the store reported a definite :class:`PreconditionFailedError`
    for its own write (a lease holder, a HEAD mover would believe another writer won): aiohttp
    sends a PUT again by itself (idempotent to it) when the connection closes before the
    answer. (With botocore sending once, s3fs's own retry loop is the one left.)"""
    pytest.importorskip("s3fs")
    options = {**store_spec.options, "transport": transport.partition(",")[0]}
    if transport.endswith("attempt"):
        options["config_kwargs"] = {"retries": {"max_attempts": 1, "mode": "standard"}}
    spec = StoreSpec(store_spec.url, options, store_spec.env)
    with DroppingProxy(_upstream(store_lane), drop_share=1.0, seed=1) as proxy:
        routed = proxy.route(spec)

        async def main() -> tuple[object, bytes]:
            direct, through = spec.open(), routed.open()
            through.request_timeout = HANG
            try:
                v1 = await direct.put("lease", b"v1")
                outcome: object
                try:
                    outcome = await through.put("lease", b"renewed by me", mode=IfMatch(v1))
                except StorageError as exc:
                    outcome = exc
                return outcome, (await direct.get("lease")).data
            finally:
                await direct.close()
                await through.close()

        outcome, stored = asyncio.run(main())
    assert stored == b"renewed by me"  # the write was applied
    assert proxy.stats.dropped >= 1
    assert not isinstance(outcome, PreconditionFailedError), outcome


@pytest.mark.vactor_lanes("memory", "local", "moto", "fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_applied_events_are_deleted_with_a_bounded_number_of_requests_in_flight(
    store_spec: StoreSpec,
) -> None:
    """Each commit that applies events deletes them in the background; every commit started a
    task of its own for that (with its own bound of 32), so with deletes stalled an actor that
    kept applying events had one more set in flight per commit, without bound, and one DELETE
    per event even where one request deletes many (S3). At most one ``delete_many`` round per
    inbox (one DeleteObjects on S3, ``delete_parallel`` DELETEs elsewhere); the events applied
    meanwhile go in the next; each is still deleted."""
    spec_store = init_switchable(store_spec)
    runtime = vc.get_runtime()
    store = HoldEvery(spec_store.inner, "delete", "/inbox/", timeout=HANG)
    runtime.store = store
    till = Till.get_or_create("till")
    commits = store.delete_parallel + 8
    for n in range(commits):
        vc.send_event("till", "paid", n)
        till.add.run(n)  # folds the event in: its delete starts in the background
    store.check()  # (a commit that waited for its events' delete waited HANG: said here)
    assert store.held.wait(HANG), "no applied event was deleted"
    store.release.set()
    wait_until(lambda: not pending_events("till"), f"events left: {pending_events('till')}")
    assert store.most_in_flight <= store.delete_parallel, store.most_in_flight
    assert [payload for kind, payload in till.view.run() if kind == "paid"] == list(range(commits))


#: an answer that promises HEAD's bytes and closes the connection before any (what LocalStack
#: 2026.3.0 sends for an object whose upload it stored without its body: a ``PUT`` with
#: ``Expect: 100-continue`` whose client gave up while the server was stopped)
_BODY_NEVER_SENT = b"HTTP/1.1 200 OK\r\nContent-Length: 212\r\nConnection: close\r\n\r\n"


def _get_of_head(method: str, target: str) -> bool:
    """A read of the bytes of an actor's ``HEAD`` object (S3: ``GET .../HEAD``; GCS:
    ``GET .../o/...%2FHEAD?alt=media``), not of its metadata (S3: a ``HEAD`` request)."""
    path, _, query = target.partition("?")
    return method == "GET" and (path.endswith("/HEAD") or (path.endswith("%2FHEAD") and "alt=media" in query))


@pytest.mark.vactor_lanes("moto", "localstack", "fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_an_actor_whose_head_body_never_arrives_whole_is_loaded_by_listing_and_head_is_repaired(
    store_lane: Lane, store_spec: StoreSpec
) -> None:
    """HEAD exists and the store answers, but every read of HEAD's body is cut short (found on
    LocalStack: an ``If-Match`` upload of HEAD sent while the server was stopped left an
    object whose bytes it never serves). HEAD is only a hint (docs/protocol.md): the actor is
    loaded by listing its steps, written, and the next HEAD move replaces the damaged object.
    Before: every load of the actor failed with ``RetryableStorageError``, for good."""
    quick = _quick(store_spec)
    quick.init()
    Shelf.get_or_create("shelf")
    for _ in range(3):
        Shelf.get_or_create("shelf").add.run()
    vc.shutdown()  # (HEAD moved: names step 3)
    with DroppingProxy(
        _upstream(store_lane), drop_share=1.0, targets=_get_of_head, replace_with=_BODY_NEVER_SENT
    ) as proxy:
        proxy.route(quick).init()
        shelf = vc.get_actor("shelf")
        assert shelf.value.run() == 3
        assert shelf.add.run() == 4
        vc.shutdown()  # (waits for the HEAD move after the commit)
        assert proxy.stats.dropped > 0, proxy.stats.seen

    async def head_step() -> int | None:
        store = store_spec.open()
        try:
            head = await ActorLog(store, "shelf").read_head()
        finally:
            await store.close()
        return None if head is None else head.step

    assert asyncio.run(head_step()) == 4  # replaced by the move after step 4, readable again


def _process_state(pid: int) -> str:
    """The state letter of process ``pid`` (``T``: stopped), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


@pytest.mark.vactor_lanes("fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_calls_to_a_stopped_gcs_server_fail_within_their_deadline_and_resume_consistent(
    store_lane: Lane, store_spec: StoreSpec
) -> None:
    """fake-gcs-server stopped (SIGSTOP) with the runtime's connections open: a write and a read
    each fail with ``StorageTimeoutError`` within the deadline (bounded by ``HANG``), the write
    saying it may have been applied. Resumed, the server answers the requests it had queued
    (the write may land late): the actor holds every acknowledged call, the one in doubt at
    most once, and takes writes again. Held when written (no defect found). (This worker's own
    server: a stop stalls no other.)"""
    process = getattr(store_lane, "_process", None)
    assert process is not None, "the fakegcs lane runs its server as a child process"
    store_spec.init(settings=vc.Settings(timeout=1.0, deadline=3.0))
    # The GCS client set up first: on a loaded host that alone took longer than the 1 s
    # timeout (the setup goes on, shielded, and a later request finds it done).
    for _ in range(30):
        try:
            _sync.sync(vc.get_runtime().store.get("warm-up"))
        except NotFoundError:
            break
        except StorageTimeoutError:
            continue
    shelf = Shelf.get_or_create("stopped")
    for _ in range(3):
        shelf.add.run()
    os.kill(process.pid, signal.SIGSTOP)
    try:
        # (a signal is delivered when the kernel gets to it: a request sent before that is answered)
        wait_until(lambda: _process_state(process.pid) == "T", "fake-gcs-server did not stop")
        began = time.monotonic()
        with pytest.raises(StorageTimeoutError) as write:
            shelf.add.run()
        assert write.value.write_in_flight, write.value
        with pytest.raises(StorageTimeoutError):
            shelf.value.run()
        assert time.monotonic() - began < HANG
    finally:
        os.kill(process.pid, signal.SIGCONT)
    # (The write in doubt may land after this read: the server had queued it, and answers
    # the queued and the new requests in no set order.)
    seen = shelf.value.run()
    after = shelf.add.run()
    assert 3 <= seen < after and after - 4 in (0, 1), (seen, after)
    vc.shutdown()
    store_spec.init()
    assert vc.get_actor("stopped").value.run() == after


@pytest.mark.vactor_lanes("moto", "localstack")
@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
def test_an_s3_read_whose_body_never_arrives_says_so_on_either_transport(
    store_lane: Lane, store_spec: StoreSpec, transport: str
) -> None:
    """A GET answered with HEAD-like headers and no body: a transient failure on both transports,
    named for what it is (a body cut short), never "a write may or may not have been applied"
    (what the s3fs transport said of this read before: aiohttp's ClientPayloadError was taken
    for a failure to reach the endpoint)."""
    spec = StoreSpec(store_spec.url, {**store_spec.options, "transport": transport}, store_spec.env)
    with DroppingProxy(
        _upstream(store_lane),
        drop_share=1.0,
        targets=lambda method, target: method == "GET" and target.split("?", 1)[0].endswith("/cut"),
        replace_with=_BODY_NEVER_SENT,
    ) as proxy:

        async def scenario() -> None:
            store = proxy.route(spec).open()
            try:
                await store.put("cut", b"x" * 196)
                with pytest.raises(RetryableStorageError) as info:
                    await store.get("cut")
            finally:
                await store.close()
            message = str(info.value)
            assert "cut short" in message and "may or may not" not in message, message

        asyncio.run(scenario())
        assert proxy.stats.dropped > 0


@vc.virtual_actor
class EventSink:
    """Records the payload of every ``item`` event it applies."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @vc.virtual_actor.on_event("item")
    def on_item(self, payload: int) -> None:
        self.seen.append(payload)

    @vc.virtual_actor.readonly
    def applied(self) -> list[int]:
        return self.seen


#: one listing page in these tests (GCS objects.list and S3 ListObjectsV2 answer 1,000 at most;
#: a page of 1,000 here cost 1,050 sequential requests, 19 s on the loaded CI host: the server
#: pages the same way at any size, by the token it gives)
_PAGE = 10
#: more objects than one listing page: three pages
_PAST_ONE_PAGE = 25


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GCS store lists ``_PAGE`` objects a page (and a one-page listing is one moment)."""
    import vactor_cloud.storage._gcs as gcs_module

    monkeypatch.setattr(gcs_module, "_LIST_PAGE", _PAGE)
    monkeypatch.setattr(gcs_module.GCSStore, "snapshot_list_keys", _PAGE)


@pytest.mark.vactor_lanes("fakegcs")
@pytest.mark.usefixtures("runtime_off", "small_pages")
def test_an_inbox_of_more_events_than_one_listing_page_applies_each_once_and_empties(
    store_spec: StoreSpec,
) -> None:
    """More events waiting than one listing page: every inbox listing takes several pages, so
    none is one moment (docs/protocol.md); the events are still all applied, once each, and the
    inbox ends empty. (Held when written with 1,050 events and pages of 1,000, on LocalStack
    too.)"""
    store_spec.init()
    EventSink.get_or_create("sink")

    async def send_all() -> None:
        room = asyncio.Semaphore(32)

        async def send(item: int) -> None:
            async with room:
                await vc.send_event_async("sink", "item", item, event_id=f"item-{item:05d}")

        await asyncio.gather(*(send(item) for item in range(_PAST_ONE_PAGE)))

    asyncio.run(send_all())
    sink = vc.get_actor("sink")
    assert sink.process_events() == _PAST_ONE_PAGE
    assert sorted(sink.applied.run()) == list(range(_PAST_ONE_PAGE))
    assert pending_events("sink") == []


@pytest.mark.vactor_lanes("fakegcs")
@pytest.mark.usefixtures("runtime_off", "small_pages")
def test_a_log_of_more_steps_than_one_listing_page_loads_without_head_and_compacts(
    store_spec: StoreSpec,
) -> None:
    """More steps than one listing page and no HEAD: the load lists the steps (three pages) and
    finds the newest; a compaction deletes all but the newest two; the actor goes on. (Held
    when written with 1,050 steps and pages of 1,000, on LocalStack too.)"""
    store_spec.init()  # (a warm writer: one request per step)
    shelf = Shelf.get_or_create("long")
    for _ in range(_PAST_ONE_PAGE):
        shelf.add.run()
    vc.shutdown()

    async def drop_head_and_count() -> int:
        store = store_spec.open()
        try:
            await store.delete("actors/long/HEAD")
            return len(await store.list("actors/long/steps/"))
        finally:
            await store.close()

    assert asyncio.run(drop_head_and_count()) == _PAST_ONE_PAGE + 1
    store_spec.init(settings=vc.Settings(fresh_window=0.0))
    shelf = vc.get_actor("long")
    assert shelf.value.run() == _PAST_ONE_PAGE
    report = shelf.compact(keep_last=2, min_age=0)
    assert report.deleted_steps == _PAST_ONE_PAGE - 1, report
    assert shelf.add.run() == _PAST_ONE_PAGE + 1


@pytest.mark.parametrize(
    ("rules", "raised"),
    [
        # every read of HEAD fails, its metadata too: the store's trouble, not a damaged HEAD
        (
            (
                FaultRule(
                    "fail_before",
                    operations=frozenset({"get", "head"}),
                    key_contains="/HEAD",
                    probability=1.0,
                ),
            ),
            RetryableStorageError,
        ),
        (
            (
                FaultRule(
                    "rate_limited", operations=frozenset({"get"}), key_contains="/HEAD", probability=1.0
                ),
            ),
            RateLimitedError,
        ),
        (
            (
                FaultRule(
                    "timeout_before", operations=frozenset({"get"}), key_contains="/HEAD", probability=1.0
                ),
            ),
            StorageTimeoutError,
        ),
    ],
    ids=["head-fails-too", "rate-limited", "timed-out"],
)
def test_a_read_of_head_failing_for_the_stores_own_trouble_is_raised_not_taken_for_a_damaged_head(
    rules: tuple[FaultRule, ...], raised: type[StorageError]
) -> None:
    """The other side of the body-less HEAD above: only a read failing in transit while the store
    answers for the object (``head`` gives its version) makes a reader ignore HEAD."""

    async def scenario() -> None:
        inner = MemoryStore(f"memory-head-{uuid.uuid4().hex}")
        await inner.put("actors/a/HEAD", b"whatever it holds", mode="create")
        log = ActorLog(FaultyStore(inner, FaultConfig(rules, seed=1)), "a")
        with pytest.raises(raised) as info:
            await log.read_head()
        assert "/HEAD" in str(info.value)

    asyncio.run(scenario())

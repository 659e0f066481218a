"""The GCS store under a hostile review (review-h134): reads whose body is cut short where
nothing tells the HTTP client so, endpoints spelt as people spell them, and what the emulator
lane can check of listings, deletes and lost answers.

Loopback servers written here answer what fake-gcs-server never would; the tests that need
the emulator itself run on the ``fakegcs`` lane only. No timing assertions: what may hang is
bounded by ``HANG``."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from actors import Shelf
from aiohttp import web
from loopback_gcs import gcs_answering
from test_review_backends import _upstream

import vactor_cloud as vc
from vactor_cloud.errors import RetryableStorageError, StorageError, StorageTimeoutError
from vactor_cloud.storage import IfMatch
from vactor_cloud.storage._gcs import GCSStore
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy

#: the longest any operation here may take before it is called a hang
HANG = 60.0
OBJECT = b"VACT" + bytes(range(256)) * 4


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _loopback_store(port: int) -> GCSStore:
    store = GCSStore("bucket/p", endpoint_url=f"http://127.0.0.1:{port}", token="anon", project="p")
    store.request_timeout = HANG
    return store


async def _serve(answer: bytes) -> tuple[asyncio.Server, list[int]]:
    """A server that reads each request's head and writes ``answer``, then closes the
    connection; the list counts the requests."""
    requests: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(1)
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), requests


def _media_answer(body: bytes, *, whole: bytes, extra: bytes = b"", one_header: bool = True) -> bytes:
    """A 200 answer to ``alt=media`` as GCS sends it, but delimited by the connection's close
    (no Content-Length, no chunks): ``body`` sent, ``whole`` the object GCS describes, its
    hashes in one ``x-goog-hash`` header (fake-gcs-server) or one header each (GCS)."""
    md5 = _md5(whole).encode()
    hashes = (
        b"x-goog-hash: crc32c=AAAAAA==,md5=" + md5 + b"\r\n"
        if one_header
        else b"x-goog-hash: crc32c=AAAAAA==\r\nx-goog-hash: md5=" + md5 + b"\r\n"
    )
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nx-goog-generation: 5\r\n"
        + hashes
        + extra
        + b"Connection: close\r\n\r\n"
        + body
    )


def _read_through(answer: bytes) -> tuple[object, int]:
    """What ``get`` returned (the object's bytes) or raised against a server answering
    ``answer``, and how many requests it sent."""
    return _outcome(answer, "get")


# -- (1) a body cut short with nothing in HTTP to tell ------------------------------------------
@pytest.mark.parametrize("one_header", [True, False], ids=["hashes-in-one-header", "a-header-per-hash"])
def test_a_gcs_read_cut_short_on_a_connection_delimited_answer_is_retried_never_returned_as_data(
    one_header: bool,
) -> None:
    """A 200 answer without Content-Length whose connection closes after part of the object (a
    proxy that dropped it, an HTTP/1.0 hop): aiohttp sees a whole answer. GCS says what the
    object's MD5 is (``x-goog-hash``): the part is a transient failure, retried, then a
    :class:`RetryableStorageError`; never the part as the object. Before: ``get`` returned the
    first 10 bytes as the object (the contract: a reader never sees a part)."""
    outcome, requests = _read_through(_media_answer(OBJECT[:10], whole=OBJECT, one_header=one_header))
    assert isinstance(outcome, RetryableStorageError), outcome
    assert not isinstance(outcome, StorageTimeoutError)
    assert "MD5" in str(outcome) and "k" in str(outcome)
    assert requests == 3  # a read is repeated on a transient failure, a few times


def test_a_gcs_read_of_the_whole_object_on_a_connection_delimited_answer_is_returned() -> None:
    """The same answer with the whole object: the check refuses only what does not match."""
    assert _read_through(_media_answer(OBJECT, whole=OBJECT)) == (OBJECT, 1)


def test_a_gcs_read_of_an_object_stored_gzipped_is_not_checked_against_the_stored_bytes_md5() -> None:
    """An object stored with ``Content-Encoding: gzip`` (written by another tool) is served
    decompressed; its ``x-goog-hash`` is the stored bytes', not what arrives: not a mismatch."""
    answer = _media_answer(
        OBJECT, whole=b"the gzipped bytes", extra=b"x-goog-stored-content-encoding: gzip\r\n"
    )
    assert _read_through(answer) == (OBJECT, 1)


# -- (2) endpoints spelt as people spell them -----------------------------------------------------
def _round_trip(store: GCSStore) -> tuple[str | None, bytes, list[str]]:
    async def scenario() -> tuple[str | None, bytes, list[str]]:
        try:
            async with asyncio.timeout(HANG):
                version = await store.put("actors/a/HEAD", b"x", mode="create")
                assert await store.head("actors/a/HEAD") == version
                return version, (await store.get("actors/a/HEAD")).data, await store.list("actors/")
        finally:
            await store.close()

    return asyncio.run(scenario())


@pytest.mark.vactor_lanes("fakegcs")
@pytest.mark.parametrize("given_as", ["endpoint_url", "STORAGE_EMULATOR_HOST"])
def test_an_endpoint_written_with_a_trailing_slash_reaches_the_bucket(
    store_spec: StoreSpec, given_as: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``http://host:4443/``: every request went to ``//storage/v1/...``, which the server
    answers 404, so a bucket that exists was reported missing ("put failed: bucket ... does
    not exist", and ``init`` refused the store) and an object that exists headed ``None``."""
    endpoint = str(store_spec.options["endpoint_url"])
    options = {k: v for k, v in store_spec.options.items() if k != "endpoint_url"}
    if given_as == "endpoint_url":
        options["endpoint_url"] = endpoint + "/"
    else:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint + "/")
    store = GCSStore(store_spec.url.removeprefix("gs://"), **options)
    version, data, listed = _round_trip(store)
    assert version and data == b"x" and listed == ["actors/a/HEAD"]


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4443", "localhost:4443", "ftp://127.0.0.1:4443", "http://"])
def test_an_endpoint_url_that_is_no_http_url_is_refused_when_the_store_is_opened(endpoint: str) -> None:
    """``endpoint_url="localhost:4443"`` (as ``STORAGE_EMULATOR_HOST`` may be written, where
    gcsfs adds ``http://``): every request failed in aiohttp's URL check, a transient failure
    retried three times, then "retry later" (``RetryableStorageError``), which the runtime
    retries until its deadline: a mistake in the configuration, refused at once instead."""
    with pytest.raises(ValueError, match="endpoint_url") as info:
        GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p")
    assert "http://" in str(info.value) and repr(endpoint) in str(info.value)


def test_an_empty_endpoint_url_still_means_the_default_endpoint() -> None:
    """``endpoint_url=""`` (an unset variable passed on) was gcsfs's default endpoint: still
    so, not refused by the check above."""
    store = GCSStore("bucket/p", endpoint_url="", token="anon", project="p")
    assert store._options["endpoint_url"] == ""


# -- (3) a JSON answer cut short ------------------------------------------------------------------
def _json_answer(body: bytes) -> bytes:
    """A 200 JSON answer delimited by the connection's close, ``body`` all that arrives."""
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + body


def _outcome(answer: bytes, operation: str) -> tuple[object, int]:
    """What ``operation`` (on key ``k``) returned or raised against a server answering
    ``answer``, and how many requests it sent."""

    async def scenario() -> tuple[object, int]:
        server, requests = await _serve(answer)
        store = _loopback_store(server.sockets[0].getsockname()[1])

        async def get() -> bytes:
            return (await store.get("k")).data

        calls = {
            "get": get,
            "head": lambda: store.head("k"),
            "list": lambda: store.list("k/"),
            "create": lambda: store.put("k", b"x", mode="create"),
            "if-match": lambda: store.put("k", b"x", mode=IfMatch("5")),
        }
        try:
            async with asyncio.timeout(HANG):
                try:
                    outcome: object = await calls[operation]()
                except StorageError as exc:
                    outcome = exc
        finally:
            await store.close()
            server.close()
            await server.wait_closed()
        return outcome, len(requests)

    return asyncio.run(scenario())


@pytest.mark.parametrize("operation", ["head", "list"])
def test_a_gcs_metadata_or_listing_answer_cut_short_is_retried_as_a_transient_failure(operation: str) -> None:
    """``{"generation": "12`` then the connection closes (a 200 without Content-Length cut
    short): a read like any other whose answer did not arrive whole, repeated, then a
    :class:`RetryableStorageError`. Before: a plain ``StorageError`` ("unexpected GCS
    answer") at once, which the runtime does not retry."""
    outcome, requests = _outcome(_json_answer(b'{"items": [{"name": "p/k/1"}, {"na'), operation)
    assert isinstance(outcome, RetryableStorageError), outcome
    assert requests == 3


@pytest.mark.parametrize("operation", ["create", "if-match"])
def test_a_gcs_conditional_upload_whose_answer_is_cut_short_says_the_write_may_have_landed(
    operation: str,
) -> None:
    """The server wrote the object and its answer lost its end: the write may have landed, as
    after any lost answer (a :class:`RetryableStorageError` saying so; the commit path reads
    the key back). Never repeated here. Before: a plain ``StorageError`` ("unexpected GCS
    answer ... not JSON"), silent about the write."""
    outcome, requests = _outcome(_json_answer(b'{"kind": "storage#object", "generation": "17'), operation)
    assert isinstance(outcome, RetryableStorageError), outcome
    assert "may or may not have been applied" in str(outcome)
    assert requests == 1


def test_a_gcs_answer_that_is_no_json_at_all_is_not_taken_for_one_cut_short() -> None:
    """A 200 page that does not say it is JSON (a proxy's or portal's page) is no GCS answer:
    a :class:`StorageError` at once, not retried as if it could pass."""
    page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>sign in</html>"
    outcome, requests = _outcome(page, "head")
    assert isinstance(outcome, StorageError) and not isinstance(outcome, RetryableStorageError), outcome
    assert requests == 1


# -- (4) the runtime through a proxy that cuts reads short ----------------------------------------
class FirstReads:
    """Chooses the first download of each object's bytes (``alt=media``: steps, HEAD, leases,
    class objects) that reaches the proxy; its next read passes."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, method: str, target: str) -> bool:
        if method != "GET" or "alt=media" not in target or target in self.seen:
            return False
        self.seen.add(target)
        return True


@pytest.mark.vactor_lanes("fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_calls_through_a_proxy_cutting_each_first_read_short_see_every_commit_and_no_damage(
    store_lane: Lane, store_spec: StoreSpec
) -> None:
    """The first read of every object arrives cut short, with nothing in HTTP to say so: each
    process (a fresh runtime: nothing cached) reads the actor's state and adds one; every
    value is the count of the adds before it, and no call fails or reports a damaged object.
    Before: the half was returned as the object, and the call failed on it as on a damaged
    one."""
    store_spec.init()
    assert Shelf.get_or_create("shelf").add.run() == 1
    vc.shutdown()
    with DroppingProxy(_upstream(store_lane), drop_share=1.0, targets=FirstReads(), cut_short=True) as proxy:
        routed = proxy.route(store_spec)
        for expected in range(1, 6):
            routed.init(settings=vc.Settings(timeout=10.0, deadline=30.0))
            shelf = vc.get_actor("shelf")
            assert shelf.value.run() == expected
            assert shelf.add.run() == expected + 1
            vc.shutdown()
    assert proxy.stats.dropped > 0, proxy.stats.seen


# -- (5) a deadline that ran out while the server kept refusing -----------------------------------
@pytest.mark.parametrize("status", [503, 429])
def test_a_gcs_read_whose_deadline_ends_while_the_server_keeps_failing_says_what_it_answered(
    status: int,
) -> None:
    """Every GET answered ``status`` with ``Retry-After: 8`` (the store waits 2 s of it at most);
    the request's deadline (3 s) ends during the pause before its next try (3 s, not less: the
    first answer must come within it on a loaded host, or the timeout rightly says there was
    none). The timeout said "got no answer ...: is the endpoint reachable?", of an endpoint
    that had answered, and hid the answer; it now names it."""
    hits: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        hits.append(request.method)
        error = {"error": {"code": status, "message": "Backend Error (test)"}}
        return web.json_response(error, status=status, headers={"Retry-After": "8"})

    async def scenario() -> StorageTimeoutError:
        async with gcs_answering(answer) as endpoint:
            store = GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p")
            store.request_timeout = 3.0
            try:
                async with asyncio.timeout(HANG):
                    with pytest.raises(StorageTimeoutError) as info:
                        await store.get("k")
            finally:
                await store.close()
        return info.value

    timed_out = asyncio.run(scenario())
    assert hits, "no request reached the server"
    assert f"HTTP {status}" in str(timed_out) and "Backend Error (test)" in str(timed_out), timed_out
    assert "reachable" not in str(timed_out)


# -- (6) listing: ids that are prefixes of others, and that need escaping, over many pages --------
#: ids the actor id rules allow that a URL's query or path would misread unescaped ("+" is a
#: space in a query, "&" and "=" split it, "#" ends it, "%2B" unescapes to "+"), ids that are
#: prefixes of others ("a" of "ab", "a b", ...), and characters past ASCII
AWKWARD_IDS = ("a", "ab", "a b", "a+b", "a%2Bb", "a&b=c", "a#b", "a?b", "a;b", "é", "a\u2028b", "a\x85b")


@pytest.mark.vactor_lanes("fakegcs")
def test_listings_of_awkward_ids_over_pages_of_two_keys_see_exactly_each_ids_keys(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each id's prefix lists that id's keys and no other's; ``start_after`` any key lists
    exactly the keys after it, in order, at any limit; all over pages of two keys."""
    import vactor_cloud.storage._gcs as gcs_module

    monkeypatch.setattr(gcs_module, "_LIST_PAGE", 2)
    keys = sorted(
        f"actors/{actor}/{name}" for actor in AWKWARD_IDS for name in ("HEAD", "steps/0", "steps/1")
    )

    async def scenario() -> None:
        store = store_spec.open()
        try:
            await asyncio.gather(*(store.put(key, key.encode(), mode="create") for key in keys))
            for actor in AWKWARD_IDS:
                assert await store.list(f"actors/{actor}/") == [
                    k for k in keys if k.startswith(f"actors/{actor}/")
                ]
            assert await store.list("actors/") == keys
            for n, key in enumerate(keys):
                assert await store.list("actors/", start_after=key) == keys[n + 1 :], key
                assert await store.list("actors/", start_after=key, limit=3) == keys[n + 1 : n + 4], key
        finally:
            await store.close()

    asyncio.run(scenario())

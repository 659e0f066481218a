"""The storage boundary under faults, from a hostile review (review-h43): deletes bounded per
folder where each key is its own request (GCS, local, memory), server answers the contract may
not expect (a repeated listing page token, 409 on a GCS conditional upload, a body cut short),
and a silent GCS endpoint: every operation, ``close`` included, ends within its deadline.

No timing assertions: what may hang is bounded by ``HANG``; requests are held by test stores
until the test releases them, or answered by loopback servers written here."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from combining_workers import OrderLog
from test_combining import commit_behind_its_back, foreign_box, init_switchable, pending_posts, post_adds
from test_review_post_deletes import HANG, StalledDeletes, wait_until

import vactor_cloud as vc
from vactor_cloud.errors import StorageError, StorageTimeoutError
from vactor_cloud.storage import ObjectStore
from vactor_cloud.storage._s3 import S3Store
from vactor_cloud.testing.lanes import StoreSpec


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
        self.thread.join()


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _gcs_answering(handle: _Handler) -> AsyncIterator[str]:
    """A loopback GCS JSON API: every request goes to ``handle``; yields the endpoint."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


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
            async with _gcs_answering(gcs_page) as endpoint:
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

"""Review h149: a request past ``Settings.timeout`` names only the answers it got itself.

h142 made a request that ran out of its timeout while the endpoint kept answering failures
(503, each tried again) say "gave up after N s; the last answer was HTTP 503: ...", and one that
got no answer say "got no answer within N s". The answer named was the store's last, whatever
request it was: a request that got no answer at all, while another request to the same store was
answered 503, said it "gave up" and quoted the other's answer (the same confusion h149 found in
``Settings.deadline``'s text). Each request's own answers are now told apart. On the GCS store
(a loopback server) and the S3 store (both transports, a loopback server speaking S3's errors).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiohttp import web
from loopback_gcs import gcs_answering

from vactor_cloud.errors import StorageError, StorageTimeoutError
from vactor_cloud.storage import ObjectStore
from vactor_cloud.storage._gcs import GCSStore
from vactor_cloud.storage._s3 import S3Store

#: the request timeout under test
TIMEOUT = 1.5


async def _both(store: ObjectStore) -> tuple[BaseException | None, BaseException | None]:
    """Get ``silent`` (never answered) and ``busy`` (answered 503 every time) at once: what each
    raised."""
    store.request_timeout = TIMEOUT

    async def get(key: str) -> BaseException | None:
        try:
            await store.get(key)
        except StorageError as exc:
            return exc
        return None

    try:
        async with asyncio.timeout(60.0):
            silent, busy = await asyncio.gather(get("silent"), get("busy"))
    finally:
        await store.close()
    return silent, busy


def _check(silent: BaseException | None, busy: BaseException | None) -> None:
    assert isinstance(busy, StorageError) and "503" in str(busy), repr(busy)
    assert isinstance(silent, StorageTimeoutError), repr(silent)
    assert "got no answer within" in str(silent), str(silent)
    assert "gave up" not in str(silent) and "the last answer was" not in str(silent), str(silent)


def test_a_gcs_request_that_got_no_answer_does_not_quote_anothers() -> None:
    """Before: "GET silent on gs://bucket/p gave up after 1.5 s; the last answer was HTTP 503:
    Backend Error (test) (each tried again)..."."""
    stop = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        if "silent" in request.path:
            await stop.wait()
        error = {"error": {"code": 503, "message": "Backend Error (test)"}}
        return web.json_response(error, status=503, headers={"Retry-After": "0.1"})

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        async with gcs_answering(answer) as endpoint:
            try:
                return await _both(GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p"))
            finally:
                stop.set()

    _check(*asyncio.run(scenario()))


@contextmanager
def _s3_answering_503_but_silent() -> Iterator[tuple[str, threading.Event]]:
    """A loopback S3 answering 503 SlowDown to everything but a key named ``silent``, which it
    answers once ``stop`` is set."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if "silent" in self.path:
                stop.wait(60)
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce (test)</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stop
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
def test_an_s3_request_that_got_no_answer_does_not_quote_anothers(transport: str) -> None:
    if transport == "s3fs":
        pytest.importorskip("s3fs")
    with _s3_answering_503_but_silent() as (endpoint, stop):
        store = S3Store(
            "bucket/p",
            key="k",
            secret="s",
            endpoint_url=endpoint,
            transport=transport,
            config_kwargs={"retries": {"total_max_attempts": 3, "mode": "standard"}},
        )
        try:
            outcome = asyncio.run(_both(store))
        finally:
            stop.set()
    _check(*outcome)

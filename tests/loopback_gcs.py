"""A loopback GCS JSON API for wire-level tests: every request goes to one handler."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.storage._gcs import GCSStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def gcs_answering(handle: Handler) -> AsyncIterator[str]:
    """Serve every request on 127.0.0.1 with ``handle``; yields the endpoint."""
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


def timed_out_get(
    answer: Handler, timeout: float, release: asyncio.Event | None = None
) -> StorageTimeoutError:
    """The error of a GET of ``k`` on a loopback GCS server serving with ``answer``, run out of
    its request ``timeout`` (``release`` set once it has, before the server stops)."""

    async def scenario() -> StorageTimeoutError:
        async with gcs_answering(answer) as endpoint:
            store = GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p")
            store.request_timeout = timeout
            try:
                async with asyncio.timeout(60.0):
                    with pytest.raises(StorageTimeoutError) as info:
                        await store.get("k")
            finally:
                if release is not None:
                    release.set()
                await store.close()
        return info.value

    return asyncio.run(scenario())

"""A raw S3-compatible endpoint on 127.0.0.1 for tests of what the S3 store makes of answers no
emulator sends (no ``Content-Length`` nor checksum, a throttle until the timeout): each request
is answered with bytes the test gives, and the connection closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any


@contextlib.asynccontextmanager
async def s3_answering(
    answer: Callable[[int], bytes], *, transport: str, retries: int, timeout: float
) -> AsyncIterator[tuple[Any, list[bytes]]]:
    """An ``S3Store`` (``transport``, botocore's ``retries`` attempts, ``timeout`` per request)
    on an endpoint that answers its n-th request (from 1) with ``answer(n)``; yields the store
    and the request lines seen so far."""
    from vactor_cloud.storage._s3 import S3Store

    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readline())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(answer(len(requests)))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    store = S3Store(
        "bucket/p",
        transport=transport,
        endpoint_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}",
        key="k",
        secret="s",
        client_kwargs={"region_name": "us-east-1"},
        config_kwargs={"retries": {"max_attempts": retries, "mode": "standard"}},
    )
    store.request_timeout = timeout
    try:
        yield store, requests
    finally:
        await store.close()
        server.close()
        await server.wait_closed()

"""Shared by the tests of what a write's error says when its connection failed (reviews h149,
h151): GCS and S3 stores pointed at a port on 127.0.0.1 that a test controls (closed, answering
once, resetting), the writes they make, and the words a message must or must not hold."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from vactor_cloud.errors import StorageError
from vactor_cloud.storage import IfMatch, ObjectStore
from vactor_cloud.storage._gcs import GCSStore
from vactor_cloud.storage._s3 import S3Store

__all__ = [
    "MAY_HAVE_LANDED",
    "NOTHING_WRITTEN",
    "STORES",
    "WRITES",
    "closed_port",
    "error_of",
    "gcs_at",
    "s3_at",
]

MAY_HAVE_LANDED = "may or may not have been applied"
NOTHING_WRITTEN = "nothing was written"
WRITES: dict[str, Callable[[ObjectStore], Awaitable[Any]]] = {
    "create": lambda store: store.put("k", b"x", mode="create"),
    "if-match": lambda store: store.put("k", b"x", mode=IfMatch("7")),
    "overwrite": lambda store: store.put("k", b"x"),
    "delete": lambda store: store.delete("k"),
}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gcs_at(port: int) -> GCSStore:
    return GCSStore("bucket/p", endpoint_url=f"http://127.0.0.1:{port}", token="anon", project="p")


def s3_at(port: int, transport: str = "botocore", attempts: int = 2) -> S3Store:
    """An S3 store at ``port`` on ``transport`` ("botocore" or "s3fs"), botocore trying each
    request ``attempts`` times."""
    options: dict[str, Any] = {
        "key": "k",
        "secret": "s",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "config_kwargs": {"retries": {"total_max_attempts": attempts, "mode": "standard"}},
    }
    if transport == "s3fs":
        pytest.importorskip("s3fs")
        options["transport"] = "s3fs"
    return S3Store("bucket/p", **options)


STORES: dict[str, Callable[[int], ObjectStore]] = {
    "gcs": gcs_at,
    "s3-botocore": s3_at,
    "s3-s3fs": lambda port: s3_at(port, "s3fs"),
}


def error_of(store: ObjectStore, operation: Callable[[ObjectStore], Awaitable[Any]]) -> StorageError:
    """The ``StorageError`` ``operation`` on ``store`` raises (the store closed after)."""

    async def scenario() -> StorageError:
        try:
            await operation(store)
        except StorageError as exc:
            return exc
        finally:
            await store.close()
        raise AssertionError(f"the request to {store.describe()} succeeded")

    return asyncio.run(scenario())

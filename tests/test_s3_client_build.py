"""The S3 client is built before a request's timeout starts, not within it.

Building botocore's client (its S3 model, endpoint rules, credentials) takes a fraction of a
second, and seconds on a loaded machine or a small serverless instance: the cold start of the
function that gets an actor, calls one method and exits. Within the first request's
``Settings.timeout`` it made that request time out without having sent anything, and a write
said it "may or may not have been applied". The build now runs before the request's timeout
starts, bounded by a limit of its own (``CLIENT_BUILD_LIMIT``, never below the request's
timeout), whose error says what was slow.

Runs on the moto lane, with each transport; a slow build is a ``sleep`` put into it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.storage import _s3, open_store
from vactor_cloud.storage._s3_threads import BotocoreTransport
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("moto"), pytest.mark.parametrize("transport", ["botocore", "s3fs"])]


def _slow_build(monkeypatch: pytest.MonkeyPatch, transport: str, seconds: float) -> list[float]:
    """Make each client build of ``transport`` take ``seconds`` more; the builds' start times."""
    started: list[float] = []
    if transport == "botocore":
        build = BotocoreTransport.build_client

        def slow_build_client(self: BotocoreTransport) -> Any:
            started.append(time.monotonic())
            time.sleep(seconds)  # (on a pool thread, as the build runs)
            return build(self)

        monkeypatch.setattr(BotocoreTransport, "build_client", slow_build_client)
    else:
        import s3fs

        set_session = s3fs.S3FileSystem.set_session

        async def slow_set_session(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self._s3 is None:  # (s3fs calls it before every request: a no-op once built)
                started.append(time.monotonic())
                await asyncio.sleep(seconds)
            return await set_session(self, *args, **kwargs)

        monkeypatch.setattr(s3fs.S3FileSystem, "set_session", slow_set_session)
    return started


def test_a_client_build_slower_than_the_request_timeout_fails_no_request(
    store_spec: StoreSpec, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build of 4 s under a request timeout of 3 s: the first PUT, GET and LIST succeed.
    Before: the PUT raised ``StorageTimeoutError`` (may or may not have been applied). (With
    a timeout of 1 s, a request after the build took longer on a loaded moto lane once.)"""
    builds = _slow_build(monkeypatch, transport, 4.0)

    async def first_requests() -> tuple[bytes, list[str]]:
        store = open_store(store_spec.url, **{**store_spec.options, "transport": transport})
        store.request_timeout = 3.0
        try:
            await store.put("cold/k", b"VACT written by a cold process")
            got = await store.get("cold/k")
            listed = await store.list("cold/")
            return got.data, list(listed)
        finally:
            await store.close()

    data, keys = asyncio.run(first_requests())
    assert data == b"VACT written by a cold process"
    assert keys == ["cold/k"]
    assert len(builds) == 1, builds  # (built once, before the first request: none started over)


def test_a_client_build_that_hangs_fails_within_its_own_limit_and_says_so(
    store_spec: StoreSpec, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that never ends is bounded: the request fails with a ``StorageTimeoutError``
    naming the client's build (not a write that may have landed: nothing was sent)."""
    monkeypatch.setattr(_s3, "CLIENT_BUILD_LIMIT", 0.5)
    _slow_build(monkeypatch, transport, 2.0)

    async def first_put() -> BaseException | None:
        store = open_store(store_spec.url, **{**store_spec.options, "transport": transport})
        store.request_timeout = 0.2
        try:
            await store.put("cold/hung", b"VACT never sent")
        except StorageTimeoutError as exc:
            return exc
        finally:
            await store.close()
        return None

    error = asyncio.run(first_put())
    assert isinstance(error, StorageTimeoutError), error
    message = str(error)
    assert "client" in message and "nothing was sent" in message, message
    assert "may or may not" not in message, message
    assert not error.write_in_flight

"""The S3 store's s3fs transport: aiobotocore on the running event loop (``transport="s3fs"``).

Chosen with the storage option ``transport="s3fs"``, or when the options
include an aiobotocore ``session``. Every request goes through
``S3FileSystem._call_s3`` with explicit parameters, never through fsspec's
file API (whose ``mode="create"`` is a non-atomic exists-then-write) nor its
listing cache (another machine may have written a moment ago). s3fs brings
its client plumbing: credentials, endpoint, retries of transport errors and
``SlowDown``, all requests in flight on one loop without a thread each (but
not aiohttp's silent resend of a PUT or DELETE: see ``_send_each_request_once``).

The connection is opened lazily on the running event loop; a store used
from another loop (after ``fork``, or a second ``asyncio.run``) opens a
fresh one there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Mapping
from typing import Any

import aiohttp
import botocore.exceptions
import s3fs

from vactor_cloud.storage._base import REQUEST
from vactor_cloud.storage._s3_answers import NOT_CONNECTED, Attempts, watch_answers, watch_attempts

#: what the attempts of the request running in this task met (botocore's handlers run in it)
_ATTEMPTS: contextvars.ContextVar[Attempts | None] = contextvars.ContextVar(
    "vactor_s3_attempts", default=None
)

__all__ = ["S3fsTransport"]


def _send_each_request_once(client: Any) -> None:
    """Keep aiohttp from sending a PUT or DELETE again by itself.

    aiohttp (3.10 on) sends a request of an idempotent method (PUT and DELETE among them)
    once more when its connection closes before the answer: out of botocore's sight, so an
    answer to the second says nothing of the first. A conditional PUT that landed and lost
    its answer then met its own write, and an if-match was reported as a definite
    precondition failure. botocore's own retries remain (counted in the answer, as on the
    botocore transport). aiohttp has no public switch: the attribute its own test client
    sets is set on every session aiobotocore opens.
    """
    http: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
    open_session = getattr(http, "_get_session", None)
    if http is None or open_session is None or getattr(http, "_vactor_sends_once", False):
        return

    async def session_sending_once(proxy_url: Any) -> Any:
        session = await open_session(proxy_url)
        session._retry_connection = False
        return session

    for session in (getattr(http, "_sessions", None) or {}).values():  # (opened already)
        session._retry_connection = False
    http._get_session = session_sending_once
    http._vactor_sends_once = True


class S3fsTransport:
    """Requests through one :class:`s3fs.S3FileSystem` per event loop."""

    transport_errors: tuple[type[BaseException], ...] = (
        botocore.exceptions.BotoCoreError,
        aiohttp.ClientError,
        asyncio.TimeoutError,
    )
    #: an answer whose body arrived cut short (aiohttp's; botocore's are the store's own)
    damaged_body_errors: tuple[type[BaseException], ...] = (aiohttp.ClientPayloadError,)
    #: see ``Transport.last_failure``: what botocore retried (s3fs's own retries stay out of sight)
    last_failure: tuple[float, BaseException] | None = None

    def __init__(self, bucket: str, options: Mapping[str, Any]) -> None:
        self.bucket = bucket
        self._options = {
            **options,
            # One filesystem per store: fsspec's instance cache would hand two
            # stores (or two event loops) the same aiohttp session.
            "asynchronous": True,
            "skip_instance_cache": True,
        }
        self._fs: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client_task: asyncio.Future[Any] | None = None

    def _filesystem(self) -> Any:
        """The s3fs filesystem bound to the running loop, created on first use there."""
        loop = asyncio.get_running_loop()
        if self._fs is None or self._loop is not loop:
            if self._fs is not None:
                # The old session belongs to another (possibly dead) loop; it
                # cannot be awaited from here, so only its sockets are closed.
                self._abandon(self._fs, self._loop)
            self._fs = s3fs.S3FileSystem(**self._options)
            self._loop = loop
            self._client_task = None
        return self._fs

    def needs_client(self) -> bool:
        """No client built on the running loop yet (see ``Transport.build_client_here``)."""
        fs = self._fs
        return fs is None or fs._s3 is None or self._loop is not asyncio.get_running_loop()

    async def build_client_here(self) -> None:
        await self._client_ready(self._filesystem())

    async def _client_ready(self, fs: Any) -> None:
        """Build the botocore client once, beyond any one request's timeout.

        Building it loads botocore's service model: a fraction of a second, seconds on
        a loaded machine or a small serverless instance. Under a short
        ``Settings.timeout`` a request cancelled while the client was being built
        would otherwise throw the half-built client away, and the next request would
        start over, never reaching the endpoint. The build runs as its own task; a
        cancelled request stops waiting for it, the next one finds it done.
        """
        if fs._s3 is not None:
            return
        task = self._client_task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._client_task = asyncio.ensure_future(fs.set_session())
        await asyncio.shield(task)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request; ``get_object``'s body comes back read, as bytes."""
        fs = self._filesystem()
        await self._client_ready(fs)
        _send_each_request_once(fs._s3)  # (at once: a flag once done)
        if not getattr(fs._s3, "_vactor_watched", False):
            watch_answers(fs._s3, self._note_failure)
            watch_attempts(fs._s3, _ATTEMPTS.get)
            fs._s3._vactor_watched = True
        attempts = Attempts()  # (s3fs's own retries of the request too)
        token = _ATTEMPTS.set(attempts)
        try:
            response: dict[str, Any] = await fs._call_s3(method, Bucket=self.bucket, **params)
        except NOT_CONNECTED as exc:
            outcome = attempts.outcome(exc)
            if outcome is exc:
                raise
            raise outcome from exc  # (``NothingSent``: its cause is ``exc``)
        finally:
            _ATTEMPTS.reset(token)
        if method == "get_object":
            async with response["Body"] as body:
                response["Body"] = await body.read()
        return response

    def _note_failure(self, at: float, failure: BaseException) -> None:
        self.last_failure = (at, failure)
        answers = REQUEST.get()  # (botocore's handlers run in the request's task)
        if answers is not None:
            answers.last = self.last_failure

    @staticmethod
    def _abandon(fs: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        creator = getattr(fs, "_s3creator", None)
        if creator is None:
            return
        if loop is not None and loop.is_running() and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(creator.__aexit__(None, None, None), loop)
            return
        with contextlib.suppress(Exception):
            creator._client._endpoint.http_session._connector._close()

    async def close(self) -> None:
        """Close the HTTP session."""
        fs, loop = self._fs, self._loop
        self._fs = self._loop = None
        task, self._client_task = self._client_task, None
        if task is not None and not task.done():
            task.cancel()
        if fs is None:
            return
        creator = getattr(fs, "_s3creator", None)
        if creator is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is a coroutine
            running = None
        if running is loop:
            with contextlib.suppress(Exception):
                await creator.__aexit__(None, None, None)
        else:
            self._abandon(fs, loop)

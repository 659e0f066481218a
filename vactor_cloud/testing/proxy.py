"""A loopback HTTP proxy that drops connections after the server answered: real lost responses.
It can also hold answers back (late responses) and tell which requests reached the server.

:class:`DroppingProxy` listens on 127.0.0.1 and forwards HTTP/1.1 to one
upstream server (moto, LocalStack, fake-gcs-server). For a seeded share of
the requests it is told to target (by default successful ``PUT`` / ``POST``
uploads) it reads the server's whole answer, so the write *is* applied, and
then closes the client's connection without sending a byte of it. The
client library sees a dropped connection and does what it does in
production: botocore retries the ``PutObject`` itself (the retried
``If-None-Match: *`` create then meets our own object and answers 412), the
GCS store reports a :class:`~vactor_cloud.errors.RetryableStorageError`.

The proxy understands just enough HTTP to find message boundaries:
``Content-Length``, chunked transfer coding, ``Expect: 100-continue``, and
bodiless answers (``HEAD``, 1xx, 204, 304). It runs its own event loop in a
daemon thread, so it can sit in a test process while child processes talk
through it.

With ``replace_with`` (a whole HTTP answer, such as a 500 ``InternalError``)
the chosen answers are replaced by it instead of dropped: a server error
reported for a write that was applied. With ``cut_short``, a chosen answer of
known length is sent without its ``Content-Length`` and only its first half,
then the connection closed: an answer that lost its end where nothing in HTTP
tells the client (a proxy or an HTTP/1.0 hop that dropped the length).

``hold(method, target)`` chooses requests whose answer is held back, once
the server has applied them, until :meth:`DroppingProxy.release` (a late
answer; ``held`` is set when one is waiting). ``stats.seen`` lists every
request that reached the server, as ``"METHOD target"``. ``rewrite(method,
target)`` returns the target to send instead (a server that answers
otherwise than asked: shorter listing pages, say; requests are not signed
again, which moto and fake-gcs-server do not check).
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vactor_cloud.testing.lanes import StoreSpec

__all__ = ["DroppingProxy", "ProxyStats", "is_upload"]

_MAX_HEAD = 64 * 1024


def is_upload(method: str, target: str) -> bool:
    """The default target: object uploads (S3 ``PUT``, GCS ``POST /upload/...``)."""
    return method == "PUT" or (method == "POST" and target.startswith("/upload/"))


@dataclass
class ProxyStats:
    """What the proxy saw: requests forwarded, answers dropped (by method), connections."""

    requests: int = 0
    dropped: int = 0
    connections: int = 0
    dropped_targets: list[str] = field(default_factory=list)
    #: every request forwarded to the server, as ``"METHOD target"``
    seen: list[str] = field(default_factory=list)


class _Closed(Exception):
    """The peer closed the connection in the middle of a message."""


class DroppingProxy:
    """Forward HTTP to ``upstream``; drop the answer to ``drop_share`` of targeted requests.

    ``targets(method, path)`` chooses the requests that may be dropped
    (default :func:`is_upload`); only answers with a 2xx status are dropped,
    so every drop hides a write that happened. Use as a context manager, or
    ``start()`` / ``stop()``; ``endpoint`` is the URL to give the client.
    """

    def __init__(
        self,
        upstream: str,
        *,
        drop_share: float,
        seed: int = 0,
        targets: Callable[[str, str], bool] = is_upload,
        hold: Callable[[str, str], bool] | None = None,
        rewrite: Callable[[str, str], str] | None = None,
        replace_with: bytes | None = None,
        cut_short: bool = False,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_addr = (parts.hostname, parts.port)
        self.drop_share = drop_share
        self.targets = targets
        self.hold = hold
        self.rewrite = rewrite
        #: when set, a chosen answer is replaced by these bytes (a whole HTTP answer) instead of dropped
        self.replace_with = replace_with
        #: when set, a chosen answer of known length loses its length and its second half
        self.cut_short = cut_short
        #: set when an answer ``hold`` chose is being held back
        self.held = threading.Event()
        self._released = threading.Event()
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.endpoint = ""

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> str:
        """Listen on 127.0.0.1 (an ephemeral port) and return the endpoint URL."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="vactor-dropping-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            # Every connection's task ends (cancelled and awaited) before the loop
            # stops: a task left suspended would run its cleanup when garbage
            # collected, on a closed loop, as an unraisable error in some later test.
            if self._server is not None:
                self._server.close()
            for writer in list(self._clients):
                writer.transport.abort()
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(10)
        self._loop = self._thread = self._server = None

    def release(self) -> None:
        """Send the answers held back, and every later one at once (``hold`` holds no more)."""
        self._released.set()

    def route(self, spec: StoreSpec) -> StoreSpec:
        """``spec`` with every mention of the upstream endpoint (options, environment) pointing here."""
        if not self.endpoint:
            raise RuntimeError("DroppingProxy.start() was not called")

        def swap(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace(self.upstream, self.endpoint)
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            return value

        return StoreSpec(spec.url, swap(spec.options), swap(spec.env))

    def __enter__(self) -> DroppingProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one client connection --------------------------------------------------------------
    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._clients.add(client_w)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self._upstream_addr)
            while await self._exchange(client_r, client_w, upstream_r, upstream_w):
                pass
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._clients.discard(client_w)
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.transport.abort()

    async def _exchange(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        upstream_r: asyncio.StreamReader,
        upstream_w: asyncio.StreamWriter,
    ) -> bool:
        """Forward one request and its answer; False when the connection is done."""
        request = await _read_head_or_eof(client_r)
        if request is None:
            return False
        method, target, headers = _parse_request(request)
        if self.rewrite is not None:
            sent = self.rewrite(method, target)
            if sent != target:
                line, rest = request.split(b"\r\n", 1)
                request = line.replace(target.encode("latin-1"), sent.encode("latin-1"), 1) + b"\r\n" + rest
                target = sent
        self.stats.requests += 1
        self.stats.seen.append(f"{method} {target}")
        upstream_w.write(request)
        answer: bytes | None = None
        if headers.get("expect", "").lower() == "100-continue":
            await upstream_w.drain()
            answer = await _read_head(upstream_r)
            if _status(answer) == 100:
                client_w.write(answer)
                await client_w.drain()
                answer = None
                await _copy_body(client_r, upstream_w, headers)
            # else: the server answered without wanting the body; the client will not send it.
        else:
            await _copy_body(client_r, upstream_w, headers)
        await upstream_w.drain()
        if answer is None:
            answer = await _read_head(upstream_r)
        status = _status(answer)
        while 100 <= status < 200 and status != 101:
            client_w.write(answer)
            answer = await _read_head(upstream_r)
            status = _status(answer)
        answer_headers = _parse_headers(answer)
        body = await _read_answer_body(upstream_r, answer_headers, method, status)
        if self.hold is not None and not self._released.is_set() and self.hold(method, target):
            # Applied by the server; the client hears of it only once released (a late answer).
            self.held.set()
            while not self._released.is_set():
                await asyncio.sleep(0.01)
        if 200 <= status < 300 and self.targets(method, target) and self._rng.random() < self.drop_share:
            # The server applied the request and answered; the client never hears of it.
            self.stats.dropped += 1
            self.stats.dropped_targets.append(f"{method} {target}")
            if self.cut_short and "content-length" in answer_headers:
                client_w.write(_without_length(answer) + body[: len(body) // 2])
                await client_w.drain()
                return False
            if self.replace_with is None:
                return False
            answer, body = self.replace_with, b""
            answer_headers = _parse_headers(answer)
        client_w.write(answer + body)
        await client_w.drain()
        closing = "close" in (headers.get("connection", "") + answer_headers.get("connection", "")).lower()
        # An answer delimited by closing the connection ends the connection too.
        delimited = (
            "content-length" in answer_headers
            or "chunked" in answer_headers.get("transfer-encoding", "").lower()
            or _bodiless(method, status)
        )
        return delimited and not closing


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """One message head; ``_Closed`` if the peer closed before its end."""
    head = await _read_head_or_eof(reader)
    if head is None:
        raise _Closed
    return head


async def _read_head_or_eof(reader: asyncio.StreamReader) -> bytes | None:
    """One message head, or ``None`` if the peer closed cleanly before starting one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _Closed from exc
    if len(head) > _MAX_HEAD:
        raise _Closed
    return head


def _parse_headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _without_length(head: bytes) -> bytes:
    """An answer's head without ``Content-Length``, saying the connection closes: its body then
    ends where the connection does."""
    lines = [
        line
        for line in head[:-4].split(b"\r\n")
        if not line.lower().startswith((b"content-length:", b"connection:"))
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _parse_request(head: bytes) -> tuple[str, str, dict[str, str]]:
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first.split(" ")
    if len(parts) < 2:
        raise _Closed
    return parts[0].upper(), parts[1], _parse_headers(head)


_STATUS = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")


def _status(head: bytes | None) -> int:
    match = _STATUS.match(head or b"")
    if match is None:
        raise _Closed
    return int(match.group(1))


def _bodiless(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


async def _copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
) -> None:
    """Forward a request body (Content-Length or chunked) verbatim."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        writer.write(await _read_chunked(reader))
        return
    length = int(headers.get("content-length", "0") or 0)
    if length:
        writer.write(await reader.readexactly(length))


async def _read_answer_body(
    reader: asyncio.StreamReader, headers: dict[str, str], method: str, status: int
) -> bytes:
    if _bodiless(method, status):
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()  # delimited by the server closing the connection


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """One chunked body, raw (size lines, data, trailers), as it came."""
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        out += size_line
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                line = await reader.readuntil(b"\r\n")
                out += line
                if line == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)

"""A write whose request was sent in full, then met a reset connection, may have landed (review h151).

h149 made a write none of whose attempts could connect say "nothing was written". On the s3fs
transport aiobotocore turns every aiohttp ``ClientConnectionError`` into botocore's
``EndpointConnectionError``, a reset connection after the request was sent (``ClientOSError``,
"Connection reset by peer") among them: such a write was said to have sent nothing, and a
create-only put of a step that the server had applied read as certainly not written (a caller
told so calls again: the call applied twice). A server that reads each request in full and
resets its connection without answering: every backend's write error says it may have landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from raw_endpoints import (
    MAY_HAVE_LANDED,
    NOTHING_WRITTEN,
    STORES,
    WRITES,
    closed_port,
    error_of,
    gcs_at,
    s3_at,
)

from vactor_cloud.errors import RetryableStorageError, StorageError


def _read_request(connection: socket.socket) -> int:
    """Read one request in full (head and body); how many requests' bytes it held (1)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return 0
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    fields = {
        name.strip().lower(): value.strip().lower()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if fields.get(b"expect") == b"100-continue":
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = int(fields.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        rest += chunk
    return 1


@contextlib.contextmanager
def _resetting_after_each_request(once: bool = False) -> Iterator[tuple[int, list[int]]]:
    """A port whose server reads each request in full, then resets the connection (RST, no
    answer): the request reached the server, which may have applied it. Yields the port and
    the list the count of requests received is kept in. ``once``: after the first request,
    connections are refused (the listener closed)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = int(listener.getsockname()[1])
    received = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(10)
                with contextlib.suppress(OSError):
                    received[0] += _read_request(connection)
                # (SO_LINGER 0: close sends a reset, not a FIN)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if once:
                    listener.close()
            if once:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, received
    finally:
        stop.set()
        thread.join(30)
        listener.close()


@pytest.mark.parametrize("operation", sorted(WRITES))
@pytest.mark.parametrize("backend", sorted(STORES))
def test_a_write_sent_then_reset_says_it_may_have_landed(backend: str, operation: str) -> None:
    """Before (s3fs transport): "...could not connect to ...: EndpointConnectionError ...
    ClientOSError ... Connection reset by peer ...; nothing was sent, so nothing was written"."""
    with _resetting_after_each_request() as (port, received):
        error = error_of(STORES[backend](port), WRITES[operation])
    assert received[0] >= 1, "the server received no request"
    assert isinstance(error, RetryableStorageError), repr(error)
    message = str(error)
    assert NOTHING_WRITTEN not in message, message
    assert MAY_HAVE_LANDED in message, message


@contextlib.contextmanager
def _answering_then_gone() -> Iterator[tuple[int, list[int]]]:
    """A port whose server answers the first request (204, the connection kept open), reads
    the second on the same connection, then stops listening and drops it: the second request
    reached the server; a new connection is refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = int(listener.getsockname()[1])
    received = [0]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            received[0] += _read_request(connection)
            connection.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            with contextlib.suppress(OSError):
                received[0] += _read_request(connection)
            listener.close()  # (from here on, connections are refused)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, received
    finally:
        thread.join(30)
        listener.close()


def test_a_gcs_delete_sent_on_a_kept_connection_then_refused_says_it_may_have_landed() -> None:
    """aiohttp sends a DELETE (an idempotent method) once more by itself when its kept-alive
    connection closes before the answer; that second send found no connection
    (ClientConnectorError), and the attempt was taken for one that sent nothing: "nothing was
    written" (before), though the server had received the delete."""

    async def scenario(port: int) -> StorageError:
        store = gcs_at(port)
        try:
            await store.delete("k")  # (answered: the connection stays open for the next)
            try:
                await store.delete("k")
            except StorageError as exc:
                return exc
        finally:
            await store.close()
        raise AssertionError("the second delete succeeded")

    with _answering_then_gone() as (port, received):
        error = asyncio.run(scenario(port))
    assert received[0] == 2, received
    assert isinstance(error, RetryableStorageError), repr(error)
    assert NOTHING_WRITTEN not in str(error), str(error)
    assert MAY_HAVE_LANDED in str(error), str(error)


@pytest.mark.parametrize("operation", sorted(WRITES))
@pytest.mark.parametrize("backend", sorted(STORES))
def test_a_write_sent_then_reset_then_refused_says_it_may_have_landed(backend: str, operation: str) -> None:
    """The first attempt reached the server and was reset; the next ones found no connection.
    The last attempt's failure is a refused connection, but the first one was sent. Before
    (s3fs transport): "nothing was sent, so nothing was written"."""
    with _resetting_after_each_request(once=True) as (port, received):
        error = error_of(STORES[backend](port), WRITES[operation])
    assert received[0] == 1, received
    assert isinstance(error, RetryableStorageError), repr(error)
    assert NOTHING_WRITTEN not in str(error), str(error)
    assert MAY_HAVE_LANDED in str(error), str(error)


@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
def test_a_write_that_never_connected_keeps_the_connection_error_as_its_cause(transport: str) -> None:
    """``NothingSent`` is documented to have the last attempt's failure as its cause; the
    transports raised it ``from None``, which set its ``__cause__`` to None: the chain of the
    error ended at ``NothingSent``, botocore's error gone from the traceback (before)."""
    error = error_of(s3_at(closed_port(), transport), WRITES["create"])
    causes = []
    cause: BaseException | None = error
    while cause is not None:
        causes.append(type(cause).__name__)
        cause = cause.__cause__
    assert "NothingSent" in causes and "EndpointConnectionError" in causes, causes

"""A write whose every attempt found no connection says nothing was written (review h149).

GCS's and S3's writes that end on a failure in transit say the write "may or may not have been
applied": true of a request that was sent and not answered. A connection refused (or one that
timed out while connecting) sent nothing: such a write cannot have landed, and its error said it
may have. Now it says nothing was written, unless an earlier attempt of the same request (a 500,
then a refused connection) was sent: that one may have landed, and the error still says so.
Against a closed port on 127.0.0.1, and a server that answers once and closes its socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

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

from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.storage import ObjectStore

READS: dict[str, Callable[[ObjectStore], Awaitable[Any]]] = {
    "get": lambda store: store.get("k"),
    "list": lambda store: store.list("p/"),
}


@contextlib.contextmanager
def _answering_once(status_line: str, body: bytes, content_type: str) -> Iterator[int]:
    """A port that answers one request (``status_line``, ``body``), then refuses connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = int(listener.getsockname()[1])

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
        with connection:  # (the listener closed first: from here on, connections are refused)
            connection.settimeout(10)
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            head, _, rest = received.partition(b"\r\n\r\n")
            fields = {
                name.strip().lower(): value.strip().lower()
                for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
            }
            length = int(fields.get(b"content-length", b"0"))
            if fields.get(b"expect") != b"100-continue":  # (else the body waits for a 100)
                while len(rest) < length:
                    rest += connection.recv(65536)
            connection.sendall(
                f"HTTP/1.1 {status_line}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            connection.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):  # (whatever the client still sends, until it closes)
                while connection.recv(65536):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(30)


@pytest.mark.parametrize("operation", sorted(WRITES))
@pytest.mark.parametrize("backend", sorted(STORES))
def test_a_write_to_a_closed_port_says_nothing_was_written(backend: str, operation: str) -> None:
    """Before: "... (the write may or may not have been applied)" (GCS), "; a write may or may
    not have been applied" (S3)."""
    error = error_of(STORES[backend](closed_port()), WRITES[operation])
    assert isinstance(error, RetryableStorageError), repr(error)
    message = str(error)
    assert MAY_HAVE_LANDED not in message, message
    assert NOTHING_WRITTEN in message, message


@pytest.mark.parametrize("operation", sorted(READS))
@pytest.mark.parametrize("backend", sorted(STORES))
def test_a_read_from_a_closed_port_speaks_of_no_write(backend: str, operation: str) -> None:
    error = error_of(STORES[backend](closed_port()), READS[operation])
    assert isinstance(error, RetryableStorageError), repr(error)
    assert "applied" not in str(error) and "written" not in str(error), str(error)


@pytest.mark.parametrize("operation", ["overwrite", "delete"])
def test_a_gcs_write_answered_500_then_refused_still_says_it_may_have_landed(operation: str) -> None:
    """The first attempt was sent (and may have been applied); the next found no connection."""
    body = b'{"error": {"code": 500, "message": "backend error (test)"}}'
    with _answering_once("500 Internal Server Error", body, "application/json") as port:
        error = error_of(gcs_at(port), WRITES[operation])
    assert isinstance(error, RetryableStorageError), repr(error)
    assert MAY_HAVE_LANDED in str(error), str(error)
    assert NOTHING_WRITTEN not in str(error), str(error)


@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
@pytest.mark.parametrize("operation", ["create", "overwrite"])
def test_an_s3_write_answered_500_then_refused_still_says_it_may_have_landed(
    transport: str, operation: str
) -> None:
    """botocore sends the request again after the 500 and finds no connection: its error is the
    refused connection's, but the first attempt was sent."""
    body = b"<Error><Code>InternalError</Code><Message>backend error (test)</Message></Error>"
    with _answering_once("500 Internal Server Error", body, "application/xml") as port:
        error = error_of(s3_at(port, transport, attempts=3), WRITES[operation])
    assert isinstance(error, RetryableStorageError), repr(error)
    assert MAY_HAVE_LANDED in str(error), str(error)
    assert NOTHING_WRITTEN not in str(error), str(error)


def test_a_gcs_overwrite_refused_429_then_unreachable_says_nothing_was_written() -> None:
    """A 429 is a refusal (nothing written), and the attempts after it were not sent."""
    body = b'{"error": {"code": 429, "message": "slow down (test)"}}'
    with _answering_once("429 Too Many Requests", body, "application/json") as port:
        error = error_of(gcs_at(port), WRITES["overwrite"])
    assert isinstance(error, RetryableStorageError), repr(error)
    assert NOTHING_WRITTEN in str(error) and MAY_HAVE_LANDED not in str(error), str(error)

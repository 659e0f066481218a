"""What botocore retried on its own, told to the S3 store: answers it could not read.

botocore reads a 200 answer whose XML is not a whole document (cut short in transit: a
proxy or an HTTP/1.0 hop that dropped its ``Content-Length`` and closed the connection
early) as a server error, a 500 of its own making, and retries it. Its error then says
"500 Internal Server Error", and a request that runs out of time meanwhile looks like one
that got no answer. :func:`watch_answers` registers two handlers on a botocore (or
aiobotocore) client: one marks such an answer in the parsed response (under
:data:`UNREADABLE`, which the store's error translation reads), one keeps the newest
failure botocore retries (the transport's ``last_failure``). :func:`watch_attempts` tells
whether any attempt of a request may have been sent: a request none of whose attempts could
connect sent nothing, and its write cannot have landed (:class:`NothingSent`).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import ParseError, XMLParser

import botocore.exceptions
import urllib3.exceptions

__all__ = [
    "NOT_CONNECTED",
    "UNREADABLE",
    "Attempts",
    "NothingSent",
    "RetriedAnswer",
    "UnreadableAnswer",
    "could_not_connect",
    "retried_failure",
    "watch_answers",
    "watch_attempts",
]

#: the key, in a parsed answer, that describes an answer whose XML could not be read
UNREADABLE = "VactorUnreadableAnswer"


#: botocore's (and aiobotocore's) errors a failure to connect is raised as; not every one of
#: them was (see :func:`could_not_connect`)
NOT_CONNECTED: tuple[type[BaseException], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
)


def _connect_failures() -> tuple[type[BaseException], ...]:
    """The transports' own errors, kept by an ``EndpointConnectionError`` (its ``error``), of a
    connection that was never made: urllib3's (botocore), aiohttp's (aiobotocore, s3fs's: looked
    up only once imported, which the botocore transport never does), a host not resolved."""
    aiohttp = sys.modules.get("aiohttp")
    aiohttp_failures = () if aiohttp is None else (aiohttp.ClientConnectorError,)
    return (urllib3.exceptions.NewConnectionError, socket.gaierror, *aiohttp_failures)


def could_not_connect(failure: BaseException | None) -> bool:
    """Whether ``failure``, an attempt's, is a connection that was never made: nothing of the
    attempt was sent. aiobotocore raises ``EndpointConnectionError`` for every aiohttp
    ``ClientConnectionError``, a connection reset after the request was sent among them
    (``ClientOSError``): only one whose own error is a failure to connect counts."""
    if isinstance(failure, botocore.exceptions.ConnectTimeoutError):
        return True  # (a timeout while connecting: urllib3's, or aiohttp's "Connection timeout")
    if not isinstance(failure, botocore.exceptions.EndpointConnectionError):
        return False
    return isinstance(failure.kwargs.get("error"), _connect_failures())


class NothingSent(Exception):
    """No attempt of a request could connect (its cause: the last one's failure): nothing of it
    was sent, so a write did not land."""


class Attempts:
    """Whether any attempt of one request (botocore's retries, s3fs's) may have been sent: one
    that failed otherwise than to connect, or was answered."""

    __slots__ = ("maybe_sent",)

    def __init__(self) -> None:
        self.maybe_sent = False

    def outcome(self, failure: BaseException) -> BaseException:
        """What the request that raised ``failure`` (its last attempt's) raises: a
        :class:`NothingSent` when no attempt was sent, else ``failure``."""
        if could_not_connect(failure) and not self.maybe_sent:
            nothing = NothingSent(f"{type(failure).__name__}: {failure}")
            nothing.__cause__ = failure
            return nothing
        return failure


class RetriedAnswer(Exception):
    """An answer botocore retried (a server error, a throttle): the endpoint did answer."""


class UnreadableAnswer(RetriedAnswer):
    """An answer botocore retried because its body was no whole XML document."""


def _mark_unreadable(
    operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's ``before-parse``: mark an answer whose body is no whole XML document.

    Only a 500's: botocore's own handler (registered first) has made a 200 it could not
    parse a 500 by then, and a successful answer's body (a listing page: a thousand keys) is
    not parsed a third time. Not an HTML page: a proxy's own error answer (its 500, 502,
    503), whole but no XML, is a server error, not S3's answer cut short. Streamed bodies
    (``GetObject``'s) are not read here: their checksums judge them."""
    body = response_dict.get("body")
    if not isinstance(body, bytes) or not body or response_dict.get("status_code") != 500:
        return
    if body[:64].lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return
    try:
        parser = XMLParser()
        parser.feed(body)
        parser.close()
    except ParseError:
        customized_response_dict[UNREADABLE] = (
            f"the answer to {operation_model.name} arrived cut short or unreadable "
            f"({len(body)} bytes that are no whole XML document)"
        )


def retried_failure(caught_exception: BaseException | None, response: Any) -> BaseException | None:
    """What made botocore consider a retry: the error it caught, an answer it could not read,
    a server error or throttle it was given; ``None`` for a success."""
    if caught_exception is not None:
        return caught_exception
    if not isinstance(response, tuple) or len(response) != 2 or not isinstance(response[1], dict):
        return None
    parsed = response[1]
    if parsed.get(UNREADABLE):
        return UnreadableAnswer(parsed[UNREADABLE])
    status = (parsed.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if isinstance(status, int) and (status >= 500 or status == 429):
        error = parsed.get("Error") or {}
        return RetriedAnswer(f"S3 said {status} {error.get('Code', '')}: {error.get('Message', '')}")
    return None


def watch_answers(client: Any, note: Callable[[float, BaseException], None]) -> None:
    """Mark unreadable answers on ``client`` and call ``note(time, failure)`` before each retry
    botocore may make (``RequestAbandoned``-like failures are the caller's to skip)."""

    def needs_retry(caught_exception: BaseException | None = None, response: Any = None, **_: Any) -> None:
        failure = retried_failure(caught_exception, response)
        if failure is not None:
            note(time.monotonic(), failure)

    client.meta.events.register("before-parse.s3", _mark_unreadable)
    client.meta.events.register("needs-retry.s3", needs_retry)


def watch_attempts(client: Any, running: Callable[[], Attempts | None]) -> None:
    """After each attempt of a request of ``client``, mark the request's :class:`Attempts`
    (``running()``: the request running here, ``None`` if none) sent unless it could not connect."""

    def needs_retry(caught_exception: BaseException | None = None, **_: Any) -> None:
        attempts = running()
        if attempts is not None and not could_not_connect(caught_exception):
            attempts.maybe_sent = True

    client.meta.events.register("needs-retry.s3", needs_retry)

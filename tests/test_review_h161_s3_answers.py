"""What botocore's retries met, told apart (review h161): ``storage/_s3_answers.py`` on its own.

Each test kills a mutation the rest of the suite let through (it fails with the mutation
applied and passes without); the mutation is named in its docstring. No server: the
functions are given what botocore hands its handlers. The sweep's table is in
``test_review_h161_s3_transports``.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

botocore_exceptions = pytest.importorskip("botocore.exceptions")

from vactor_cloud.storage._s3_answers import (  # noqa: E402
    UNREADABLE,
    Attempts,
    NothingSent,
    RetriedAnswer,
    UnreadableAnswer,
    _mark_unreadable,
    could_not_connect,
    retried_failure,
)

_URL = "http://127.0.0.1:9"


def _refused(error: BaseException) -> BaseException:
    return botocore_exceptions.EndpointConnectionError(endpoint_url=_URL, error=error)


def test_a_host_that_does_not_resolve_sent_nothing() -> None:
    """Mutation: ``socket.gaierror`` dropped from the failures to connect (a write to a
    misspelt endpoint host said it may have been applied)."""
    failure = _refused(socket.gaierror(-2, "Name or service not known"))
    assert could_not_connect(failure)
    assert isinstance(Attempts().outcome(failure), NothingSent)


def test_aiohttps_failure_to_connect_sent_nothing_and_its_reset_after_sending_may_have() -> None:
    """Mutation: aiohttp's ``ClientConnectorError`` dropped from the failures to connect (the
    s3fs transport said "may have been applied" of a refused connection)."""
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))
    assert could_not_connect(_refused(refused))
    reset = aiohttp.ClientOSError(104, "Connection reset by peer")
    assert not could_not_connect(_refused(reset))  # sent, then cut: it may have landed


def test_nothing_sent_keeps_the_failure_as_its_cause() -> None:
    """Mutation: ``NothingSent.__cause__`` left unset (the refused connection's own error, with
    its endpoint, was lost to whoever logs the chain)."""
    failure = _refused(socket.gaierror(-2, "no such host"))
    outcome = Attempts().outcome(failure)
    assert isinstance(outcome, NothingSent) and outcome.__cause__ is failure
    sent = Attempts()
    sent.maybe_sent = True
    assert sent.outcome(failure) is failure  # one attempt may have been sent: no NothingSent


def _answer(status: int, code: str = "") -> tuple[Any, dict[str, Any]]:
    parsed: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": status}}
    if code:
        parsed["Error"] = {"Code": code, "Message": "m"}
    return object(), parsed


def test_every_server_error_and_a_throttle_are_retried_answers_and_a_client_error_is_none() -> None:
    """Mutations: ``status >= 500`` as ``> 500`` (a 500 retried was not noted: the timeout said
    "no answer"), ``== 429`` dropped (a throttle retried was not noted)."""
    for status, code in ((500, "InternalError"), (503, "SlowDown"), (429, "TooManyRequests")):
        failure = retried_failure(None, _answer(status, code))
        assert type(failure) is RetriedAnswer, status
        assert f"S3 said {status} {code}" in str(failure)
    assert retried_failure(None, _answer(412, "PreconditionFailed")) is None
    assert retried_failure(None, _answer(200)) is None
    caught = ConnectionResetError("reset")
    assert retried_failure(caught, None) is caught


def _mark(status: int, body: bytes) -> dict[str, Any]:
    class Operation:
        name = "PutObject"

    marked: dict[str, Any] = {}
    _mark_unreadable(Operation(), {"status_code": status, "body": body}, marked)
    return marked


def test_only_a_500_whose_body_is_cut_short_xml_is_marked_unreadable() -> None:
    """Mutations: the status check widened to a 503 (a proxy's whole 503 answer, not S3's XML,
    was said "cut short or unreadable"), the HTML check dropped (a proxy's 500 page likewise)."""
    cut = b'<?xml version="1.0"?><Error><Code>Intern'
    assert UNREADABLE in _mark(500, cut)
    assert "PutObject arrived cut short" in _mark(500, cut)[UNREADABLE]
    assert _mark(503, b"Service Unavailable") == {}
    assert _mark(500, b"<!DOCTYPE html><html><body><h1>500 Internal Server Error</h1>") == {}
    assert _mark(500, b"<Error><Code>InternalError</Code></Error>") == {}  # whole: S3's own
    assert isinstance(retried_failure(None, (object(), {UNREADABLE: "cut"})), UnreadableAnswer)


def test_a_connect_timeout_sent_nothing() -> None:
    """Mutation: ``ConnectTimeoutError`` not counted as a failure to connect (a write whose every
    attempt timed out connecting said it may have been applied)."""
    failure = botocore_exceptions.ConnectTimeoutError(endpoint_url=_URL, error=TimeoutError("timed out"))
    assert could_not_connect(failure)
    assert isinstance(Attempts().outcome(failure), NothingSent)
    assert not could_not_connect(botocore_exceptions.ReadTimeoutError(endpoint_url=_URL, error="x"))

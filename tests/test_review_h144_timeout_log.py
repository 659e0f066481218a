"""The warning logged with the ``storage_timeouts`` counter (review-h144): it said "no answer
within N s" of every request that ran out of ``Settings.timeout``, also when the endpoint did
answer (503, 429, each tried again until the timeout): h142 made the error's own text true
("gave up after N s; the last answer was ..."), and the log line now follows the same rule:
"got no answer within N s" only when nothing answered.

Loopback GCS servers answer every request alike; no timing assertions."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from loopback_gcs import timed_out_get

from vactor_cloud import counters

#: the longest any operation here may take before it is called a hang
HANG = 60.0
#: the request timeout: long enough for a first answer on a loaded host, short for the suite
TIMEOUT = 3.0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "vactor_cloud" and r.levelno >= logging.WARNING
    ]


def test_the_log_line_of_a_timeout_the_endpoint_answered_says_it_gave_up_and_names_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every GET answered 503 until the request's timeout. Before: "GET k: no answer within 3 s
    (Settings.timeout)", logged beside an error saying the endpoint answered 503."""

    async def answer(request: web.Request) -> web.StreamResponse:
        error = {"error": {"code": 503, "message": "Backend Error (test)"}}
        return web.json_response(error, status=503, headers={"Retry-After": "8"})

    before = counters.stats()["storage_timeouts"]
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        timed_out_get(answer, TIMEOUT)
    assert counters.stats()["storage_timeouts"] == before + 1
    (line,) = [line for line in _warnings(caplog) if "Settings.timeout" in line]
    assert line.startswith("GET k: ") and f"gave up after {TIMEOUT:g} s" in line, line
    assert "HTTP 503: Backend Error (test)" in line, line
    assert "no answer" not in line, line


def test_the_log_line_of_a_timeout_nothing_answered_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """The server reads the GET and never answers: "got no answer within 3 s", as the error
    says it (before: "no answer within 3 s")."""
    release = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        released = asyncio.ensure_future(release.wait())
        await asyncio.wait([released], timeout=HANG)
        released.cancel()
        return web.Response(status=500)

    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        timed_out = timed_out_get(silent, TIMEOUT, release)
    assert "got no answer" in str(timed_out), timed_out
    (line,) = [line for line in _warnings(caplog) if "Settings.timeout" in line]
    assert line == f"GET k: got no answer within {TIMEOUT:g} s (Settings.timeout)", line

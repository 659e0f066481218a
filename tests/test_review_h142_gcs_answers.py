"""GCS answers under review-h142: an upload GCS refuses because its body arrived damaged
(400, "Provided MD5 hash ... doesn't match calculated MD5 hash ..."; the store sends the
object's MD5 with every upload) wrote nothing, and is sent again; every other 400 stays a
definite refusal.

A loopback GCS (``loopback_gcs``) answers what real GCS would; no timing assertions (what may
hang is bounded by ``HANG``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp import web
from loopback_gcs import gcs_answering

from vactor_cloud.errors import RetryableStorageError, StorageError
from vactor_cloud.storage import IfMatch, PutMode
from vactor_cloud.storage._gcs import GCSStore

#: the longest any operation here may take before it is called a hang
HANG = 60.0
#: GCS's answer to an upload whose bytes do not match the md5Hash its metadata gave
MD5_MISMATCH = (
    'Provided MD5 hash "Ss/KmcE9mTxW8N3Y+Hzd8A==" doesn\'t match '
    'calculated MD5 hash "1B2M2Y8AsgTpgAmY7PhCfg==".'
)
#: an answer to a successful upload
CREATED = {"kind": "storage#object", "name": "p/k", "bucket": "bucket", "generation": "17"}


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"reason": "invalid", "message": message}],
            }
        },
        status=status,
    )


def _put_through(answers: list[Callable[[], web.Response]], mode: PutMode) -> tuple[object, list[str]]:
    """What ``put("k", ..., mode)`` returned or raised against a server answering uploads
    with what ``answers`` make in turn (the last one again once they run out; a response is
    sent once, so each is made anew), and the requests sent."""
    requests: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        requests.append(f"{request.method} {request.path}")
        await request.read()
        return answers[min(len(requests), len(answers)) - 1]()

    async def scenario() -> object:
        async with gcs_answering(answer) as endpoint:
            store = GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p")
            store.request_timeout = HANG
            try:
                async with asyncio.timeout(HANG):
                    return await store.put("k", b"x" * 100, mode=mode)
            except StorageError as exc:
                return exc
            finally:
                await store.close()

    return asyncio.run(scenario()), requests


@pytest.mark.parametrize("mode", ["create", IfMatch("5")], ids=["create", "if-match"])
def test_an_upload_refused_for_an_md5_mismatch_once_is_sent_again_and_lands(mode: PutMode) -> None:
    """The body arrived damaged, GCS refused it (400, MD5 mismatch) and wrote nothing: the
    upload is sent again, and its version returned. Before: a definite ``StorageError`` ("the
    request was malformed (check the key and the storage options)"), after one request."""
    outcome, requests = _put_through([lambda: _error(MD5_MISMATCH), lambda: web.json_response(CREATED)], mode)
    assert outcome == "17", outcome
    assert len(requests) == 2, requests


def test_an_upload_refused_for_an_md5_mismatch_every_time_is_retryable_and_says_nothing_was_written() -> None:
    """Every upload refused so: a :class:`RetryableStorageError` after a few tries, saying the
    body was damaged on the way and that nothing was written (not "may have been applied")."""
    outcome, requests = _put_through([lambda: _error(MD5_MISMATCH)], "create")
    assert isinstance(outcome, RetryableStorageError), outcome
    message = str(outcome)
    assert "MD5" in message and "damaged on the way" in message, message
    assert "may or may not have been applied" not in message and "malformed" not in message, message
    assert len(requests) == 3, requests


@pytest.mark.parametrize(
    "message",
    ["Invalid argument.", "Metadata part is too large.", "The specified bucket is not valid."],
)
def test_every_other_400_to_an_upload_stays_a_definite_refusal(message: str) -> None:
    """Only the checksum refusal is sent again: any other 400 is the request's own fault."""
    outcome, requests = _put_through([lambda: _error(message)], "create")
    assert isinstance(outcome, StorageError) and not isinstance(outcome, RetryableStorageError), outcome
    assert "malformed" in str(outcome), outcome
    assert len(requests) == 1, requests

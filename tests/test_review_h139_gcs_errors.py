"""How the GCS store classes each HTTP answer, and how often it asks again (review h139).

A mutation sweep of ``_gcs.py`` (review h139) found classifications no test held: a 400
taken for transient (repeated, then "retry later" for a request that can never pass), a 502
taken for definite, a delete's refusal swallowed. The rows for 503 and for a 412 repeat kills
that ``test_gcs_backend`` makes too, to keep the table whole. Each row below sends one request
to a loopback server answering every request with one status, and checks the error's class and
the number of requests sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from loopback_gcs import gcs_answering

from vactor_cloud.errors import (
    AlreadyExistsError,
    ConflictError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.storage import IfMatch, ObjectStore
from vactor_cloud.storage._gcs import GCSStore

Request = Callable[[ObjectStore], Awaitable[Any]]
OPERATIONS: dict[str, Request] = {
    "get": lambda store: store.get("k"),
    "list": lambda store: store.list("p/"),
    "delete": lambda store: store.delete("k"),
    "overwrite": lambda store: store.put("k", b"x"),
    "create": lambda store: store.put("k", b"x", mode="create"),
    "if-match": lambda store: store.put("k", b"x", mode=IfMatch("7")),
}
#: reads, deletes and overwrites are repeated after a transient failure; conditional puts never
ATTEMPTS = {"get": 3, "list": 3, "delete": 3, "overwrite": 3, "create": 1, "if-match": 1}


def _outcome(status: int, operation: str) -> tuple[BaseException | None, int]:
    """What ``operation`` raised against a server answering ``status`` to everything, and how
    many requests it sent."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.method)
        return web.json_response({"error": {"code": status, "message": f"status {status}"}}, status=status)

    async def scenario() -> BaseException | None:
        async with gcs_answering(handle) as endpoint:
            store = GCSStore("bucket/prefix", endpoint_url=endpoint, token="anon", project="p")
            try:
                await OPERATIONS[operation](store)
            except StorageError as exc:
                return exc
            finally:
                await store.close()
        return None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", _no_pause)  # (the backoff between attempts: not under test)
        error = asyncio.run(scenario())
    return error, len(hits)


_real_sleep = asyncio.sleep


async def _no_pause(delay: float, result: Any = None) -> Any:
    return await _real_sleep(0, result)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("status", [400, 403])
def test_a_definite_refusal_is_sent_once_and_raised_as_definite(status: int, operation: str) -> None:
    """Killed mutations: 400 among the transient statuses (repeated, then raised as "retry
    later"); a delete's refusal swallowed (the key reported deleted, still there)."""
    error, sent = _outcome(status, operation)
    assert error is not None, f"{operation} answered {status} raised nothing"
    assert not isinstance(error, RetryableStorageError), f"{status} on {operation}: {error!r}"
    assert isinstance(error, PermissionDeniedError) == (status == 403), repr(error)
    assert sent == 1, f"{operation} answered {status} was sent {sent} times"


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_a_server_error_is_transient_and_repeated_only_where_that_is_harmless(
    status: int, operation: str
) -> None:
    """Killed mutations: 502 (or another of these) taken for definite; a conditional put
    repeated (its first attempt may have landed: only its caller can tell); the
    "may or may not have been applied" of a conditional put dropped."""
    error, sent = _outcome(status, operation)
    assert type(error) is RetryableStorageError, f"{status} on {operation}: {error!r}"
    assert sent == ATTEMPTS[operation], f"{operation} answered {status} was sent {sent} times"
    if operation in ("create", "if-match"):
        assert "may or may not have been applied" in str(error), str(error)
    elif operation in ("get", "list"):
        assert "may or may not have been applied" not in str(error), str(error)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("status", [429, 503])
def test_a_rate_limit_is_raised_as_one_after_the_attempts_allowed(status: int, operation: str) -> None:
    """(Also killed by ``test_gcs_backend``) 503 dropped from the rate-limit statuses (a plain
    transient error: the caller's backoff for a hot object never starts)."""
    error, sent = _outcome(status, operation)
    assert type(error) is RateLimitedError, f"{status} on {operation}: {error!r}"
    assert sent == ATTEMPTS[operation], f"{operation} answered {status} was sent {sent} times"


@pytest.mark.parametrize(
    ("operation", "expected"),
    [("create", AlreadyExistsError), ("if-match", PreconditionFailedError)],
)
def test_a_412_says_which_condition_failed(operation: str, expected: type[StorageError]) -> None:
    """(Also killed by ``test_gcs_backend``) the 412 of an if-match raised as
    ``AlreadyExistsError`` (a CAS loser taken for a create's: callers handle the two differently)."""
    error, sent = _outcome(412, operation)
    assert type(error) is expected and sent == 1, repr(error)


@pytest.mark.parametrize("operation", ["create", "if-match", "overwrite"])
def test_a_409_is_a_conflict_sent_once(operation: str) -> None:
    error, sent = _outcome(409, operation)
    assert type(error) is ConflictError and sent == 1, repr(error)

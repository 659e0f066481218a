"""How the S3 store classes each answer: definite or transient, and whether a write may have landed
(review h139).

A mutation sweep of ``_s3.py`` (review h139) found classifications no test held: every 4xx
taken for transient, a retried if-match's 412 taken for a definite refusal, a transport failure
of a write no longer saying the write may have landed, puts sent through the reads' retries, a
foreign object shorter than the write token read as empty. (It also found a 409 to a retried
conditional put saying nothing was written: fixed.) The table below runs the store's one
translation (``S3Store._translate``) over botocore's own exceptions, as a request would raise
them, without a server: each row names what it holds. (The stubbed-server tests in
``test_s3_backend.py`` hold that requests reach this translation on both transports.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import botocore.exceptions
import pytest

from vactor_cloud.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    TruncatedObjectError,
)
from vactor_cloud.storage import IfMatch, PutMode
from vactor_cloud.storage._s3 import S3Store

MAY_HAVE_LANDED = "may or may not have been applied"


def _client_error(
    status: int, code: str, method: str, *, retried: int = 0
) -> botocore.exceptions.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"canned {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retried},
    }
    return botocore.exceptions.ClientError(response, method)


def _translate(exc: BaseException, method: str, mode: PutMode | None) -> StorageError:
    store = S3Store("bucket/prefix", key="k", secret="s", endpoint_url="http://127.0.0.1:9")
    return store._translate(exc, "actors/a/HEAD", method, mode)


# (status, code, method, mode, retried) -> the exact class, and whether the message says the
# write may have landed
ANSWERS = [
    # definite refusals: never retried, nothing written
    pytest.param(400, "InvalidArgument", "put_object", "create", 0, StorageError, False, id="400-put"),
    pytest.param(400, "InvalidRequest", "get_object", None, 0, StorageError, False, id="400-get"),
    pytest.param(403, "AccessDenied", "put_object", "overwrite", 0, PermissionDeniedError, False, id="403"),
    pytest.param(403, "InvalidAccessKeyId", "get_object", None, 0, AuthenticationError, False, id="403-key"),
    pytest.param(404, "NoSuchKey", "get_object", None, 0, NotFoundError, False, id="404-get"),
    pytest.param(
        412, "PreconditionFailed", "put_object", "create", 0, AlreadyExistsError, False, id="412-create"
    ),
    pytest.param(
        412,
        "PreconditionFailed",
        "put_object",
        IfMatch('"e"'),
        0,
        PreconditionFailedError,
        False,
        id="412-if-match",
    ),
    pytest.param(
        404, "NoSuchKey", "put_object", IfMatch('"e"'), 0, PreconditionFailedError, False, id="404-if-match"
    ),
    # an if-match botocore sent again after an answer it lost: its first attempt may have written
    pytest.param(
        412,
        "PreconditionFailed",
        "put_object",
        IfMatch('"e"'),
        1,
        RetryableStorageError,
        True,
        id="412-if-match-retried",
    ),
    pytest.param(
        404,
        "NoSuchKey",
        "put_object",
        IfMatch('"e"'),
        2,
        RetryableStorageError,
        True,
        id="404-if-match-retried",
    ),
    # a conditional put botocore sent again after an answer it lost, refused because a conditional
    # write to the key was in flight: that write may be its own first attempt
    pytest.param(
        409,
        "ConditionalRequestConflict",
        "put_object",
        IfMatch('"e"'),
        1,
        RetryableStorageError,
        True,
        id="409-if-match-retried",
    ),
    pytest.param(
        409,
        "ConditionalRequestConflict",
        "put_object",
        "create",
        1,
        RetryableStorageError,
        True,
        id="409-create-retried",
    ),
    # transient: the caller retries (a write's may have landed)
    pytest.param(
        409, "ConditionalRequestConflict", "put_object", "create", 0, ConflictError, False, id="409"
    ),
    pytest.param(429, "", "get_object", None, 0, RateLimitedError, False, id="429"),
    pytest.param(503, "SlowDown", "put_object", "create", 0, RateLimitedError, False, id="503-slow-down"),
    pytest.param(
        400, "RequestTimeout", "put_object", "create", 0, RetryableStorageError, True, id="400-timeout"
    ),
    pytest.param(500, "InternalError", "put_object", "create", 0, RetryableStorageError, True, id="500-put"),
    pytest.param(502, "BadGateway", "put_object", "create", 0, RetryableStorageError, True, id="502-put"),
    pytest.param(504, "", "get_object", None, 0, RetryableStorageError, False, id="504-get"),
    pytest.param(599, "", "list_objects_v2", None, 0, RetryableStorageError, False, id="599-list"),
]


@pytest.mark.parametrize(("status", "code", "method", "mode", "retried", "expected", "landed"), ANSWERS)
def test_each_answer_is_classed_definite_or_transient(
    status: int, code: str, method: str, mode: PutMode | None, retried: int, expected: type, landed: bool
) -> None:
    """Killed mutations: ``status >= 500`` as ``>= 400`` (400-put, 400-get: a definite refusal
    retried until the deadline); the retried if-match clause dropped (412-if-match-retried: its
    own first attempt reported as another writer's win). Also killed elsewhere, on the moto lane:
    the ``status >= 500`` clause dropped (502-put, 504-get, 599-list), the 404 of an if-match
    taken for a missing object (404-if-match)."""
    error = _translate(_client_error(status, code, method, retried=retried), method, mode)
    assert type(error) is expected, f"{status} {code} on {method}: {type(error).__name__}: {error}"
    assert error.key == "actors/a/HEAD"
    assert (MAY_HAVE_LANDED in str(error)) == landed, str(error)


@pytest.mark.parametrize(
    "failure",
    [
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["connect", "read-timeout", "reset"],
)
@pytest.mark.parametrize(
    "method", ["put_object", "delete_object", "delete_objects", "get_object", "head_object"]
)
def test_a_failure_in_transit_is_transient_and_a_writes_may_have_landed(
    failure: Exception, method: str
) -> None:
    """Killed mutation: the "may or may not have been applied" of a write's transport failure
    dropped (a caller deciding whether to read back before retrying has only this to go by)."""
    mode: PutMode | None = "create" if method == "put_object" else None
    error = _translate(failure, method, mode)
    assert type(error) is RetryableStorageError, f"{type(error).__name__}: {error}"
    write = method not in ("get_object", "head_object")
    assert ("a write may or may not have been applied" in str(error)) == write, str(error)


def test_a_body_cut_short_is_transient_not_definite() -> None:
    """Killed mutation: botocore's ``IncompleteReadError`` (a GET's body cut short) made a
    definite ``StorageError``: a read that a retry would have answered failed for good."""
    failure = botocore.exceptions.IncompleteReadError(actual_bytes=10, expected_bytes=100)
    error = _translate(failure, "get_object", None)
    assert type(error) is RetryableStorageError, f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("size", [0, 1, 15])
def test_an_object_shorter_than_the_write_token_is_refused_not_read_as_empty(size: int) -> None:
    """Killed mutation: ``_get_once``'s length check dropped: an object of fewer than 16 bytes
    (which vactor_cloud never writes: every put starts with its write token; another tool's, or
    one cut short at rest) was returned as an empty object at its ETag."""
    store = S3Store("bucket/prefix", key="k", secret="s", endpoint_url="http://127.0.0.1:9")

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert method == "get_object" and params["Key"] == "prefix/actors/a/HEAD"
        return {"Body": b"x" * size, "ETag": '"e"'}

    store._transport.call = answer  # type: ignore[method-assign]
    with pytest.raises(TruncatedObjectError) as caught:
        asyncio.run(store.get("actors/a/HEAD"))
    assert caught.value.key == "actors/a/HEAD"
    assert "write token" in str(caught.value)


OPERATIONS = {
    "get": lambda store: store.get("k"),
    "head": lambda store: store.head("k"),
    "list": lambda store: store.list("p/"),
    "create": lambda store: store.put("k", b"x", mode="create"),
    "if-match": lambda store: store.put("k", b"x", mode=IfMatch('"e"')),
    "overwrite": lambda store: store.put("k", b"x"),
    "delete": lambda store: store.delete("k"),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_reads_are_tried_again_after_a_server_error_and_writes_are_not(operation: str) -> None:
    """Killed mutations: a put sent through the reads' retry loop (a create whose first attempt
    landed, tried again, meets its own object: only the commit protocol, which knows what it
    wrote, may decide); reads no longer tried again (a transient failure fails the call)."""
    store = S3Store("bucket/prefix", key="k", secret="s", endpoint_url="http://127.0.0.1:9")
    sent: list[str] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        sent.append(method)
        raise _client_error(500, "InternalError", method)

    store._transport.call = answer  # type: ignore[method-assign]
    with pytest.raises(RetryableStorageError):
        asyncio.run(OPERATIONS[operation](store))
    reads = operation in ("get", "head", "list")
    assert len(sent) == (3 if reads else 1), sent

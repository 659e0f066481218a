"""Amazon S3 and S3-compatible stores (moto, LocalStack, MinIO, ...) over botocore or s3fs.

Conditional writes are S3's own, sent as request headers on one single-part
``PutObject`` (S3 ignores conditions on multipart uploads, so we never use
them):

* create: ``If-None-Match: *``; S3 answers 412 if the key exists;
* if-match: ``If-Match: <etag>``; 412 if the ETag differs, 404 if the key
  is absent (both become :class:`PreconditionFailedError`).

Versions are ETags, exactly as S3 returns them (quoted). An ETag is a digest
of the bytes, so writing the same bytes twice would give the same version
back (ABA). Every object therefore starts with a 16-byte random write token,
stripped on read, like the local store's: each write gets a version never
seen before, and a stale compare-and-swap can never succeed. Errors are
translated here, once, into :mod:`vactor_cloud.errors`; above this module
nobody sees botocore, aiohttp or s3fs exceptions.

Requests go through a transport, chosen by the storage option ``transport``:

* ``"botocore"`` (the default): a botocore client whose blocking requests run
  on a few daemon threads (:mod:`._s3_threads`). It imports half of what s3fs
  does, which is most of a serverless function's cold start.
* ``"s3fs"``: aiobotocore on the event loop through s3fs (:mod:`._s3_aio`),
  every request in flight without a thread of its own; also chosen when the
  options carry an aiobotocore ``session``.

Both take s3fs's options (``key``, ``secret``, ``endpoint_url``,
``client_kwargs``, ``config_kwargs``, ...) and send explicit parameters,
never fsspec's file API (whose ``mode="create"`` is a non-atomic
exists-then-write) nor its listing cache (another machine may have written a
moment ago).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

import botocore.exceptions

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
    StorageTimeoutError,
    TruncatedObjectError,
)
from vactor_cloud.storage._base import (
    ACTORS_DIR,
    OBJECT_KEY_BYTES,
    STORES_BELOW,
    Blob,
    IfMatch,
    Listing,
    ObjectStore,
    PutMode,
    RequestAnswers,
    repeated_page_token,
)
from vactor_cloud.storage._s3_answers import UNREADABLE, NothingSent, RetriedAnswer, UnreadableAnswer

__all__ = ["S3Store"]

# ListObjectsV2 returns at most 1000 keys per page.
_PAGE = 1000
#: DeleteObjects takes at most 1000 keys
_DELETE_BATCH = 1000
#: tries of a read (get, head, list) that fails in transit
_READ_ATTEMPTS = 3
#: the most seconds a client's build may take (botocore's S3 model, endpoint rules and
#: credentials; never less than one request's timeout): it runs before a request's own
#: timeout starts (see ``S3Store._bounded``)
CLIENT_BUILD_LIMIT = 30.0
T = TypeVar("T")
logger = logging.getLogger("vactor_cloud")

#: random bytes in front of every object, so that ETags never repeat
_TOKEN = 16

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
#: a conditional request's answer when the object has another version
_CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
#: an endpoint's answer to a condition it does not implement (a delete's If-Match or ETag)
_REFUSED_CODES = frozenset({"NotImplemented", "501"})
#: an ETag no object has (S3's are quoted hex digests): the probe of ``S3Store._conditions_hold``
_NO_SUCH_ETAG = '"vactor-probe"'
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}
)
#: the server does not accept who we say we are (the key, the signature or the token)
_AUTHENTICATION_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)
#: it knows who we are, and refuses the request
_PERMISSION_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403", "Forbidden"})
#: a transient failure on the server's side (per key, in a DeleteObjects answer)
#: botocore errors of the client's configuration (BotoCoreErrors, but no transport failure)
_CONFIG_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(botocore.exceptions, name)
    for name in (
        "ProfileNotFound",
        "ConfigNotFound",
        "ConfigParseError",
        "ParamValidationError",
        "NoRegionError",
        "InvalidConfigError",
        "InvalidRegionError",
        "UnknownServiceError",
        "UnknownEndpointError",
        "InvalidEndpointConfigurationError",
    )
    if hasattr(botocore.exceptions, name)
)
#: a body that arrived cut short or not matching its checksum (botocore's names; a
#: transport failure, but not the network's silence the generic message suggests)
_DAMAGED_BODY: tuple[type[BaseException], ...] = tuple(
    getattr(botocore.exceptions, name)
    for name in ("FlexibleChecksumError", "IncompleteReadError", "ResponseStreamingError", "ChecksumError")
    if hasattr(botocore.exceptions, name)
)
#: (RequestTimeout: a 400 that botocore's own retry modes take for transient)
#: the requests that change nothing: their failures never speak of a write that may have landed
_READS = frozenset({"get_object", "head_object", "list_objects_v2"})
_RETRYABLE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "500", "503", "RequestTimeout", "RequestTimeoutException"}
)
#: the transports, by the name the ``transport`` option takes
TRANSPORTS = ("botocore", "s3fs")


class Transport(Protocol):
    """How the store's requests reach S3: one call per request, errors raised as the client raises them."""

    #: exception types that mean a failure in transit (besides ``OSError``)
    transport_errors: tuple[type[BaseException], ...]
    #: exception types, besides botocore's, that mean an answer's body arrived cut short
    damaged_body_errors: tuple[type[BaseException], ...]
    #: (monotonic time, error) of the newest attempt the client failed and retried on its
    #: own, if the transport sees them; named when a request then runs out of time (each
    #: request's own are noted in its ``storage._base.REQUEST`` too)
    last_failure: tuple[float, BaseException] | None

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """``method`` (``put_object``, ...) with ``Bucket`` and ``params``; ``get_object``'s body as bytes."""
        ...

    def needs_client(self) -> bool:
        """No client is built for this process and event loop yet."""
        ...

    async def build_client_here(self) -> None:
        """Build the client for this process and event loop; raises what the build raises."""
        ...

    async def close(self) -> None: ...


def open_transport(bucket: str, options: Mapping[str, Any]) -> Transport:
    """The transport the ``transport`` option names (``botocore`` unless an aiobotocore session is given)."""
    options = dict(options)
    name = options.pop("transport", None) or ("s3fs" if options.get("session") is not None else "botocore")
    if name == "botocore":
        if options.get("session") is not None:
            raise ValueError(
                "storage option session= is an aiobotocore session, used by transport='s3fs'; "
                "pass transport='s3fs' or drop session= (profile= names a credentials profile)"
            )
        from vactor_cloud.storage._s3_threads import BotocoreTransport  # noqa: PLC0415 - lazy: cold start

        return BotocoreTransport(bucket, options)
    if name == "s3fs":
        try:
            from vactor_cloud.storage._s3_aio import S3fsTransport  # noqa: PLC0415 - lazy: cold start
        except ImportError as exc:
            raise ModuleNotFoundError(
                f"transport='s3fs' needs {exc.name!r}, which is not installed: "
                "pip install 'vactor_cloud[s3]'",
                name=exc.name,
            ) from exc
        return S3fsTransport(bucket, options)
    raise ValueError(f"unknown storage option transport={name!r}; valid: {', '.join(map(repr, TRANSPORTS))}")


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``; keys are relative to the prefix.

    Guarantees, on any S3 that implements conditional writes (AWS S3 since
    2024, moto >= 5.0.18, LocalStack):

    * ``put`` is one ``PutObject``: a reader sees the whole old or the whole
      new object.
    * ``put(mode="create")`` succeeds for exactly one concurrent creator
      (``If-None-Match: *``). A create whose response was lost and that the
      client retried can meet its own object and report
      :class:`AlreadyExistsError`; the commit protocol resolves that by
      reading the object back.
    * ``put(mode=IfMatch(etag))`` is a compare-and-swap on the ETag.
      :class:`ConflictError` (S3's 409 ``ConditionalRequestConflict``) means a
      concurrent conditional write was in flight: retry after a pause. A 409 to
      a request botocore sent again after an answer it lost is no such proof (the
      write in flight may be its own first attempt): a
      :class:`RetryableStorageError` saying the write may have been applied.
    * ``list`` is a fresh ``ListObjectsV2`` every time.
    * ``delete_many`` is one ``DeleteObjects`` (quiet mode) per 1000 keys; a
      key the response reports as not deleted raises :class:`StorageError`
      naming it.

    Objects are stored as a 16-byte random token followed by the data, so
    that the ETag (a digest of the stored bytes) changes on every write,
    even when the data does not: versions are never reused.

    ``options`` are :class:`s3fs.S3FileSystem`'s (``endpoint_url``, ``key``,
    ``secret``, ``token``, ``client_kwargs``, ``config_kwargs``, ...) and
    ``transport`` (``"botocore"``, the default, or ``"s3fs"``; see the module
    docstring); the standard ``AWS_ENDPOINT_URL`` / ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` environment is honoured by botocore. The
    connection is opened lazily, on first use.
    """

    delete_batch = _DELETE_BATCH
    #: S3 (since 2024) and moto (5.x) honour a delete's ``If-Match`` and DeleteObjects' ETags
    conditional_deletes = True
    #: one ListObjectsV2 page (for a listing that is no :class:`Listing`; ours say how many pages)
    snapshot_list_keys = _PAGE
    #: :class:`s3fs.S3FileSystem`'s options (``asynchronous``, ``skip_instance_cache``: set by the store)
    accepted_options = frozenset(
        {
            "transport",
            "anon",
            "cache_regions",
            "client_kwargs",
            "config_kwargs",
            "default_block_size",
            "default_cache_type",
            "default_fill_cache",
            "endpoint_url",
            "fixed_upload_size",
            "key",
            "local_expiry_check",
            "max_concurrency",
            "password",
            "profile",
            "requester_pays",
            "s3_additional_kwargs",
            "secret",
            "session",
            "token",
            "use_ssl",
            "username",
            "version_aware",
        }
    )

    option_types: ClassVar[Mapping[str, tuple[type, ...]]] = {
        **dict.fromkeys(
            ("endpoint_url", "key", "secret", "token", "username", "password", "profile", "transport"), (str,)
        ),
        **dict.fromkeys(("anon", "use_ssl", "requester_pays"), (bool,)),
        **dict.fromkeys(("client_kwargs", "config_kwargs", "s3_additional_kwargs"), (Mapping,)),
    }

    def __init__(self, path: str, **options: Any) -> None:
        bucket, _, prefix = path.strip("/").partition("/")
        if not bucket:
            raise ValueError(f"s3://{path}: no bucket name; use s3://bucket or s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        super().__init__(f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}")
        self.max_key_bytes = OBJECT_KEY_BYTES - (len(self.prefix.encode("utf-8")) + 1 if self.prefix else 0)
        self._options = dict(options)
        self._transport = open_transport(bucket, options)
        self._transport_errors = (*self._transport.transport_errors, OSError)
        self._damaged_body = (*_DAMAGED_BODY, *self._transport.damaged_body_errors)
        #: the kinds of conditional delete (``"one"``: DeleteObject's If-Match, ``"many"``:
        #: DeleteObjects' ETags) this store has seen the endpoint honour (``_conditions_hold``)
        self._conditions_seen: set[str] = set()

    async def close(self) -> None:
        """Close the connections; the store must not be used afterwards."""
        await self._transport.close()

    def _endpoint(self) -> str:
        client_kwargs = self._options.get("client_kwargs") or {}
        return str(
            self._options.get("endpoint_url")
            or client_kwargs.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or "AWS S3"
        )

    def _answered_meanwhile(self, timeout: float, request: RequestAnswers | None = None) -> str | None:
        failure = self._transport.last_failure if request is None else request.last
        if failure is None or time.monotonic() - failure[0] > timeout:
            return None
        if isinstance(failure[1], UnreadableAnswer):
            # It answered every time: what it said did not arrive whole.
            return (
                f"its answers arrived but not whole, and were tried again (the last: {failure[1]}); "
                f"if it keeps happening, something between this process and {self._endpoint()} "
                "truncates responses (a proxy, an HTTP/1.0 hop that drops Content-Length)"
            )
        if isinstance(failure[1], RetriedAnswer):
            return (
                f"the last answer was {failure[1]} (each tried again); retry later, and check the "
                "endpoint if it lasts"
            )
        return None  # (a failure in transit: nothing answered)

    def _stall_advice(self, timeout: float) -> str:
        failure = self._transport.last_failure
        if failure is None or time.monotonic() - failure[0] > timeout:
            return super()._stall_advice(timeout)
        return (
            f"this endpoint's requests failed meanwhile ({type(failure[1]).__name__}: {failure[1]}): "
            "is the endpoint reachable?"
        )

    def _object_key(self, key: str) -> str:
        self._check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _bounded(self, request: Awaitable[T], what: str, key: str, *, write: bool = False) -> T:
        """The request within its timeout, once the client is built: a build (a fraction of a
        second, seconds on a loaded machine or a small serverless instance at a cold start)
        made the first request time out having sent nothing, and a write say it may have
        been applied."""
        if self._transport.needs_client():
            try:
                await self._build_client(what, key)
            except BaseException:
                if inspect.iscoroutine(request):
                    request.close()  # (never started)
                raise
        return await super()._bounded(request, what, key, write=write)

    async def _build_client(self, what: str, key: str) -> None:
        limit = max(CLIENT_BUILD_LIMIT, self.request_timeout or 0.0)
        try:
            async with asyncio.timeout(limit):
                await self._transport.build_client_here()
        except TimeoutError:
            raise StorageTimeoutError(
                f"{what} {key} on {self.describe()}: building the S3 client (botocore's service "
                f"model, endpoint rules and credentials) took more than {limit:g} s, so nothing "
                "was sent; is this machine overloaded, or are credentials looked up from a slow "
                "source (an instance metadata endpoint)? Configure credentials explicitly",
                key,
            ) from None
        except Exception:  # (the request builds it again, and says why it failed as it always did)
            pass

    async def _call(self, method: str, key: str, mode: PutMode | None = None, **params: Any) -> Any:
        """One S3 request; every failure leaves here as a :class:`StorageError`."""
        try:
            return await self._transport.call(method, params)
        except Exception as exc:
            raise self._translate(exc, key, method, mode) from exc

    async def _read(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a read (which changes nothing) again after a transient failure, a few times.

        Writes are never retried here: a conditional put's outcome after a
        lost response can only be resolved by the caller, who knows what it wrote.
        """
        for attempt in range(_READ_ATTEMPTS - 1):
            try:
                return await operation()
            except RetryableStorageError:
                await asyncio.sleep(0.05 * 2**attempt * (0.5 + random.random()))
        return await operation()

    # -- operations -------------------------------------------------------
    async def _get(self, key: str) -> Blob:
        return await self._read(lambda: self._get_once(key))

    async def _get_once(self, key: str) -> Blob:
        response = await self._call("get_object", key, Key=self._object_key(key))
        data = response["Body"]
        if len(data) < _TOKEN:
            raise TruncatedObjectError(
                f"s3://{self.bucket}/{self._object_key(key)}: not written by vactor_cloud (no write token); "
                "point the store at a prefix that only vactor_cloud writes",
                key,
            )
        return Blob(bytes(data[_TOKEN:]), self._etag(response, key, "get object"))

    async def _head(self, key: str) -> str | None:
        return await self._read(lambda: self._head_once(key))

    async def _head_once(self, key: str) -> str | None:
        try:
            response = await self._call("head_object", key, Key=self._object_key(key))
        except NotFoundError:
            return None
        return self._etag(response, key, "head object")

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        body = secrets.token_bytes(_TOKEN) + data
        params: dict[str, Any] = {"Key": self._object_key(key), "Body": body}
        if mode == "create":
            params["IfNoneMatch"] = "*"
        elif isinstance(mode, IfMatch):
            params["IfMatch"] = mode.version
        elif mode != "overwrite":
            raise ValueError(f"unknown put mode {mode!r}")
        response = await self._call("put_object", key, mode, **params)
        return self._etag(response, key, "put object")

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await self._read(lambda: self._list_once(prefix, start_after, limit))

    async def _list_once(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        params: dict[str, Any] = {"Prefix": base + prefix}
        if start_after is not None:
            params["StartAfter"] = base + start_after
        keys: list[str] = []
        versions: dict[str, str] = {}
        requests = 0
        tokens: set[str] = set()
        wanted = base + prefix
        while limit is None or len(keys) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(keys))
            requests += 1
            response = await self._call("list_objects_v2", prefix, MaxKeys=page, **params)
            for item in response.get("Contents", ()):
                if "Key" not in item:
                    raise self._incomplete(prefix, "list objects", "an object's Key")
                name = item["Key"]
                # (only what was asked for: a server that ignores Prefix or StartAfter, an
                # emulator or a proxy, would hand a reader keys it did not ask for)
                if name.startswith(wanted) and (start_after is None or name[len(base) :] > start_after):
                    keys.append(name[len(base) :])
                    if item.get("ETag"):
                        versions[name[len(base) :]] = str(item["ETag"])
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                break
            if token in tokens:
                raise StorageError(repeated_page_token(self.url, prefix, token, requests), prefix)
            tokens.add(token)
            params["ContinuationToken"] = token
        # S3 lists in UTF-8 byte order, which is code-point order: sorting is a no-op
        # on a conforming server and a safety net on an emulator that is not.
        keys.sort()
        listed = keys if limit is None else keys[:limit]
        # (every object's ETag, or none: a server that leaves some out names no versions)
        named = versions if len(versions) == len(keys) else None
        return Listing(listed, requests, named)

    async def stores_below(self) -> list[str] | None:
        """One LIST of the root with ``/actors/`` as the delimiter: each common prefix
        ``<sub>/actors/`` names a store at ``<sub>``, however deep (within the first page)."""
        base = f"{self.prefix}/" if self.prefix else ""
        marker = f"/{ACTORS_DIR}/"
        self.requests.add("list")
        response = await self._bounded(
            self._call("list_objects_v2", "", Prefix=base, Delimiter=marker, MaxKeys=_PAGE), "LIST", ""
        )
        found = []
        for entry in response.get("CommonPrefixes", ()):
            name = str(entry.get("Prefix", ""))
            if name.startswith(base) and name.endswith(marker) and len(name) > len(base) + len(marker):
                found.append(f"{self.url.rstrip('/')}/{name[len(base) : -len(marker)]}")
        return found[:STORES_BELOW]

    def _etag(self, response: dict[str, Any], key: str, operation: str) -> str:
        """The object's version in an answer (its ETag), which every answer naming an object carries."""
        etag = response.get("ETag")
        if not etag:
            raise self._incomplete(key, operation, "the ETag (the object's version)")
        return str(etag)

    def _incomplete(self, key: str, operation: str, missing: str) -> StorageError:
        where = "/".join(part for part in (f"s3://{self.bucket}", self.prefix, key) if part)
        return StorageError(
            f"{where}: {operation}: {self._endpoint()} answered without {missing}; this endpoint "
            "is not S3-compatible enough for vactor_cloud",
            key,
        )

    async def _delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too; a 404 (NoSuchKey on some emulators) is fine.
        with contextlib.suppress(NotFoundError):
            await self._call("delete_object", key, Key=self._object_key(key))

    async def _delete_many(self, keys: list[str]) -> None:
        # DeleteObjects must carry a checksum of its body: botocore adds one (CRC32 since
        # 1.36, Content-MD5 before), on both transports. Quiet: the answer lists failures only.
        # A missing key counts as deleted, as with DeleteObject.
        if len(keys) > _DELETE_BATCH:
            raise ValueError(f"DeleteObjects takes at most {_DELETE_BATCH} keys, got {len(keys)}")
        objects = {self._object_key(key): key for key in keys}
        response = await self._call(
            "delete_objects",
            keys[0],
            Delete={"Objects": [{"Key": name} for name in objects], "Quiet": True},
        )
        errors = [
            error
            for error in response.get("Errors") or ()
            if str(error.get("Code", "")) not in _NOT_FOUND_CODES  # some emulators say so
        ]
        if errors:
            raise self._batch_error(errors, objects)

    async def _delete_unchanged(self, key: str, version: str) -> None:
        # If-Match: S3 answers 412 when the object has another ETag, 404 when it is gone (both:
        # left as it is, as asked); botocore's retry of an attempt that landed meets a 404 too.
        if not await self._conditions_hold("one", key):
            await self._delete_read_first({key: version})
            return
        try:
            await self._transport.call("delete_object", {"Key": self._object_key(key), "IfMatch": version})
        except Exception as exc:
            if _condition_refused(exc):
                self._conditions_refused(exc)
                await self._delete_read_first({key: version})
            elif not _left_in_place(exc):
                raise self._translate(exc, key, "delete_object", None) from exc

    async def _delete_many_unchanged(self, versions: dict[str, str]) -> None:
        # DeleteObjects with an ETag per object: one whose ETag differs is answered
        # PreconditionFailed, one gone NoSuchKey (both left as they are, as asked).
        if len(versions) > _DELETE_BATCH:
            raise ValueError(f"DeleteObjects takes at most {_DELETE_BATCH} keys, got {len(versions)}")
        first = next(iter(versions))
        if not await self._conditions_hold("many", first):
            await self._delete_read_first(versions)
            return
        objects = {self._object_key(key): key for key in versions}
        request = {
            "Objects": [{"Key": name, "ETag": versions[key]} for name, key in objects.items()],
            "Quiet": True,
        }
        try:
            response = await self._transport.call("delete_objects", {"Delete": request})
        except Exception as exc:
            if not _condition_refused(exc):
                raise self._translate(exc, first, "delete_objects", None) from exc
            self._conditions_refused(exc)
            await self._delete_read_first(versions)
            return
        errors = [
            error
            for error in response.get("Errors") or ()
            if str(error.get("Code", "")) not in _NOT_FOUND_CODES
            and str(error.get("Code", "")) not in _CHANGED_CODES
        ]
        refused = [error for error in errors if str(error.get("Code", "")) in _REFUSED_CODES]
        if refused:
            self._conditions_refused(refused[0])
            named = [objects.get(str(error.get("Key", ""))) for error in refused]
            await self._delete_read_first({key: versions[key] for key in named if key is not None})
            errors = [error for error in errors if error not in refused]
        if errors:
            raise self._batch_error(errors, objects)

    async def _conditions_hold(self, kind: str, near: str) -> bool:
        """Whether this endpoint honours the condition of a delete of ``kind`` (see
        ``_conditions_seen``). Before it is first trusted, a key that does not exist is deleted
        under a condition (one request, counted as a ``"probe"``): an endpoint honouring it says
        the key is not there (or not at that ETag); one ignoring it says it was deleted, as
        LocalStack does for DeleteObjects' ETags, deleting every object whatever its version.
        A failure (in transit, a missing bucket) decides nothing (raised: the next delete asks
        again); a refusal of the probe itself (AccessDenied) decides for the fallback."""
        if not self.conditional_deletes or kind in self._conditions_seen:
            return self.conditional_deletes
        probe = self._object_key(f".vactor-probes/{secrets.token_hex(8)}")  # (never written)
        self.requests.add("probe")
        ignored: object = None
        try:
            if kind == "one":
                await self._transport.call("delete_object", {"Key": probe, "IfMatch": _NO_SUCH_ETAG})
                ignored = "DeleteObject with If-Match deleted a key that does not exist"
            else:
                condition = {"Objects": [{"Key": probe, "ETag": _NO_SUCH_ETAG}], "Quiet": True}
                response = await self._transport.call("delete_objects", {"Delete": condition})
                codes = {str(error.get("Code", "")) for error in response.get("Errors") or ()}
                if not codes & (_NOT_FOUND_CODES | _CHANGED_CODES):
                    refused = codes & _REFUSED_CODES
                    ignored = (
                        f"DeleteObjects answered {sorted(refused)[0]}"
                        if refused
                        else "DeleteObjects with an ETag deleted a key that does not exist"
                    )
        except Exception as exc:
            if not (_condition_refused(exc) or _left_in_place(exc)):
                error = self._translate(exc, near, "delete_object", None)
                if not isinstance(error, PermissionDeniedError):
                    raise error from exc
                # A policy denying the probe's key: not knowing, the deletes read first, rather
                # than fail for good (an applied event never deleted is applied again once past
                # the dedup window).
            ignored = None if _left_in_place(exc) else exc
        if ignored is not None:
            self._conditions_refused(ignored)
        else:
            self._conditions_seen.add(kind)
        return self.conditional_deletes

    def _conditions_refused(self, said: object) -> None:
        """The endpoint refused a delete's condition (it has no conditional deletes): from now
        on this store reads each version right before deleting, which narrows the window in
        which an object written again meanwhile is deleted, but does not close it."""
        if self.conditional_deletes:
            self.conditional_deletes = False
            logger.warning(
                "%s: the endpoint refuses or ignores conditional deletes (%s); deleting after reading each "
                "object's version instead (an object written again between the read and the delete "
                "is lost: use an endpoint with conditional deletes, as S3 has)",
                self.url,
                said,
            )

    async def _delete_read_first(self, versions: dict[str, str]) -> None:
        """The fallback of an endpoint without conditional deletes: a HEAD of each key (counted),
        then one unconditional delete request for those still at their version."""
        keys = list(versions)
        current = await asyncio.gather(*(self.head(key) for key in keys))
        doomed = [key for key, now in zip(keys, current, strict=True) if now == versions[key]]
        if doomed:
            await self._delete_many(doomed)

    def _batch_error(self, errors: list[dict[str, Any]], objects: dict[str, str]) -> StorageError:
        """The error for the keys a DeleteObjects answered as not deleted (the others were)."""
        failed = [objects.get(str(error.get("Key", "")), str(error.get("Key", ""))) for error in errors]
        first = errors[0]
        code, message = str(first.get("Code", "")), str(first.get("Message", ""))
        shown = ", ".join(repr(key) for key in failed[:5]) + (
            f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        )
        where = "/".join(part for part in (f"s3://{self.bucket}", self.prefix) if part)
        said = (
            f"{where}: delete objects left {len(failed)} of {len(objects)} keys in place ({shown}): "
            f"S3 said {code}: {message}"
        )
        if code in _PERMISSION_CODES:
            return PermissionDeniedError(f"{said}; the identity lacks s3:DeleteObject", failed[0])
        if code in _THROTTLE_CODES:
            return RateLimitedError(f"{said}; retry with backoff", failed[0])
        if code in _RETRYABLE_CODES:
            return RetryableStorageError(f"{said}; retry after a pause", failed[0])
        return StorageError(said, failed[0])

    # -- error translation ------------------------------------------------
    def _translate(self, exc: BaseException, key: str, method: str, mode: PutMode | None) -> StorageError:
        """Map whatever botocore (or s3fs, aiohttp) raised to one :class:`StorageError`."""
        if isinstance(exc, StorageError):
            return exc
        where = "/".join(part for part in (f"s3://{self.bucket}", self.prefix, key) if part)
        operation = method.replace("_", " ")
        client_error = _client_error(exc)
        if client_error is not None:
            return self._translate_response(client_error, key, where, operation, mode, method in _READS)
        # s3fs translates a ClientError into a builtin and keeps the original as the
        # cause; if a future s3fs drops the cause, its builtins still tell enough.
        if isinstance(exc, FileExistsError) and mode == "create":
            return AlreadyExistsError(f"{where}: already exists (create-only put refused)", key)
        if isinstance(exc, OSError) and exc.errno == errno.EINVAL and isinstance(mode, IfMatch):
            return PreconditionFailedError(
                f"{where}: the object is not at version {mode.version} (changed or deleted); "
                "re-read it and retry",
                key,
            )
        if isinstance(exc, FileNotFoundError):
            if isinstance(mode, IfMatch):
                return PreconditionFailedError(
                    f"{where}: no object to replace at version {mode.version}; re-read it and retry", key
                )
            return NotFoundError(f"{where}: no such object", key)
        if isinstance(
            exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
        ):
            return AuthenticationError(
                f"{where}: {operation} failed: no AWS credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or pass key=/secret= storage options",
                key,
            )
        if isinstance(exc, _CONFIG_ERRORS):
            # A BotoCoreError too, but no transport failure: retrying cannot help.
            return StorageError(
                f"{where}: {operation}: the S3 client is misconfigured: {type(exc).__name__}: {exc}; "
                "check the AWS profile, region and storage options",
                key,
            )
        if isinstance(exc, self._damaged_body):
            return RetryableStorageError(
                f"{where}: {operation}: the answer's body arrived cut short or damaged "
                f"({type(exc).__name__}: {exc}); retried as a transient failure. If it keeps "
                f"happening, something between this process and {self._endpoint()} truncates or "
                "alters responses (a proxy, a faulty network device)",
                key,
            )
        if isinstance(exc, NothingSent):
            # No attempt could connect: nothing was sent, so a write did not land.
            return RetryableStorageError(
                f"{where}: {operation} could not connect to {self._endpoint()}: {exc}; check the "
                "endpoint (AWS_ENDPOINT_URL), the network and that the server is running"
                + ("" if method in _READS else "; nothing was sent, so nothing was written"),
                key,
            )
        if isinstance(exc, self._transport_errors):
            # Transport failures (reset, truncated body, timeout) are transient by nature.
            return RetryableStorageError(
                f"{where}: {operation} failed talking to {self._endpoint()}: {type(exc).__name__}: {exc}; "
                "check the endpoint (AWS_ENDPOINT_URL), the network and that the server is running"
                + ("" if method in _READS else "; a write may or may not have been applied"),
                key,
            )
        return StorageError(f"{where}: {operation} failed: {type(exc).__name__}: {exc}", key)

    def _translate_response(
        self, error: Any, key: str, where: str, operation: str, mode: PutMode | None, read: bool
    ) -> StorageError:
        response = getattr(error, "response", None) or {}
        details = response.get("Error") or {}
        code = str(details.get("Code", ""))
        message = str(details.get("Message", "")) or str(error)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        said = f"S3 said {status} {code}: {message}"
        retried = int((response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0)
        if (
            isinstance(mode, IfMatch)
            and retried
            and (status in (404, 412) or code in ("PreconditionFailed", *_NOT_FOUND_CODES))
        ):
            # botocore sent it again after an answer it did not get: the object may have moved
            # past the version because an earlier attempt of this very request wrote it.
            return RetryableStorageError(
                f"{where}: {operation}: the answer to an attempt was lost and a retry of it found the "
                f"object no longer at version {mode.version}: the write may or may not have been "
                f"applied; re-read the object ({said})",
                key,
            )
        if status == 412 or code == "PreconditionFailed":
            if mode == "create":
                return AlreadyExistsError(f"{where}: already exists (create-only put refused; {said})", key)
            if isinstance(mode, IfMatch):
                return PreconditionFailedError(
                    f"{where}: the object is not at version {mode.version} (changed or deleted); "
                    f"re-read it and retry ({said})",
                    key,
                )
            return StorageError(f"{where}: {operation}: unexpected precondition failure ({said})", key)
        conflict = code == "ConditionalRequestConflict" or (status == 409 and mode is not None)
        if conflict and retried:
            # botocore sent it again after an answer it did not get (a read timeout, a reset):
            # the conditional write in flight that S3 refused this one for may be its own first
            # attempt, which may land. Not "nothing was written".
            return RetryableStorageError(
                f"{where}: {operation}: the answer to an attempt was lost and a retry of it met a "
                "conditional write to this key still in flight, perhaps that first attempt: the "
                f"write may or may not have been applied; re-read the object ({said})",
                key,
            )
        if conflict:
            return ConflictError(
                f"{where}: a concurrent conditional write to this key was in flight; "
                f"nothing was written by this request, retry after a pause ({said})",
                key,
            )
        if code == "NoSuchBucket":
            return StorageError(
                f"{where}: bucket {self.bucket!r} does not exist at {self._endpoint()}; "
                f"create it or check the storage URL ({said})",
                key,
            )
        if code in _NOT_FOUND_CODES or status == 404:
            if isinstance(mode, IfMatch):
                # Real S3 answers a conditional put on a missing key with 404, not 412.
                return PreconditionFailedError(
                    f"{where}: no object to replace at version {mode.version}; re-read it and retry ({said})",
                    key,
                )
            return NotFoundError(f"{where}: no such object ({said})", key)
        if code in _THROTTLE_CODES or status == 429:
            return RateLimitedError(
                f"{where}: {operation} refused, the bucket asked to slow down; retry with backoff "
                f"or spread writes over more prefixes ({said})",
                key,
            )
        if code in _AUTHENTICATION_CODES or status == 401:
            return AuthenticationError(
                f"{where}: {operation} refused: the server did not accept the credentials; check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (or key=/secret=/token= "
                f"options), that they are not expired, and the clock of this machine ({said})",
                key,
            )
        if code in _PERMISSION_CODES or status == 403:
            return PermissionDeniedError(
                f"{where}: {operation} denied: the credentials were accepted but lack a permission; "
                "check the IAM policy of this identity (the owner of AWS_ACCESS_KEY_ID, or the "
                "instance role) and the bucket policy (vactor_cloud needs "
                f"s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket) ({said})",
                key,
            )
        unreadable = response.get(UNREADABLE)
        if unreadable:
            # botocore made a 500 of a 200 it could not parse: no server error at all.
            return RetryableStorageError(
                f"{where}: {operation}: {unreadable}, tried {retried + 1} time(s); retried as a "
                "transient failure. If it keeps happening, something between this process and "
                f"{self._endpoint()} truncates responses (a proxy, an HTTP/1.0 hop that drops "
                "Content-Length)" + ("" if read else "; the write may or may not have been applied"),
                key,
            )
        if code in _RETRYABLE_CODES or (isinstance(status, int) and status >= 500):
            applied = "" if read else "; it may or may not have been applied"
            return RetryableStorageError(
                f"{where}: {operation} failed on the server side{applied}, retry after a pause ({said})",
                key,
            )
        return StorageError(f"{where}: {operation} failed ({said})", key)


def _condition_refused(exc: BaseException) -> bool:
    """Whether a conditional delete failed because the endpoint does not implement the condition."""
    error = _client_error(exc)
    if error is None:
        return False
    response = getattr(error, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in _REFUSED_CODES or status == 501


def _left_in_place(exc: BaseException) -> bool:
    """Whether a conditional delete's failure says the object was not at the version asked for
    (412 PreconditionFailed) or not there at all (404): nothing to delete, no error."""
    error = _client_error(exc)
    if error is None:
        return False
    response = getattr(error, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":  # (a 404 too: the bucket is gone, not the object)
        return False
    return status in (404, 412) or code in _NOT_FOUND_CODES or code in _CHANGED_CODES


def _client_error(exc: BaseException) -> Any:
    """The botocore ``ClientError`` behind ``exc`` (s3fs re-raises it as a builtin), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, botocore.exceptions.ClientError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None

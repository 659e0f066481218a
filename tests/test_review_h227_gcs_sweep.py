"""A mutation sweep of the GCS store, ``storage/_gcs.py`` (review h227).

Each test here kills a mutation the rest of the suite let through (it fails with the
mutation applied and passes without); the mutation is named in its docstring. A loopback GCS
(``loopback_gcs``) answers what fake-gcs-server never would; no timing assertions (what may
hang is bounded by ``HANG``; the pauses between attempts are recorded, not waited for).

A defect, found reading the client's setup for the sweep, fixed: ``token=<access token>``
makes gcsfs ask Google's tokeninfo endpoint about the token with the token in the URL's
query; a failure to reach it quotes that URL, and the store's ``StorageError`` (and the error
it chained) carried the token (``test_a_raw_access_token_is_not_quoted_when_the_client_setup_fails``).
A test that could not fail, mended: ``test_gcs_backend``'s md5Hash check read the object's
metadata from fake-gcs-server, which computes an MD5 of its own when none is sent (P09 survived
it); it reads the upload the store sends now.

The sweep: 110 mutations run, one at a time on a copy of the tree, against (1) the loopback
GCS modules on the memory,local lanes: ``test_review_h139_gcs_errors``, ``h142_gcs_answers``,
``h145_gcs_writes_may_land``, ``h134_gcs``, ``h149_refused_connection``,
``h151_reset_after_sending``, ``test_review_storage_faults``, ``h142_timeout_text``,
``h144_timeout_log``, ``h149_timeout_answers``, ``h145_deadline_text``,
``test_stalled_endpoint`` (their S3 cases left out); then, for a survivor, (2) on the fakegcs
lane: ``test_gcs_backend``, the conformance suite (``test_store_conformance``),
``h156_store_deletes`` (and, up to F09, ``h159_client_build`` and ``test_review_backends``).

Killed by the suite (the first test to fail named):

* attempts: T01 408 not transient, T03 two attempts, T25 every status transient, T26 a 5xx
  not "may have been applied", T28 the final error not retryable, T29 a read "may have been
  applied" (h139); T02 503 not a rate limit, T16 a 412 not returned, T19 a conditional put's
  429 repeated, T21 no 409 branch (h139); T04 an unsent conditional put not sent again, T22
  no damaged-upload branch, T23 a damaged upload not unwritten, T24 its pattern
  (h142_gcs_answers); T08 the request's own last answer unset, T10 ``answered`` never set,
  A01 the answered window inverted (h142_timeout_text); T09 Retry-After ignored, T20 not read,
  T15 an answer cut short not "may have been applied", G03 no MD5 check, P06 the upload's
  whole-JSON check dropped (h134); T11 an earlier "may have been applied" forgotten, T12 an
  unsent attempt not unwritten, S01 a refused connection counted as sent
  (h149_refused_connection); T17 a 404 not returned, S04 the closed-session check inverted,
  F01 one client across loops, F03 another loop's build reused, F09 ``close`` never closing
  the session, G02 metadata for media, G05 a head's 404 raised, G06 a get's 404 not
  ``NotFoundError``, P01 a create as ``ifGenerationMatch=1``, P11 the multipart tail, L04 no
  ``pageToken``, L10 no trim to the limit (``test_gcs_backend``); T18 503 not "may have been
  applied" (h145_gcs_writes_may_land).
* tokens, setup, advice: T13 ``_send``'s ``StorageError`` rewrapped, S06 a refused refresh
  retryable, S07 the validity check inverted, S08 the refresh unshielded, S11 refreshed on the
  loop, F05 the build unshielded, F08 ``close`` keeping the build, A02, A03, A05 the advice
  texts, G01 a get without a generation, P12 an upload without one, L03 a repeated page token,
  L05 ``start_after`` listed, L06 no prefix guard, L07 the key cut short
  (``test_review_storage_faults``); F06 aiohttp's own resend left on
  (h151_reset_after_sending); P05 conditional puts idempotent, P07 the 412s swapped (h139);
  L01 a page of ``limit``, L11 one page more (the conformance suite).
* listings, deletes, the rest: L13 items without names, L15 a version for an item without
  one (storage_faults); L16 no ``startOffset``, D03 no read before an emulator's delete, D04
  ``conditional_deletes`` always True (the conformance suite); L17 the listing's whole-JSON
  check, R01 the Retry-After cap, H01 the gzip exemption, H02 the second ``x-goog-hash``
  header, H03 the JSON check without its content type, K06 the endpoint's trailing slash (its
  fakegcs-lane test; found in a later run of those lane tests against every survivor), K07 an
  endpoint without a host (h134); D01 a delete's 204 refused (h151_reset_after_sending); D06
  a delete not repeated, K02 the 400 hint, K03 401 not an ``AuthenticationError``, K08 the
  error object quoted whole (h139, h142_gcs_answers, test_gcs_backend); K05 the emulator's
  anonymous token over a given one, K11 a setup's ``KeyError`` (test_gcs_backend).

Killed here (the suite let them through): T05 the attempts' count, T06 ``unwritten`` not
reset, T07 every failure noted as an answer, T14 the whole-answer check on every status, S02
``requests_timeout`` not passed, S03 ``TimeoutError`` not transient (aiohttp's timeout of
``requests_timeout`` is one), S05 an unreachable token endpoint an ``AuthenticationError``,
S09 a finished refresh reused, S10 another loop's refresh in flight reused, F04 a failed
setup kept, A04 the failures meanwhile named only when old, P02 ``IfMatch("0")`` sent, P03
non-ASCII digits sent, P04 an unknown mode as an overwrite, P08 an upload's 404 read as an
answer, P13 a JSON array as an object, L08 partial versions named, L09 keys not sorted, L12 a
listing's 404 an empty listing, L14 the generations not asked for, D05 a conditional delete
without its generation, D07 a conditional delete not repeated, R02 a NaN pause, R03 an
unreadable ``Retry-After`` taken for the cap, K01 a token path without ``.json`` not
checked, K04 the prefix's ``/`` not counted in the longest key; P09 md5Hash dropped
(``test_gcs_backend``, mended). The stage-1 modules' fakegcs-lane tests (h134's,
storage_faults') were run against every survivor afterwards: they killed K06 only.

Survivors judged equivalent:

* F02, F11 (a forked child keeps the parent's client, or its finished build): a child forked
  from a coroutine cannot carry on the parent's loop (``asyncio.get_running_loop()`` checks
  the process id: "no running event loop"), so the loop check already builds anew;
* F10 (a build that failed on an invalid option kept): the next build, with the same
  options, fails the same way;
* T27 ("nothing was written" added after an upload refused as damaged every time): true as
  well, every attempt having written nothing (a possibly applied one says so first);
* R04 (a negative ``Retry-After`` kept): the pause is its maximum with the jittered backoff.

Judged equivalent by reading, not run: T30 (the damaged-upload pattern case-sensitive: GCS
spells MD5 and CRC32C in capitals), P10 (the boundary checked once: a clash of 128 random bits
twice), F07 (the session lock's second look: gcsfs sets the session without awaiting), L02
(``maxResults`` above 1000: GCS answers 1000 at most), G04 (a head without ``fields``: the
same generation, more bytes), D02 (a generation-0 conditional delete sent: GCS answers 412 or
404, both left as they are), K10 (killed here by the longest-key test), K09 (a daemon
thread's unretrieved error: a log line of asyncio's only).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from loopback_gcs import gcs_answering
from silent_listener import SilentListener
from test_review_h134_gcs import _outcome as _raw_outcome
from test_review_storage_faults import _service_account_file

import vactor_cloud.storage._gcs as gcs_module
from vactor_cloud.errors import (
    AlreadyExistsError,
    PermissionDeniedError,
    PreconditionFailedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.storage import IfMatch
from vactor_cloud.storage._base import OBJECT_KEY_BYTES
from vactor_cloud.storage._gcs import GCSStore

#: the longest any operation here may take before it is called a hang
HANG = 60.0
#: GCS's answer to an upload whose bytes do not match the md5Hash its metadata gave
MD5_MISMATCH = (
    'Provided MD5 hash "Ss/KmcE9mTxW8N3Y+Hzd8A==" doesn\'t match '
    'calculated MD5 hash "1B2M2Y8AsgTpgAmY7PhCfg==".'
)

Answer = Callable[[web.Request, int], Awaitable[web.StreamResponse]]
Call = Callable[[GCSStore], Awaitable[Any]]


class Sent:
    """The requests a loopback GCS received: method, path and query of each."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def methods(self) -> list[str]:
        return [method for method, _, _ in self.requests]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


def _through(answer: Answer, call: Call, **options: Any) -> tuple[Any, Sent, list[float]]:
    """What ``call(store)`` returned or raised (a :class:`StorageError`) against a loopback GCS
    answering the n-th request (from 0) with ``answer(request, n)``; the requests it got, and
    the pauses the store asked for between attempts (recorded, not waited for)."""
    sent = Sent()
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, result: Any = None) -> Any:
        if delay != 0:  # (aiohttp's own yields are sleeps of 0)
            pauses.append(delay)
        return await real_sleep(0, result)

    async def handle(request: web.Request) -> web.StreamResponse:
        sent.requests.append((request.method, request.path, dict(request.query)))
        await request.read()
        return await answer(request, len(sent.requests) - 1)

    async def scenario() -> Any:
        async with gcs_answering(handle) as endpoint:
            store = GCSStore("bucket/p", endpoint_url=endpoint, token="anon", project="p", **options)
            store.request_timeout = HANG
            try:
                return await call(store)
            except StorageError as exc:
                return exc
            finally:
                await store.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gcs_module.asyncio, "sleep", recorded)
        outcome = asyncio.run(scenario())
    return outcome, sent, pauses


def _in_turn(*responses: Callable[[], web.StreamResponse]) -> Answer:
    """Answers made by ``responses`` in turn, the last one again once they run out."""

    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return responses[min(n, len(responses) - 1)]()

    return answer


def _object(data: bytes = b"the object", generation: str = "5") -> web.Response:
    return web.Response(body=data, headers={"x-goog-generation": generation})


# -- attempts --------------------------------------------------------------------------------------
def test_a_create_refused_as_damaged_then_answered_500_is_not_sent_a_third_time() -> None:
    """Mutations: ``unwritten`` not reset at each attempt (the create, whose second attempt
    answered 500 and may have landed, was sent a third time, still counted as one that wrote
    nothing); the count of attempts not lowered when a write stops early (its error said
    "after 3 attempt(s)" of two)."""
    outcome, sent, _ = _through(
        _in_turn(lambda: _error(400, MD5_MISMATCH), lambda: _error(500, "Backend Error")),
        lambda store: store.put("k", b"x", mode="create"),
    )
    assert type(outcome) is RetryableStorageError, outcome
    assert sent.methods == ["POST", "POST"], sent.requests
    assert "after 2 attempt(s)" in str(outcome) and "may or may not have been applied" in str(outcome), (
        outcome
    )


@pytest.mark.parametrize(
    ("status", "operation", "expected"),
    [
        ("412 Precondition Failed", "create", AlreadyExistsError),
        ("403 Forbidden", "head", PermissionDeniedError),
    ],
)
def test_a_refusal_whose_error_body_was_cut_short_is_still_the_refusal(
    status: str, operation: str, expected: type[StorageError]
) -> None:
    """The status says what happened; a JSON error body cut short (delimited by a connection
    closed early) changes nothing. Mutation: the whole-answer check run on every status (a
    create's 412 became "may or may not have been applied", a 403 a transient failure, sent
    three times)."""
    answer = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".encode()
        + b'{"error": {"code": 4'
    )
    outcome, requests = _raw_outcome(answer, operation)
    assert type(outcome) is expected and requests == 1, (outcome, requests)


@pytest.mark.parametrize(
    ("retry_after", "asked"),
    [("1.5", 1.5), ("3600", 2.0), ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("-5", None)],
)
def test_a_read_answered_503_pauses_as_asked_within_bounds(retry_after: str, asked: float | None) -> None:
    """``Retry-After`` in seconds is honoured up to 2 s; a date, nonsense or NaN asks for no
    pause (the jittered backoff alone: 0.1 to 0.4 s before the second attempt). Mutations: the
    2 s cap dropped (an hour's pause inside a request), NaN let through (a pause of NaN), an
    unreadable value taken for the cap."""
    outcome, sent, pauses = _through(
        _in_turn(
            lambda: web.json_response(
                {"error": {"code": 503, "message": "Backend Error"}},
                status=503,
                headers={"Retry-After": retry_after},
            ),
            _object,
        ),
        lambda store: store.get("k"),
    )
    assert outcome.data == b"the object" and len(sent.requests) == 2, (outcome, sent.requests)
    assert len(pauses) == 1 and not math.isnan(pauses[0]), pauses
    if asked is not None:
        assert pauses[0] == asked, pauses
    else:
        assert 0.1 <= pauses[0] <= 0.4, pauses


def _get_from_a_silent_endpoint(request_timeout: float) -> tuple[StorageError, int]:
    """What a get raised from an endpoint that accepts connections and never answers, with
    gcsfs's ``requests_timeout`` at 0.2 s, and how many connections it made."""
    listener = SilentListener()
    try:
        store = GCSStore(
            "bucket/p", endpoint_url=listener.endpoint, token="anon", project="p", requests_timeout=0.2
        )
        store.request_timeout = request_timeout
        return _raised_by(store, lambda store: store.get("k")), listener.accepted
    finally:
        listener.close()


def _raised_by(store: GCSStore, call: Call) -> StorageError:
    """The :class:`StorageError` ``call(store)`` raised (the store closed after)."""

    async def scenario() -> StorageError:
        try:
            with pytest.raises(StorageError) as info:
                await call(store)
            return info.value
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_requests_timeout_bounds_each_attempt() -> None:
    """gcsfs's ``requests_timeout`` option bounds each attempt: three attempts on an endpoint
    that never answers end as a :class:`RetryableStorageError` well before the request's own
    timeout. Mutation: the option not passed to aiohttp (each attempt waited out the whole
    request timeout: a :class:`StorageTimeoutError` after one attempt)."""
    error, accepted = _get_from_a_silent_endpoint(request_timeout=15.0)
    assert type(error) is RetryableStorageError and not isinstance(error, StorageTimeoutError), repr(error)
    assert "after 3 attempt(s)" in str(error), error
    assert accepted == 3, accepted


def test_a_request_timed_out_while_its_attempts_got_no_answer_quotes_no_answer() -> None:
    """Every attempt ran out of gcsfs's ``requests_timeout`` unanswered, until the request's
    own timeout: its error must not say what "the last answer was", and says its attempts
    failed meanwhile. Mutations: each failure noted as an answer, answered or not (the timeout
    said "the last answer was TimeoutError", of an endpoint that never answered); the failures
    meanwhile named only when older than the timeout."""
    error, accepted = _get_from_a_silent_endpoint(request_timeout=0.5)  # (after 0.2 s of the first)
    assert type(error) is StorageTimeoutError and accepted >= 1, (error, accepted)
    assert "the last answer was" not in str(error) and "failed meanwhile" in str(error), error


# -- access tokens ---------------------------------------------------------------------------------
@contextmanager
def _refreshes(gate: threading.Event | None = None) -> Iterator[list[str]]:
    """Service-account refreshes made fake (no token endpoint): each records the name of the
    thread it ran on and, with ``gate``, waits for it first; the token it gives is valid for
    an hour."""
    from google.oauth2 import service_account

    threads: list[str] = []

    def refresh(self: Any, request: Any) -> None:
        threads.append(threading.current_thread().name)
        if gate is not None:
            assert gate.wait(HANG), "the refresh was never let through"
        self.token = "a-token"
        self.expiry = datetime.utcnow() + timedelta(hours=1)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_account.Credentials, "refresh", refresh)
        yield threads


async def _not_found(request: web.Request) -> web.StreamResponse:
    return _error(404, "No such object")


def _service_account_store(endpoint: str, tmp_path: Path) -> GCSStore:
    credentials = _service_account_file(tmp_path, "http://127.0.0.1:9/token")
    store = GCSStore("bucket/p", endpoint_url=endpoint, token=credentials, project="p")
    store.request_timeout = HANG
    return store


def test_every_token_refresh_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token that expired since the last refresh is refreshed again on a thread of its own.
    Mutation: a finished refresh taken for the one in flight (the second refresh then ran
    inside gcsfs's ``_get_headers``, synchronously on the event loop)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    async def scenario() -> None:
        async with gcs_answering(_not_found) as endpoint:
            store = _service_account_store(endpoint, tmp_path)
            try:
                assert await store.head("k") is None
                fs = store._fs
                assert fs is not None
                fs.credentials.credentials.expiry = datetime.utcnow() - timedelta(minutes=1)
                assert await store.head("k") is None
            finally:
                await store.close()

    with _refreshes() as threads:
        asyncio.run(scenario())
    assert threads == ["vactor-gcs-token", "vactor-gcs-token"], threads


def test_a_refresh_in_flight_on_another_loop_is_not_awaited_on_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One store used from two event loops (each its own client): a request on the second loop
    while the first loop's refresh is still in flight refreshes its own client's token.
    Mutation: the refresh in flight reused whatever its loop (awaited on another loop: a
    ``RuntimeError`` out of the request)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    gate = threading.Event()
    outcomes: dict[str, object] = {}

    def head_on_a_loop_of_its_own(name: str, store: GCSStore) -> None:
        async def head() -> object:
            try:
                return await store.head("k")
            except Exception as exc:  # (reported to the test's thread)
                return exc

        outcomes[name] = asyncio.run(head())

    def serve(ready: threading.Event, stop: threading.Event, endpoint: list[str]) -> None:
        async def run() -> None:
            async with gcs_answering(_not_found) as address:
                endpoint.append(address)
                ready.set()
                await asyncio.to_thread(stop.wait, HANG)

        asyncio.run(run())

    ready, stop, endpoint = threading.Event(), threading.Event(), []
    server = threading.Thread(target=serve, args=(ready, stop, endpoint), daemon=True)
    server.start()
    try:
        assert ready.wait(HANG)
        store = _service_account_store(endpoint[0], tmp_path)
        with _refreshes(gate) as threads:
            first = threading.Thread(target=head_on_a_loop_of_its_own, args=("first", store))
            first.start()
            _wait_until(lambda: len(threads) == 1)
            second = threading.Thread(target=head_on_a_loop_of_its_own, args=("second", store))
            second.start()
            _wait_until(lambda: len(threads) == 2 or "second" in outcomes)
            gate.set()
            first.join(HANG)
            second.join(HANG)
    finally:
        gate.set()
        stop.set()
        server.join(HANG)
    assert outcomes == {"first": None, "second": None}, outcomes
    assert threads == ["vactor-gcs-token", "vactor-gcs-token"], threads


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_a_token_endpoint_that_refuses_connections_is_a_transient_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token endpoint could not be reached (its port refused): "retry later", not refused
    credentials. Mutation: it raised :class:`AuthenticationError` (the runtime gives up on it
    at once, as on a revoked key)."""
    for name in ("STORAGE_EMULATOR_HOST", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    error = _raised_by(_service_account_store("http://127.0.0.1:9", tmp_path), lambda store: store.head("k"))
    assert type(error) is RetryableStorageError and "token endpoint" in str(error), repr(error)


# -- the client's setup ----------------------------------------------------------------------------
def test_a_client_setup_that_failed_is_tried_again_by_the_next_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A credentials lookup failing once (a network error reaching the metadata server) fails
    that request only. Mutation: the failed setup kept (every later request raised its error)."""
    real = gcs_module.GCSFileSystem
    builds: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        builds.append(1)
        if len(builds) == 1:
            raise OSError("metadata server unreachable (test)")
        return real(*args, **kwargs)

    monkeypatch.setattr(gcs_module, "GCSFileSystem", flaky)

    async def call(store: GCSStore) -> Any:
        with pytest.raises(StorageError, match="could not set up the GCS client"):
            await store.head("k")
        return await store.head("k")

    outcome, sent, _ = _through(lambda request, n: _not_found(request), call)
    assert outcome is None and len(builds) == 2 and len(sent.requests) == 1, (outcome, builds, sent.requests)


@pytest.mark.parametrize("token", ["ya29.a0-secret_Token.h227", "ya29.a0+secret=Token.h227"])
def test_a_raw_access_token_is_not_quoted_when_the_client_setup_fails(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``token=<access token>``: gcsfs asks Google's tokeninfo endpoint about it with the token
    in the URL's query, and a failure to reach it (here: a proxy refusing) says that URL. The
    store's error quoted it, the token with it, in its message and in the error it chains
    (what a logged traceback prints), as is or URL-encoded."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # (the discard port: refused)
    monkeypatch.setenv("FETCH_RAW_TOKEN_EXPIRY", "true")

    store = GCSStore("bucket/p", endpoint_url="http://127.0.0.1:9", token=token, project="p")
    store.request_timeout = HANG
    error = _raised_by(store, lambda store: store.head("k"))
    assert "could not set up the GCS client" in str(error) and "tokeninfo" in str(error), error
    printed = "".join(traceback.format_exception(error))
    assert "secret" not in printed and "<token>" in str(error), printed


# -- puts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0", "00", "\uff11\uff12", "-1", ""])
def test_an_if_match_on_no_generation_gcs_hands_out_is_refused_unsent(version: str) -> None:
    """``ifGenerationMatch=0`` is a create; full-width digits are digits to ``str.isdigit``
    (and to ``int``) but no generation. Mutations: ``"0"`` sent (an if-match turned into a
    create: it wrote a missing object), non-ASCII digits sent."""
    outcome, sent, _ = _through(_not_found, lambda store: store.put("k", b"x", mode=IfMatch(version)))
    assert type(outcome) is PreconditionFailedError and sent.requests == [], (outcome, sent.requests)


def test_an_unknown_put_mode_is_refused_unsent() -> None:
    """Mutation: an unknown mode taken for an overwrite (a misspelt ``"create"`` overwrote)."""
    with pytest.raises(ValueError, match="unknown put mode"):
        _through(_not_found, lambda store: store.put("k", b"x", mode="crate"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda: _error(404, "The specified bucket does not exist."), "bucket 'bucket' does not exist"),
        (
            lambda: web.json_response({"kind": "storage#object", "name": "p/k"}),
            "without the object's generation",
        ),
        (lambda: web.json_response([{"generation": "5"}]), "not an object"),
    ],
    ids=["404", "no-generation", "json-array"],
)
def test_an_upload_answered_without_a_generation_is_a_storage_error_saying_why(
    answer: Callable[[], web.Response], expected: str
) -> None:
    """Mutations: an upload's 404 read as an answer (its error spoke of a missing generation,
    not of the missing bucket); an answer without a generation returned as version "None"; a
    JSON array indexed as an object (``AttributeError`` past the boundary)."""
    outcome, sent, _ = _through(_in_turn(answer), lambda store: store.put("k", b"x"))
    assert type(outcome) is StorageError and expected in str(outcome), outcome
    assert sent.methods == ["POST"], sent.requests


# -- listings --------------------------------------------------------------------------------------
def _bucket(names: list[str], *, generations: bool = True, reverse_pages: bool = False) -> Answer:
    """A loopback objects.list over ``names``, as GCS answers it: ``prefix``, ``startOffset``
    (inclusive), ``maxResults`` and ``pageToken`` honoured; each object's generation named
    (``generations``), or only every other one's. ``reverse_pages``: each page's items in
    descending order (an emulator that pages otherwise)."""

    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        query = request.query
        chosen = sorted(
            name
            for name in names
            if name.startswith(query.get("prefix", "")) and name >= query.get("startOffset", "")
        )
        start = int(query.get("pageToken", "0"))
        size = int(query.get("maxResults", "1000"))
        page = chosen[start : start + size]
        items = [
            {"name": name, **({"generation": str(100 + i)} if generations or i % 2 else {})}
            for i, name in enumerate(page, start)
        ]
        body: dict[str, Any] = {"items": items[::-1] if reverse_pages else items}
        if start + size < len(chosen):
            body["nextPageToken"] = str(start + size)
        return web.json_response(body)

    return answer


KEYS = [f"k/{n}" for n in range(8)]


def test_a_listing_names_versions_only_when_it_named_every_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generations a listing names are every listed object's, or none (``versions`` is
    ``None``): a reader takes a key left out of them for one it cannot tell of. Also: the
    listing asks for the generations. Mutations: the versions of some objects only returned
    as every object's; an object without a generation named at "None"; ``fields`` without
    ``generation``."""
    monkeypatch.setattr(gcs_module, "_LIST_PAGE", 3)
    names = [f"p/{key}" for key in KEYS]
    every, sent, _ = _through(_bucket(names), lambda store: store.list("k/"))
    assert every == KEYS and every.versions == {k: str(100 + i) for i, k in enumerate(KEYS)}, every.versions
    assert all("generation" in query["fields"] for _, _, query in sent.requests), sent.requests
    some, _, _ = _through(_bucket(names, generations=False), lambda store: store.list("k/"))
    assert some == KEYS and some.versions is None, some.versions


def test_a_listing_whose_pages_come_in_another_order_is_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: the keys not sorted (an emulator paging in another order handed them as
    they came: readers of a log take the last listed for the newest)."""
    monkeypatch.setattr(gcs_module, "_LIST_PAGE", 3)
    outcome, sent, _ = _through(
        _bucket([f"p/{key}" for key in KEYS], reverse_pages=True), lambda store: store.list("k/")
    )
    assert outcome == KEYS and len(sent.requests) == 3, (outcome, sent.requests)


def test_a_listing_of_a_missing_bucket_is_an_error_not_an_empty_listing() -> None:
    """Mutation: a 404 to the listing read as a page (no items: an empty listing, the actor
    taken for one never created)."""
    outcome, _, _ = _through(_in_turn(lambda: _error(404, "Not Found")), lambda store: store.list("k/"))
    assert type(outcome) is StorageError and "does not exist" in str(outcome), outcome


# -- deletes ---------------------------------------------------------------------------------------
def test_a_conditional_delete_answered_500_is_sent_again_with_its_generation() -> None:
    """Sending a conditional delete again is harmless (a first that landed leaves a 404 or a
    412: nothing more deleted). Mutations: the conditional delete not repeated (a 500 left the
    object in place with the caller told "retry later"); ``ifGenerationMatch`` dropped."""

    async def call(store: GCSStore) -> Any:
        store.conditional_deletes = True  # (as on Google's endpoint)
        return await store.delete_unchanged({"k": "17"})

    outcome, sent, _ = _through(
        _in_turn(lambda: _error(500, "Backend Error"), lambda: web.Response(status=204)), call
    )
    assert outcome is None, outcome
    assert [(method, query) for method, _, query in sent.requests] == [
        ("DELETE", {"ifGenerationMatch": "17"}),
        ("DELETE", {"ifGenerationMatch": "17"}),
    ], sent.requests


# -- options, keys, messages -----------------------------------------------------------------------
def test_a_token_path_without_json_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    """Mutation: only paths ending ``.json`` checked (``token=/etc/gcs/key`` mistyped was sent
    to Google's tokeninfo endpoint as an access token)."""
    missing = str(tmp_path / "keys" / "service-account")
    with pytest.raises(ValueError, match="does not exist"):
        GCSStore("bucket/p", endpoint_url="http://127.0.0.1:9", token=missing, project="p")


@pytest.mark.parametrize("prefix", ["p", "préfixe"])
def test_the_longest_key_makes_a_name_of_the_longest_gcs_allows(prefix: str) -> None:
    """GCS names are at most 1024 bytes of UTF-8: the prefix, its ``/`` and the key.
    Mutations: the ``/`` not counted; the prefix counted in characters, not bytes."""
    store = GCSStore(f"bucket/{prefix}", endpoint_url="http://127.0.0.1:9", token="anon", project="p")
    longest = "k" * store.max_key_bytes
    assert len(store._name(longest).encode()) == OBJECT_KEY_BYTES

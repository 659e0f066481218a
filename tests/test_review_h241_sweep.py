"""Review h241: a mutation sweep of the S3 store family: ``storage/_s3.py`` (translation of
answers, conditional puts and deletes, the probe of conditional deletes and its fallback,
listing pages, the client's build), ``_s3_answers.py`` (what botocore retried, whether an
attempt was sent), ``_s3_threads.py`` (the botocore transport and its daemon pool) and
``_s3_aio.py`` (the s3fs transport).

134 hand-made mutations, one at a time on a copy of the tree. None showed a defect of the
unmutated code. The tests here answer the store's requests at its transport (``_answering``:
no server, no client built), so that each answer a misbehaving endpoint could give is given
exactly; they take well under a second each.

How far the existing suite was run (the machine was shared and loaded, load 20-35, which made
whole runs take 4-5 minutes a mutant and timing-sensitive tests fail on the unmutated tree):

* S and A mutants: ``h161_s3_answers``, ``h139_s3_errors``, ``s3_condition_probe``,
  ``h137_s3`` (memory, local, moto lanes); S22-S44, S46, S48, S50, S52, S54-S72 were not run
  against them (``n/r``: the runner was stopped for time), nor was any mutant run against
  ``test_s3_backend`` or the conformance suite on moto; "survived" (``yes``) means it survived
  those four modules only.
* T and U mutants: 20 of them against ``test_s3_transports`` and ``h161_s3_transports``; the
  others (``not run``) were run against nothing, T02 and T04 against this module only.
* Every S and A mutant, and T02, T04, was run against this module.

"killed by" names the module (``test_`` / ``test_review_`` left off) whose test failed first;
"h241" a test here, by the words of its name. Counts: 117 run, 35 killed by the suite's
modules above, 79 by the tests here, 4 equivalent, 1 not killed, 15 not run.

==== ============================================== ==== ================================================
id   mutation                                       surv killed by / why
==== ============================================== ==== ================================================
S01  _read: one try fewer                           no   h139_s3_errors
S02  _read: every StorageError retried              yes  h241 (a repeated page token is an error not)
S03  _get_once: an empty object refused             yes  h241 (a get returns exactly what follows the)
S04  _get_once: token cut one short                 yes  h241 (a get returns exactly what follows the)
S05  _head_once: missing key raises                 no   s3_condition_probe
S06  _put: create unconditional                     yes  h241 (each put mode sends its condition and)
S07  _put: unknown mode written unconditionally     yes  h241 (an unknown put mode is refused before)
S08  list: start_after itself listed                yes  h241 (a listing keeps only what was asked fo)
S09  list: keys outside the prefix kept             yes  h241 (a listing keeps only what was asked fo)
S10  list: a page with a token but not truncated fo yes  h241 (a page not truncated ends the listing)
S11  list: repeated token followed                  yes  h241 (a repeated page token is an error not)
S12  list: no sort                                  yes  h241 (a listing keeps only what was asked fo)
S13  list: partial versions named                   yes  h241 (a listing names versions only when eve)
S14  list: page not cut to the limit                yes  h241 (a listing with a limit asks no more an)
S15  list: result not cut to the limit              yes  h241 (a listing with a limit asks no more an)
S16  stores_below: the root's own actors/ taken for yes  h241 (stores below names each substore once)
S17  stores_below: not bounded                      yes  h241 (stores below names each substore once)
S18  _etag: empty ETag taken                        yes  h241 (a put answered with an empty etag is t)
S19  _delete: 404 raised                            yes  h241 (a delete of a missing key answered 404)
S20  _delete_many: 1000 refused                     yes  h241 (delete many takes a thousand keys in o)
S21  _delete_many: NoSuchKey per key raised         yes  h241 (a batch delete error per key names the)
S22  _delete_many: per-key errors swallowed         n/r  h241 (a batch delete error per key names the)
S23  _delete_unchanged: refused condition: nothing  n/r  h241 (a single delete whose condition is ref)
S24  _delete_unchanged: every failure swallowed     n/r  h241 (a conditional delete that failed is ra)
S25  _delete_many_unchanged: changed raised         n/r  h241 (a conditional batch leaves a changed k)
S26  _delete_many_unchanged: refused keys not delet n/r  h241 (a batch whose conditions are refused p)
S27  _delete_many_unchanged: refused raised after f n/r  h241 (a batch whose conditions are refused p)
S28  _conditions_hold: probe every time             n/r  h241 (a batch probe answered changed is trus)
S29  _conditions_hold: seen not kept                n/r  h241 (a batch probe answered changed is trus)
S30  _conditions_hold one: ignoring endpoint truste n/r  h241 (an endpoint that deletes under any con)
S31  _conditions_hold many: 412 taken for ignored   n/r  h241 (a conditional batch leaves a changed k)
S32  _conditions_hold: denied probe raised          n/r  h241 (a probe refused by policy falls back a)
S33  _conditions_hold: refused probe trusted        n/r  h241 (a probe refused by policy falls back a)
S34  _conditions_refused: warns every time          n/r  h241 (the fallback is announced once)
S35  _delete_read_first: changed deleted            n/r  h241 (an endpoint that deletes under any con)
S36  _batch_error: 4 shown                          n/r  h241 (a batch delete error per key names the)
S37  _batch_error: denied plain                     n/r  h241 (a batch delete error is classed by its)
S38  _batch_error: throttle plain                   n/r  h241 (a batch delete error is classed by its)
S39  _batch_error: retryable plain                  n/r  h241 (a batch delete error is classed by its)
S40  _translate: FileExistsError plain              n/r  h241 (builtins s3fs raises keep their meanin)
S41  _translate: EINVAL plain                       n/r  h241 (builtins s3fs raises keep their meanin)
S42  _translate: FileNotFound IfMatch -> NotFound   n/r  h241 (builtins s3fs raises keep their meanin)
S43  _translate: no credentials not auth            n/r  h241 (missing credentials and a misconfigure)
S44  _translate: config errors retryable            n/r  h241 (missing credentials and a misconfigure)
S45  _translate: damaged body generic               yes  h241 (a body cut short is named as damaged n)
S46  _translate: NothingSent plain                  n/r  h241 (a write none of whose attempts connect)
S47  _translate: read speaks of write               no   h139_s3_errors
S48  _translate_response: every IfMatch 412 retryab n/r  h241 (answers are classed by status as well)
S49  _translate_response: retried IfMatch 412 defin no   h139_s3_errors
S50  409 for any request a conflict                 n/r  h241 (answers are classed by status as well)
S51  retried 409 a definite conflict                no   h139_s3_errors
S52  NoSuchBucket -> NotFound                       n/r  h241 (answers are classed by status as well)
S53  404 IfMatch -> NotFound                        no   h139_s3_errors
S54  429 not throttle                               n/r  h241 (answers are classed by status as well)
S55  401 not auth                                   n/r  h241 (answers are classed by status as well)
S56  403 not perm                                   n/r  h241 (answers are classed by status as well)
S57  unreadable plain                               n/r  h241 (an unreadable answer is named as cut s)
S58  500 not retryable                              n/r  h241 (answers are classed by status as well)
S59  5xx applied text inverted                      n/r  h241 (a read failing on the server side spea)
S60  412 create -> generic                          n/r  h241 (answers are classed by status as well)
S61  _condition_refused: 501 plain                  n/r  h241 (a 501 to a conditional delete is the e)
S62  _left_in_place: NoSuchBucket left in place     n/r  h241 (a conditional delete that failed is ra)
S63  _left_in_place: 404 raised                     n/r  h241 (a single delete whose condition is ref)
S64  _client_error: context not followed            n/r  h241 (a client error raised while handling a)
S65  _bounded: coroutine left unclosed              n/r  h241 (a request given up while the client is)
S66  build limit the request timeout                n/r  h241 (a client build may take as long as one)
S67  build failure raised raw                       n/r  h241 (a client build that failed lets the re)
S68  _answered_meanwhile: old failure named         n/r  h241 (advice names only a failure of the req)
S69  _answered_meanwhile: unreadable as retried     n/r  h241 (advice names only a failure of the req)
S70  _answered_meanwhile: retried answer not named  n/r  h241 (advice names only a failure of the req)
S71  _answered_meanwhile: store's, not request's    n/r  h241 (advice names only a failure of the req)
S72  _stall_advice: old failure named               n/r  h241 (advice names only a failure of the req)
S73  _object_key: unchecked                         yes  equivalent (a): every key is checked before
S74  max_key_bytes: slash not counted               yes  h241 (a prefix costs its length and its slas)
S75  _endpoint: generic before S3                   yes  h241 (the s3 endpoint variable is named befo)
S76  botocore with session accepted                 yes  h241 (an aiobotocore session with the botoco)
S77  _translate: StorageError rewrapped             yes  h241 (a storage error passes through transla)
S78  _delete_many_unchanged: 1001 accepted          yes  h241 (delete many takes a thousand keys in o)
S79  list: missing ETag -> KeyError                 yes  h241 (a listing names versions only when eve)
S80  no bucket accepted                             yes  h241 (no bucket is refused)
S81  _read: no pause                                yes  h241 (reads pause between tries)
S82  many_unchanged: ok                             yes  equivalent (b)
A01  connect timeout taken as sent                  no   h161_s3_answers
A02  every EndpointConnectionError not connected    no   h161_s3_answers
A03  NothingSent after a sent attempt               no   h161_s3_answers
A04  unreadable on any status                       no   h161_s3_answers
A05  html page unreadable                           no   h161_s3_answers
A06  HTML case sensitive                            no   h161_s3_answers
A07  retried_failure: unreadable as RetriedAnswer   no   h161_s3_answers
A08  retried_failure: 500 not noted                 no   h161_s3_answers
A09  retried_failure: 429 not noted                 no   h161_s3_answers
A10  every attempt sent                             yes  h241 (an attempt is counted sent unless it c)
A11  no attempt ever sent                           yes  h241 (an attempt is counted sent unless it c)
A12  retried_failure: caught ignored                no   h161_s3_answers
A13  empty 500 body unreadable                      yes  h241 (an answer marked unreadable only if it)
T01  pool size not configurable                     n/r  not run
T02  no read timeout default                        n/r  h241 (the botocore transport keeps s3fs opti)
T03  anon keeps credentials                         n/r  equivalent (c)
T04  username ignored                               n/r  h241 (the botocore transport keeps s3fs opti)
T05  abandoned still count                          no   h161_s3_transports
T06  abandoned unbounded                            no   h161_s3_transports
T07  idle thread with one job left goes             no   h161_s3_transports
T08  abandoned thread ends at size                  no   h161_s3_transports
T09  abandoned retried                              no   h161_s3_transports
T10  cancel does not stop                           no   h161_s3_transports
T11  cancel does not abandon                        no   h161_s3_transports
T12  body not closed                                n/r  not run
T13  abandon noted as failure                       n/r  not run
T14  request's failure not noted (threads)          n/r  not run
T15  close does not wait                            no   s3_transports
T16  connections not closed                         no   h161_s3_transports
T17  join waits for abandoned                       no   s3_transports
T18  fork: parent's pool                            no   s3_transports
T19  extra kwargs unfiltered                        n/r  not run
T20  requester pays ignored                         n/r  not run
T21  one thread not told to end                     no   s3_transports
T22  needs_client after fork                        no   h161_s3_transports
T23  UA not cached                                  n/r  not run
T24  UA ignores features                            n/r  not run
T25  child closes parent's                          no   h161_s3_transports
T26  join not waiting thread end                    n/r  not run
T27  thread-locals kept                             n/r  equivalent (d)
U01  new sessions resend                            no   h161_s3_transports
U02  opened sessions resend                         no   h161_s3_transports
U03  failed build not retried                       no   h161_s3_transports
U04  build not shielded                             n/r  not run
U05  attempts not watched (aio)                     n/r  not run
U06  fs reused across loops                         no   h161_s3_transports
U07  close leaves the build                         no   h161_s3_transports
U08  request's failure not noted (aio)              n/r  not run
U09  instance cache shared                          n/r  not run
U10  needs_client across loops                      yes  not killed (e)
U11  aio body not released                          n/r  not run
U12  close abandons instead of awaiting             n/r  not run
==== ============================================== ==== ================================================

Notes:

(a) S73: ``ObjectStore`` checks every key (``_check_key``) before a request is counted or sent;
    ``_object_key`` sees only checked keys and the probe's own.
(b) S82: no answer is both a refused condition (501, NotImplemented) and "left in place"
    (404, 412, NoSuchKey, PreconditionFailed): the same answers are raised.
(c) T03: with ``signature_version=UNSIGNED`` botocore signs nothing: credentials kept are never sent.
(d) T27: each request sets all three thread-locals before its first attempt, and no handler
    that reads them runs between requests on a pool thread.
(e) U10: ``needs_client`` saying False for a client built on another event loop only skips the
    store's separate build step; the request then builds the client itself, within its own
    timeout (the first request in a second loop may time out on a slow build). Not killed: a
    test needs a build slow enough to outlast a request's timeout on the s3fs transport.
(f) T09 was killed by ``test_an_idle_thread_stays_for_a_job_being_submitted``, whose subject is
    not that mutation: perhaps a failure of the load; not checked again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import botocore.exceptions
import pytest

import vactor_cloud.storage._s3 as s3_module
from vactor_cloud.errors import (
    AlreadyExistsError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.storage import IfMatch, PutMode
from vactor_cloud.storage._base import OBJECT_KEY_BYTES, STORES_BELOW, Listing
from vactor_cloud.storage._s3 import S3Store
from vactor_cloud.storage._s3_answers import (
    UNREADABLE,
    NothingSent,
    RetriedAnswer,
    UnreadableAnswer,
    retried_failure,
)

KEY = "actors/a/HEAD"
Answer = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _store(path: str = "bucket/prefix") -> S3Store:
    """A store whose requests nothing answers until a test gives its transport an answer."""
    return S3Store(path, key="k", secret="s", endpoint_url="http://127.0.0.1:9")


def _answering(
    answer: Answer, path: str = "bucket/prefix"
) -> tuple[S3Store, list[tuple[str, dict[str, Any]]]]:
    """A store whose every request ``answer(method, params)`` answers (no client is built), and
    the requests it sent."""
    store = _store(path)
    sent: list[tuple[str, dict[str, Any]]] = []

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        sent.append((method, params))
        return await answer(method, params)

    store._transport.call = call  # type: ignore[method-assign]
    store._transport.needs_client = lambda: False  # type: ignore[method-assign]
    return store, sent


def _client_error(status: int, code: str, method: str = "put_object", *, retried: int = 0) -> Exception:
    response: Any = {
        "Error": {"Code": code, "Message": f"canned {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retried},
    }
    error: Exception = botocore.exceptions.ClientError(response, method)
    return error


def _translate(exc: BaseException, method: str, mode: PutMode | None) -> StorageError:
    return _store()._translate(exc, KEY, method, mode)


def _pages(*pages: dict[str, Any]) -> Answer:
    """Listing answers, one page after another (the last one again if asked more)."""

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert method == "list_objects_v2", method
        index = min(answer.calls, len(pages) - 1)  # type: ignore[attr-defined]
        answer.calls += 1  # type: ignore[attr-defined]
        page: dict[str, Any] = pages[index]
        return page

    answer.calls = 0  # type: ignore[attr-defined]
    return answer


def _item(name: str, etag: str | None = '"e"') -> dict[str, Any]:
    return {"Key": f"prefix/{name}", **({"ETag": etag} if etag is not None else {})}


# -- listing -------------------------------------------------------------------------------
def test_a_listing_keeps_only_what_was_asked_for_and_sorts_it() -> None:
    """Kills S08 (start_after itself listed), S09 (a key outside the prefix kept), S12 (no sort):
    an endpoint (an emulator, a proxy) that ignores Prefix and StartAfter, and lists out of order."""
    page = {
        "Contents": [_item("p/c"), _item("p/b"), _item("q/x"), _item("p/a"), _item("p/d")],
        "IsTruncated": False,
    }
    store, _ = _answering(_pages(page))
    listed = asyncio.run(store.list("p/", start_after="p/a"))
    assert list(listed) == ["p/b", "p/c", "p/d"]


def test_a_page_not_truncated_ends_the_listing_even_with_a_token() -> None:
    """Kills S10: a last page that carries a continuation token (some emulators send one) was
    followed, listing past the end (here: a second page of keys that is not there)."""
    first = {"Contents": [_item("p/a")], "IsTruncated": False, "NextContinuationToken": "t1"}
    second = {"Contents": [_item("p/z")], "IsTruncated": False}
    store, sent = _answering(_pages(first, second))
    assert list(asyncio.run(store.list("p/"))) == ["p/a"]
    assert len(sent) == 1


def test_a_repeated_page_token_is_an_error_not_an_endless_listing() -> None:
    """Kills S11: an endpoint answering the same continuation token again was followed forever
    (bounded here: the test fails instead of hanging)."""
    calls = 0

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 50:
            raise AssertionError("the listing follows a repeated token without end")
        return {"Contents": [_item(f"p/{calls:03}")], "IsTruncated": True, "NextContinuationToken": "same"}

    store, _ = _answering(answer)
    with pytest.raises(StorageError) as caught:
        asyncio.run(store.list("p/"))
    assert "token" in str(caught.value)
    assert calls == 2, calls


@pytest.mark.parametrize("missing", ["one", "all"])
def test_a_listing_names_versions_only_when_every_key_has_one(missing: str) -> None:
    """Kills S13 (some keys' ETags missing: the listing still named versions, and a key without
    one read as having none) and S79 (a key without an ETag: a KeyError, not the store's error)."""
    items = [_item("p/a"), _item("p/b", None)] if missing == "one" else [_item("p/a", None)]
    store, _ = _answering(_pages({"Contents": items, "IsTruncated": False}))
    listed = asyncio.run(store.list("p/"))
    assert isinstance(listed, Listing)
    assert listed.versions is None


def test_a_listing_with_a_limit_asks_no_more_and_returns_no_more() -> None:
    """Kills S14 (each page asked for a thousand keys whatever the limit) and S15 (an endpoint
    ignoring MaxKeys handed the caller more keys than its limit)."""
    page = {"Contents": [_item(f"p/{n}") for n in range(6)], "IsTruncated": False}
    store, sent = _answering(_pages(page))
    listed = asyncio.run(store.list("p/", limit=3))
    assert list(listed) == ["p/0", "p/1", "p/2"]
    assert sent[0][1]["MaxKeys"] == 3


def test_stores_below_names_each_substore_once_and_not_the_root_itself() -> None:
    """Kills S16: the root's own ``actors/`` (a common prefix ``prefix//actors/``, or the
    bare marker) was taken for a store at an empty name; S17: the count not bounded."""
    prefixes = [
        {"Prefix": "prefix//actors/"},
        {"Prefix": "prefix/a/actors/"},
        {"Prefix": "prefix/b/c/actors/"},
    ]
    many = [{"Prefix": f"prefix/s{n:04}/actors/"} for n in range(STORES_BELOW + 5)]

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"CommonPrefixes": prefixes if answer.first else many}  # type: ignore[attr-defined]

    answer.first = True  # type: ignore[attr-defined]
    store, _ = _answering(answer)
    assert asyncio.run(store.stores_below()) == ["s3://bucket/prefix/a", "s3://bucket/prefix/b/c"]
    answer.first = False  # type: ignore[attr-defined]
    found = asyncio.run(store.stores_below())
    assert found is not None and len(found) == STORES_BELOW


# -- puts and gets ----------------------------------------------------------------------------
def test_a_put_answered_with_an_empty_etag_is_the_stores_error() -> None:
    """Kills S18: an answer whose ETag is empty returned ``""`` as the new version (a later
    if-match against it can never succeed, and nothing says why)."""

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"ETag": ""}

    store, _ = _answering(answer)
    with pytest.raises(StorageError, match="without the ETag"):
        asyncio.run(store.put(KEY, b"x", mode="create"))


def test_an_unknown_put_mode_is_refused_before_anything_is_sent() -> None:
    """Kills S07: a put mode that is none of create, overwrite and IfMatch (a caller's typo,
    an IfMatch of another module) was sent as an unconditional overwrite."""
    store, sent = _answering(_pages({}))
    with pytest.raises((ValueError, StorageError)):
        asyncio.run(store._put(KEY, b"x", "ifmatch"))  # type: ignore[arg-type]
    assert sent == []


def test_no_bucket_is_refused() -> None:
    """Kills S80: an empty path opened a store on no bucket."""
    with pytest.raises(ValueError, match="no bucket"):
        S3Store("/", key="k", secret="s")


def test_a_prefix_costs_its_length_and_its_slash_in_key_bytes() -> None:
    """Kills S74: the slash joining prefix and key not counted: a key of the largest size
    allowed made an object name one byte over S3's limit."""
    assert _store("bucket/abc").max_key_bytes == OBJECT_KEY_BYTES - 4
    assert _store("bucket").max_key_bytes == OBJECT_KEY_BYTES


def test_reads_pause_between_tries() -> None:
    """Kills S81: a read's tries after a transient failure were sent back to back (a throttled
    endpoint asked again at once)."""
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, result: Any = None) -> Any:
        if delay:
            pauses.append(delay)
        return await real_sleep(0, result)

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise _client_error(503, "ServiceUnavailable", method)

    store, sent = _answering(answer)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", recorded)
        with pytest.raises(RetryableStorageError):
            asyncio.run(store.head(KEY))
    assert len(sent) == 3
    assert len(pauses) == 2 and all(pause > 0 for pause in pauses), pauses


# -- deletes ---------------------------------------------------------------------------------
def test_a_delete_of_a_missing_key_answered_404_is_done() -> None:
    """Kills S19: an emulator's 404 NoSuchKey to a DeleteObject (S3 says 204) failed the delete
    of a key that is gone, as asked."""

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise _client_error(404, "NoSuchKey", method)

    store, sent = _answering(answer)
    asyncio.run(store.delete(KEY))
    assert [method for method, _ in sent] == ["delete_object"]


def test_delete_many_takes_a_thousand_keys_in_one_request_and_refuses_more() -> None:
    """Kills S20 (a batch of exactly 1000 keys, DeleteObjects' own bound, refused) and S78 (1001
    keys to a conditional batch accepted and sent, for S3 to refuse as a malformed request)."""

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    store, sent = _answering(answer)
    keys = [f"k/{n:04}" for n in range(1000)]
    asyncio.run(store._delete_many(keys))
    assert len(sent) == 1 and len(sent[0][1]["Delete"]["Objects"]) == 1000
    with pytest.raises(ValueError):
        asyncio.run(store._delete_many([*keys, "k/1000"]))
    store._conditions_seen.add("many")
    versions = dict.fromkeys([*keys, "k/1000"], '"e"')
    with pytest.raises(ValueError):
        asyncio.run(store._delete_many_unchanged(versions))
    assert len(sent) == 1


def _batch_answer(*errors: dict[str, str]) -> Answer:
    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"Errors": list(errors)}

    return answer


def test_a_batch_delete_error_per_key_names_the_keys_and_a_missing_key_is_none() -> None:
    """Kills S21 (a key an emulator answers NoSuchKey for, which is deleted as asked, failed the
    batch), S22 (a key left in place swallowed: the caller takes it for deleted) and S36 (five
    keys named before "and N more", not four)."""
    store, _ = _answering(_batch_answer({"Key": "prefix/k/1", "Code": "NoSuchKey", "Message": "gone"}))
    asyncio.run(store._delete_many(["k/1", "k/2"]))
    failed = [{"Key": f"prefix/k/{n}", "Code": "InternalError", "Message": "oops"} for n in range(7)]
    store, _ = _answering(_batch_answer(*failed))
    with pytest.raises(StorageError) as caught:
        asyncio.run(store._delete_many([f"k/{n}" for n in range(7)]))
    text = str(caught.value)
    assert caught.value.key == "k/0"
    assert "'k/4'" in text and "'k/5'" not in text and "and 2 more" in text, text


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("AccessDenied", PermissionDeniedError),
        ("SlowDown", RateLimitedError),
        ("InternalError", RetryableStorageError),
        ("InvalidArgument", StorageError),
    ],
)
def test_a_batch_delete_error_is_classed_by_its_code(code: str, expected: type) -> None:
    """Kills S37 (a key denied by policy: a plain error, the permission not named), S38 (a
    throttled key: not a rate limit, retried without backoff or not at all), S39 (a key that
    failed on the server side: definite, never retried)."""
    store, _ = _answering(_batch_answer({"Key": "prefix/k", "Code": code, "Message": "m"}))
    with pytest.raises(StorageError) as caught:
        asyncio.run(store._delete_many(["k"]))
    assert type(caught.value) is expected, f"{type(caught.value).__name__}: {caught.value}"


def _conditional_answers(**by_method: Callable[[dict[str, Any]], dict[str, Any]]) -> Answer:
    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return by_method[method](params)

    return answer


def _raise(exc: Exception) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        raise exc

    return answer


def test_a_conditional_batch_leaves_a_changed_key_without_error() -> None:
    """Kills S25: a key a conditional batch left in place because its ETag changed
    (PreconditionFailed: as asked) failed the batch."""
    store, _ = _answering(
        _conditional_answers(
            delete_objects=lambda params: {
                "Errors": [
                    {"Key": item["Key"], "Code": "PreconditionFailed"} for item in params["Delete"]["Objects"]
                ]
            }
        )
    )
    asyncio.run(store.delete_unchanged({"k/1": '"a"'}))


def test_a_batch_whose_conditions_are_refused_per_key_falls_back_and_reads_first() -> None:
    """Kills S26 (the keys whose condition the endpoint refused, NotImplemented per key, were
    never deleted) and S27 (their refusal was raised after the fallback deleted them)."""
    heads = {"prefix/k/1": '"a"'}
    deleted: list[str] = []

    def delete_objects(params: dict[str, Any]) -> dict[str, Any]:
        objects = params["Delete"]["Objects"]
        if any("ETag" in item for item in objects):
            if objects[0]["Key"].startswith("prefix/.vactor-probes/"):
                return {"Errors": [{"Key": objects[0]["Key"], "Code": "NoSuchKey"}]}
            return {"Errors": [{"Key": item["Key"], "Code": "NotImplemented"} for item in objects]}
        deleted.extend(item["Key"] for item in objects)
        return {}

    def head_object(params: dict[str, Any]) -> dict[str, Any]:
        return {"ETag": heads[params["Key"]]}

    store, _ = _answering(_conditional_answers(delete_objects=delete_objects, head_object=head_object))
    asyncio.run(store.delete_unchanged({"k/1": '"a"'}))
    assert deleted == ["prefix/k/1"]
    assert store.conditional_deletes is False


def test_a_single_delete_whose_condition_is_refused_falls_back_and_deletes() -> None:
    """Kills S23: a DeleteObject whose If-Match the endpoint refuses (501) after the probe had
    passed deleted nothing, and said nothing."""
    deleted: list[str] = []

    def delete_object(params: dict[str, Any]) -> dict[str, Any]:
        if "IfMatch" in params:
            if params["Key"].startswith("prefix/.vactor-probes/"):
                raise _client_error(404, "NoSuchKey", "delete_object")
            raise _client_error(501, "NotImplemented", "delete_object")
        deleted.append(params["Key"])
        return {}

    def delete_objects(params: dict[str, Any]) -> dict[str, Any]:
        deleted.extend(item["Key"] for item in params["Delete"]["Objects"])
        return {}

    store, _ = _answering(
        _conditional_answers(
            delete_object=delete_object,
            delete_objects=delete_objects,
            head_object=lambda params: {"ETag": '"a"'},
        )
    )
    asyncio.run(store._delete_unchanged("k/1", '"a"'))
    assert deleted == ["prefix/k/1"]


@pytest.mark.parametrize("code", ["NoSuchBucket", "AccessDenied", "InternalError"])
def test_a_conditional_delete_that_failed_is_raised_not_taken_for_left_in_place(code: str) -> None:
    """Kills S24 (every failure of a conditional delete swallowed: a delete that did not happen
    reported done) and S62 (a missing bucket, a 404 too, taken for a missing object)."""
    status = {"NoSuchBucket": 404, "AccessDenied": 403, "InternalError": 500}[code]

    def delete_object(params: dict[str, Any]) -> dict[str, Any]:
        if params["Key"].startswith("prefix/.vactor-probes/"):
            raise _client_error(404, "NoSuchKey", "delete_object")
        raise _client_error(status, code, "delete_object")

    store, _ = _answering(_conditional_answers(delete_object=delete_object))
    with pytest.raises(StorageError) as caught:
        asyncio.run(store._delete_unchanged("k/1", '"a"'))
    assert caught.value.key == "k/1"


@pytest.mark.parametrize("answer", [404, 412])
def test_a_conditional_delete_answered_gone_or_changed_is_done(answer: int) -> None:
    """Kills S63: a DeleteObject with If-Match answered 404 (the object is gone: as asked; or a
    retry of an attempt that deleted it) failed."""
    code = {404: "NoSuchKey", 412: "PreconditionFailed"}[answer]

    def delete_object(params: dict[str, Any]) -> dict[str, Any]:
        raise _client_error(answer, code, "delete_object")

    store, _ = _answering(_conditional_answers(delete_object=delete_object))
    asyncio.run(store._delete_unchanged("k/1", '"a"'))
    assert store.conditional_deletes is True


def test_an_endpoint_that_deletes_under_any_condition_is_not_trusted() -> None:
    """Kills S30: an endpoint whose DeleteObject ignores If-Match (it answered the probe of a
    key that does not exist as deleted) was trusted, and would delete an object written again."""
    deleted: list[str] = []

    def delete_object(params: dict[str, Any]) -> dict[str, Any]:
        deleted.append(params["Key"])
        return {}

    def delete_objects(params: dict[str, Any]) -> dict[str, Any]:
        deleted.extend(item["Key"] for item in params["Delete"]["Objects"])
        return {}

    store, _ = _answering(
        _conditional_answers(
            delete_object=delete_object,
            delete_objects=delete_objects,
            head_object=lambda params: {"ETag": '"new"'},
        )
    )
    asyncio.run(store._delete_unchanged("k/1", '"old"'))
    assert store.conditional_deletes is False
    assert "prefix/k/1" not in deleted


def test_a_batch_probe_answered_changed_is_trusted_and_probed_once() -> None:
    """Kills S31 (an endpoint answering the probe PreconditionFailed, S3's own answer to a wrong
    ETag, not trusted), S28 and S29 (a probe before every delete: a request each)."""
    probes = 0

    def delete_objects(params: dict[str, Any]) -> dict[str, Any]:
        nonlocal probes
        objects = params["Delete"]["Objects"]
        probes += objects[0]["Key"].startswith("prefix/.vactor-probes/")
        return {"Errors": [{"Key": item["Key"], "Code": "PreconditionFailed"} for item in objects]}

    store, _ = _answering(_conditional_answers(delete_objects=delete_objects))
    asyncio.run(store.delete_unchanged({"k/1": '"a"', "k/2": '"b"'}))
    asyncio.run(store.delete_unchanged({"k/1": '"a"', "k/2": '"b"'}))
    assert store.conditional_deletes is True
    assert probes == 1


def test_a_probe_refused_by_policy_falls_back_and_one_refused_by_the_endpoint_too() -> None:
    """Kills S32 (a probe denied by a policy failed every conditional delete for good) and S33
    (a probe the endpoint refused, 501, taken for a condition honoured)."""
    for status, code in ((403, "AccessDenied"), (501, "NotImplemented")):

        def delete_object(params: dict[str, Any], status: int = status, code: str = code) -> dict[str, Any]:
            raise _client_error(status, code, "delete_object")

        store, sent = _answering(
            _conditional_answers(
                delete_object=delete_object,
                delete_objects=lambda params: {},
                head_object=lambda params: {"ETag": '"a"'},
            )
        )
        asyncio.run(store._delete_unchanged("k/1", '"a"'))
        assert store.conditional_deletes is False, code
        assert sent[-1] == (
            "delete_objects",
            {"Delete": {"Objects": [{"Key": "prefix/k/1"}], "Quiet": True}},
        ), (code, sent)


def test_the_fallback_is_announced_once(caplog: pytest.LogCaptureFixture) -> None:
    """Kills S34: every refused condition logged the warning again."""
    store = _store()
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        store._conditions_refused("first")
        store._conditions_refused("second")
    assert len([record for record in caplog.records if "conditional deletes" in record.getMessage()]) == 1


def test_the_fallback_deletes_only_what_is_still_at_its_version() -> None:
    """Kills S35: the read-first fallback deleted an object written again since its version was
    read (a newer one's data lost)."""
    heads = {"prefix/k/1": '"a"', "prefix/k/2": '"newer"'}
    deleted: list[str] = []

    def delete_objects(params: dict[str, Any]) -> dict[str, Any]:
        deleted.extend(item["Key"] for item in params["Delete"]["Objects"])
        return {}

    store, _ = _answering(
        _conditional_answers(
            delete_objects=delete_objects, head_object=lambda params: {"ETag": heads[params["Key"]]}
        )
    )
    store.conditional_deletes = False
    asyncio.run(store.delete_unchanged({"k/1": '"a"', "k/2": '"b"'}))
    assert deleted == ["prefix/k/1"]


# -- error translation -----------------------------------------------------------------------
class _Cycle(Exception):
    """An exception whose cause leads back to itself (a chain some libraries build)."""


def test_builtins_s3fs_raises_keep_their_meaning() -> None:
    """Kills S40 (s3fs's FileExistsError of a create-only put: not "already exists"), S41 (its
    EINVAL of an if-match: not a precondition failure) and S42 (its FileNotFoundError of an
    if-match: a missing object, where the caller asked to replace a version)."""
    assert type(_translate(FileExistsError("k"), "put_object", "create")) is AlreadyExistsError
    einval = OSError(errno.EINVAL, "precondition")
    assert type(_translate(einval, "put_object", IfMatch('"e"'))) is PreconditionFailedError
    assert type(_translate(FileNotFoundError("k"), "put_object", IfMatch('"e"'))) is PreconditionFailedError
    assert type(_translate(FileNotFoundError("k"), "get_object", None)) is NotFoundError


def test_missing_credentials_and_a_misconfigured_client_are_definite() -> None:
    """Kills S43 (no credentials: a transient transport failure, retried until the deadline) and
    S44 (a client misconfiguration, a region that does not exist: likewise)."""
    error = _translate(botocore.exceptions.NoCredentialsError(), "get_object", None)
    assert type(error) is AuthenticationError and "AWS_ACCESS_KEY_ID" in str(error)
    error = _translate(botocore.exceptions.NoRegionError(), "put_object", "create")
    assert type(error) is StorageError and "misconfigured" in str(error)


def test_a_write_none_of_whose_attempts_connected_says_nothing_was_written() -> None:
    """Kills S46: a conditional put none of whose attempts could connect said it "may or may not
    have been applied", and sent its caller to read back what cannot be there."""
    failure = NothingSent("EndpointConnectionError: could not connect")
    error = _translate(failure, "put_object", "create")
    assert type(error) is RetryableStorageError
    assert "nothing was written" in str(error) and "may or may not" not in str(error), str(error)


def test_a_storage_error_passes_through_translation_as_it_is() -> None:
    """Kills S77: a StorageError raised below (the store's own) was wrapped again as a generic
    StorageError: its class (here: transient) lost."""
    own = RateLimitedError("slow down", KEY)
    assert _translate(own, "put_object", "create") is own


@pytest.mark.parametrize(
    ("status", "code", "method", "mode", "expected"),
    [
        pytest.param(409, "OperationAborted", "get_object", None, StorageError, id="409-read"),
        pytest.param(404, "NoSuchBucket", "get_object", None, StorageError, id="no-bucket"),
        pytest.param(
            404, "NoSuchBucket", "put_object", IfMatch('"e"'), StorageError, id="no-bucket-if-match"
        ),
        pytest.param(429, "", "put_object", "create", RateLimitedError, id="429-no-code"),
        pytest.param(401, "", "get_object", None, AuthenticationError, id="401-no-code"),
        pytest.param(403, "", "get_object", None, PermissionDeniedError, id="403-no-code"),
        pytest.param(500, "", "get_object", None, RetryableStorageError, id="500-no-code"),
        pytest.param(412, "", "put_object", "create", AlreadyExistsError, id="412-create-no-code"),
        pytest.param(412, "PreconditionFailed", "put_object", "overwrite", StorageError, id="412-overwrite"),
    ],
)
def test_answers_are_classed_by_status_as_well_as_code(
    status: int, code: str, method: str, mode: PutMode | None, expected: type
) -> None:
    """Kills S50 (a 409 to a read, no conditional write, taken for a conflict between writers),
    S52 (a missing bucket taken for a missing object: an actor reported absent, and a
    conditional put's precondition "failed"), S54, S55, S56, S58 (an answer whose code is empty,
    a proxy's or a load balancer's, not classed by its status: 429, 401, 403, 500) and S60."""
    error = _translate(_client_error(status, code, method), method, mode)
    assert type(error) is expected, f"{type(error).__name__}: {error}"
    if code == "NoSuchBucket":
        assert "'bucket' does not exist" in str(error)


def test_a_read_failing_on_the_server_side_speaks_of_no_write_and_a_write_does() -> None:
    """Kills S59: the "may or may not have been applied" of a server error said of a read, and
    not of a write."""
    read = _translate(_client_error(500, "InternalError", "get_object"), "get_object", None)
    write = _translate(_client_error(500, "InternalError", "put_object"), "put_object", "create")
    assert "may or may not" not in str(read) and "may or may not" in str(write)


def test_an_unreadable_answer_is_named_as_cut_short_not_as_a_server_error() -> None:
    """Kills S57: a 200 botocore could not parse (and made a 500 of) reported as the server's
    failure, the truncating hop in between not named."""
    error = botocore.exceptions.ClientError(
        {
            "Error": {"Code": "500", "Message": "Internal Server Error"},
            "ResponseMetadata": {"HTTPStatusCode": 500, "RetryAttempts": 2},
            UNREADABLE: "the answer to ListObjectsV2 arrived cut short",
        },
        "list_objects_v2",
    )
    translated = _translate(error, "list_objects_v2", None)
    assert type(translated) is RetryableStorageError
    assert "cut short" in str(translated) and "tried 3 time(s)" in str(translated), str(translated)


def test_a_client_error_raised_while_handling_another_is_found() -> None:
    """Kills S64: a ClientError reached only through ``__context__`` (raised while handling
    another: s3fs's translation without ``from``) not found: a 412 of a create reported as a
    generic failure; and a chain leading back to itself ends."""
    cyclic = _Cycle("loop")
    cyclic.__cause__ = cyclic
    assert type(_translate(cyclic, "put_object", None)) is StorageError
    try:
        try:
            raise _client_error(412, "PreconditionFailed")
        except Exception:
            raise RuntimeError("while handling")  # noqa: B904 - the point: no ``from``
    except RuntimeError as exc:
        wrapped: BaseException = exc
    assert type(_translate(wrapped, "put_object", "create")) is AlreadyExistsError


def test_a_501_to_a_conditional_delete_is_the_endpoint_refusing_the_condition() -> None:
    """Kills S61: a 501 without a code (a proxy's Not Implemented) to a conditional delete raised,
    where the store falls back to reading first."""
    assert s3_module._condition_refused(_client_error(501, "", "delete_object"))
    assert not s3_module._condition_refused(_client_error(500, "", "delete_object"))


# -- deadlines, the client's build, advice ----------------------------------------------------
def test_a_request_given_up_while_the_client_is_built_is_closed_not_left_unawaited() -> None:
    """Kills S65: the request's coroutine, never started because the client's build failed,
    was left unclosed (a "never awaited" warning, and its resources held until collected)."""
    store = _store()
    store._transport.needs_client = lambda: True  # type: ignore[method-assign]

    async def stuck() -> None:
        await asyncio.Event().wait()

    store._transport.build_client_here = stuck  # type: ignore[method-assign]

    async def request() -> int:
        return 1

    async def main() -> Any:
        coroutine = request()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(s3_module, "CLIENT_BUILD_LIMIT", 0.01)
            store.request_timeout = None
            with pytest.raises(StorageTimeoutError, match="building the S3 client"):
                await store._bounded(coroutine, "GET", KEY)
        return coroutine

    coroutine = asyncio.run(main())
    assert coroutine.cr_frame is None, "the request's coroutine was left unclosed"


def test_a_client_build_may_take_as_long_as_one_requests_timeout() -> None:
    """Kills S66: the build's bound cut to the shorter of its own limit and the request's
    timeout: a client taking longer to build than the limit but less than a (longer) request
    timeout failed every first request."""
    store, sent = _answering(lambda method, params: _async({"ETag": '"e"'}))
    built = asyncio.Event()
    store._transport.needs_client = lambda: not built.is_set()  # type: ignore[method-assign]

    async def slow_build() -> None:
        await asyncio.sleep(0.3)
        built.set()

    store._transport.build_client_here = slow_build  # type: ignore[method-assign]
    store.request_timeout = 20.0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(s3_module, "CLIENT_BUILD_LIMIT", 0.05)
        assert asyncio.run(store.head(KEY)) == '"e"'
    assert sent


async def _async(value: Any) -> Any:
    return value


def test_a_client_build_that_failed_lets_the_request_say_why() -> None:
    """Kills S67: a build failure (a bad profile) escaped raw, not as the store's error naming
    the key (the request builds the client again and translates what it raises)."""
    store = _store()
    store._transport.needs_client = lambda: True  # type: ignore[method-assign]

    async def failing() -> None:
        raise botocore.exceptions.ProfileNotFound(profile="nope")

    store._transport.build_client_here = failing  # type: ignore[method-assign]

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise botocore.exceptions.ProfileNotFound(profile="nope")

    store._transport.call = call  # type: ignore[method-assign]
    with pytest.raises(StorageError) as caught:
        asyncio.run(store.head(KEY))
    assert caught.value.key == KEY and "misconfigured" in str(caught.value)


def test_advice_names_only_a_failure_of_the_requests_time() -> None:
    """Kills S68 and S72 (a failure from long before the request, an old outage, named as what
    it met meanwhile), S69 (an answer cut short named as a server error), S70 (a retried server
    answer not named) and S71 (the store's newest failure named for a request that had its own)."""
    store = _store()
    long_ago = time.monotonic() - 3600
    store._transport.last_failure = (long_ago, RetriedAnswer("S3 said 503 SlowDown"))
    assert store._answered_meanwhile(10.0) is None
    assert "failed meanwhile" not in store._stall_advice(10.0)
    now = time.monotonic()
    store._transport.last_failure = (now, UnreadableAnswer("cut"))
    assert "not whole" in (store._answered_meanwhile(10.0) or "")
    store._transport.last_failure = (now, RetriedAnswer("S3 said 503 SlowDown"))
    assert "503 SlowDown" in (store._answered_meanwhile(10.0) or "")

    class Answers:
        last = None

    assert store._answered_meanwhile(10.0, Answers()) is None  # type: ignore[arg-type]


def test_the_s3_endpoint_variable_is_named_before_the_generic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills S75: with both set, botocore sends S3's requests to ``AWS_ENDPOINT_URL_S3``; the
    errors named the other endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1/s3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2/any")
    store = S3Store("bucket", key="k", secret="s")
    assert store._endpoint() == "http://127.0.0.1:1/s3"


def test_an_aiobotocore_session_with_the_botocore_transport_is_refused() -> None:
    """Kills S76: ``session=`` (an aiobotocore session) silently ignored by the botocore
    transport: requests signed with other credentials than the caller gave."""
    with pytest.raises(ValueError, match="session"):
        S3Store("bucket", transport="botocore", session=object())


# -- what botocore retried --------------------------------------------------------------------
def test_retried_failures_name_an_unreadable_answer_and_each_status_that_is_retried() -> None:
    """Kills A07 (an unreadable answer noted as a server error), A08 (a 500 not noted), A09 (a
    429 not noted) and A12 (an exception botocore caught not noted)."""
    unreadable = retried_failure(
        None, (None, {UNREADABLE: "cut", "ResponseMetadata": {"HTTPStatusCode": 500}})
    )
    assert isinstance(unreadable, UnreadableAnswer)
    for status in (500, 429):
        noted = retried_failure(None, (None, {"ResponseMetadata": {"HTTPStatusCode": status}}))
        assert isinstance(noted, RetriedAnswer) and not isinstance(noted, UnreadableAnswer), status
    caught = ConnectionResetError("reset")
    assert retried_failure(caught, None) is caught


def test_an_answer_marked_unreadable_only_if_it_has_a_body_that_is_no_html_page() -> None:
    """Kills A06 (a proxy's error page in capitals, ``<HTML>``, taken for S3's XML cut short)
    and A13 (an empty 500, which says nothing of a cut, marked unreadable)."""
    from vactor_cloud.storage._s3_answers import _mark_unreadable

    class Operation:
        name = "PutObject"

    for body in (b"<HTML><BODY>500 Internal Server Error</BODY></HTML>", b""):
        marked: dict[str, Any] = {}
        _mark_unreadable(Operation(), {"body": body, "status_code": 500}, marked)
        assert marked == {}, body


def test_the_botocore_transport_keeps_s3fs_option_names_and_timeouts() -> None:
    """Kills T02 (no read timeout unless given: botocore's 60 s, where s3fs's 15 s was promised)
    and T04 (s3fs's ``username=``/``password=`` spelling of the credentials ignored: requests
    sent with whatever credentials the environment has)."""
    from vactor_cloud.storage._s3_threads import botocore_client_arguments

    profile, arguments = botocore_client_arguments({"username": "AK", "password": "SK", "profile": "p"})
    assert profile == "p"
    assert (arguments["aws_access_key_id"], arguments["aws_secret_access_key"]) == ("AK", "SK")
    assert arguments["config"].read_timeout == 15 and arguments["config"].connect_timeout == 5


def test_each_put_mode_sends_its_condition_and_only_its_own() -> None:
    """Kills S06: a create-only put sent without ``If-None-Match: *``, an unconditional
    overwrite (two creators both win; the step log forks)."""

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"ETag": '"e"'}

    store, sent = _answering(answer)
    asyncio.run(store.put(KEY, b"x", mode="create"))
    asyncio.run(store.put(KEY, b"x", mode=IfMatch('"v"')))
    asyncio.run(store.put(KEY, b"x"))
    conditions = [
        {name: params[name] for name in ("IfNoneMatch", "IfMatch") if name in params} for _, params in sent
    ]
    assert conditions == [{"IfNoneMatch": "*"}, {"IfMatch": '"v"'}, {}]


@pytest.mark.parametrize("data", [b"", b"x", b"0123456789abcdefXYZ"])
def test_a_get_returns_exactly_what_follows_the_write_token(data: bytes) -> None:
    """Kills S03 (an empty object, the token alone, refused as foreign) and S04 (a byte of the
    token returned as data)."""

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"Body": b"T" * 16 + data, "ETag": '"e"'}

    store, _ = _answering(answer)
    blob = asyncio.run(store.get(KEY))
    assert (blob.data, blob.version) == (data, '"e"')


def test_a_head_of_a_missing_object_is_none_and_a_definite_refusal_is_sent_once() -> None:
    """Kills S05 (a HEAD answered 404: an error, where the object is simply absent) and S02 (a
    definite refusal, 403, sent again twice as if transient)."""

    async def missing(method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise _client_error(404, "404", method)

    store, _ = _answering(missing)
    assert asyncio.run(store.head(KEY)) is None

    async def denied(method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise _client_error(403, "AccessDenied", method)

    store, sent = _answering(denied)
    with pytest.raises(PermissionDeniedError):
        asyncio.run(store.get(KEY))
    assert len(sent) == 1


def test_a_body_cut_short_is_named_as_damaged_not_as_an_unreachable_endpoint() -> None:
    """Kills S45: botocore's ``IncompleteReadError`` (a GET's body shorter than its
    Content-Length) reported as a failure to talk to the endpoint, which answered."""
    failure = botocore.exceptions.IncompleteReadError(actual_bytes=10, expected_bytes=100)
    error = _translate(failure, "get_object", None)
    assert type(error) is RetryableStorageError
    assert "cut short or damaged" in str(error) and "is running" not in str(error), str(error)


def test_an_attempt_is_counted_sent_unless_it_could_not_connect() -> None:
    """Kills A10 (an attempt that could not connect counted as sent: a write none of whose
    attempts left said it may have landed) and A11 (no attempt ever counted as sent: a write
    whose first attempt was sent and lost its answer, then could not connect again, said
    "nothing was written")."""
    from vactor_cloud.storage._s3_answers import Attempts, watch_attempts

    handlers: list[Callable[..., None]] = []

    class Events:
        def register(self, name: str, handler: Callable[..., None]) -> None:
            handlers.append(handler)

    class Client:
        class meta:  # (botocore's attribute name)
            events = Events()

    attempts = Attempts()
    watch_attempts(Client(), lambda: attempts)
    refused = botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:9")
    handlers[0](caught_exception=refused)
    assert attempts.maybe_sent is False
    assert isinstance(attempts.outcome(refused), NothingSent)
    handlers[0](caught_exception=botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"))
    assert attempts.maybe_sent is True
    assert attempts.outcome(refused) is refused

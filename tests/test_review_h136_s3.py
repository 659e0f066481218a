"""The S3 store under review-h136: a listing answer cut short in transit (a 200 without
Content-Length whose connection closed early: a proxy or an HTTP/1.0 hop dropped the length).

botocore cannot parse the half of a ``ListObjectsV2`` answer's XML and retries it as a server
error (a 500 it makes of the 200). Such a failure is to be named as what it was, and a read is
never said to be a write that may have been applied. A ``GET`` cut short the same way is caught
by botocore's response checksums (moto sends them): retried, never returned as the object.
Runs on the moto lane; no timing assertions (what may hang is bounded by the store's timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_review_backends import _upstream

from vactor_cloud.errors import RetryableStorageError, StorageError, StorageTimeoutError
from vactor_cloud.storage import open_store
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy

pytestmark = [pytest.mark.vactor_lanes("moto"), pytest.mark.parametrize("transport", ["botocore", "s3fs"])]
OBJECT = b"VACT" + bytes(range(256)) * 20


def _listing(method: str, target: str) -> bool:
    return method == "GET" and "list-type=2" in target


def _object_read(method: str, target: str) -> bool:
    return method == "GET" and "list-type=2" not in target


def _through_cut_short_proxy(
    lane: Lane, spec: StoreSpec, transport: str, targets: Any, timeout: float, **options: Any
) -> tuple[object, list[str]]:
    """What reading (``list`` or ``get``) ``k/1`` returned or raised through a proxy that cuts
    every answer ``targets`` chooses short, and the requests the proxy forwarded."""

    async def put() -> None:
        store = spec.open()
        try:
            await store.put("k/1", OBJECT)
        finally:
            await store.close()

    asyncio.run(put())
    with DroppingProxy(_upstream(lane), drop_share=1.0, targets=targets, cut_short=True) as proxy:
        routed = proxy.route(spec)

        async def read() -> object:
            store = open_store(routed.url, **{**routed.options, "transport": transport, **options})
            store.request_timeout = timeout
            try:
                if targets is _listing:
                    return await store.list("k/")
                return (await store.get("k/1")).data
            except StorageError as exc:
                return exc
            finally:
                await store.close()

        outcome = asyncio.run(read())
    return outcome, proxy.stats.seen


def test_a_listing_cut_short_until_botocore_gives_up_says_so_and_speaks_of_no_write(
    store_lane: Lane, store_spec: StoreSpec, transport: str
) -> None:
    """botocore tries once (``max_attempts: 1``), the store's read three times: every answer
    cut short. The error says the answer arrived cut short or unreadable and was retried.
    Before: "failed on the server side; it may or may not have been applied ... S3 said 500"
    of a listing, which applies nothing."""
    no_retries = {"config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}
    outcome, seen = _through_cut_short_proxy(store_lane, store_spec, transport, _listing, 60.0, **no_retries)
    assert isinstance(outcome, RetryableStorageError), outcome
    assert not isinstance(outcome, StorageTimeoutError), outcome
    message = str(outcome)
    assert "cut short" in message, message
    assert "applied" not in message and "reachable" not in message, message
    assert len(seen) >= 3, seen


def test_a_listing_cut_short_until_its_deadline_names_what_happened_not_an_unreachable_endpoint(
    store_lane: Lane, store_spec: StoreSpec, transport: str
) -> None:
    """botocore retries (its default) until the request's deadline (3 s): the timeout named an
    endpoint that gave no answer ("is the endpoint reachable?"), of one that answered every
    time; it now says its answers arrived cut short and were tried again."""
    outcome, seen = _through_cut_short_proxy(store_lane, store_spec, transport, _listing, 3.0)
    assert isinstance(outcome, StorageTimeoutError), outcome
    message = str(outcome)
    assert "cut short" in message, message
    assert "reachable" not in message and "applied" not in message, message
    assert len(seen) >= 2, seen


def test_a_get_cut_short_without_content_length_is_never_returned_as_the_object(
    store_lane: Lane, store_spec: StoreSpec, transport: str
) -> None:
    """The object's body loses its second half and its length: botocore's response checksum
    (moto sends one) refuses it, the store's read tries it three times and says the body
    arrived cut short; the half is never the object. (Held before this review too.)"""
    outcome, seen = _through_cut_short_proxy(store_lane, store_spec, transport, _object_read, 60.0)
    assert isinstance(outcome, RetryableStorageError), outcome
    assert "cut short" in str(outcome) and "applied" not in str(outcome), outcome
    assert len(seen) == 3, seen


_SLOW_DOWN_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n"
    b"<Error><Code>SlowDown</Code><Message>Please reduce.</Message></Error>"
)
#: S3's answer to a request it throttles (botocore retries it)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)


def test_a_listing_answered_slow_down_until_its_deadline_names_the_answer_not_an_unreachable_endpoint(
    store_lane: Lane, store_spec: StoreSpec, transport: str
) -> None:
    """Every listing answered 503 ``SlowDown`` (botocore retries it) until the deadline (3 s):
    the timeout asked "is the endpoint reachable?" of an endpoint that answered each time; it
    names the answer now."""
    with DroppingProxy(
        _upstream(store_lane), drop_share=1.0, targets=_listing, replace_with=SLOW_DOWN
    ) as proxy:
        routed = proxy.route(store_spec)

        async def read() -> object:
            store = open_store(routed.url, **{**routed.options, "transport": transport})
            store.request_timeout = 3.0
            try:
                return await store.list("k/")
            except StorageError as exc:
                return exc
            finally:
                await store.close()

        outcome = asyncio.run(read())
    assert isinstance(outcome, StorageTimeoutError), outcome
    assert "SlowDown" in str(outcome) and "reachable" not in str(outcome), outcome

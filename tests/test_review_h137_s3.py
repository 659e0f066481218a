"""The S3 store under review-h137: a server error whose body is no XML (a proxy's own 502
page, HTML that is no whole XML document) is a server error, not an answer cut short.

h136 marked every 5xx answer whose body does not parse as XML "cut short or unreadable" and
advised looking for something that truncates responses; botocore's own conversion of a 200 it
cannot parse always makes a 500 of it. Runs on the moto lane, through both transports."""

from __future__ import annotations

import asyncio

import pytest
from test_review_backends import _upstream

from vactor_cloud.errors import StorageError
from vactor_cloud.storage import open_store
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy

pytestmark = [pytest.mark.vactor_lanes("moto"), pytest.mark.parametrize("transport", ["botocore", "s3fs"])]


def proxy_page(status: str) -> bytes:
    """A proxy's own error answer (nginx's page: ``<hr>`` is never closed, so no XML)."""
    page = (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()
    head = f"HTTP/1.1 {status}\r\nServer: nginx\r\nContent-Type: text/html\r\n"
    return (head + f"Content-Length: {len(page)}\r\nConnection: close\r\n\r\n").encode() + page


def _upload(method: str, target: str) -> bool:
    return method == "PUT"


def _listing(method: str, target: str) -> bool:
    return method == "GET" and "list-type=2" in target


@pytest.mark.parametrize("status", ["502 Bad Gateway", "500 Internal Server Error"])
@pytest.mark.parametrize("request_kind", ["put", "list"])
def test_a_proxys_error_page_is_a_server_error_not_an_answer_cut_short(
    store_lane: Lane, store_spec: StoreSpec, transport: str, request_kind: str, status: str
) -> None:
    """Every chosen request answered by a proxy's error page (botocore tries once): the error is
    a server error (a put's may have been applied, a listing's speaks of no write), never an
    answer "cut short" through something that "truncates responses"."""
    targets = _upload if request_kind == "put" else _listing
    no_retries = {"config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}
    with DroppingProxy(
        _upstream(store_lane), drop_share=1.0, targets=targets, replace_with=proxy_page(status)
    ) as proxy:
        routed = proxy.route(store_spec)

        async def attempt() -> object:
            store = open_store(routed.url, **{**routed.options, "transport": transport, **no_retries})
            store.request_timeout = 60.0
            try:
                if request_kind == "put":
                    return await store.put("k/1", b"VACT payload")
                return await store.list("k/")
            except StorageError as exc:
                return exc
            finally:
                await store.close()

        outcome = asyncio.run(attempt())
    assert isinstance(outcome, StorageError), outcome
    message = str(outcome)
    assert "cut short" not in message and "truncates" not in message, message
    assert status[:3] in message, message
    if request_kind == "put":
        assert "may or may not have been applied" in message, message
    else:
        assert "applied" not in message, message

"""A listing after ``start_after`` hands on no key up to it, whatever the server sends (review h139).

A mutation sweep of the S3 and GCS stores (review h139) let the client's own filter keep the
key ``start_after`` itself (``>=`` for ``>``): a server that ignores the ``StartAfter`` (S3) or
``startOffset`` (GCS) parameter, an emulator or a proxy, would then have it handed on as the
first key of a listing that must start after it. (The parameter not sent at all, the other
survivor, is held by the conformance suite's
``test_a_listing_after_a_key_asks_the_store_to_start_there``.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy
from vactor_cloud.testing.store_conformance import run_on_store

KEYS = [f"from/{i:02d}" for i in range(8)]


_START = re.compile(r"&?\b(start-after|startOffset)=[^&]*")


def _ignore_start(method: str, target: str) -> str:
    """The target without its start (a server that ignores the parameter lists from the prefix's start)."""
    return _START.sub("", target).replace("?&", "?") if method == "GET" else target


@pytest.fixture
def proxy(store_lane: Lane) -> Iterator[DroppingProxy]:
    endpoint = getattr(store_lane, "endpoint", None)
    if not isinstance(endpoint, str) or not endpoint.startswith("http://"):
        pytest.skip(f"lane {store_lane.name} has no HTTP server to put a proxy in front of")
    with DroppingProxy(endpoint, drop_share=0.0) as proxy:
        yield proxy


def test_a_server_that_ignores_start_after_hands_no_key_up_to_it_on(
    store_spec: StoreSpec, proxy: DroppingProxy
) -> None:
    """Killed mutation: the client's filter ``> start_after`` as ``>=``."""
    proxy.rewrite = _ignore_start

    async def body(direct: ObjectStore) -> None:
        for key in KEYS:
            await direct.put(key, b"")
        routed = proxy.route(store_spec).open()
        try:
            assert await routed.list("from/", start_after=KEYS[3]) == KEYS[4:]
            assert await routed.list("from/", start_after=KEYS[3], limit=2) == KEYS[4:6]
            assert any(_START.search(seen) is None for seen in proxy.stats.seen if "from" in seen)
        finally:
            await routed.close()

    run_on_store(store_spec, body)

"""Hostile review (h159) of the S3 client's build ahead of a request's timeout
(``S3Store._bounded``): a request whose build failed or was cancelled never started, and its
coroutine is closed (no "never awaited" warning); the next request builds the client and goes."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from garbage import full_collection
from test_s3_client_build import _slow_build

from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.storage import _s3, open_store
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("moto"), pytest.mark.parametrize("transport", ["botocore", "s3fs"])]


def _never_awaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


def test_a_request_whose_build_is_cancelled_or_times_out_leaves_no_coroutine_unawaited(
    store_spec: StoreSpec, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_s3, "CLIENT_BUILD_LIMIT", 0.3)
    _slow_build(monkeypatch, transport, 0.6)

    async def scenario() -> tuple[BaseException | None, bool, bytes]:
        store = open_store(store_spec.url, **{**store_spec.options, "transport": transport})
        store.request_timeout = 0.1
        try:
            put = asyncio.ensure_future(store.put("h159/cancelled", b"VACT never sent"))
            await asyncio.sleep(0.05)  # (in the build)
            put.cancel()
            cancelled = False
            try:
                await put
            except asyncio.CancelledError:
                cancelled = True
            timed_out: BaseException | None = None
            try:
                await store.get("h159/missing")
            except StorageTimeoutError as exc:
                timed_out = exc
            except Exception as exc:  # (the build finished meanwhile: a plain answer)
                timed_out = exc
            await asyncio.sleep(0.7)  # every build done
            store.request_timeout = 30.0  # (the last requests are no race against the clock)
            await store.put("h159/after", b"VACT sent")
            return timed_out, cancelled, (await store.get("h159/after")).data
        finally:
            await store.close()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error, cancelled, data = asyncio.run(scenario())
        full_collection()
    assert cancelled
    assert error is not None
    assert data == b"VACT sent"
    assert _never_awaited(caught) == []


def test_one_store_on_a_second_event_loop_builds_its_client_there_and_deletes_conditionally(
    store_spec: StoreSpec, transport: str
) -> None:
    """A store used from one ``asyncio.run`` then another: the client is built again for the
    second loop (ahead of the request's timeout), and the probe is not sent again."""
    store = open_store(store_spec.url, **{**store_spec.options, "transport": transport})

    async def round_(name: str) -> dict[str, int]:
        before = store.requests.snapshot()
        first = await store.put(f"h159/loops/{name}", b"VACT one", mode="create")
        await store.delete_unchanged({f"h159/loops/{name}": first})
        again = await store.put(f"h159/loops/{name}", b"VACT two", mode="create")
        await store.delete_unchanged({f"h159/loops/{name}": first})  # (late: leaves the new one)
        assert await store.head(f"h159/loops/{name}") == again
        after = store.requests.snapshot()
        return {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}

    async def last() -> None:
        await store.close()

    first = asyncio.run(round_("a"))
    second = asyncio.run(round_("b"))
    asyncio.run(last())
    assert first.get("probe", 0) == 1 and second.get("probe", 0) == 0, (first, second)
    assert store.conditional_deletes is True

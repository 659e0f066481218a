"""Review h135: ``Folder.shutdown_lease`` (h133) waits for a renewal of the folder lease in flight
before it releases the lease. On a store that stalls the lease's writes, the shutdown still ends
within ``close(timeout)`` (the renewal is cancelled past it), and the lease, never written, stays
as it was (nothing cleared that the stalled writes might not have replaced)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from test_combining import Switchable
from test_review_actor_cache import HANG
from test_review_h133_lease_at_shutdown import a_holder

from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_beside_a_renewal_stalled_by_the_store_ends_within_its_timeout(
    store_spec: StoreSpec,
) -> None:
    runtime, holder, leases = a_holder(store_spec)
    before = _sync.sync(leases.read())
    store = runtime.store
    assert isinstance(store, Switchable)
    stalled = threading.Event()
    inner_around = store._around

    async def stall_the_lease(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and key.endswith("/lease"):
            stalled.set()
            await asyncio.Event().wait()  # until cancelled
        return await inner_around(operation, key, run, **kw)

    store._around = stall_the_lease  # type: ignore[method-assign]
    holder._held_until = time.monotonic() + 1.0  # past half its length: a fold renews it
    assert holder.record is not None
    holder._renew_lease(holder.record.step)
    assert stalled.wait(HANG), "the renewal was not sent"
    assert holder._renewing
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": 0.3}, daemon=True)
    closer.start()
    closer.join(HANG)
    assert not closer.is_alive(), "the shutdown did not end beside a stalled renewal"
    store._around = inner_around  # type: ignore[method-assign]
    after = _sync.sync(leases.read())
    assert after.version == before.version and after.holder == runtime.post_sender.id

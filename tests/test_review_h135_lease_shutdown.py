"""Review h135: the folder lease's renewal beside a give-up and a shutdown.

``Folder.shutdown_lease`` (h133) waits for a renewal in flight before it releases the lease. On a
store that stalls the lease's writes, the shutdown still ends within ``close(timeout)`` (the
renewal is cancelled past it), and the lease, never written, stays as it was. A give-up beside a
renewal leaves the release to the renewal's landing: that landing must neither undo the give-up
(hold the lease again) nor, failing, leave the lease held."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest
from test_combining import Switchable
from test_review_actor_cache import HANG
from test_review_h133_lease_at_shutdown import LEASE_SECONDS, a_holder

from vactor_cloud import _sync
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.folding import Folder
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


@pytest.mark.usefixtures("runtime_off")
def test_a_give_up_landing_beside_a_renewal_is_not_undone_by_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal lands on the IO loop while a fold thread gives the lease up: the renewal
    read ``_held_until`` (still held), then the give-up ran (a renewal in flight: it leaves the
    release to it), then the renewal stored its new end. The lease was held again, with nobody
    folding, and never released (posters of other processes waited for it to expire)."""
    runtime, holder, leases = a_holder(store_spec)
    slot = Folder.__dict__["_held_until"]
    began, gave_up = threading.Event(), threading.Event()

    def give_up() -> None:
        holder._give_up_lease()
        gave_up.set()

    def read_then_give_up(core: Any) -> float:
        seen = slot.__get__(core)
        if core is holder and _sync.in_loop_thread() and core._renewing and not began.is_set():
            # As if the fold thread gave the lease up just after this read: on a thread of its
            # own, given a second (a give-up that must wait for the renewal's landing waits
            # all of it, and goes on once the renewal let it).
            began.set()
            threading.Thread(target=give_up).start()
            gave_up.wait(1.0)
        return seen

    monkeypatch.setattr(Folder, "_held_until", property(read_then_give_up, slot.__set__))
    # Past half its length (a fold renews it), not in its last quarter (the serving round would
    # give it up itself)
    holder._held_until = time.monotonic() + LEASE_SECONDS / 3
    assert holder.record is not None
    holder._renew_lease(holder.record.step)
    assert gave_up.wait(HANG), "the renewal did not land"
    deadline = time.monotonic() + HANG
    while holder._renewing or (holder._releasing is not None and not holder._releasing.done()):
        assert time.monotonic() < deadline, "the renewal or the release did not end"
        time.sleep(0.01)
    monkeypatch.undo()
    assert holder._held_until == -math.inf, "the renewal undid the give-up: the lease is held again"
    lease = _sync.sync(leases.read())
    assert lease.expires == 0, "the lease given up was not released"
    runtime.close()


@pytest.mark.usefixtures("runtime_off")
def test_a_lease_given_up_while_its_renewal_fails_is_released(store_spec: StoreSpec) -> None:
    """A give-up beside a renewal in flight leaves the release to the renewal; the renewal
    then failed (the store refused its put) and released nothing: the lease stayed held, with
    nobody folding, until it expired or the process shut down."""
    runtime, holder, leases = a_holder(store_spec)
    store = runtime.store
    assert isinstance(store, Switchable)
    sent, given_up = threading.Event(), threading.Event()
    inner_around = store._around

    async def refuse_the_renewal(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and key.endswith("/lease") and not sent.is_set():
            sent.set()
            await asyncio.to_thread(given_up.wait, HANG)
            raise RetryableStorageError("refused (injected)", key)
        return await inner_around(operation, key, run, **kw)

    store._around = refuse_the_renewal  # type: ignore[method-assign]
    holder._held_until = time.monotonic() + LEASE_SECONDS / 3  # (as in the test above)
    assert holder.record is not None
    holder._renew_lease(holder.record.step)
    assert sent.wait(HANG), "the renewal was not sent"
    holder._give_up_lease()
    given_up.set()
    deadline = time.monotonic() + HANG
    while holder._renewing or (holder._releasing is not None and not holder._releasing.done()):
        assert time.monotonic() < deadline, "the renewal or the release did not end"
        time.sleep(0.01)
    lease = _sync.sync(leases.read())
    assert lease.expires == 0, "the lease given up was not released after its renewal failed"
    runtime.close()

"""Review h137: the folder lease taken again by a fold thread while a renewal of the lease it
gave up is in flight. The renewal's landing must not speak for the newer take."""

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
from vactor_cloud.folding import Folder
from vactor_cloud.testing.lanes import StoreSpec


@pytest.mark.usefixtures("runtime_off")
def test_a_take_after_a_give_up_is_not_undone_by_the_renewal_it_refused(store_spec: StoreSpec) -> None:
    """A renewal in flight, the fold thread gives the lease up and takes it again (a call came):
    the take replaces the stored lease, so the renewal (if-match on the old one) is refused.
    Landing, the renewal read the refusal as "taken over by another process" and cleared our
    new take: held in the store, by us, with nobody folding and nobody releasing it (posters of
    other processes waited for it to expire)."""
    runtime, holder, leases = a_holder(store_spec)
    store = runtime.store
    assert isinstance(store, Switchable)
    sent, taken = threading.Event(), threading.Event()
    inner_around = store._around

    async def hold_the_renewal(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and key.endswith("/lease") and not sent.is_set():
            sent.set()
            await asyncio.to_thread(taken.wait, HANG)
        return await inner_around(operation, key, run, **kw)

    store._around = hold_the_renewal  # type: ignore[method-assign]
    holder._held_until = time.monotonic() + LEASE_SECONDS / 3  # (renewed by a fold, not given up)
    assert holder.record is not None
    holder._renew_lease(holder.record.step)
    assert sent.wait(HANG), "the renewal was not sent"
    holder._give_up_lease()
    try:
        assert holder._lease_for_fold(), "the lease given up was not taken again"
    finally:
        taken.set()
    taken_lease = holder._lease
    deadline = time.monotonic() + HANG
    while holder._renewing or (holder._releasing is not None and not holder._releasing.done()):
        assert time.monotonic() < deadline, "the renewal or the release did not end"
        time.sleep(0.01)
    stored = _sync.sync(leases.read())
    assert stored.valid() and stored.holder == taken_lease.holder, "the take did not stay in the store"
    assert holder._held_until != -math.inf, "the refused renewal cleared the take: held, nobody folding"
    assert holder._lease is taken_lease, "the refused renewal replaced the lease we took"
    runtime.close()


@pytest.mark.usefixtures("runtime_off")
def test_a_take_just_after_a_nearly_lapsed_lease_was_judged_is_not_given_up(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drainer leaving reads the lease's end (its last quarter: release it), and before it
    gives the lease up a new drainer, on another thread, takes the lease again (a call came).
    The give-up then gave up that fresh take: released in the store while its taker folds."""
    runtime, holder, leases = a_holder(store_spec)
    slot = Folder.__dict__["_held_until"]
    judged, taken = threading.Event(), threading.Event()
    leaving = threading.get_ident()

    def take() -> None:
        try:
            assert holder._lease_for_fold(), "the lease was not taken again"
        finally:
            taken.set()

    def read_then_take(core: Any) -> float:
        seen = slot.__get__(core)
        if core is holder and threading.get_ident() == leaving and not judged.is_set():
            judged.set()  # (as if the leaving thread were descheduled here)
            threading.Thread(target=take).start()
            assert taken.wait(HANG), "the take did not end"
        return seen

    nearly = Folder._release_nearly_lapsed_lease

    def only_here(
        core: Any,
    ) -> None:  # (a serving round's own give-up, on a pool thread, would race the take)
        if threading.get_ident() == leaving:
            nearly(core)

    monkeypatch.setattr(Folder, "_release_nearly_lapsed_lease", only_here)
    holder._held_until = time.monotonic() + LEASE_SECONDS / 10  # (in its last quarter)
    monkeypatch.setattr(Folder, "_held_until", property(read_then_take, slot.__set__))
    holder._release_nearly_lapsed_lease()
    monkeypatch.setattr(Folder, "_held_until", slot)
    assert judged.is_set() and taken.is_set()
    deadline = time.monotonic() + HANG
    while holder._releasing is not None and not holder._releasing.done():
        assert time.monotonic() < deadline, "the release did not end"
        time.sleep(0.01)
    assert holder._held_until != -math.inf, "the fresh take was given up"
    stored = _sync.sync(leases.read())
    assert stored.valid(), "the fresh take was released in the store while its taker folds"
    runtime.close()

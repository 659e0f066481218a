"""Inbox deletes that cannot delete a newer event (review-h156).

An event id's key is not unique per send: once an event left the inbox, its id may be sent
again (here: as another event, under another name, which the dedup table does not know). A
delete of the applied object that lands after that (a transport's retry of a DELETE whose
first attempt landed, or a delete that landed late after another's) deleted the new event
unapplied: an acknowledged send lost. Deletes of inbox objects are now conditional on the
version that was applied. Each test failed on the code it was written against.
"""

from __future__ import annotations

from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, inbox, inbox_events
from vactor_cloud.events import process_events, send_event
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto", "fakegcs")


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: Any) -> None:
        self.seen.append(("paid", payload))

    @vc.virtual_actor.on_event("refunded")
    def on_refunded(self, payload: Any) -> None:
        self.seen.append(("refunded", payload))

    @vc.virtual_actor.readonly
    def view(self) -> list[tuple[str, Any]]:
        return self.seen


class _ResentDuringDelete(FaultyStore):
    """The first delete of an inbox key meets a send of another event under its id: ``retry``
    (the DELETE lands, its answer is lost, the event is sent again, the transport sends the
    DELETE again) or ``late`` (another process deletes the applied object and the event is sent
    again, then this delete lands)."""

    def __init__(self, inner: Any, how: str, actor_id: str) -> None:
        super().__init__(inner, FaultConfig())
        self.how = how
        self.actor_id = actor_id
        self.resent = False

    async def _resend(self, key: str) -> None:
        self.resent = True
        event_id = key.rsplit("/", 1)[1]
        payload = inbox_events.serialize_payload(2, "json")
        new_key, data = inbox_events.encode_event(self.actor_id, event_id, "refunded", payload, "json", None)
        assert new_key == key
        await self.inner.put(key, data, mode="create")

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if operation != "delete" or self.resent or "/inbox/" not in key:
            return await super()._around(operation, key, run, batch=batch)
        if self.how == "late":
            await self.inner.delete(key)  # another process's delete of the applied object
            await self._resend(key)
            return await super()._around(operation, key, run, batch=batch)
        await super()._around(operation, key, run, batch=batch)  # landed; its answer is lost
        await self._resend(key)
        return await super()._around(operation, key, run, batch=batch)  # the transport's retry


@pytest.mark.parametrize("how", ["retry", "late"])
def test_a_delete_landing_after_the_id_was_sent_again_leaves_the_new_event(
    actor_store: StoreSpec, how: str
) -> None:
    runtime = vc.get_runtime()
    store = runtime.store = _ResentDuringDelete(runtime.store, how, "led")
    ledger = Ledger.get_or_create("led")
    send_event("led", "paid", 1, event_id="evt-x")
    assert process_events("led") == 1
    _sync.sync(runtime.core("led").inbox.wait_deleted())  # type: ignore[attr-defined]
    assert store.resent
    # The second event was acknowledged (its create-only put landed): it must be applied.
    assert process_events("led") == 1
    assert ledger.view.run() == [("paid", 1), ("refunded", 2)]


# -- a cached event replaced under its key ----------------------------------------------------------
def _replace_by_hand(store: Any, actor_id: str, event_id: str) -> None:
    """Delete the event at ``event_id``'s key (by hand: unapplied) and send another under the id."""
    key = inbox.inbox_key(actor_id, event_id)
    payload = inbox_events.serialize_payload(2, "json")
    _, data = inbox_events.encode_event(actor_id, event_id, "refunded", payload, "json", None)
    _sync.sync(store.delete(key))
    _sync.sync(store.put(key, data, mode="create"))


def test_a_cached_event_replaced_under_its_key_is_read_again_by_the_next_listing(
    actor_store: StoreSpec,
) -> None:
    """A listing read only the keys it did not hold: an event deleted by hand (unapplied) and
    another sent under its id before this process listed again stayed cached as the old one,
    which the next fold applied (and the new one was then taken for it, applied). A listing
    that names each object's version (S3's ETag, GCS's generation, the memory store's) now
    drops a held event whose object has another version and reads it again; the local store's
    names the version of each object this store read (review-h166: it named none, and this
    failed there)."""
    runtime = vc.get_runtime()
    ledger = Ledger.get_or_create("swap")
    send_event("swap", "paid", 1, event_id="evt-s")
    held = runtime.core("swap").inbox  # type: ignore[attr-defined]
    _sync.sync(held._refresh())  # listed and read: held in this process's cache
    assert [e.name for e in held._known.values()] == ["paid"]
    _replace_by_hand(runtime.store, "swap", "evt-s")
    assert process_events("swap") == 1
    assert ledger.view.run() == [("refunded", 2)]


def test_a_listing_that_names_versions_reads_no_held_event_again(actor_store: StoreSpec) -> None:
    """(Pin.) The versions a listing names are the ones a read returns (S3's ETag, quoted alike;
    GCS's generation): were they written differently, every listing dropped every held event
    and read it again, a GET per pending event per listing."""
    runtime = vc.get_runtime()
    Ledger.get_or_create("held")
    for n in range(3):
        send_event("held", "paid", n, event_id=f"evt-{n}")
    held = runtime.core("held").inbox  # type: ignore[attr-defined]
    _sync.sync(held._refresh())
    assert len(held._known) == 3
    before = runtime.store.requests["get"]
    _sync.sync(held._refresh())
    assert runtime.store.requests["get"] == before
    assert len(held._known) == 3

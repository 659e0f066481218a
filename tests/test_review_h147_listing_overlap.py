"""Review h147: two inbox listings of one process overlapping (the periodic one beside commits,
and a fold's own). A listing that began before the other ended knows less than it: found in
the mutation sweep of the inbox (see ``test_review_h147_inbox_sweep``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, events, inbox
from vactor_cloud.dedup import StepDedup
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def add(self, token: str) -> int:
        self.seen.append(token)
        return len(self.seen)

    @vc.virtual_actor.on_event("ring")
    def on_ring(self, payload: str) -> None:
        self.seen.append(payload)

    @vc.virtual_actor.readonly
    def log(self) -> list[str]:
        return list(self.seen)


class _HeldListing(FaultyStore):
    """Listings of several pages. The next inbox listing, once ``hold`` is set, starts and waits
    until ``release`` (2 s at most: a listing that another waits for ends by itself); it then
    answers what is there but ``hidden`` (that event landed behind its cursor while it ran: it
    started before the event was sent)."""

    def __init__(self, inner: Any, hidden: str) -> None:
        super().__init__(inner, FaultConfig())
        self.hidden = hidden
        self.hold = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        return not keys

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if operation != "list" or not key.endswith("/inbox/") or not self.hold:
            return await super()._around(operation, key, run, batch=batch)
        self.hold = False
        self.holding.set()
        give_up = time.monotonic() + 2.0
        while not self.release.is_set() and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        result = await super()._around(operation, key, run, batch=batch)
        return [k for k in result if not k.endswith("/" + self.hidden)]


@pytest.mark.usefixtures("runtime_off")
def test_a_listing_that_began_before_another_ended_does_not_forget_what_that_one_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect (failed before the fix: ``e1`` applied before ``e0``). The periodic listing
    starts; a sender sends ``e0`` then ``e1``; the periodic listing, still running, sees ``e1``
    ahead of its cursor but not ``e0`` behind it. Meanwhile ``process_events`` lists twice,
    finding both, and while its fold read the idempotency table the periodic listing ended: it
    took ``e0`` for gone (deleted) and dropped it, and the fold applied ``e1`` alone, before
    ``e0`` (docs/events.md: one sender's events apply in the order it sent them). Now a
    process's listings of an inbox take turns: each one knows what every earlier one found."""
    store_spec.init()
    runtime = vc.get_runtime()
    held = _HeldListing(runtime.store, hidden="e0")
    runtime.store = held
    tally = Tally.get_or_create("a")
    tally.add.run("me")
    box = events._inbox(runtime, "a")
    held.hold = True
    periodic = _sync.submit(box._refresh())  # (as ``_list_in_background`` starts it)
    assert held.holding.wait(30)
    vc.send_event("a", "ring", "e0", event_id="e0")
    vc.send_event("a", "ring", "e1", event_id="e1")

    class ReadSlowly(StepDedup):
        async def load(self) -> StepDedup:
            held.release.set()  # the periodic listing ends while the fold reads the table
            await asyncio.sleep(0.2)
            return await super().load()

    monkeypatch.setattr(inbox, "StepDedup", ReadSlowly)
    tally.process_events()
    periodic.result(30)
    monkeypatch.undo()
    tally.process_events()
    assert tally.log.run() == ["me", "e0", "e1"]

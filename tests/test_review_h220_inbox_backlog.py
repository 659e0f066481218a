"""Hostile review h220: an actor with a backlog of events no handler takes (kept by design).

What a process holds for them grows with the backlog, not with the calls made: after the
listing that read them, each warm call of this, the only writer, is one step PUT and touches
the inbox not at all, and the inbox's cache holds the same events, each without its payload,
after 40 calls as after the listing. (What the backlog costs each commit, and how to drain
one: docs/concepts.md, "Bounded memory".)
"""

from __future__ import annotations

import pytest
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.testing.lanes import StoreSpec

BACKLOG = 300


@vc.virtual_actor
class Keeper:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    @vc.virtual_actor.on_event("handled")
    def handled(self, payload: object) -> None:
        self.n += 1


def _held(inbox: ActorInbox) -> dict[str, int]:
    """How many entries each of the inbox's per-event records holds (not ``_fresh``: each fold
    begins it anew)."""
    names = ("_known", "_deleting", "_doomed", "_excluded", "_damaged", "_unconfirmed")
    return {name: len(getattr(inbox, name)) for name in names}


@pytest.mark.vactor_lanes("memory", "local")
def test_a_backlog_of_unhandled_events_costs_one_put_a_call_and_holds_no_more_with_calls(
    actor_store: StoreSpec,
) -> None:
    init(actor_store, inbox_interval=3600.0)  # (no periodic listing during the calls)
    keeper = Keeper.get_or_create("backlog")
    for i in range(BACKLOG):
        vc.send_event("backlog", "nobody", {"i": i, "pad": "x" * 100}, event_id=f"e{i:04}")
    assert keeper.process_events() == 0
    inbox = vc.get_runtime().core("backlog").inbox
    assert len(inbox._known) == BACKLOG
    assert all(event.stripped and not event.payload for event in inbox._known.values())
    held = _held(inbox)
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        for _ in range(40):
            keeper.add.run(1)
    assert [r.kind for r in trace.on_path() if "/inbox/" in r.key] == [], trace.on_path()
    assert [r.kind for r in trace.on_path() if "/steps/" in r.key] == ["put"] * 40, trace.on_path()
    assert _held(inbox) == held
    assert len(inbox._known) == BACKLOG
    assert all(event.stripped and not event.payload for event in inbox._known.values())

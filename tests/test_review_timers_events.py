"""Durable timers and external events, from a hostile review (review-h44): each test failed on
the code it was written against."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, inbox
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Mailbox:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    @vc.virtual_actor.on_event("blob")
    def on_blob(self, payload: Any) -> int:
        self.sizes.append(len(payload))
        return len(self.sizes)

    @vc.virtual_actor.readonly
    def view(self) -> list[int]:
        return self.sizes


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()


def inbox_keys(actor_id: str) -> list[str]:
    return _sync.sync(inbox.list_inbox(vc.get_runtime().store, actor_id))


# -- a huge event payload ---------------------------------------------------------------------------
@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_an_event_payload_past_the_limit_is_refused_before_anything_is_written(
    spec: StoreSpec, serializer: str
) -> None:
    # An event is read whole by every process that lists the actor's inbox (its place in the
    # order is inside it): one of gigabytes was stored, and every writer of the actor then read
    # it into memory at its first commit. A payload is held to what one commit folds.
    Mailbox.get_or_create("big")
    limit = inbox.MAX_EVENT_PAYLOAD_BYTES
    with pytest.raises(ValueError, match=r"payload.*bytes"):
        vc.send_event("big", "blob", "x" * (limit + 1), serializer=serializer)
    assert inbox_keys("big") == []
    # (at the limit, less the serializer's framing, it is taken)
    vc.send_event("big", "blob", "x" * (limit - 64), serializer=serializer)
    assert Mailbox.get_or_create("big").view.run() == [] and len(inbox_keys("big")) == 1

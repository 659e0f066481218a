"""Hostile review: memory stays bounded in a long-lived process.

Each test measures a process-lifetime structure after many actors, stores or calls, with a
bound the library keeps; each failed before its fix.
"""

from __future__ import annotations

import gc

import pytest

import vactor_cloud as vc
from vactor_cloud import events, mailkey
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_a_store_that_posted_is_freed_with_its_runtime(store_spec: StoreSpec) -> None:
    """The mail keys are remembered per store object, weakly keyed; each MailKeys held its store
    strongly, so the entry (and the store: its transport, its pools) never went. A process that
    inits a runtime per job (or ``subtask`` workers adopting one per recipe) kept every store
    whose actors ever posted."""
    before = len(mailkey._KEYS)
    for _ in range(200):
        store_spec.init()
        vc.get_runtime().core("poster")._posts()  # the first post of an actor makes its PostBox
        vc.shutdown()
    gc.collect()
    assert len(mailkey._KEYS) - before <= 2


@vc.virtual_actor
class Inbox:
    def __init__(self) -> None:
        self.seen = 0

    @vc.virtual_actor.on_event("ping")
    def on_ping(self, payload: object) -> int:
        self.seen += 1
        return self.seen


@pytest.mark.usefixtures("runtime_off")
def test_sending_events_to_many_actors_remembers_a_bounded_number_of_them(store_spec: StoreSpec) -> None:
    """``send_event`` remembers which actors it found to exist (a LIST saved on the next send):
    one entry per actor id ever sent to, for the runtime's life, however few actors are cached."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cached_actors=10))
    ids = [f"inbox-{i}" for i in range(200)]
    for actor_id in ids:
        Inbox.get_or_create(actor_id)
    for actor_id in ids:
        events.send_event(actor_id, "ping", 1)
    runtime = vc.get_runtime()
    assert len(events._existing.get(runtime, ())) <= 10
    assert events.process_events(ids[0]) == 1  # (still delivered, to an actor no longer remembered)

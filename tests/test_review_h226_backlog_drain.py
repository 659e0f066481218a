"""Hostile review h226: draining a backlog of events the actor applies.

A commit that applies part of a backlog looks at the events it applies (and the ones its
turn skips), not at the whole backlog: counted, the work of a commit is the same with a
backlog of 100 as of 400. A drain whose reads of the backlog take longer than
``Settings.deadline`` reads it over several commits, each within the deadline, and applies it
in order, each event once; a listing that fails part way applies none of what it read before
the rest is read (an unread event may go first). Two drainers at once apply each event once,
in order. (docs/concepts.md, "Bounded memory".)
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from store_helpers import init, other_process
from test_review_events import Tape, drain_on, drain_together, inbox_ids
from test_review_h222_backlog_work import Backlogged, _Looks

import vactor_cloud as vc
from vactor_cloud import _sync, inbox_events
from vactor_cloud import inbox as inbox_module
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.events import process_events, process_events_async
from vactor_cloud.runtime import Runtime
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.lanes import StoreSpec


def _put_events(runtime: Runtime, actor_id: str, ids: list[str]) -> None:
    """Events ``handled`` with payloads 0, 1, ... under ``ids``, sent in that order by another
    process (this one is not told: its next commit does not list the inbox for them)."""
    signing_key = runtime.settings.signing_key
    for n, event_id in enumerate(ids):
        key, data = inbox_events.encode_event(actor_id, event_id, "handled", b"%d" % n, "json", signing_key)
        _sync.sync(inbox_events.put_event(runtime.store, key, data, name="handled", signing_key=signing_key))


def _slow_inbox_reads(monkeypatch: pytest.MonkeyPatch, store: ObjectStore, seconds: float) -> None:
    """Each GET of an inbox object through ``store`` takes ``seconds`` longer."""
    get = store.get

    async def slow_get(key: str) -> object:
        if "/inbox/" in key:
            await asyncio.sleep(seconds)
        return await get(key)

    monkeypatch.setattr(store, "get", slow_get)


@pytest.mark.vactor_lanes("memory", "local")
def test_a_commit_that_drains_a_backlog_looks_at_what_it_applies_not_at_the_backlog(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five warm commits, each applying 8 events of a backlog of 100 or of 400 (listed by the
    commit before them): the events they look at (order, dedup key, refusal, ordering) and the
    tables they read are as many for both. Then the backlog drains in order."""
    runtime = init(actor_store, inbox_interval=3600.0)  # (no periodic listing during the calls)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 8)
    looks = _Looks(monkeypatch)
    per_backlog = {}
    for size in (100, 400):
        actor_id = f"drained-{size}"
        actor = Backlogged.get_or_create(actor_id)
        _put_events(runtime, actor_id, [f"e{n:04}" for n in range(size)])
        inbox = runtime.core(actor_id).inbox
        inbox.signal()  # (the next commit lists the inbox first)
        assert actor.add.run(1) == 1  # lists, and applies the first 8
        looks.count = 0
        for _ in range(5):
            assert actor.add.run(1) == 1
        per_backlog[size] = looks.count
        assert actor.process_events() == size - 48
        assert actor.got.run() == list(range(size))
    assert per_backlog[100] == per_backlog[400], per_backlog


@pytest.mark.vactor_lanes("memory", "local")
def test_a_drain_lists_the_inbox_as_often_for_a_backlog_of_400_as_of_100(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``process_events`` over a backlog, 8 events a commit (13 and 50 commits): its first commit
    lists the inbox; the others go on with what that listing read (nobody else commits), so
    the LIST requests, and what the drain reads, do not grow with the commits."""
    runtime = init(actor_store, inbox_interval=3600.0)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 8)
    lists, gets = {}, {}
    for size in (100, 400):
        actor_id = f"listed-{size}"
        actor = Backlogged.get_or_create(actor_id)
        _put_events(runtime, actor_id, [f"e{n:04}" for n in range(size)])
        with RequestTrace(runtime.store).installed() as trace:
            assert actor.process_events() == size
        inbox_requests = [r.kind for r in trace.requests if "/inbox/" in r.key]
        lists[size] = inbox_requests.count("list")
        gets[size] = inbox_requests.count("get")
        assert actor.got.run() == list(range(size))
    assert lists[100] == lists[400] <= 2, lists  # (2: a listing that is no one moment is confirmed)
    # (each event read once by the listing, and again when its turn comes: those past the
    # first commit's, whose payloads the listing did not hold)
    assert gets == {size: 2 * size - 8 for size in (100, 400)}, gets


@pytest.mark.vactor_lanes("memory", "local")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_drain_whose_reads_outlast_the_deadline_applies_the_backlog_in_order_each_once(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """Each read of an event takes 0.35 s (32 at a time): reading all 200 takes 2.45 s, past a
    deadline of 2 s; and each delete request (a round of 16 at most) 0.5 s: deleting the 200
    takes 6.5 s. The drain reads them over several commits, each within the deadline,
    applies them (all 200, in order, each once; 32 a commit, whose re-reads take 0.35 s: the
    rest of the deadline is the margin of a loaded host), and waits for their deletes a round
    at a time."""
    runtime = init(actor_store, inbox_interval=3600.0, deadline=2.0)
    monkeypatch.setattr(inbox_module, "_READ_SLICE", inbox_events.FETCH_CONCURRENCY)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 32)
    actor = Backlogged.get_or_create("slow")
    count = 200
    for n in range(count):
        vc.send_event("slow", "handled", n, event_id=f"e{n:04}")
    store = runtime.store
    delete_unchanged = store.delete_unchanged

    async def slow_delete(versions: dict[str, str]) -> None:
        await asyncio.sleep(0.5)
        await delete_unchanged(versions)

    _slow_inbox_reads(monkeypatch, store, 0.35)
    monkeypatch.setattr(store, "delete_unchanged", slow_delete)
    monkeypatch.setattr(store, "delete_parallel", 16)
    monkeypatch.setattr(store, "delete_batch", 1)
    if twin == "sync":
        assert actor.process_events() == count
    else:
        assert asyncio.run(process_events_async("slow")) == count
    assert inbox_ids("slow") == []
    monkeypatch.undo()
    assert actor.got.run() == list(range(count))
    assert actor.process_events() == 0


@pytest.mark.vactor_lanes("memory", "local")
def test_the_listing_beside_commits_reads_on_until_every_listed_event_is_read(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic listing, begun beside a commit, reads for its share of the deadline, and
    lists again until it has read every event (as the listings of commits would, but with no
    commit made meanwhile); then its follow-up commit applies them, in order."""
    runtime = init(actor_store, inbox_interval=3600.0, deadline=2.0)
    monkeypatch.setattr(inbox_module, "_READ_SLICE", inbox_events.FETCH_CONCURRENCY)
    actor = Backlogged.get_or_create("beside")
    assert actor.add.run(1) == 1
    _put_events(runtime, "beside", [f"e{n:04}" for n in range(200)])
    inbox = runtime.core("beside").inbox
    _slow_inbox_reads(monkeypatch, runtime.store, 0.35)  # (all 200: 2.45 s; half a second a listing)
    inbox._listed_at = -math.inf  # (as if inbox_interval had passed)
    assert actor.add.run(1) == 1  # (the listing begins beside this commit)
    for _ in range(600):  # bounded: 200 events read 32 at a time, 0.35 s a read
        if inbox._background is None:
            break
        time.sleep(0.05)
    assert inbox._background is None
    assert not inbox._unread
    monkeypatch.undo()
    assert actor.got.run() == list(range(200))


@pytest.mark.vactor_lanes("memory", "local")
def test_a_listing_that_fails_part_way_applies_none_of_what_it_read(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 events sent in one order under ids that list in the opposite one; the listing's reads
    fail after the first 16 (the last 16 sent). None of those is applied before the rest is
    read: the next commit reads them and applies all 64 in the order sent."""
    runtime = init(actor_store, inbox_interval=3600.0)
    monkeypatch.setattr(inbox_module, "_READ_SLICE", 16)
    actor = Backlogged.get_or_create("partway")
    assert actor.process_events() == 0  # (a listing: the cache is trusted from here on)
    _put_events(runtime, "partway", [f"k{63 - n:02}" for n in range(64)])
    store = runtime.store
    get = store.get
    reads = 0

    async def failing_get(key: str) -> object:
        nonlocal reads
        if "/inbox/" in key:
            reads += 1
            if reads > 16:
                raise RetryableStorageError("injected: the store went away", key)
        return await get(key)

    monkeypatch.setattr(store, "get", failing_get)
    with pytest.raises(RetryableStorageError, match="injected"):
        actor.process_events()
    monkeypatch.undo()
    assert actor.got.run() == list(range(64))


@pytest.mark.vactor_lanes("memory", "local")
def test_two_drainers_at_once_apply_each_event_once_in_order(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process's ``process_events`` (commits of 16 events, from its cache while nobody else
    commits) and another process's drains, at once, on 300 events: each applied once, in send
    order, and the inbox ends empty."""
    init(actor_store, inbox_interval=3600.0)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 16)
    count = 300
    Tape.get_or_create("tape")
    for n in range(count):
        vc.send_event("tape", "n", {"n": n}, event_id=f"n{n:04d}")
    other = other_process(actor_store, inbox_interval=3600.0)
    try:
        drain_together("tape", [lambda: process_events("tape"), lambda: drain_on(other, "tape")])
    finally:
        other.close()
    assert process_events("tape") == 0
    assert vc.get_actor("tape").view.run() == list(range(count))
    assert inbox_ids("tape") == []

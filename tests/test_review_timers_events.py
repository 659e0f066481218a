"""Durable timers and external events, from a hostile review (review-h44): each test failed on
the code it was written against."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, inbox, timer_report, timer_runner
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
def spec(actor_store: StoreSpec) -> StoreSpec:
    """``actor_store``: vactor_cloud started on a fresh store of the lane, shut down after."""
    return actor_store


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


# -- many timers due at once ------------------------------------------------------------------------
@vc.virtual_actor
class Alarm:
    def __init__(self) -> None:
        self.rang = 0

    def arm_at(self, at: float, count: int) -> None:
        for n in range(count):
            vc.current_call().schedule("ring", at=at, key=f"at{n}")

    def ring(self) -> None:
        self.rang += 1

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.rang


def _count_listings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The entries each listing of the due index by ``timer_runner`` returned, from now on."""
    listed: list[int] = []
    real = timer_runner.list_index

    async def counting(*args: Any, **kwargs: Any) -> list[Any]:
        found = await real(*args, **kwargs)
        listed.append(len(found))
        return found

    monkeypatch.setattr(timer_runner, "list_index", counting)
    return listed


def test_a_tick_over_a_backlog_holds_a_bounded_slice_of_the_index_and_fires_it_all(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cron tick after an outage met every due entry in one listing: a backlog of millions was
    # held in memory at once (the long-running runner takes it a slice at a time).
    monkeypatch.setattr(timer_runner, "_MAX_LISTED", 5)
    listed = _count_listings(monkeypatch)
    for n in range(4):  # (due a while ago: a due time in this millisecond is rounded up past now)
        Alarm.get_or_create(f"alarm-{n}").arm_at.run(time.time() - 10, 3)
    report = timer_runner.fire_due_timers()
    assert report.fired == 12 and not report.errors
    assert [Alarm.get_or_create(f"alarm-{n}").peek.run() for n in range(4)] == [3, 3, 3, 3]
    assert max(listed) <= 5
    assert timer_runner.fire_due_timers().fired == 0


def test_a_running_runner_fires_its_shard_behind_a_slice_of_another_shards_backlog(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-running runner listed only the earliest slice of due entries each poll: when a
    # shard's runner was down long enough for its entries to fill that slice, every other
    # shard's runner saw only those and fired nothing of its own, for as long as the outage.
    monkeypatch.setattr(timer_runner, "_MAX_LISTED", 5)
    listed = _count_listings(monkeypatch)
    ids = [f"alarm-{n}" for n in range(40)]
    theirs = [a for a in ids if timer_runner._shard_of(a, 2) == 1][:4]
    mine = [a for a in ids if timer_runner._shard_of(a, 2) == 0][:2]
    now = time.time()
    for actor_id in theirs:  # 8 entries of the shard nobody serves, due first
        Alarm.get_or_create(actor_id).arm_at.run(now - 100, 2)
    for actor_id in mine:
        Alarm.get_or_create(actor_id).arm_at.run(now - 50, 1)
    stop = threading.Event()
    runner = threading.Thread(
        target=timer_runner.run_timers, kwargs={"poll": 0.05, "stop": stop, "shard": (0, 2)}
    )
    runner.start()
    try:
        for _ in range(200):  # (bounded: 10 s)
            if all(Alarm.get_or_create(a).peek.run() == 1 for a in mine):
                break
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30)
    assert [Alarm.get_or_create(a).peek.run() for a in mine] == [1, 1]
    assert [Alarm.get_or_create(a).peek.run() for a in theirs] == [0] * len(theirs)
    # (slices of 5, the bound set, read by timer_runner: with the default one, 10 at once, and
    # the shard's own entries were in the first listing whether or not it listed past a slice)
    assert max(listed) == 5, listed


def test_a_tick_over_a_backlog_keeps_a_bounded_number_of_lateness_figures(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tick's report held a lateness figure per timer fired (and an error per entry that
    # failed): a million for a backlog of a million. It keeps the newest, as run()'s totals do,
    # the counts and the largest lateness whole.
    monkeypatch.setattr(timer_runner, "_MAX_LISTED", 5)
    monkeypatch.setattr(timer_report, "_TOTAL_LATENESS", 4)
    held: list[int] = []  # the report's lateness figures as each slice began
    real = timer_runner.TimerRunner._fire_slice

    def noted(self: Any, entries: Any, report: timer_runner.TickReport, *args: Any, **kwargs: Any) -> None:
        held.append(len(report.lateness))
        real(self, entries, report, *args, **kwargs)

    monkeypatch.setattr(timer_runner.TimerRunner, "_fire_slice", noted)
    for n in range(4):
        Alarm.get_or_create(f"late-{n}").arm_at.run(time.time() - 10 - n, 3)
    report = timer_runner.fire_due_timers()
    assert report.fired == 12 and len(report.lateness) == 4
    assert report.max_lateness is not None and report.max_lateness >= 13
    # (three slices of at most 5: trimmed as each ended, not only at the tick's end)
    assert len(held) == 3 and max(held) <= 4, held


# -- waiting for a name no event can have -------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "a\nb", "x" * 256])
def test_wait_for_event_refuses_a_name_no_event_can_have_instead_of_waiting_for_ever(
    spec: StoreSpec, name: str
) -> None:
    # send_event and on_event refuse such a name, so no event of it is ever applied: the wait
    # polled until its timeout (without one, for ever).
    handle = Mailbox.get_or_create("named")
    with pytest.raises(ValueError, match="event name"):
        handle.wait_for_event(name, timeout=0.2)
    with pytest.raises(ValueError, match="event name"):
        _sync.sync(handle.wait_for_event_async(name, timeout=0.2))


# -- forged index entries ----------------------------------------------------------------------------
def test_forged_index_entries_fire_nothing_and_are_dropped_without_errors(spec: StoreSpec) -> None:
    # (A pin, not a fix: entries naming an actor that does not exist, a key the actor's table
    # does not hold, or the generation of a step that does not exist, due long ago.)
    from vactor_cloud import keys
    from vactor_cloud.timers import list_index

    store = vc.get_runtime().store
    real = Alarm.get_or_create("real")
    real.arm_at.run(time.time() + 3600, 1)  # pending, not due
    long_ago = int((time.time() - 60) * 1000)
    forged = [
        keys.timer_index_key(long_ago, "nobody", "at0", 1),
        keys.timer_index_key(long_ago, "real", "at0", 999),  # its key, not its due time
        keys.timer_index_key(long_ago, "real", "at0"),
        keys.timer_index_key(long_ago, "real", "nope", 2),
    ]
    for key in forged:
        _sync.sync(store.put(key, b""))
    report = timer_runner.fire_due_timers()
    assert (report.fired, report.stale, report.errors) == (0, 4, [])
    assert real.peek.run() == 0 and [t["key"] for t in real.timers()] == ["at0"]
    assert [e.actor_id for e in _sync.sync(list_index(store))] == ["real"]  # its own entry stays

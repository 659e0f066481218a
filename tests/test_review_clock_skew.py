"""Clock skew between processes, from a review (review-h115): one process's wall clock ahead
or behind by seconds or minutes (within ``lease.CLOCK_SKEW``), where a comparison crosses
machines. Each test says whether it failed on the code it was written against (a defect,
fixed) or pins a guarantee that already held (then it names what was broken by hand to see it
fail). The older clock tests are in test_review_clocks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_review_deleted_leftovers import Till
from timer_workers import Alarm

import vactor_cloud as vc
from vactor_cloud import _sync, inbox_events, keys, timer_membership
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_real_time = time.time


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    store_spec.init(settings=vc.Settings(storage=""))
    yield store_spec
    vc.shutdown()


def _inbox_deletes_lost(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on (until ``monkeypatch`` is undone) no inbox object is deleted: the writer
    that applies an event dies between its commit and the event's delete."""
    delete_many = store.delete_many

    async def lost(keys: list[str], *args: Any, **kwargs: Any) -> Any:
        return await delete_many([k for k in keys if "/inbox/" not in k], *args, **kwargs)

    delete_unchanged = store.delete_unchanged

    async def unchanged_lost(versions: dict[str, str]) -> Any:  # (the inbox's deletes)
        return await delete_unchanged({k: v for k, v in versions.items() if "/inbox/" not in k})

    monkeypatch.setattr(store, "delete_many", lost)
    monkeypatch.setattr(store, "delete_unchanged", unchanged_lost)


# -- an event the deleted actor applied, sent from a clock ahead -----------------------------------
@pytest.mark.parametrize("ahead", [2.0, 120.0])
def test_an_event_sent_from_a_clock_ahead_and_applied_is_not_applied_again_by_the_next_actor(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ahead: float
) -> None:
    """Defect (failed before the fix: the next actor's total was 30, the old actor's payment
    counted again). The delete's clean-up (and the next creation) deletes the inbox objects of
    events the deleted actor applied that a writer dying after its commit left behind; it told
    them from an event sent again for the next actor by the sender's stamp, ``e.time <=
    base.time`` (the old actor's last step): two clocks. An event from a sender whose clock
    ran ahead by seconds, applied in the actor's last step, was stamped after that step, left,
    and applied again by the next actor. Now an event stamped after the step but within
    ``CLOCK_SKEW`` of it is looked up by its call id in the actor's last steps: applied there,
    it goes; an event sent again for the next actor (another call id) stays."""
    store = vc.get_runtime().store
    old = Till.get_or_create("till-skew")
    monkeypatch.setattr(inbox_events, "_clock", inbox_events._SenderClock())  # (a sending process of its own)
    monkeypatch.setattr(time, "time", lambda: _real_time() + ahead)
    vc.send_event("till-skew", "pay", {"amount": 30}, event_id="e1")
    monkeypatch.setattr(time, "time", _real_time)
    with monkeypatch.context() as patch:
        _inbox_deletes_lost(store, patch)
        old.process_events()
    assert old.total.run() == 30
    assert _sync.sync(store.list("actors/till-skew/inbox/")) == ["actors/till-skew/inbox/e1"]
    assert vc.delete_actor("till-skew") is True
    new = Till.get_or_create("till-skew")
    new.process_events()
    assert new.total.run() == 0
    assert _sync.sync(store.list("actors/till-skew/inbox/")) == []


@pytest.mark.parametrize("skew", [0.0, -2.0, -120.0], ids=["honest", "2s-behind", "2min-behind"])
def test_an_event_sent_again_for_the_next_actor_is_applied_by_it_whatever_its_senders_clock(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """Defect for a clock behind (failed before the fix, "2min-behind" and "2s-behind": the
    next actor's total was 0, the event deleted unapplied); the honest clock pins what held.
    The old actor applied ``e1`` (its object deleted after the commit, as normally); ``e1`` is
    sent again, and the actor deleted before any fold: that object is no event the old actor
    applied, and waits for the next actor like any event sent before its creation. The
    clean-up told it by its stamp against the old actor's last step: from a sender whose
    clock ran behind, it was stamped before that step and deleted unapplied. Told by its call
    id now (none of the old actor's steps applied this object), it stays, whatever the
    sender's clock reads (within ``CLOCK_SKEW``)."""
    store = vc.get_runtime().store
    old = Till.get_or_create("till-again")
    vc.send_event("till-again", "pay", {"amount": 30}, event_id="e1")
    old.process_events()
    assert old.total.run() == 30
    assert _sync.sync(store.list("actors/till-again/inbox/")) == []
    monkeypatch.setattr(inbox_events, "_clock", inbox_events._SenderClock())  # (a sending process of its own)
    monkeypatch.setattr(time, "time", lambda: _real_time() + skew)
    vc.send_event("till-again", "pay", {"amount": 7}, event_id="e1")
    monkeypatch.setattr(time, "time", _real_time)
    assert vc.delete_actor("till-again") is True
    new = Till.get_or_create("till-again")
    new.process_events()
    assert new.total.run() == 7


# -- idempotency keys, retried by a process whose clock runs ahead ---------------------------------
@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.entries: list[str] = []

    def add(self, entry: str) -> int:
        self.entries.append(entry)
        return len(self.entries)

    @vc.virtual_actor.readonly
    def all(self) -> list[str]:
        return list(self.entries)


@pytest.mark.parametrize("ahead", [2.0, 60.0, 299.0])
def test_a_retry_within_the_age_window_by_a_clock_ahead_is_not_applied_twice(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ahead: float
) -> None:
    """Defect (failed before the fix for 60 s and 299 s ahead: "k0" applied twice). The window
    keeps a key among the newest ``max_keys`` or younger than ``max_age``, the age being the
    retrying committer's clock minus the recording one's. A key recorded 590 s ago (its
    recorder's clock set back by that: no test waits) and retried by a process whose clock
    runs a minute ahead, in a window of 600 s, read 650 s old: past the newest ``max_keys``,
    dropped, its call applied again inside the window. Keys are now kept ``min(max_age,
    CLOCK_SKEW)`` longer by the committer's clock: a retry within ``max_age`` is answered
    whatever the clocks read, as long as they are within that of each other."""
    spec.init(settings=vc.Settings(storage="", dedup_window=(1, 600.0)))
    ledger = Ledger.get_or_create("ledger")
    monkeypatch.setattr(time, "time", lambda: _real_time() - 590.0)  # recorded 590 s ago
    assert ledger.add.options(idempotency_key="k0").run("k0") == 1
    assert ledger.add.options(idempotency_key="k1").run("k1") == 2  # k0 no longer the newest
    monkeypatch.setattr(time, "time", lambda: _real_time() + ahead)  # the retrier's clock
    assert ledger.add.options(idempotency_key="k0").run("k0") == 1
    assert ledger.add.run("plain") == 3  # (a commit by that clock: the table it writes keeps k0)
    monkeypatch.setattr(time, "time", _real_time)
    assert ledger.add.options(idempotency_key="k0").run("k0") == 1
    assert ledger.all.run() == ["k0", "k1", "plain"]


# -- timers: a dead runner's heartbeat stamped ahead -----------------------------------------------
def test_a_dead_runners_heartbeat_stamped_minutes_ahead_holds_its_share_only_until_it_expires(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin (held; made to fail by ``Membership._read`` returning a live heartbeat as live
    and never to be read again, ``_Seen(math.inf, ..., math.inf)``): a runner whose clock
    ran 200 s ahead wrote its heartbeat (expiry: its clock plus a 30 s lease) and died.
    Within ``lease + CLOCK_SKEW`` of the reader's clock it counts as live, and the actor
    rendezvous hashing gives it is fired by no one; but only until that expiry by the
    reader's clock (its lease plus its skew), after which a tick fires the timer once, and
    never again."""
    ghost_id = "ghost-ahead"
    actor_id = next(
        f"a{i}" for i in range(1000) if timer_membership.owner_of(f"a{i}", (ghost_id, "me")) == ghost_id
    )
    store = vc.get_runtime().store
    alarm = Alarm.get_or_create(actor_id)
    assert alarm.arm.run(["t"], 0.0) == 1
    written = _real_time()
    ghost = {"runner": ghost_id, "until": written + 200.0 + 30.0, "lease": 30.0, "group": "all"}
    _sync.sync(store.put(keys.timer_runner_key(ghost_id), json.dumps(ghost).encode()))
    assert vc.fire_due_timers(runner_id="me").fired == 0  # its share, while it reads live
    shift = [200.0]
    monkeypatch.setattr(time, "time", lambda: _real_time() + shift[0])
    assert vc.fire_due_timers(runner_id="me").fired == 0  # still (30 s before its expiry)
    shift[0] = 231.0 + (_real_time() - written)
    assert vc.fire_due_timers(runner_id="me").fired == 1  # expired: the share is ours
    assert vc.fire_due_timers(runner_id="me").fired == 0
    assert Alarm.get_or_create(actor_id).counts.run() == {"t": 1}


# -- local store: a temp-file sweep by a clock stepped hours ahead ---------------------------------
@pytest.mark.vactor_lanes("local")
def test_a_temp_sweep_by_a_clock_stepped_hours_ahead_during_a_commit_loses_no_call(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin (held; made to fail by ``ActorLog.put_step_now`` raising its first put's
    ``StorageError`` instead of reading the step back and putting again): a compaction's
    sweep removes ``.tmp-*`` files older than an hour by its clock. One running on this
    machine just after its clock was stepped two hours ahead (a VM resumed from suspend)
    removes a writer's temp file between its write and its link. The writer's put fails
    ("write failed"): nothing landed, the log reads the step back, finds none and puts it
    again; the call commits once."""
    from vactor_cloud.storage import _local

    ledger = Ledger.get_or_create("swept")
    assert ledger.add.run("a") == 1
    store = vc.get_runtime().store
    real_link = os.link
    swept: list[int] = []

    def link_after_a_sweep(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if "/st+/ep+/s/" in str(dst) and not swept:
            with monkeypatch.context() as stepped:
                stepped.setattr(time, "time", lambda: _real_time() + 2 * 3600.0)
                swept.append(store._sweep_temp("actors/swept/", 3600.0))
        real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(_local.os, "link", link_after_a_sweep)
    assert ledger.add.run("b") == 2
    monkeypatch.undo()
    assert swept == [1], "the sweep did not remove the writer's temp file"
    assert ledger.all.run() == ["a", "b"]

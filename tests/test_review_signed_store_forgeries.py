"""A signed store under a forger who can write the bucket but does not hold the key.

docs/security.md promises that, with a signing key, such a forger cannot change an outcome,
apply a call twice, lose a commit or stop an actor for good: at worst a bounded delay or a
clear ``IntegrityError``. Each test here writes, replaces or deletes one kind of object the
way that forger can (a well-formed object, unsigned; or a signed one copied to another key)
and checks what the library does with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from store_helpers import init, raw_get, raw_put

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_runner
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local")

KEY = b"k" * 32


@vc.virtual_actor
class Alarm:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> int:
        self.rang += 1
        return self.rang

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.rang


@pytest.fixture
def signed(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """The lane's store, this process's runtime on it with the signing key ``KEY``."""
    init(store_spec, signing_key=KEY)
    yield store_spec
    vc.shutdown()


def put(key: str, data: bytes) -> None:
    raw_put(key, data)


def _is_signed(data: bytes) -> bool:
    return data[:4] == b"VACT" and bool(int.from_bytes(data[6:8], "big") & 1)


def actor_owned_by(runner: str, among: list[str]) -> str:
    """An actor id that rendezvous hashing gives to ``runner`` among ``among``."""
    for n in range(1000):
        actor_id = f"alarm-{n}"
        if timer_runner.owner_of(actor_id, among) == runner:
            return actor_id
    raise AssertionError("no such actor id in 1000")


def arm_due(actor_id: str) -> vc.ActorHandle:
    """An actor with one timer ``ring`` due now (committed and indexed)."""
    handle = Alarm.get_or_create(actor_id)
    handle.ring.options(at=time.time() - 1, timer_key="bell").run()
    return handle


def heartbeat(runner: str, until: float) -> bytes:
    """A runner's heartbeat as the forger writes it: plain JSON, honest-looking, unsigned."""
    return json.dumps({"runner": runner, "until": until, "lease": 30.0, "group": "all"}).encode()


# -- timer runners' heartbeats ------------------------------------------------------------------
def test_an_unsigned_heartbeat_holds_no_share_of_the_actors_of_a_signed_store(signed: StoreSpec) -> None:
    """A forged heartbeat in the runners' group took a share of the actors by rendezvous
    hashing: its actors' due timers were fired by no one for as long as the forger kept
    writing it (a few heartbeats took nearly every actor). With a key, a heartbeat must be
    signed to count."""
    actor_id = actor_owned_by("forged", ["me", "forged"])
    handle = arm_due(actor_id)
    put(keys.timer_runner_key("forged"), heartbeat("forged", time.time() + 30))
    report = vc.fire_due_timers(runner_id="me")
    assert (report.fired, report.assigned_elsewhere, report.runners) == (1, 0, 1)
    assert handle.count.run() == 1


def test_a_signed_heartbeat_copied_to_another_runners_key_holds_no_share(signed: StoreSpec) -> None:
    live = timer_runner.Membership(vc.get_runtime().store, "real", 30.0, "all", KEY)
    _sync.sync(live.beat())
    put(keys.timer_runner_key("copy"), raw_get(keys.timer_runner_key("real")))
    me = timer_runner.Membership(vc.get_runtime().store, "me", 30.0, "all", KEY)
    assert _sync.sync(me.refresh()) == ("me", "real")


def test_runners_of_a_signed_store_sign_their_heartbeats_and_count_each_other(signed: StoreSpec) -> None:
    other = timer_runner.Membership(vc.get_runtime().store, "other", 30.0, "all", KEY)
    _sync.sync(other.beat())
    assert _is_signed(raw_get(keys.timer_runner_key("other")))
    me = timer_runner.Membership(vc.get_runtime().store, "me", 30.0, "all", KEY)
    assert _sync.sync(me.refresh()) == ("me", "other")
    actor_id = actor_owned_by("other", ["me", "other"])
    arm_due(actor_id)
    report = vc.fire_due_timers(runner_id="me")
    assert (report.fired, report.assigned_elsewhere) == (0, 1)  # the signed one is believed


def test_an_old_signed_heartbeat_put_back_holds_nothing(signed: StoreSpec) -> None:
    """A replay of a runner's own heartbeat at its own key: the expiry it holds is past."""
    old = timer_runner.Membership(vc.get_runtime().store, "old", 0.001, "all", KEY)
    _sync.sync(old.beat())
    replayed = raw_get(keys.timer_runner_key("old"))
    _sync.sync(old.leave())
    put(keys.timer_runner_key("old"), replayed)
    me = timer_runner.Membership(vc.get_runtime().store, "me", 30.0, "all", KEY)
    assert _sync.sync(me.refresh()) == ("me",)


# -- timer claims -------------------------------------------------------------------------------
def test_an_unsigned_claim_is_taken_over_on_a_signed_store(signed: StoreSpec) -> None:
    """A forged claim (an honest expiry, renewed by the forger) kept every claiming runner
    off the actor's timers for good. With a key, an unsigned claim is taken for no claim."""
    handle = arm_due("claimed")
    claim = json.dumps({"runner": "forged", "until": time.time() + 30}).encode()
    put(keys.timer_claim_key("claimed"), claim)
    report = vc.fire_due_timers(split="claims", runner_id="me")
    assert (report.fired, report.claimed_elsewhere) == (1, 0)
    assert handle.count.run() == 1


def test_a_signed_claim_holds_and_one_copied_to_another_actor_does_not(signed: StoreSpec) -> None:
    runtime = vc.get_runtime()
    assert _sync.sync(timer_runner.claim_actor(runtime.store, "a", "other", 30.0, KEY))
    assert _is_signed(raw_get(keys.timer_claim_key("a")))
    assert not _sync.sync(timer_runner.claim_actor(runtime.store, "a", "me", 30.0, KEY))
    put(keys.timer_claim_key("b"), raw_get(keys.timer_claim_key("a")))
    assert _sync.sync(timer_runner.claim_actor(runtime.store, "b", "me", 30.0, KEY))


# -- the due index ------------------------------------------------------------------------------
def test_a_forged_index_entry_fires_no_timer_that_was_never_armed(signed: StoreSpec) -> None:
    """Entries are empty names, read by LIST only: not signed (see docs/security.md). The
    step decides: an entry of a timer the actor does not have commits nothing and goes."""
    handle = Alarm.get_or_create("quiet")
    log = vc.get_runtime().log("quiet")
    steps = _sync.sync(vc.get_runtime().store.list(log.steps_prefix))
    put(keys.timer_index_key(int(time.time() * 1000) - 1000, "quiet", "never", 1), b"")
    report = vc.fire_due_timers()
    assert (report.fired, report.stale, report.errors) == (0, 1, [])
    assert _sync.sync(vc.get_runtime().store.list(log.steps_prefix)) == steps
    assert _sync.sync(list_index(vc.get_runtime().store)) == []
    assert handle.count.run() == 0


def test_a_forged_index_entry_dated_early_does_not_fire_a_timer_before_its_time(signed: StoreSpec) -> None:
    handle = Alarm.get_or_create("later")
    handle.ring.options(delay=3600, timer_key="bell").run()
    (real,) = _sync.sync(list_index(vc.get_runtime().store))
    put(keys.timer_index_key(int(time.time() * 1000) - 1000, "later", "bell", real.gen), b"")
    put(keys.timer_index_key(int(time.time() * 1000) - 1000, "later", "bell"), b"")
    report = vc.fire_due_timers()
    assert (report.fired, report.stale) == (0, 2)
    assert _sync.sync(list_index(vc.get_runtime().store)) == [real]
    assert [t["key"] for t in handle.timers()] == ["bell"] and handle.count.run() == 0


def test_a_forged_index_entry_of_an_actor_that_does_not_exist_creates_nothing(signed: StoreSpec) -> None:
    put(keys.timer_index_key(int(time.time() * 1000) - 1000, "nobody", "bell", 1), b"")
    report = vc.fire_due_timers()
    assert (report.fired, report.stale, report.errors) == (0, 1, [])
    assert _sync.sync(vc.get_runtime().store.list(keys.actor_prefix("nobody"))) == []
    assert _sync.sync(list_index(vc.get_runtime().store)) == []


def test_a_deleted_index_entry_delays_its_timer_until_repair(signed: StoreSpec) -> None:
    """Deleting is beyond any signature: the timer stays pending in its step (the truth),
    and the actor's next commit or ``vactor timers repair`` indexes it again."""
    handle = arm_due("unindexed")
    (entry,) = _sync.sync(list_index(vc.get_runtime().store))
    _sync.sync(vc.get_runtime().store.delete(entry.object_key))
    init(signed, signing_key=KEY)  # a fresh process: no memory of the entry
    assert vc.fire_due_timers().fired == 0
    assert timer_runner.repair_timer_index(["unindexed"]) == 1
    assert vc.fire_due_timers().fired == 1
    assert handle.count.run() == 1

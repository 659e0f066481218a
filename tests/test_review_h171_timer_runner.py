"""Review h171: edges of the timer runner left open (a claim put whose answer was lost, a
renewal stalled past the heartbeat's period, a heartbeat every read of which is torn).

Each test failed before its fix (named in its docstring) and passes with it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_runner
from vactor_cloud.errors import PreconditionFailedError, StorageError, TruncatedObjectError
from vactor_cloud.storage import Blob, IfMatch, MemoryStore, ObjectStore, PutMode
from vactor_cloud.testing._forwarding import ForwardingStore
from vactor_cloud.testing.faults import FaultConfig, FaultKind, FaultRule, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_claims import claim_actor
from vactor_cloud.timer_runner import Membership

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Chime:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> int:
        self.rang += 1
        return self.rang

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.rang


def _arm_due(actor_id: str) -> Any:
    """The actor ``actor_id``, with a timer due now (scheduled from outside)."""
    chime = Chime.get_or_create(actor_id)
    assert chime.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    return chime


def _store() -> MemoryStore:
    return MemoryStore(name=f"h171-{uuid.uuid4().hex}")


def _claim_faults(inner: ObjectStore, kind: FaultKind, at: tuple[int, ...] = (1,)) -> FaultyStore:
    """``inner``, the ``at``-th puts of a timer claim faulting with ``kind``."""
    rule = FaultRule(kind, key_contains=keys.TIMER_CLAIMS, at=at)
    return FaultyStore(inner, FaultConfig(rules=(rule,)))


def _held(store: ObjectStore, actor_id: str) -> tuple[dict[str, Any], str]:
    blob = asyncio.run(store.get(keys.timer_claim_key(actor_id)))
    return json.loads(blob.data), blob.version


def _put_claim(store: ObjectStore, actor_id: str, runner: str, until: float) -> None:
    claim = json.dumps({"runner": runner, "until": until}).encode()
    asyncio.run(store.put(keys.timer_claim_key(actor_id), claim))


# -- 1. a claim put whose answer was lost -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["lost_response", "timeout_after", "conflict_after"])
def test_a_claim_whose_create_landed_and_whose_answer_was_lost_is_the_runner_s_own(kind: FaultKind) -> None:
    """Before: ``claim_actor`` let the error of a create-only claim put that had landed
    propagate; the tick counted an error for the actor, left its due timers, and the claim,
    naming this runner, kept every other runner (and the next tick, a runner of another id)
    off them for a lease. Now the claim is read back: this runner's own, its version."""
    store = _claim_faults(_store(), kind)
    version = asyncio.run(claim_actor(store, "a", "me", 30.0))
    held, stored = _held(store, "a")
    assert (version, held["runner"]) == (stored, "me")
    assert asyncio.run(claim_actor(store, "a", "other", 30.0)) is None


class _TakeOverAnswered(ForwardingStore):
    """Wraps a store: the first if-match put of a timer claim is applied, then answered with
    ``error`` (a retry of it meeting its own write: 412; or the answer lost)."""

    def __init__(self, inner: ObjectStore, error: type[StorageError]) -> None:
        super().__init__(inner)
        self.error = error
        self.answered = False

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version = await self.inner.put(key, data, mode=mode)
        if isinstance(mode, IfMatch) and key.startswith(keys.TIMER_CLAIMS) and not self.answered:
            self.answered = True
            raise self.error(f"injected: the take-over of {key} landed, its answer did not", key)
        return version


@pytest.mark.parametrize("error", [PreconditionFailedError, StorageError])
def test_a_take_over_of_an_expired_claim_whose_answer_was_lost_is_the_runner_s_own(
    error: type[StorageError],
) -> None:
    """Before: an if-match take-over of an expired claim that landed, answered 412 (its retry
    meeting its own write) or not at all, was counted "claimed elsewhere" (or an error): this
    runner left the actor for a lease that it held itself."""
    store = _TakeOverAnswered(_store(), error)
    _put_claim(store.inner, "a", "dead", time.time() - 1)
    version = asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert store.answered
    held, stored = _held(store.inner, "a")
    assert (version, held["runner"]) == (stored, "me")


def test_a_claim_put_that_failed_before_landing_still_raises() -> None:
    """The read back finds no claim of this runner: the put's error reaches the tick."""
    store = _claim_faults(_store(), "fail_before")
    with pytest.raises(StorageError, match="before it was sent"):
        asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert asyncio.run(store.list(keys.TIMER_CLAIMS)) == []


def test_a_take_over_lost_to_another_runner_while_its_own_answer_was_lost_is_not_the_runner_s() -> None:
    """A take-over whose answer was lost, and another runner's claim there when read back:
    "claimed elsewhere", never this runner's (two runners firing the actor side by side)."""

    class Raced(_TakeOverAnswered):
        async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
            if isinstance(mode, IfMatch) and key.startswith(keys.TIMER_CLAIMS) and not self.answered:
                self.answered = True
                await self.inner.put(key, data, mode=mode)
                rival = json.dumps({"runner": "rival", "until": time.time() + 30}).encode()
                await self.inner.put(key, rival)
                raise PreconditionFailedError("injected: a retry met the rival's claim", key)
            return await self.inner.put(key, data, mode=mode)

    store = Raced(_store(), PreconditionFailedError)
    _put_claim(store.inner, "a", "dead", time.time() - 1)
    assert asyncio.run(claim_actor(store, "a", "me", 30.0)) is None
    assert _held(store.inner, "a")[0]["runner"] == "rival"


def test_a_claiming_tick_whose_claim_answer_was_lost_fires_the_timer_once_with_two_runners(
    actor_store: StoreSpec,
) -> None:
    """Before: the tick reported ``ACTOR: claim: ...`` and fired nothing; its claim, naming a
    runner id no later tick has, held the timer off every runner for the lease. Now the tick
    fires it, releases its claim (by its version), and a second runner finds nothing to fire."""
    runtime = vc.get_runtime()
    runtime.store = _claim_faults(runtime.store, "lost_response")
    chime = _arm_due("lost-claim")
    first = vc.fire_due_timers(split="claims", runner_id="one")
    assert (first.fired, first.claimed_elsewhere, first.errors) == (1, 0, [])
    second = vc.fire_due_timers(split="claims", runner_id="two")
    assert (second.fired, second.errors) == (0, [])
    assert chime.count.run() == 1
    assert _sync.sync(runtime.store.list(keys.TIMER_CLAIMS)) == []


# -- 3. a heartbeat every read of which is torn ---------------------------------------------------
class _TornHeartbeat(_TakeOverAnswered):
    """Wraps a store: every read of runner ``torn``'s heartbeat is torn (shorter than the write
    token: a local store's file cut by a crash), as each of the three reads is."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, StorageError)
        self.torn_reads = 0

    async def _get(self, key: str) -> Blob:
        if key == keys.timer_runner_key("torn"):
            self.torn_reads += 1
            raise TruncatedObjectError(f"injected: {key} is shorter than its write token", key)
        return await self.inner.get(key)


def test_a_heartbeat_torn_at_every_read_counts_for_nothing_and_the_others_are_still_seen() -> None:
    """Before: ``Membership._read`` let the ``TruncatedObjectError`` of a heartbeat torn at each
    of its three reads out of ``refresh``, which failed as a whole at every poll: the runner
    kept the view it had for as long as the torn object stayed (nobody deletes one it cannot
    read). A runner that left or died after that was never dropped, its actors' timers left
    unfired for good; one that joined was never seen. Now the torn one counts for nothing (as
    an unreadable one), is read again a lease later, and the others are seen as they come and go."""
    store = _TornHeartbeat(_store())
    me = Membership(store, "me", 30.0, "all")
    other = Membership(store, "other", 30.0, "all")
    asyncio.run(other.beat())
    assert asyncio.run(me.refresh()) == ("me", "other")
    asyncio.run(store.inner.put(keys.timer_runner_key("torn"), b"x"))
    assert asyncio.run(me.refresh()) == ("me", "other")
    assert store.torn_reads >= 1
    asyncio.run(other.leave())
    assert asyncio.run(me.refresh()) == ("me",)
    assert me.owns("any-actor")
    late = Membership(store, "late", 30.0, "all")
    asyncio.run(late.beat())
    assert asyncio.run(me.refresh()) == ("late", "me")
    reads = store.torn_reads
    asyncio.run(me.refresh())
    assert store.torn_reads == reads  # (read again once a lease has passed, not at every refresh)


# -- 2. a renewal stalled past the heartbeat's period ---------------------------------------------
class _StalledRenewal(_TakeOverAnswered):
    """Wraps a store: the second put of runner ``me``'s heartbeat (its first renewal) gets no
    answer until ``release`` is set (a silent endpoint, no request timeout)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, StorageError)
        self.release = threading.Event()
        self.beats = 0

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key == keys.timer_runner_key("me"):
            self.beats += 1
            while self.beats == 2 and not self.release.is_set():
                await asyncio.sleep(0.01)
        return await self.inner.put(key, data, mode=mode)


def test_a_heartbeat_renewal_stalled_past_its_period_does_not_let_the_heartbeat_expire(
    actor_store: StoreSpec,
) -> None:
    """Before: a renewal of a long-running runner's heartbeat was bounded by
    ``Settings.deadline`` alone (30 s by default: longer than a third of the default lease, and
    than the lease here), and the next renewal waited lease/3 after it ended: one stalled
    renewal let the heartbeat expire while the runner went on firing its share, and the others
    fired it too (work done twice). Now each renewal is cut off at lease/3 and renewals start
    every lease/3: one stalled renewal is followed by another before the heartbeat expires."""
    runtime = vc.get_runtime()
    retune(deadline=30.0)
    store = _StalledRenewal(runtime.store)
    runtime.store = store
    stop = threading.Event()
    runner = timer_runner.TimerRunner(split="runners", lease=3.0, poll=0.05, runner_id="me")
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    lapsed: list[float] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4.5:
            try:
                until = json.loads(asyncio.run(store.inner.get(keys.timer_runner_key("me"))).data)["until"]
            except StorageError:  # (not written yet)
                until = None
            if until is not None and until <= time.time():
                lapsed.append(time.time() - until)
                break
            time.sleep(0.05)
    finally:
        store.release.set()
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert lapsed == [], f"the heartbeat expired {lapsed[0]:.2f} s before it was renewed"
    assert store.beats >= 3, store.beats


class _LateClaim(_TakeOverAnswered):
    """Wraps a store: the first put of a timer claim lands ``delay`` seconds late."""

    def __init__(self, inner: ObjectStore, delay: float) -> None:
        super().__init__(inner, StorageError)
        self.delay = delay
        self.claims = 0

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key.startswith(keys.TIMER_CLAIMS):
            self.claims += 1
            if self.claims == 1:
                await asyncio.sleep(self.delay)
        return await self.inner.put(key, data, mode=mode)


def test_a_claim_that_would_land_after_its_lease_is_cut_off_and_its_actor_not_fired_on_it(
    actor_store: StoreSpec,
) -> None:
    """Before: a claim put was bounded by ``Settings.deadline`` alone (30 s by default, as long
    as the default lease): one answered after the lease was a claim expired as taken, which
    another runner could take over meanwhile, and the actor was fired on it all the same.
    Now taking a claim is cut off at lease/3: an error of that actor, fired at the next tick."""
    runtime = vc.get_runtime()
    retune(deadline=30.0)
    chime = _arm_due("late-claim")
    runtime.store = _LateClaim(runtime.store, 3.5)
    late = vc.fire_due_timers(split="claims", lease=3.0, runner_id="me")
    assert late.fired == 0, "fired on a claim that had expired when it was taken"
    assert [str(e) for e in late.errors if "timer claim" in e and "cut off" in e] == late.errors != []
    again = vc.fire_due_timers(split="claims", lease=3.0, runner_id="me")
    assert (again.fired, again.errors, chime.count.run()) == (1, [], 1)


@vc.virtual_actor
class SlowChime:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> int:
        time.sleep(2.0)  # (longer than the tick's lease below)
        self.rang += 1
        return self.rang


def _lapses_while(store: ObjectStore, runner_id: str, busy: threading.Thread) -> list[float]:
    """How long past its expiry ``runner_id``'s heartbeat was seen while ``busy`` runs (the
    first lapse; a heartbeat not written yet, or deleted at the end, is no lapse)."""
    while busy.is_alive():
        try:
            until = json.loads(asyncio.run(store.get(keys.timer_runner_key(runner_id))).data)["until"]
        except StorageError:
            until = None
        if until is not None and until <= time.time() and busy.is_alive():
            return [time.time() - until]
        time.sleep(0.05)
    return []


def test_a_tick_longer_than_its_lease_keeps_its_heartbeat_for_its_duration(actor_store: StoreSpec) -> None:
    """Before: a tick (``split="runners"``) wrote its heartbeat once and never renewed it: one
    lasting longer than its lease (a backlog, a slow method) was counted gone by the other
    runners while it fired its share, and they fired that share too (work done twice;
    docs/timers.md: "registers itself ... for its duration"). Now it renews its heartbeat as
    a long-running runner does, and stops renewing before it deletes it."""
    store = vc.get_runtime().store
    chime = SlowChime.get_or_create("slow")
    assert chime.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    reports: list[Any] = []
    tick = threading.Thread(target=lambda: reports.append(vc.fire_due_timers(lease=1.5, runner_id="ticking")))
    tick.start()
    try:
        lapsed = _lapses_while(store, "ticking", tick)
    finally:
        tick.join(30)
    assert not tick.is_alive() and reports[0].fired == 1
    assert lapsed == [], f"the tick's heartbeat expired {lapsed[0]:.2f} s before it ended"
    assert asyncio.run(store.list(keys.TIMER_RUNNERS)) == []


class PutLandingLate(ForwardingStore):
    """Wraps a store: the ``nth`` put of a key ``matches`` accepts lands ``delay`` seconds late,
    even once its caller stopped waiting (a local store's write on its thread, a request the
    server applies after the client gave up on it); ``puts`` counts the puts it matched."""

    def __init__(self, inner: ObjectStore, delay: float, matches: Callable[[str], bool], nth: int) -> None:
        super().__init__(inner)
        self.delay = delay
        self.matches = matches
        self.nth = nth
        self.puts = 0
        self.landed = threading.Event()

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if self.matches(key):
            self.puts += 1
            if self.puts == self.nth:
                return await asyncio.shield(self._late(key, data, mode))
        return await self.inner.put(key, data, mode=mode)

    async def _late(self, key: str, data: bytes, mode: PutMode) -> str:
        await asyncio.sleep(self.delay)
        try:
            return await self.inner.put(key, data, mode=mode)
        finally:
            self.landed.set()


def test_a_renewal_cut_off_and_landing_after_the_runner_stopped_leaves_no_heartbeat(
    actor_store: StoreSpec,
) -> None:
    """A renewal cut off at lease/3 is no longer waited for, but its write may still land: the
    runner's graceful stop lets the renewals it sent land first, then deletes its heartbeat.
    Deleted first, the heartbeat came back, and held the stopped runner's share of the actors
    off the others for a lease (as a runner killed without a word)."""
    runtime = vc.get_runtime()
    # (the second put of runner me's heartbeat: its first renewal)
    store = PutLandingLate(runtime.store, 0.6, keys.timer_runner_key("me").__eq__, 2)
    runtime.store = store
    stop = threading.Event()
    runner = timer_runner.TimerRunner(split="runners", lease=0.9, poll=0.05, runner_id="me")
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while store.puts < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.puts >= 2, "the runner did not renew its heartbeat"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert store.landed.wait(10)
    time.sleep(0.1)
    assert asyncio.run(store.inner.list(keys.TIMER_RUNNERS)) == []

"""Review h172: the timer runner after h171's changes: a claim or a heartbeat torn by a crash,
a tick's heartbeat renewer, a claim put cut off at lease/3 that lands all the same.

A test that failed before its fix names it in its docstring; one that passed already says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from store_helpers import retune
from test_review_h171_timer_runner import Chime as Bell
from test_review_h171_timer_runner import PutLandingLate

import vactor_cloud as vc
from vactor_cloud import keys
from vactor_cloud.errors import StorageError
from vactor_cloud.storage import LocalStore, ObjectStore, PutMode
from vactor_cloud.testing._forwarding import ForwardingStore
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_claims import claim_actor
from vactor_cloud.timer_runner import Membership, TimerRunner

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _is_claim(key: str) -> bool:
    return key.startswith(keys.TIMER_CLAIMS)


def _tear(store: LocalStore, key: str) -> None:
    """Leave the file of ``key`` empty: a claim written unsynced and cut by a machine crash
    (shorter than the local store's write token: ``TruncatedObjectError``, no version)."""
    path = store._fspath(key, writing=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(b"")


def _holder(store: LocalStore, actor_id: str) -> Any:
    return json.loads(asyncio.run(store.get(keys.timer_claim_key(actor_id))).data)["runner"]


# -- a torn claim ------------------------------------------------------------------------------
def test_a_torn_claim_is_taken_over_not_an_error_for_ever(tmp_path: Path) -> None:
    """Before: a claim file torn by a crash (local store: no version, so no if-match matches
    it, and the conditional delete of its runner's release leaves it) made every later
    ``claim_actor`` raise its ``TruncatedObjectError`` (the create met it, the read of it
    failed three times): every tick counted an error for the actor and never fired its due
    timers, for as long as the file stayed (nothing removed it). Now a torn claim is
    unreadable, so expired: it is removed and the claim created."""
    store = LocalStore(tmp_path)
    _tear(store, keys.timer_claim_key("a"))
    version = asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert version is not None
    assert _holder(store, "a") == "me"
    assert asyncio.run(claim_actor(store, "a", "other", 30.0)) is None


def test_a_claiming_tick_fires_the_timers_of_an_actor_whose_claim_is_torn(
    actor_store: StoreSpec,
) -> None:
    """The tick (``split="claims"``) over a torn claim fires the due timer once and releases
    its claim; before, it reported ``ACTOR: claim: ... shorter than the write token`` at
    every tick and the timer was never fired."""
    store = vc.get_runtime().store
    if not isinstance(store, LocalStore):
        pytest.skip("a torn file is the local store's")
    bell = Bell.get_or_create("torn-claim")
    assert bell.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    _tear(store, keys.timer_claim_key("torn-claim"))
    report = vc.fire_due_timers(split="claims", runner_id="one")
    assert (report.fired, report.errors) == (1, [])
    assert bell.count.run() == 1
    assert asyncio.run(store.list(keys.TIMER_CLAIMS)) == []


# -- a torn heartbeat --------------------------------------------------------------------------
def test_a_heartbeat_torn_by_a_crash_is_removed_not_read_at_every_tick_for_ever(tmp_path: Path) -> None:
    """Before: a heartbeat torn by a crash counted for no live runner but stayed (only one
    that reads as expired is removed, and a torn one has no expiry to read): every tick (a
    Membership of its own) read it three times and warned about it, for as long as nobody
    removed it by hand. Now it is removed when met (a live runner's renewal, an overwrite,
    writes it again within lease/3, and is seen then)."""
    store = LocalStore(tmp_path)
    live = Membership(store, "live", 30.0, "all")
    asyncio.run(live.beat())
    _tear(store, keys.timer_runner_key("dead"))
    assert asyncio.run(Membership(store, "me", 30.0, "all").refresh()) == ("live", "me")
    assert asyncio.run(store.list(keys.TIMER_RUNNERS)) == [keys.timer_runner_key("live")]
    asyncio.run(live.beat())
    assert asyncio.run(Membership(store, "me", 30.0, "all").refresh()) == ("live", "me")


# -- a tick's heartbeat renewer ------------------------------------------------------------------
def _renewers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vactor-timer-heartbeat"]


def test_no_tick_leaves_its_renewer_or_its_heartbeat_behind_however_it_ends(actor_store: StoreSpec) -> None:
    """(Passed already.) A tick (``split="runners"``) starts a thread that renews its heartbeat:
    after many ticks, ended normally, by an exception of a callback or by a KeyboardInterrupt,
    no renewer thread is left and no heartbeat stays."""
    store = vc.get_runtime().store
    before = {t.ident for t in _renewers()}

    def interrupted(count: int) -> None:
        raise KeyboardInterrupt

    def failing(count: int) -> None:
        raise RuntimeError("a callback's own error")

    for round_ in range(12):
        Bell.get_or_create(f"ticked-{round_}").ring.options(at=time.time() - 1.0, timer_key="k").run()
        on_due = (None, interrupted, failing)[round_ % 3]
        runner = TimerRunner(split="runners", lease=0.6, runner_id=f"ticking-{round_}")
        try:
            runner.tick(on_due=on_due)
        except (KeyboardInterrupt, RuntimeError) as exc:
            assert on_due is not None, exc
    assert [t for t in _renewers() if t.ident not in before] == []
    assert asyncio.run(store.list(keys.TIMER_RUNNERS)) == []


def test_a_claim_cut_off_that_lands_all_the_same_holds_the_actor_for_its_lease_at_most(
    actor_store: StoreSpec,
) -> None:
    """(Passed already; docs/timers.md, ``claims``.) A claim put cut off at lease/3 that lands
    afterwards holds the actor off the other runners until its lease expires, and no longer;
    the runner that put it (by its id) takes it back at once."""
    runtime = vc.get_runtime()
    bell = Bell.get_or_create("late-landing")
    assert bell.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    store = PutLandingLate(runtime.store, 1.2, _is_claim, 1)  # (the first claim put)
    runtime.store = store
    lease = 3.0  # (cut off at 1 s; landed at 1.2 s, held until 3 s)
    cut = vc.fire_due_timers(split="claims", lease=lease, runner_id="me")
    assert cut.fired == 0 and any("cut off" in e for e in cut.errors), cut.errors
    assert store.landed.wait(10)
    assert _holder(store.inner, "late-landing") == "me"
    other = vc.fire_due_timers(split="claims", lease=lease, runner_id="other")
    assert (other.fired, other.claimed_elsewhere) == (0, 1)
    time.sleep(lease)
    after = vc.fire_due_timers(split="claims", lease=lease, runner_id="other")
    assert (after.fired, after.errors, bell.count.run()) == (1, [], 1)


def test_the_runner_whose_cut_off_claim_landed_takes_it_back_at_once(actor_store: StoreSpec) -> None:
    """(Passed already.) The runner whose cut-off claim landed meets it as its own (its id)
    and takes it over at its next tick: fired once, the claim released."""
    runtime = vc.get_runtime()
    bell = Bell.get_or_create("late-landing-mine")
    assert bell.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    store = PutLandingLate(runtime.store, 0.5, _is_claim, 1)  # (the first claim put)
    runtime.store = store
    assert vc.fire_due_timers(split="claims", lease=1.2, runner_id="me").fired == 0
    assert store.landed.wait(10)
    again = vc.fire_due_timers(split="claims", lease=1.2, runner_id="me")
    assert (again.fired, again.errors, bell.count.run()) == (1, [], 1)
    assert asyncio.run(store.inner.list(keys.TIMER_CLAIMS)) == []


# -- the first renewal after a slow heartbeat write ------------------------------------------------
class _SlowFirstBeat(ForwardingStore):
    """Wraps a store: the first put of runner ``me``'s heartbeat (the tick's join) answers
    ``delay`` seconds late."""

    def __init__(self, inner: ObjectStore, delay: float) -> None:
        super().__init__(inner)
        self.delay = delay
        self.beats = 0

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version = await self.inner.put(key, data, mode=mode)
        if key == keys.timer_runner_key("me"):
            self.beats += 1
            if self.beats == 1:
                await asyncio.sleep(self.delay)
        return version


@vc.virtual_actor
class SlowBell:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> int:
        time.sleep(1.5)  # (the tick outlasts its heartbeat's first expiry)
        self.rang += 1
        return self.rang


def _first_lapse(store: ObjectStore, runner_id: str, busy: threading.Thread) -> float | None:
    """How long past its expiry ``runner_id``'s heartbeat was first seen while ``busy`` runs."""
    while busy.is_alive():
        try:
            until = json.loads(asyncio.run(store.get(keys.timer_runner_key(runner_id))).data)["until"]
        except StorageError:  # (not written yet, or deleted at the end)
            until = None
        if until is not None and until <= time.time() and busy.is_alive():
            return time.time() - until
        time.sleep(0.02)
    return None


def test_a_heartbeat_written_slowly_is_renewed_before_it_expires(actor_store: StoreSpec) -> None:
    """Before: the renewals of a tick (and of ``run``) started lease/3 after the heartbeat's
    first write returned, but that write holds an expiry counted from before it was sent: one
    answered after 2/3 of the lease (a slow store at start) was renewed only after it had
    expired, and the other runners counted the runner gone meanwhile (its share fired twice
    over). Now the renewals are scheduled from when the first write was sent: the first one
    is due at once."""
    runtime = vc.get_runtime()
    retune(deadline=30.0)
    bell = SlowBell.get_or_create("slow-first-beat")
    assert bell.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    store = _SlowFirstBeat(runtime.store, 1.4)  # (answered after 7/9 of the lease)
    runtime.store = store
    reports: list[Any] = []
    tick = threading.Thread(target=lambda: reports.append(vc.fire_due_timers(lease=1.8, runner_id="me")))
    tick.start()
    try:
        lapse = _first_lapse(store.inner, "me", tick)
    finally:
        tick.join(30)
    assert not tick.is_alive() and reports[0].fired == 1
    assert lapse is None, f"the heartbeat expired {lapse:.2f} s before it was renewed"


def test_a_long_running_runner_s_heartbeat_written_slowly_is_renewed_before_it_expires(
    actor_store: StoreSpec,
) -> None:
    """As for a tick, for ``TimerRunner.run`` (failed before: its renewals were scheduled from
    when the first write returned)."""
    runtime = vc.get_runtime()
    retune(deadline=30.0)
    store = _SlowFirstBeat(runtime.store, 1.4)  # (answered after 7/9 of the lease)
    runtime.store = store
    stop = threading.Event()
    runner = TimerRunner(split="runners", lease=1.8, poll=0.05, runner_id="me")
    running = threading.Thread(target=runner.run, args=(stop,))
    running.start()
    stopper = threading.Timer(3.0, stop.set)
    stopper.start()
    try:
        lapse = _first_lapse(store.inner, "me", running)
    finally:
        stop.set()
        stopper.cancel()
        running.join(30)
    assert not running.is_alive()
    assert lapse is None, f"the heartbeat expired {lapse:.2f} s before it was renewed"

"""Review h163: a mutation sweep of the timer runner (``timer_runner.py``).

Each test here failed with the mutation named in its docstring applied to the library, and
passes without it. 75 hand-made mutations (M67, M69, M73 unused), one at a time, each run
against the timer tests (test_timers, test_review_timers, _h140_timers, _timers_stop,
_h145_heartbeat_cut_short, _signed_store_forgeries, _clock_skew, _h131_tick_stop,
_deleted_leftovers, _h146_cancel_in_creation; memory and local; ``-k`` timer/runner/tick/heartbeat/claim/fire/
due/cancel/schedul). "new" = killed by a test of this module; "(n/r)" = the existing subset
was not run against it (time), only this module's test.

=====  ============================================================  =======================
 id    mutation                                                      killed by / equivalent
=====  ============================================================  =======================
 M01   decode_hint: the signed object's kind not checked             survived -> new
 M02   read_hint: a signed heartbeat failing its digest not re-read  h145 (signed)
 M03   read_hint: torn plain JSON not re-read                        h145 (plain)
 M04   owner_of: the runner-id tie-break dropped                     equivalent (1)
 M05   Membership: lease 0 accepted                                  survived -> new; DEFECT (2)
 M06   beat writes ``until = now``                                   test_timers (tick shares)
 M07   leave deletes nothing                                         test_timers (tick shares)
 M08   an unverified heartbeat trusted                               signed_store_forgeries
 M09   dead heartbeat removed after the smaller lease                new (n/r)
 M10   dead heartbeat never removed                                  test_timers (expired)
 M11   declared lease uncapped (LONGEST_LEASE) in the expiry bound   new (n/r)
 M12   heartbeat re-read a lease after reading, not at its expiry    new (n/r)
 M13   other groups' runners counted                                 test_timers (sharded)
 M14   expired heartbeats counted live                               h140
 M15   vanished (left) heartbeats kept in the view                   survived -> new
 M16   owners cache kept across a change of view                     new (n/r)
 M17   own live claim counted as another's                           new (n/r)
 M18   an expired claim counted live                                 h140
 M19   claim's far-ahead expiry believed                             new (n/r)
 M20   claim take-over not if-match                                  new (n/r)
 M21   lost if-match take-over counted won                           new (n/r)
 M22   claim released between create and read: give up              new (n/r)
 M23   unreadable claim counted live                                 signed_store_forgeries
 M24   claimed elsewhere: fired anyway                               new (n/r)
 M25   actor never was: entries kept                                 survived -> new
 M26   deleted actor met mid-fire: an error, not stale               deleted_leftovers
 M27   fired entry not deleted                                       test_timers
 M28   rescheduled timer's old entry kept                            test_timers (stale)
 M29   probe compares due_ms the wrong way                           test_timers
 M30   cache behind: no second round                                 test_timers
 M31   probe's ``due <= now`` dropped                                equivalent (3)
 M32   claim never released                                          new (n/r); DEFECT near (4)
 M33   a failed entry delete raises                                  survived -> new
 M34   forget_entry dropped                                          equivalent (5)
 M35   shard (n, n) accepted                                         new (n/r)
 M36   _mine ignores the shard                                       equivalent (6)
 M37   a slice listing taken as complete                             equivalent (7)
 M38   tick: stop not checked between slices                         survived -> new
 M39   tick never leaves                                             test_timers (tick shares)
 M40   tick: queued fires start after stop                           h131
 M41   tick: left not counted                                        h131
 M42   tick: interrupted pool not cancelled                          survived -> new
 M43   run: deletes in flight not awaited on stop                    new (n/r)
 M44   run never leaves                                              test_timers (punctual)
 M45   heartbeat renewed every 1.5 leases                            new (n/r)
 M46   run never lists the runners                                   new (n/r)
 M47   run: heap bound (held >= slice) dropped                       survived -> new
 M48   _take: held entries pushed again                              new (n/r)
 M49   _take: entries deleted since the listing began taken          new (n/r)
 M50   _dispatch pops entries not yet due                            new (n/r)
 M51   _dispatch: ownership not asked again                          new (n/r)
 M52   _fire_held: entries held for ever                             new (n/r)
 M53   _fire_held: let go before the deletes land                    new (n/r)
 M54   TickReport.merge drops left                                   survived -> new
 M55   scheduling: idempotency key's call id random                  equivalent (8)
 M56   cancel: this process's call in flight not checked             survived -> new
 M57   cancel: this process's pending posts not checked              survived -> new
 M58   cancel: tombstone not checked                                 survived -> new
 M59   list_timers: pending creation not refused                     h146
 M60   _warn_once: every error logged                                new (n/r)
 M61   run: stop not set when the dispatcher raises (hang)           survived -> new
 M62   fire_due_timers drops lease                                   test_timers (expired)
 M63   claims= flag read backwards                                   survived -> new
 M64   recheck ``<`` for ``<=``                                      equivalent (9)
 M65   totals trim keeps the oldest errors                           new (n/r)
 M66   _fire_round: a failed commit raises out of the round          deleted_leftovers
 M68   runners' listing failure fails the tick's index listing       new (n/r)
 M70   _list_loop: a listing error ends the listing thread           test_timers (stalled)
 M71   _fire_held catches VactorError only                           survived -> new
 M72   run: queued fires run when stopped                            new (n/r)
 M74   claim_actor: one attempt (released meanwhile: given up)       new (n/r)
 M75   tick: heartbeat deleted on a stalled store                    test_review_timers
 M76   on_done for an actor the stop skipped                         h131 (and new)
 M77   tombstone met mid-fire: entry kept                            deleted_leftovers
 M78   probe: stale entries not deleted                              test_timers (stale)
=====  ============================================================  =======================

(1) ``live`` is sorted and weights are 64-bit BLAKE2b: a tie needs a collision, and max()
    then picks the same runner in every view. (2) ``split="claims"`` took lease 0, negative,
    NaN or inf from Python: claims expired as written. Fixed: ``TimerRunner`` refuses them.
(3) reached only for an entry listed or popped as due by the same clock: false only if the
    wall clock steps back, and then one more FIRE finds it not due (never early). (4) not the
    mutation: a release deleted a claim another runner had taken over meanwhile. Fixed: the
    release is a conditional delete. (5) a deleted entry's name is of an occurrence that
    cannot be pending again (fired, gone, rescheduled, a deleted actor's: a later occurrence
    has a later generation); the memory is bounded by its actor limit. (6) ``_in_shard`` is
    checked before every ``_mine``. (7) cost only: forgetting a name, or re-writing an entry
    create-only, costs a PUT, never an entry. (8) a retried schedule is deduplicated by its
    idempotency key in the table; the derived call id only names a post. (9) a recheck due
    exactly now is read a refresh later (one poll).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import types
import uuid
from typing import Any

import pytest
from combining_workers import commit_behind_its_back
from store_helpers import retune
from test_combining import init_switchable
from test_review_posting import _hold_lease_elsewhere

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_membership, timer_report, timer_runner
from vactor_cloud.errors import AlreadyExistsError, StorageError
from vactor_cloud.storage import Blob, MemoryStore, ObjectStore, PutMode
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_claims import claim_actor
from vactor_cloud.timer_hints import decode_hint, encode_hint
from vactor_cloud.timer_runner import Membership, TickReport
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local")

SIGNING_KEY = b"k" * 32

#: how many more times ``Bell.ring`` raises ``SystemExit`` (a call excluded: the timer stays due)
EXITS = [0]


@vc.virtual_actor
class Bell:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> int:
        if EXITS[0] > 0:
            EXITS[0] -= 1
            raise SystemExit(3)
        self.rang += 1
        return self.rang

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.rang


def _arm_due(actor_id: str, key: str = "k") -> Any:
    """The actor ``actor_id``, with a timer ``key`` due now (scheduled from outside)."""
    bell = Bell.get_or_create(actor_id)
    assert bell.ring.options(at=time.time() - 1.0, timer_key=key).run() == key
    return bell


class _Ticks:
    """A long-running runner on a thread, its listings counted (``on_tick``)."""

    def __init__(self, **options: Any) -> None:
        self.stop = options.pop("stop", None) or threading.Event()
        self.reports: list[TickReport] = []
        self.ticked = threading.Condition()
        self.total: TickReport | None = None

        runner = timer_runner.TimerRunner(**options)

        def run() -> None:
            self.total = runner.run(self.stop, self._on_tick)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def _on_tick(self, report: TickReport) -> None:
        with self.ticked:
            self.reports.append(report)
            self.ticked.notify_all()

    def wait_for(self, ticks: int, until: Any = lambda: False) -> None:
        """Wait (30 s at most) for ``ticks`` listings, or for ``until()`` once one has listed."""
        deadline = time.monotonic() + 30
        with self.ticked:
            while len(self.reports) < ticks and not (self.reports and until()):
                assert time.monotonic() < deadline, "the runner did not list"
                self.ticked.wait(0.05)

    def end(self) -> TickReport:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and self.total is not None
        return self.total


@pytest.fixture(autouse=True)
def _no_exits() -> Any:
    yield
    EXITS[0] = 0


def _store() -> MemoryStore:
    return MemoryStore(name=f"h163-{uuid.uuid4().hex}")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The membership module's wall clock, set by the test (``clock[0]``)."""
    now = [time.time()]
    monkeypatch.setattr(
        timer_membership, "time", types.SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic)
    )
    return now


def _put_heartbeat(store: ObjectStore, runner: str, until: float, lease: float) -> None:
    body = {"runner": runner, "until": until, "lease": lease, "group": "all"}
    asyncio.run(store.put(keys.timer_runner_key(runner), json.dumps(body).encode()))


def _owned_by(runner: str, runners: tuple[str, ...]) -> str:
    """An actor id that rendezvous hashing gives ``runner`` among ``runners``."""
    return next(f"a{i}" for i in range(1000) if timer_membership.owner_of(f"a{i}", runners) == runner)


def _heartbeats(store: ObjectStore) -> list[str]:
    return [r for k in asyncio.run(store.list(keys.TIMER_RUNNERS)) if (r := keys.timer_runner_of(k))]


# -- heartbeats and claims as stored ------------------------------------------------------------
def test_a_signed_claim_at_a_heartbeat_s_key_is_no_heartbeat() -> None:
    """Mutation: ``decode_hint``'s check of the signed object's kind dropped. An object signed
    for the heartbeat's key but of another kind (``timer-claim``) was read as a heartbeat."""
    key = keys.timer_runner_key("r")
    claim = encode_hint(key, "timer-claim", {"runner": "r", "until": 1e9}, SIGNING_KEY)
    with pytest.raises(ValueError, match="timer-claim"):
        decode_hint(key, "timer-runner", claim, SIGNING_KEY)
    assert decode_hint(key, "timer-claim", claim, SIGNING_KEY)["until"] == 1e9


# -- membership ---------------------------------------------------------------------------------
def test_a_dead_heartbeat_is_removed_only_once_expired_for_its_own_longer_lease(clock: list[float]) -> None:
    """Mutation: ``Membership._read`` removing a heartbeat expired for longer than the smaller
    of the two leases (the reader's, the writer's), not the larger. A runner of a 60 s lease,
    expired 5 s ago, was deleted by a reader of a 1 s lease: its owner, back from a pause,
    only rewrote it at its next renewal."""
    store = _store()
    _put_heartbeat(store, "slow", clock[0] - 5.0, 60.0)
    me = Membership(store, "me", 1.0, "all")
    assert asyncio.run(me.refresh()) == ("me",)
    assert _heartbeats(store) == ["slow"]  # expired, not for a whole lease of its own
    clock[0] += 61.0  # (read again a lease after it was read expired)
    assert asyncio.run(me.refresh()) == ("me",)
    assert _heartbeats(store) == []


def test_a_heartbeat_declaring_a_huge_lease_and_a_far_expiry_is_not_counted() -> None:
    """Mutation: the bound on how far ahead a heartbeat may expire taken from the lease it
    declares, uncapped (not ``min(lease, LONGEST_LEASE)``). A heartbeat saying "lease 10^9 s,
    expires in 10^8 s" (a forger on an unsigned store, a clock gone wild) was a live runner
    holding its share of the actors for three years."""
    store = _store()
    _put_heartbeat(store, "wild", time.time() + 1e8, 1e9)  # (no set clock: 10^8 s is no race)
    assert asyncio.run(Membership(store, "me", 30.0, "all").refresh()) == ("me",)


def test_a_heartbeat_read_midway_through_its_life_is_read_again_when_it_expires(clock: list[float]) -> None:
    """Mutation: another runner's heartbeat read again a whole lease after it was read, not
    when its known expiry passes. Read 1.5 s into a 2 s lease, then renewed by its runner, it
    was not read again at its expiry: the live runner was counted dead for 1.5 s, its share
    fired twice over. The last refresh, past the renewed expiry with no renewal since, counts
    it dead: the clock set here is the one ``Membership`` reads (without it, or aimed at a
    module that does not read it, no expiry passes and this test could not fail)."""
    store = _store()
    other = Membership(store, "other", 2.0, "all")
    me = Membership(store, "me", 30.0, "all")
    asyncio.run(other.beat())
    clock[0] += 1.5
    assert asyncio.run(me.refresh()) == ("me", "other")
    clock[0] += 0.3
    asyncio.run(other.beat())  # renewed (expires 2 s from now)
    clock[0] += 0.3  # past the expiry read first
    assert asyncio.run(me.refresh()) == ("me", "other")
    clock[0] += 2.0  # past the renewed expiry: not renewed again
    assert asyncio.run(me.refresh()) == ("me",)


def test_an_actor_s_owner_is_worked_out_again_when_the_view_of_the_runners_changes() -> None:
    """Mutation: ``Membership.refresh`` keeping the owners it worked out for the previous view.
    A runner alone, asked about an actor, kept firing it after a runner that ranks first for it
    joined (both fired it), and one that left took the dead runner's actors only on restart."""
    store = _store()
    me = Membership(store, "me", 30.0, "all")
    actor_id = _owned_by("other", ("me", "other"))
    assert me.owns(actor_id)  # alone
    other = Membership(store, "other", 30.0, "all")
    asyncio.run(other.beat())
    assert asyncio.run(me.refresh()) == ("me", "other")
    assert not me.owns(actor_id)
    asyncio.run(other.leave())
    assert asyncio.run(me.refresh()) == ("me",)
    assert me.owns(actor_id)


# -- claims -------------------------------------------------------------------------------------
def test_a_runner_s_own_claim_does_not_keep_it_off_the_actor() -> None:
    """Mutation: ``claim_actor`` counting a live claim of its own runner as another's. A claim
    whose create landed and whose answer was lost (the put retried, met ``AlreadyExists``) kept
    its own runner off the actor until the claim expired."""
    store = _store()
    assert asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert not asyncio.run(claim_actor(store, "a", "other", 30.0))


def test_a_claim_expiring_further_ahead_than_the_lease_and_the_clock_skew_is_taken_over() -> None:
    """Mutation: ``claim_actor``'s bound on a claim's expiry dropped. A claim saying it holds
    for a year (a clock gone wild, a forger on an unsigned store) kept every runner off the
    actor's timers for that year (docs/timers.md: taken over, with a warning)."""
    store = _store()
    claim = json.dumps({"runner": "wild", "until": time.time() + 365 * 86400}).encode()
    asyncio.run(store.put(keys.timer_claim_key("a"), claim))
    assert asyncio.run(claim_actor(store, "a", "me", 30.0))
    held = json.loads(asyncio.run(store.get(keys.timer_claim_key("a"))).data)
    assert held["runner"] == "me"


class _RacedTakeOver(MemoryStore):
    """Between a runner's read of an expired claim and its take-over, another runner takes it
    over (``taken``), or its holder releases it (``released``)."""

    def __init__(self, what: str) -> None:
        super().__init__(name=f"h163-{uuid.uuid4().hex}")
        self.what = what
        self.done = False

    async def get(self, key: str, **kwargs: Any) -> Blob:
        blob = await super().get(key, **kwargs)
        if key.startswith(keys.TIMER_CLAIMS) and not self.done:
            self.done = True
            if self.what == "taken":
                rival = {"runner": "rival", "until": time.time() + 30}
                await super().put(key, json.dumps(rival).encode())
        return blob

    async def put(self, key: str, data: bytes, mode: PutMode = "overwrite", **kwargs: Any) -> Any:
        released = self.what == "released" and not self.done and mode == "create"
        if key.startswith(keys.TIMER_CLAIMS) and released:
            self.done = True
            try:
                return await super().put(key, data, mode=mode, **kwargs)
            except AlreadyExistsError:
                await super().delete(key)
                raise
        return await super().put(key, data, mode=mode, **kwargs)


def test_two_runners_taking_over_one_expired_claim_do_not_both_hold_it() -> None:
    """Mutations: ``claim_actor``'s take-over an unconditional put (not if-match on the
    version read), or its lost if-match counted as won. Two runners that read one expired
    claim both took it and fired the actor side by side (what claims are to prevent)."""
    store = _RacedTakeOver("taken")
    expired = {"runner": "dead", "until": time.time() - 1}
    asyncio.run(store.put(keys.timer_claim_key("a"), json.dumps(expired).encode()))
    assert not asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert json.loads(asyncio.run(store.get(keys.timer_claim_key("a"))).data)["runner"] == "rival"


def test_a_claim_released_between_the_create_and_the_read_is_created_again() -> None:
    """Mutation: ``claim_actor`` giving up when the claim it failed to create is gone when
    read (released meanwhile). The actor, free, was left unfired by this runner's tick."""
    store = _RacedTakeOver("released")
    held = {"runner": "other", "until": time.time() + 30}
    asyncio.run(store.put(keys.timer_claim_key("a"), json.dumps(held).encode()))
    assert asyncio.run(claim_actor(store, "a", "me", 30.0))
    assert json.loads(asyncio.run(store.get(keys.timer_claim_key("a"))).data)["runner"] == "me"


# -- reports ------------------------------------------------------------------------------------
def test_a_long_running_runner_s_totals_keep_the_newest_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: ``TickReport._trim`` cutting the newest errors, not the oldest. A runner's
    totals showed the errors of its first hour, not the ones of now (docs/timers.md: the newest
    1,000)."""
    monkeypatch.setattr(timer_report, "_TOTAL_ERRORS", 2)
    report = TickReport(errors=["e1", "e2", "e3", "e4"])
    report._trim()
    assert (report.errors, report.error_count) == (["e3", "e4"], 4)


# -- claims: a tick ------------------------------------------------------------------------------
def test_a_claiming_tick_leaves_an_actor_another_runner_holds_and_releases_its_own(
    actor_store: StoreSpec,
) -> None:
    """Mutations: ``fire_actor`` firing an actor whose claim another runner holds (counted
    ``claimed_elsewhere`` all the same), and never releasing its own claim. The first fired
    side by side with the holder; the second kept every other runner off a fired actor for a
    lease (docs/timers.md: "deleted after firing")."""
    store = vc.get_runtime().store
    held = _arm_due("held")
    assert _sync.sync(claim_actor(store, "held", "other", 30.0))
    report = vc.fire_due_timers(split="claims", runner_id="me")
    assert (report.fired, report.claimed_elsewhere) == (0, 1)
    assert held.count.run() == 0
    free = _arm_due("free")
    report = vc.fire_due_timers(split="claims", runner_id="me")
    assert (report.fired, report.claimed_elsewhere) == (1, 1)
    assert free.count.run() == 1
    assert _sync.sync(store.list(keys.TIMER_CLAIMS)) == [keys.timer_claim_key("held")]


# -- a long-running runner -------------------------------------------------------------------------
def test_a_long_running_runner_fires_again_a_timer_whose_fire_was_excluded(actor_store: StoreSpec) -> None:
    """Mutation: ``_fire_held`` keeping a fired group's entries held once its fire ended. A
    timer whose first fire was excluded (its method raised ``SystemExit``: it stays due) was
    never listed again by that runner: lost until it restarted (docs/timers.md: "tried again
    at the next tick")."""
    EXITS[0] = 1
    bell = _arm_due("flaky")
    ticks = _Ticks(poll=0.05, runner_id="me")
    try:
        ticks.wait_for(1000, until=lambda: bell.count.run() == 1)
    finally:
        total = ticks.end()
    assert bell.count.run() == 1 and bell.timers() == []
    assert (total.fired, total.error_count) == (1, 1)


def test_a_long_running_runner_logs_an_error_met_at_every_poll_once(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutation: ``_warn_once`` logging every error it is given. A timer that cannot be fired
    logged one warning a poll, for ever (docs/timers.md: "logged as a warning ... the first
    time")."""
    EXITS[0] = 10**9
    _arm_due("stuck")
    ticks = _Ticks(poll=0.05, runner_id="me")
    try:
        ticks.wait_for(4, until=lambda: False)
        ticks.wait_for(1000, until=lambda: sum(r.error_count for r in ticks.reports) >= 3)
    finally:
        total = ticks.end()
    assert total.error_count >= 3
    warned = [r for r in caplog.records if "stuck/k" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warned) == 1, [r.getMessage() for r in warned]


class _RecordedWaits(threading.Event):
    """A stop event that records how long each thread waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[tuple[str, float | None]] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append((threading.current_thread().name, timeout))
        return super().wait(timeout)


def test_a_long_running_runner_renews_its_heartbeat_well_within_its_lease(actor_store: StoreSpec) -> None:
    """Mutation: the heartbeat renewed every 1.5 leases, not every lease/3. Its heartbeat
    expired between renewals: the other runners counted it dead and fired its share too."""
    stop = _RecordedWaits()
    ticks = _Ticks(stop=stop, poll=0.05, runner_id="me", lease=3.0)
    try:
        ticks.wait_for(2)
    finally:
        ticks.end()
    renewals = [timeout for name, timeout in stop.waits if name == "vactor-timer-heartbeat"]
    assert renewals and all(t is not None and t <= 1.0 for t in renewals), renewals


def test_a_runner_refuses_a_shard_past_its_count() -> None:
    """Mutation: ``TimerRunner`` accepting ``shard=(n, n)``: no actor hashes to it, so the
    runner fired nothing, silently."""
    with pytest.raises(ValueError, match="shard"):
        timer_runner.TimerRunner(runtime=types.SimpleNamespace(), shard=(2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("lease", [0.0, -30.0, math.nan, math.inf])
def test_a_claiming_runner_refuses_a_lease_that_holds_nothing(actor_store: StoreSpec, lease: float) -> None:
    """Defect (found by the mutation ``lease <= 0`` to ``lease < 0`` in ``Membership``, which
    only ``split="runners"`` reaches): ``split="claims"`` took any lease. A claim of a lease of
    0, or negative, or NaN expired as written (``until > now`` is false), so every claiming
    runner took every other's claim over: claims held nothing, silently; an infinite one was
    taken for one expiring too far ahead, the same. The command line refused these already
    (``--lease``); the Python API now does too, whatever the split."""
    for split in ("claims", "runners", "none"):
        with pytest.raises(ValueError, match="lease"):
            vc.fire_due_timers(split=split, lease=lease)


def test_membership_refuses_a_lease_that_holds_nothing() -> None:
    """Mutation: ``Membership`` taking a lease of 0 (``lease < 0`` refused, not ``<= 0``): its
    heartbeat expired as written, a live runner that no other runner ever counted."""
    with pytest.raises(ValueError, match="lease"):
        Membership(_store(), "me", 0.0, "all")


def _arm_later(actor_id: str, after: float) -> Any:
    bell = Bell.get_or_create(actor_id)
    assert bell.ring.options(delay=after, timer_key="k").run() == "k"
    return bell


def test_a_long_running_runner_fires_each_held_entry_when_it_falls_due_not_with_an_earlier_one(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``_dispatch`` popping every held entry once the earliest is due, not only the
    due ones. The later timer's fire, applied early, fired nothing (never early) and its entry
    waited for the next listing: a poll late (30 s here), not on time."""
    first, second = _arm_later("first", 0.3), _arm_later("second", 1.5)
    ticks = _Ticks(poll=30.0, runner_id="me")
    try:
        ticks.wait_for(1, until=lambda: second.count.run() == 1)
        deadline = time.monotonic() + 20  # (the next listing is 30 s away)
        while second.count.run() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        total = ticks.end()
    assert (first.count.run(), second.count.run()) == (1, 1)
    assert (total.fired, total.stale) == (2, 0)


def test_a_long_running_runner_holds_an_entry_listed_again_before_it_is_due_once(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``_take`` not skipping the entries it holds already. Listed every poll
    (0.05 s) while due in 0.6 s, the entry was pushed once a listing: a group of a dozen
    ``FIRE`` calls for one timer, all but one stale (work, and stale counts, that were not)."""
    bell = _arm_later("often", 0.6)
    ticks = _Ticks(poll=0.05, runner_id="me")
    try:
        ticks.wait_for(1000, until=lambda: bell.count.run() == 1)
    finally:
        total = ticks.end()
    assert (total.fired, total.stale, total.due) == (1, 0, 1)


def test_a_long_running_runner_leaves_a_held_entry_to_a_runner_that_joined_and_owns_it(
    actor_store: StoreSpec,
) -> None:
    """Mutations: ``_dispatch`` not asking again, as a held entry falls due, whether this
    runner still owns its actor; and ``_list_loop`` never listing the runners. A runner that
    joined (and ranks first for the actor) after the entry was held saw it fired by the old
    owner as well (work done twice: the step still fires once)."""
    store = vc.get_runtime().store
    actor_id = _owned_by("other", ("me", "other"))
    bell = _arm_later(actor_id, 4.0)  # (room for the view to change first on a loaded host)
    other = Membership(store, "other", 30.0, "all")
    # (the runners listed every 0.1 s; the entry, due within the horizon, held at once)
    ticks = _Ticks(poll=0.05, runner_id="me", lease=1.0, horizon=10.0)
    try:
        ticks.wait_for(1)
        assert ticks.reports[0].due == 1  # held, this runner alone
        _sync.sync(other.beat())
        ticks.wait_for(1000, until=lambda: ticks.reports[-1].runners == 2)
        time.sleep(max(0.0, bell.timers()[0]["due"] + 0.5 - time.time()))
        ticks.wait_for(len(ticks.reports) + 1)
    finally:
        total = ticks.end()
        _sync.sync(other.leave())
    assert bell.count.run() == 0 and total.fired == 0
    assert vc.fire_due_timers(runner_id="me").fired == 1


class _SlowIndex(ObjectStore):
    """Wraps a store: a listing of the due index answers ``list_delay`` seconds after it read
    (what it lists is as of its start), a delete of an entry lands after ``delete_delay``."""

    def __init__(self, inner: ObjectStore, list_delay: float, delete_delay: float) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.list_delay = list_delay
        self.delete_delay = delete_delay

    async def _get(self, key: str) -> Blob:
        return await self.inner.get(key)

    async def _head(self, key: str) -> str | None:
        return await self.inner.head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await self.inner.put(key, data, mode=mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await self.inner.list(prefix, start_after=start_after, limit=limit)
        if prefix.startswith(keys.TIMER_INDEX):
            await asyncio.sleep(self.list_delay)
        return listed

    async def _delete(self, key: str) -> None:
        if key.startswith(keys.TIMER_INDEX):
            await asyncio.sleep(self.delete_delay)
        await self.inner.delete(key)

    async def close(self) -> None:
        await self.inner.close()


def _slow_index(list_delay: float, delete_delay: float) -> _SlowIndex:
    runtime = vc.get_runtime()
    store = _SlowIndex(runtime.store, list_delay, delete_delay)
    runtime.store = store  # before any actor core exists, so every log uses it
    return store


def test_a_fired_entry_listed_again_while_its_delete_is_in_flight_is_not_fired_again(
    actor_store: StoreSpec,
) -> None:
    """Mutations: ``_fire_held`` letting go of a fired group's entries before their deletes
    finished, and ``_take`` taking an entry whose delete finished after its listing began. A
    listing meanwhile found the fired entry still there and fired it again: a ``FIRE`` that
    found its timer gone, a probe, a stale count (never a second firing: the step holds)."""
    _slow_index(list_delay=0.2, delete_delay=0.4)
    bell = _arm_later("listed-again", 0.5)
    ticks = _Ticks(poll=0.05, runner_id="me", horizon=10.0)
    try:
        ticks.wait_for(1000, until=lambda: bell.count.run() == 1)
        time.sleep(1.0)  # (the delete lands, and listings that began before it end)
        ticks.wait_for(len(ticks.reports) + 2)
    finally:
        total = ticks.end()
    assert (total.fired, total.stale, bell.count.run()) == (1, 0, 1)


def test_a_stopped_runner_returns_once_the_deletes_of_its_fired_entries_landed(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``TimerRunner.run`` not waiting for the deletes of fired entries in flight
    when stopped. It returned with them still to land (the process then ending cut them off:
    the entries were met, and probed, by the next runner)."""
    store = _slow_index(list_delay=0.0, delete_delay=0.5)
    bell = _arm_later("last", 0.2)
    ticks = _Ticks(poll=0.05, runner_id="me")
    try:
        ticks.wait_for(1000, until=lambda: bell.count.run() == 1)
    finally:
        total = ticks.end()
    assert total.fired == 1
    assert _sync.sync(list_index(store)) == []


class _RunnersUnlisted(_SlowIndex):
    """Wraps a store: every listing of the runners' heartbeats fails (a 503, say)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, 0.0, 0.0)
        self.failed = 0

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        if prefix.startswith(keys.TIMER_RUNNERS):
            self.failed += 1
            raise StorageError("injected: listing the runners failed", prefix)
        return await super()._list(prefix, start_after, limit)


def test_a_tick_whose_listing_of_the_runners_fails_fires_with_the_view_it_had(actor_store: StoreSpec) -> None:
    """Mutation: the tick's listing of the runners and of the due index made to fail together
    (``gather`` without ``return_exceptions``). A failed listing of the heartbeats, a hint,
    failed the whole tick: no due timer fired while the runners' prefix could not be listed."""
    runtime = vc.get_runtime()
    store = _RunnersUnlisted(runtime.store)
    runtime.store = store
    bell = _arm_due("listed")
    report = vc.fire_due_timers(runner_id="me")
    assert store.failed >= 1
    assert (report.fired, report.errors, bell.count.run()) == (1, [], 1)


def test_a_tick_drops_the_entry_of_an_actor_that_never_was(actor_store: StoreSpec) -> None:
    """Mutation: ``fire_actor`` keeping the entries of an actor its load does not find (a
    creation never committed, an entry written by hand). Counted stale, the entry stayed, and
    every tick after listed, loaded and counted it again."""
    store = vc.get_runtime().store
    _sync.sync(store.put(keys.timer_index_key(int(time.time() * 1000) - 1000, "nobody", "k", 1), b""))
    report = vc.fire_due_timers(runner_id="me")
    assert (report.fired, report.stale, report.errors) == (0, 1, [])
    assert _sync.sync(list_index(store)) == []
    assert vc.fire_due_timers(runner_id="me").stale == 0


class _EntryDeleteFails(_SlowIndex):
    """Wraps a store: the first delete of a due-index entry fails (a 500, say)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, 0.0, 0.0)
        self.failed = 0

    async def _delete(self, key: str) -> None:
        if key.startswith(keys.TIMER_INDEX) and not self.failed:
            self.failed += 1
            raise StorageError("injected: the delete failed", key)
        await super()._delete(key)


def test_a_fired_timer_whose_entry_delete_fails_is_no_error_and_its_entry_goes_next_tick(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``delete_entries`` letting a failed delete of an entry raise. A timer that
    fired, its entry's delete failing, was reported as an error of its actor (``vactor timers
    tick`` exiting 1 for it) though nothing was left to do: the entry, met again, is stale."""
    runtime = vc.get_runtime()
    store = _EntryDeleteFails(runtime.store)
    runtime.store = store
    bell = _arm_due("undeleted")
    report = vc.fire_due_timers(runner_id="me")
    assert store.failed == 1
    assert (report.fired, report.errors, bell.count.run()) == (1, [], 1)
    assert len(_sync.sync(list_index(store))) == 1
    again = vc.fire_due_timers(runner_id="me")
    assert (again.fired, again.stale, again.errors) == (0, 1, [])
    assert _sync.sync(list_index(store)) == [] and bell.count.run() == 1


def test_a_stopped_tick_lists_no_slice_past_the_one_it_stopped_in(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``tick`` not looking at ``stop`` between slices of the index. Stopped (Ctrl-C,
    SIGTERM), a tick over a backlog listed every slice left, starting no fire in any: a
    backlog of millions took that many LISTs to stop (docs/timers.md: it returns)."""
    monkeypatch.setattr(timer_runner, "_MAX_LISTED", 2)
    bells = [_arm_due(f"backlog-{i}") for i in range(5)]
    stop = threading.Event()
    stop.set()
    report = vc.fire_due_timers(runner_id="me", stop=stop)
    assert (report.listed, report.left, report.fired) == (2, 2, 0)
    assert [b.count.run() for b in bells] == [0] * 5
    assert vc.fire_due_timers(runner_id="me").fired == 5


def test_a_long_running_runner_holds_at_most_a_slice_of_the_index(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``_list_loop`` listing on past a slice while it holds a slice already. Its heap
    took every entry due within the horizon: after an outage, the whole backlog at once
    (docs/timers.md: "at most 20,000 held")."""
    monkeypatch.setattr(timer_runner, "_MAX_LISTED", 2)
    for i in range(5):
        _arm_later(f"held-{i}", 20.0)
    ticks = _Ticks(poll=30.0, runner_id="me", horizon=60.0)
    try:
        ticks.wait_for(1)
    finally:
        ticks.end()
    assert (ticks.reports[0].listed, ticks.reports[0].due) == (2, 2)


def test_merged_reports_add_up_what_their_ticks_left() -> None:
    """Mutation: ``TickReport.merge`` dropping ``left``. Reports of stopped ticks merged into
    one (shards' ticks, say) said no timer was left due."""
    report = TickReport(left=2)
    report.merge(TickReport(left=3, fired=1))
    assert (report.left, report.fired) == (5, 1)


def test_a_long_running_runner_whose_dispatcher_raises_ends_its_threads_and_raises(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``TimerRunner.run`` not setting ``stop`` when its dispatcher raised (a
    ``KeyboardInterrupt`` on the main thread, say). It then waited for ever for its listing
    and heartbeat threads, which only end once ``stop`` is set."""

    def broken(self: Any, stop: threading.Event, state: Any, pool: Any) -> None:
        raise RuntimeError("the dispatcher broke")

    monkeypatch.setattr(timer_runner.TimerRunner, "_dispatch", broken)
    stop = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            timer_runner.TimerRunner(poll=0.05, runner_id="me").run(stop)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    try:
        assert not thread.is_alive(), "the runner never returned"
        assert [str(e) for e in raised] == ["the dispatcher broke"]
        assert _heartbeats(vc.get_runtime().store) == []
    finally:
        stop.set()
        thread.join(30)


class _ClaimTakenOverMidFire(_SlowIndex):
    """Wraps a store: as the firing step of the actor is put, its claim is found taken over by
    another runner (this runner's fire outlasted its lease; the other took the expired claim)."""

    def __init__(self, inner: ObjectStore, actor_id: str) -> None:
        super().__init__(inner, 0.0, 0.0)
        self.claim = keys.timer_claim_key(actor_id)
        self.armed = False

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if self.armed and "/steps/" in key:
            self.armed = False
            rival = {"runner": "rival", "until": time.time() + 30}
            await self.inner.put(self.claim, json.dumps(rival).encode())
        return await super()._put(key, data, mode)


def test_a_runner_whose_claim_was_taken_over_mid_fire_leaves_the_new_holder_s_claim(
    actor_store: StoreSpec,
) -> None:
    """Defect: a claiming runner deleted the actor's claim after firing whatever it held by
    then. One whose fire outlasted its lease, its claim taken over by another runner meanwhile,
    deleted that runner's live claim: a third could claim the actor while the second fired it
    (work done twice; the step still fires once). The release is now a delete of the claim only
    while it is still at the version this runner put (``delete_unchanged``)."""
    runtime = vc.get_runtime()
    store = _ClaimTakenOverMidFire(runtime.store, "outlasted")
    runtime.store = store
    bell = _arm_due("outlasted")
    store.armed = True
    report = vc.fire_due_timers(split="claims", runner_id="me")
    assert (report.fired, bell.count.run()) == (1, 1)
    held = json.loads(_sync.sync(store.get(keys.timer_claim_key("outlasted"))).data)
    assert held["runner"] == "rival"
    assert not _sync.sync(claim_actor(store, "outlasted", "third", 30.0))


#: ``Gate.ring`` says it entered, then waits for ``OPEN`` (30 s at most)
ENTERED = threading.Event()
OPEN = threading.Event()


@vc.virtual_actor
class Gate:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> None:
        ENTERED.set()
        assert OPEN.wait(30)
        self.rang += 1

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.rang


def test_a_stopped_long_running_runner_finishes_the_fire_in_flight_and_starts_no_queued_one(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``TimerRunner.run`` letting its pool run the queued fires when stopped.
    Stopped (SIGTERM at a rollout), a runner one fire at a time behind a backlog went on
    firing all of it before it returned (docs/timers.md: fires in flight finish, queued ones
    are left to the next runner)."""
    ENTERED.clear()
    OPEN.clear()
    gates = [Gate.get_or_create(f"gate-{i}") for i in range(3)]
    for gate in gates:
        assert gate.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    ticks = _Ticks(poll=0.05, runner_id="me", concurrency=1)
    try:
        assert ENTERED.wait(30)
        ticks.stop.set()
        time.sleep(0.2)  # (the dispatcher sees it)
        OPEN.set()
    finally:
        OPEN.set()
        total = ticks.end()
    assert total.fired == 1 and sorted(g.count.run() for g in gates) == [0, 0, 1]
    assert vc.fire_due_timers(runner_id="me").fired == 2


def test_a_tick_interrupted_amid_its_fires_starts_no_queued_one(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``_fire_slice`` letting its pool run the queued fires once interrupted (a
    ``KeyboardInterrupt`` in its wait). Ctrl-C on a tick one fire at a time behind a backlog
    went on firing all of it (docs/timers.md: starts no other fire, lets those in flight
    finish)."""
    ENTERED.clear()
    OPEN.clear()
    gates = [Gate.get_or_create(f"gate-{i}") for i in range(3)]
    for gate in gates:
        assert gate.ring.options(at=time.time() - 1.0, timer_key="k").run() == "k"

    def interrupted(pending: Any) -> Any:
        assert ENTERED.wait(30)
        threading.Timer(0.2, OPEN.set).start()  # (the fire in flight ends once interrupted)
        raise KeyboardInterrupt

    monkeypatch.setattr(timer_runner._sync, "wait_first", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            vc.fire_due_timers(runner_id="me", concurrency=1)
    finally:
        OPEN.set()
    monkeypatch.undo()
    assert sorted(g.count.run() for g in gates) == [0, 0, 1]
    assert vc.fire_due_timers(runner_id="me").fired == 2


def test_the_older_claims_flag_still_picks_its_split(actor_store: StoreSpec) -> None:
    """Mutation: ``_split_of`` reading ``claims=True`` as ``split="none"`` and ``claims=False``
    as ``"claims"``. A program written for the older flag got the other split: its claiming
    runners took no claim (or its lone runner claimed each actor)."""
    store = vc.get_runtime().store
    bell = _arm_due("flagged")
    assert _sync.sync(claim_actor(store, "flagged", "other", 30.0))
    claiming = vc.fire_due_timers(claims=True, runner_id="me")
    assert (claiming.fired, claiming.claimed_elsewhere) == (0, 1)
    alone = vc.fire_due_timers(claims=False, runner_id="me")
    assert (alone.fired, alone.claimed_elsewhere, bell.count.run()) == (1, 0, 1)
    with pytest.raises(ValueError, match="contradicts"):
        vc.fire_due_timers(claims=False, split="claims")


@vc.virtual_actor
class Arming:
    def __init__(self) -> None:
        self.rang = 0

    def arm_and_wait(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("ring", after=0.0, key="k")
        ENTERED.set()
        assert OPEN.wait(30)

    def ring(self) -> None:
        self.rang += 1


def test_a_cancel_made_while_this_process_s_call_arming_the_timer_runs_cancels_it(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``_none_to_cancel`` not asking whether this process has a call to the actor in
    flight. A cancel made while a call of this process that arms the timer ran read the newest
    step, found no timer, returned False with no commit; the call then committed the timer, and
    it fired after the cancel returned (docs/timers.md: such calls apply before the cancel)."""
    ENTERED.clear()
    OPEN.clear()
    arming = Arming.get_or_create("arming")
    arming.ring.options(delay=3600, timer_key="other").run()  # (created, and warm)
    running = arming.arm_and_wait.run_async()
    try:
        assert ENTERED.wait(30)
        result: list[bool] = []
        canceller = threading.Thread(target=lambda: result.append(arming.cancel_timer("k")))
        canceller.start()
        time.sleep(0.2)
    finally:
        OPEN.set()
    running.result(30)
    canceller.join(30)
    assert result == [True] and [t["key"] for t in arming.timers()] == ["other"]


def test_cancelling_a_timer_of_a_deleted_actor_says_it_was_deleted(actor_store: StoreSpec) -> None:
    """Mutation: ``_none_to_cancel`` not checking whether the newest step is a tombstone. A
    cancel on a deleted actor returned False, as for an actor without that timer, where
    docs/timers.md promises ``ActorDeletedError`` (as ``timers()`` and calls raise)."""
    bell = _arm_later("doomed", 3600.0)
    assert vc.delete_actor("doomed") is True
    with pytest.raises(vc.ActorDeletedError):
        bell.cancel_timer("k")


def test_a_long_running_runner_whose_fire_raises_unexpectedly_fires_the_timer_later(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``_fire_held`` catching only ``VactorError``. A fire that raised anything else
    (a bug, a ``RuntimeError`` of a library underneath) ended its pool task with the group's
    entries held: the runner never listed them again, and the timer waited for its restart."""
    real = timer_runner.fire_actor
    raised: list[str] = []

    def once_broken(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append("once")
            raise RuntimeError("a bug, once")
        return real(*args, **kwargs)

    monkeypatch.setattr(timer_runner, "fire_actor", once_broken)
    bell = _arm_due("unlucky")
    ticks = _Ticks(poll=0.05, runner_id="me")
    try:
        ticks.wait_for(1000, until=lambda: bell.count.run() == 1)
    finally:
        total = ticks.end()
    assert raised == ["once"] and bell.count.run() == 1
    assert total.fired == 1 and any("a bug, once" in e for e in total.errors)


def test_a_tick_stopped_before_an_actor_s_fire_reports_no_fire_of_it_done(actor_store: StoreSpec) -> None:
    """Mutation: ``_fire_slice`` calling ``on_done`` for an actor whose fire the stop skipped.
    The command's progress said its timers were done; they were left due."""
    _arm_due("skipped")
    stop = threading.Event()
    stop.set()
    done: list[tuple[str, int]] = []
    report = vc.fire_due_timers(runner_id="me", stop=stop, on_done=lambda a, n: done.append((a, n)))
    assert (report.left, report.fired, done) == (1, 0, [])


@vc.virtual_actor
class Posting:
    def __init__(self) -> None:
        self.rang = 0

    def touch(self) -> None:
        pass

    def arm(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("ring", after=3600.0, key="k")

    def ring(self) -> None:
        self.rang += 1


@pytest.mark.usefixtures("runtime_off")
def test_a_cancel_made_while_a_post_of_ours_arming_the_timer_is_unapplied_cancels_it(
    store_spec: StoreSpec,
) -> None:
    """Mutation: ``_none_to_cancel`` not asking whether this process has a post to the actor
    not applied yet. A call arming the timer, posted under contention, its caller told
    ``CallPendingError``, was still to apply; a cancel then read the newest step, found no
    timer, returned False with no commit, and the post applied later armed the timer for good
    (docs/timers.md: such a post applies before the cancel)."""
    init_switchable(store_spec, combine_window=60.0)
    posting = Posting.get_or_create("posted")
    posting.touch.run()
    retune(commit_timeout=0.5)
    _hold_lease_elsewhere("posted")  # a stalled folder: our contended call posts and waits
    commit_behind_its_back("posted")
    with pytest.raises(vc.CallPendingError):
        posting.arm.run()
    assert "posted" in vc.get_runtime().pending_posts
    _hold_lease_elsewhere("posted", 0.0)  # the folder is gone: the post may be folded
    retune(commit_timeout=30.0)
    assert posting.cancel_timer("k") is True
    assert posting.timers() == []

"""Durable timers (issue 16): atomic with the scheduling step, fired exactly once, never early.

Runners race in several processes and are SIGKILLed at each point of firing
(after the claim, after the commit, before deleting the index entry), and a
scheduler is killed between its commit and its index write: nothing is
lost, nothing fires twice.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing.context
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import run_to_end
from store_helpers import retune
from test_examples import embedded_env, run_example
from timer_workers import (
    Alarm,
    arm_process,
    init_from_spec,
    long_runner_process,
    runner_process,
    schedule_process,
)

import vactor_cloud as vc
from vactor_cloud import _sync, keys
from vactor_cloud.cli.bench_harness import BenchCounter
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.storage import Blob, MemoryStore, PutMode
from vactor_cloud.testing.faults import FaultConfig, FaultRule
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.timer_membership import owner_of
from vactor_cloud.timer_runner import Membership, TickReport, repair_timer_index, run_timers
from vactor_cloud.timers import IndexEntry, list_index

#: These tests exercise behaviour above the storage contract: memory and local, and moto for
#: S3; the shipped conformance suite covers every backend.
pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


_PUT = frozenset({"put"})


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    init_from_spec(store_spec)
    try:
        yield store_spec
    finally:
        vc.shutdown()


@pytest.fixture
def shared(store_spec: StoreSpec, store_lane: Lane) -> Iterator[StoreSpec]:
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process")
    try:
        yield store_spec
    finally:
        vc.shutdown()


def index() -> list[IndexEntry]:
    return _sync.sync(list_index(vc.get_runtime().store))


@vc.virtual_actor
class Session:
    def __init__(self) -> None:
        self.log: list[str] = []

    def touch(self, after: float, key: str = "idle") -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("expire", after=after, key=key, args=(key,))

    def touch_then_fail(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("expire", after=0, key="never", args=("never",))
        raise ValueError("excluded")

    def remind(self, every: float) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule(self.tick, after=every, every=every, key="reminder")

    def tick(self) -> None:
        self.log.append(f"tick@{time.time():.3f}")

    def expire(self, key: str) -> None:
        self.log.append(f"expired {key}")

    def stop(self) -> bool:
        call = vc.current_call()
        assert call is not None
        return call.cancel_timer("reminder")

    @vc.virtual_actor.readonly
    def entries(self) -> list[str]:
        return list(self.log)


def test_a_timer_scheduled_by_a_raising_call_does_not_exist(actors: StoreSpec) -> None:
    session = Session.get_or_create("raising")
    with pytest.raises(ValueError, match="excluded"):
        session.touch_then_fail.run()
    assert session.timers() == []
    assert index() == []
    assert vc.fire_due_timers().fired == 0
    assert session.entries.run() == []


def test_a_timer_fires_once_and_never_before_it_is_due(actors: StoreSpec) -> None:
    session = Session.get_or_create("once")
    session.touch.run(2.0)  # long enough that a loaded server still asks before it is due
    [timer] = session.timers()
    assert timer["key"] == "idle"
    assert [e.key for e in index()] == ["idle"]  # indexed before run() returned
    early = vc.fire_due_timers()
    assert time.time() < timer["due"], "the store was too slow to ask before the timer was due"
    assert early.fired == 0  # not due yet
    time.sleep(max(0.0, timer["due"] - time.time()) + 0.05)
    first = vc.fire_due_timers()
    assert first.fired == 1 and min(first.lateness) >= 0
    assert vc.fire_due_timers().fired == 0
    assert session.entries.run() == ["expired idle"]
    assert session.timers() == [] and index() == []


def test_a_stale_index_entry_is_dropped_without_firing(actors: StoreSpec) -> None:
    session = Session.get_or_create("stale")
    session.touch.run(0.1)
    session.touch.run(30)  # the same key, rescheduled: the first entry is stale
    assert len(index()) == 2
    time.sleep(0.15)
    report = vc.fire_due_timers()
    assert (report.fired, report.stale) == (0, 1)
    assert session.entries.run() == []
    assert len(index()) == 1 and session.timers()[0]["due"] > time.time() + 20


def test_a_recurring_reminder_schedules_its_next_occurrence_in_the_step_that_fires_it(
    actors: StoreSpec,
) -> None:
    session = Session.get_or_create("reminder")
    session.remind.run(0.2)
    fired = 0
    deadline = time.monotonic() + 60  # (only bounds the loop: a pass is ~7 requests)
    while fired < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        fired += vc.fire_due_timers().fired
    assert fired == 3
    record = vc.get_runtime().core("reminder").record
    assert record is not None and record.calls[-1].method == "tick"
    assert "reminder" in record.extra["timers"]  # the next occurrence, in the firing step
    assert [t["key"] for t in session.timers()] == ["reminder"]
    assert session.stop.run() is True
    assert session.timers() == []
    time.sleep(0.25)
    assert vc.fire_due_timers().fired == 0
    assert len(session.entries.run()) == 3


def test_scheduling_from_outside_listing_and_cancelling(actors: StoreSpec) -> None:
    session = Session.get_or_create("outside")
    future = session.expire.options(delay=0.2, timer_key="later").run_async("later")
    assert future.result(30) == "later"
    session.expire.options(at=time.time() + 60, timer_key="cancelled").run("cancelled")
    keyed = session.expire.options(delay=0.2, idempotency_key="once-only")
    generated = keyed.run("k")
    assert keyed.run("k") == generated  # a retried schedule is deduplicated: one timer
    assert sorted(t["key"] for t in session.timers()) == sorted(["cancelled", "later", generated])
    assert session.cancel_timer("cancelled") is True
    assert session.cancel_timer("cancelled") is False
    time.sleep(0.25)
    assert vc.fire_due_timers().fired == 2
    log = session.entries.run()
    assert sorted(log) == ["expired k", "expired later"]
    assert session.timers() == []


def test_an_actor_without_timers_keeps_one_put_per_warm_commit(actors: StoreSpec) -> None:
    handle = BenchCounter.get_or_create("plain")
    handle.incr.run()
    with RequestTrace(vc.get_runtime().store).installed() as t:
        handle.incr.run()
    # (HEAD moves in the background, off the commit's path: on a slow server one may land here)
    assert [r.kind for r in t.on_path()] == ["put"], [(r.kind, r.key) for r in t.requests]
    # and an actor whose commit leaves its timers alone pays nothing more either
    session = Session.get_or_create("quiet")
    session.touch.run(60)
    with RequestTrace(vc.get_runtime().store).installed() as t:
        session.tick.run()
    assert [r.kind for r in t.on_path()] == ["put"], [(r.kind, r.key) for r in t.requests]


def test_the_session_timeout_example_runs(tmp_path: Path) -> None:
    out = run_example("session_timeout.py", env=embedded_env(tmp_path))
    assert "expired: idle timeout" in out


# -- several processes ----------------------------------------------------------------------------


def _arm(actor_ids: list[str], per_actor: int, after: float) -> set[tuple[str, str]]:
    expected: set[tuple[str, str]] = set()
    for actor_id in actor_ids:
        names = [f"k{i}" for i in range(per_actor)]
        Alarm.get_or_create(actor_id).arm.run(names, after)
        expected |= {(actor_id, n) for n in names}
    return expected


def _assert_each_fired_once(expected: set[tuple[str, str]]) -> None:
    fired: dict[tuple[str, str], int] = {}
    for actor_id in {a for a, _ in expected}:
        for key, count in vc.get_actor(actor_id).counts.run().items():
            fired[(actor_id, key)] = count
    assert set(fired) == expected, f"lost: {sorted(expected - set(fired))[:5]}"
    doubled = {k: c for k, c in fired.items() if c != 1}
    assert not doubled, f"fired more than once: {doubled}"
    assert _sync.sync(list_index(vc.get_runtime().store)) == []


def test_racing_runner_processes_fire_each_timer_exactly_once(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext
) -> None:
    init_from_spec(shared)
    expected = _arm([f"race-{i}" for i in range(12)], 5, 1.0)
    vc.shutdown()
    until = time.time() + 6
    # The claims' lease: a runner must take a claim within a third of it, and taking one that
    # exists (cut off, or another runner's, expired) is three requests in a row. With 0.5 s
    # (0.17 s for the three) a loaded host's requests never fit: every claim was cut off, and
    # the runners fired nothing for their 96 s (6 of 6 runs with two busy loops beside and
    # 0.1 s per request). Runners that race still meet (each lists every actor's entries).
    lease = 3.0
    codes = run_to_end(
        process_context.Process(target=runner_process, args=(shared, until, lease, None)) for _ in range(4)
    )
    assert codes == [0, 0, 0, 0]
    init_from_spec(shared)
    _assert_each_fired_once(expected)


_KILL_POINTS = {
    "after_claim": FaultRule("crash_after", operations=_PUT, key_contains=keys.TIMER_CLAIMS, at=(2,)),
    "after_commit": FaultRule("crash_after", operations=_PUT, key_contains="/steps/", at=(2,)),
    "before_index_delete": FaultRule(
        "crash_before", operations=frozenset({"delete"}), key_contains=keys.TIMER_INDEX, at=(3,)
    ),
}


@pytest.mark.parametrize("point", sorted(_KILL_POINTS))
def test_a_runner_killed_at_each_point_of_firing_loses_and_doubles_nothing(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, point: str
) -> None:
    init_from_spec(shared)
    expected = _arm([f"kill-{i}" for i in range(4)], 3, 0.2)
    vc.shutdown()
    time.sleep(0.3)
    config = FaultConfig((_KILL_POINTS[point],), seed=16, name=point)
    victim = process_context.Process(target=runner_process, args=(shared, time.time() + 30, 1.0, config))
    assert run_to_end([victim]) == [-9]  # SIGKILLed where the rule says
    init_from_spec(shared)
    time.sleep(1.1)  # the victim's claim expires
    deadline = time.monotonic() + 20
    while _sync.sync(list_index(vc.get_runtime().store)) and time.monotonic() < deadline:
        vc.fire_due_timers(lease=1.0)
        time.sleep(0.1)
    _assert_each_fired_once(expected)


def test_a_scheduler_killed_between_commit_and_index_write_loses_nothing(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext
) -> None:
    init_from_spec(shared)
    Alarm.get_or_create("sched-a")
    Alarm.get_or_create("sched-b")
    vc.shutdown()
    config = FaultConfig(
        (FaultRule("crash_before", operations=_PUT, key_contains=keys.TIMER_INDEX, at=(1,)),), name="sched"
    )
    for actor_id in ("sched-a", "sched-b"):
        proc = process_context.Process(
            target=schedule_process, args=(shared, config, actor_id, ["k0", "k1"], 0.1)
        )
        assert run_to_end([proc]) == [-9]
    init_from_spec(shared)
    assert _sync.sync(list_index(vc.get_runtime().store)) == []  # committed, not indexed
    assert len(vc.get_actor("sched-a").timers()) == 2
    # the actor's next commit in a process that has not seen its entries writes them ...
    vc.get_actor("sched-a").noop.run()
    assert {e.actor_id for e in _sync.sync(list_index(vc.get_runtime().store))} == {"sched-a"}
    # ... and the repair scan finds the rest
    assert repair_timer_index() == 4
    time.sleep(0.15)
    assert vc.fire_due_timers().fired == 4
    _assert_each_fired_once({(a, k) for a in ("sched-a", "sched-b") for k in ("k0", "k1")})


def test_the_cli_lists_ticks_and_repairs(actors: StoreSpec, capsys: pytest.CaptureFixture[str]) -> None:
    from vactor_cloud.cli import main

    Session.get_or_create("cli").touch.run(0.05)
    vc.shutdown()
    time.sleep(0.1)
    options = [f"-o{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in actors.options.items()]
    assert main(["timers", "ls", "--storage", actors.url, *options, "--json"]) == 0
    assert [e["key"] for e in json.loads(capsys.readouterr().out)] == ["idle"]
    assert main(["timers", "repair", "--storage", actors.url, *options]) == 0
    assert "indexed 1 pending timers" in capsys.readouterr().out
    assert (
        main(["timers", "tick", "--storage", actors.url, *options, "--json", "--shard", "0/1", "--no-claims"])
        == 0
    )
    assert '"fired": 1' in capsys.readouterr().out
    init_from_spec(actors)
    assert Session.get_or_create("cli").entries.run() == ["expired idle"]


# -- how runners split the work: heartbeats and rendezvous hashing --------------------------------


def _heartbeats() -> list[str]:
    return [
        r
        for k in _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS))
        if (r := keys.timer_runner_of(k))
    ]


def test_rendezvous_hashing_moves_only_the_actors_of_a_runner_that_comes_or_goes() -> None:
    actors = [f"a{i}" for i in range(2000)]
    three = {a: owner_of(a, ["r1", "r2", "r3"]) for a in actors}
    assert {r: sum(1 for o in three.values() if o == r) for r in ("r1", "r2", "r3")} == pytest.approx(
        {"r1": 667, "r2": 667, "r3": 667}, abs=100
    )
    four = {a: owner_of(a, ["r1", "r2", "r3", "r4"]) for a in actors}
    moved = [a for a in actors if three[a] != four[a]]
    assert all(four[a] == "r4" for a in moved)  # only to the newcomer
    assert len(moved) == pytest.approx(500, abs=80)
    assert {a: owner_of(a, ["r3", "r2", "r1"]) for a in actors} == three  # order does not matter


def test_list_index_reads_only_what_is_due_by_then(actors: StoreSpec) -> None:
    store = vc.get_runtime().store
    for i in range(25):
        _sync.sync(store.put(keys.timer_index_key(1000 + i, f"a{i}", "k"), b""))
    assert len(_sync.sync(list_index(store))) == 25
    assert [e.due_ms for e in _sync.sync(list_index(store, due_by_ms=1009, page=4))] == list(
        range(1000, 1010)
    )
    assert len(_sync.sync(list_index(store, due_by_ms=5000, limit=7, page=3))) == 7
    assert len(_sync.sync(list_index(store, due_by_ms=5000, page=5))) == 25


def test_a_tick_registers_for_its_duration_and_leaves_the_actors_of_live_runners(actors: StoreSpec) -> None:
    for i in range(12):
        Session.get_or_create(f"split-{i}").touch.run(0.05)
    time.sleep(0.1)
    other = Membership(vc.get_runtime().store, "other-runner", 30.0, "all")
    _sync.sync(other.beat())
    first = vc.fire_due_timers(runner_id="me")
    assert first.runners == 2 and first.assigned_elsewhere > 0
    assert first.fired == 12 - first.assigned_elsewhere
    assert _heartbeats() == ["other-runner"]  # the tick removed its own
    _sync.sync(other.leave())  # a graceful leave hands its actors over at once
    assert vc.fire_due_timers(runner_id="me").fired == first.assigned_elsewhere
    assert index() == [] and _heartbeats() == []
    # runners of another group (another shard) are no members
    for i in range(12):
        Session.get_or_create(f"split-{i}").touch.run(0.05)
    time.sleep(0.1)
    _sync.sync(other.beat())
    sharded = vc.fire_due_timers(runner_id="me", shard=(0, 1))
    assert (sharded.fired, sharded.runners, sharded.assigned_elsewhere) == (12, 1, 0)


def test_an_expired_heartbeat_is_no_member_and_is_removed_after_its_lease(actors: StoreSpec) -> None:
    Session.get_or_create("expired").touch.run(0.05)
    time.sleep(0.1)
    store = vc.get_runtime().store
    # The dead runner's own lease decides: expired a lease after its beat, removed once
    # expired for another lease. The tick between must list the heartbeats inside that
    # second lease (a 0.2 s lease left 0.15 s, and a CI run missed it; 1.5 s left 1.4 s).
    lease = 3.0
    dead = Membership(store, "dead-runner", lease, "all")
    before = time.time()  # its "until" is set after this
    _sync.sync(dead.beat())
    beat_at = time.monotonic()  # and before this
    time.sleep(max(0.0, beat_at + lease + 0.1 - time.monotonic()))  # expired, not for a whole lease
    assert vc.fire_due_timers(runner_id="me", lease=0.2).fired == 1
    assert time.time() < before + 2 * lease, "the tick was too slow to see it expired but kept"
    assert _heartbeats() == ["dead-runner"]
    time.sleep(max(0.0, beat_at + 2 * lease + 0.1 - time.monotonic()))
    vc.fire_due_timers(runner_id="me", lease=0.2)
    assert _heartbeats() == []


def test_a_long_running_runner_fires_a_timer_when_it_falls_due_not_at_its_next_poll(
    actors: StoreSpec,
) -> None:
    session = Session.get_or_create("punctual")
    session.touch.run(1.5)  # (due after the runner's first listing, a few ms after its start)
    stop = threading.Event()
    reports: list[TickReport] = []
    thread = threading.Thread(
        target=lambda: reports.append(run_timers(poll=30.0, stop=stop, runner_id="punctual-runner"))
    )
    thread.start()
    try:
        deadline = time.monotonic() + 45
        while session.entries.run() == [] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _heartbeats() == ["punctual-runner"]
    finally:
        stop.set()
        thread.join(30)
    assert session.entries.run() == ["expired idle"]
    (total,) = reports
    # listed once at start (due in 1.5 s, within the horizon): fired from the heap, not at the
    # next poll (about 28 s late); the bound leaves a loaded machine room
    assert total.fired == 1 and total.lateness[0] < 10
    assert _heartbeats() == []  # a graceful stop deletes the heartbeat


def test_a_runner_whose_cache_is_behind_does_not_drop_a_new_timer(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext
) -> None:
    """The runner fired the actor a moment ago (its cache is fresh); another process then
    schedules a timer on it. The runner's FIRE, applied on its cached step, finds no such
    timer: the entry must survive (a probe of the newest step shows the timer) and fire."""
    init_from_spec(shared)
    Alarm.get_or_create("behind").arm.run(["first"], 0.0)
    assert vc.fire_due_timers().fired == 1  # this process's cache of "behind" is now fresh
    proc = process_context.Process(target=arm_process, args=(shared, "behind", ["second"], 0.0))
    assert run_to_end([proc]) == [0]
    report = vc.fire_due_timers()
    assert (report.fired, report.stale) == (1, 0)
    _assert_each_fired_once({("behind", "first"), ("behind", "second")})


def _wait_for_heartbeat(runner_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while runner_id not in _heartbeats():
        assert time.monotonic() < deadline, f"runner {runner_id} never wrote its heartbeat"
        time.sleep(0.05)


def test_runners_that_disagree_about_who_is_alive_fire_each_timer_once(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext
) -> None:
    """Each of two runners believes it is alone: both fire every actor's timers."""
    init_from_spec(shared)
    expected = _arm([f"disagree-{i}" for i in range(8)], 4, 4.0)
    # Past the timers' due time (4 s: both processes have started by then), each runner stops
    # once the due index is empty: a later stop (it was 12 s) fires nothing more.
    until = time.time() + 6
    procs = [
        process_context.Process(
            target=long_runner_process, args=(shared, name, until, 5.0, 0.2, None, [name])
        )
        for name in ("left", "right")
    ]
    assert run_to_end(procs) == [0, 0]
    _assert_each_fired_once(expected)
    assert _heartbeats() == []


def test_the_actors_of_a_killed_runner_fire_once_its_heartbeat_expires(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext
) -> None:
    init_from_spec(shared)
    ids = [f"orphan-{i}" for i in range(10)]
    for actor_id in ids:
        Alarm.get_or_create(actor_id)
    lease = 2.0
    until = time.time() + 60
    die_at_first_commit = FaultConfig(
        (FaultRule("crash_before", operations=_PUT, key_contains="/steps/", at=(1,)),), name="victim"
    )
    victim = process_context.Process(
        target=long_runner_process, args=(shared, "victim", until, lease, 0.2, die_at_first_commit)
    )
    survivor = process_context.Process(
        target=long_runner_process, args=(shared, "survivor", until, lease, 0.2)
    )
    victim.start()
    try:
        _wait_for_heartbeat("victim")
        survivor.start()
        _wait_for_heartbeat("survivor")
        time.sleep(0.6)  # both have listed the runners: each owns its rendezvous share
        mine = [a for a in ids if owner_of(a, ["survivor", "victim"]) == "victim"]
        assert mine, "the victim owns none of the actors: pick other ids"
        expected = _arm(ids, 2, 0.3)
        victim.join(60)
        assert victim.exitcode == -9  # killed at its first commit, its heartbeat left behind
        died_at = time.time()  # its heartbeat is renewed no more
        deadline = time.monotonic() + 60
        while not _all_fired(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        fired_at = time.time()
        survivor.terminate()  # SIGTERM: a graceful stop
        survivor.join(60)
        assert survivor.exitcode == 0
    finally:
        for proc in (victim, survivor):
            if proc.is_alive():
                proc.kill()
            proc.join(10)
    _assert_each_fired_once(expected)
    # the victim's share waited for its heartbeat to expire: at most a lease after its last renewal
    assert fired_at - died_at < lease + 10
    assert "survivor" not in _heartbeats()


def _all_fired(expected: set[tuple[str, str]]) -> bool:
    fired: set[tuple[str, str]] = set()
    for actor_id in {a for a, _ in expected}:
        fired |= {(actor_id, k) for k in vc.get_actor(actor_id).counts.run()}
    return expected <= fired


class _Stallable(MemoryStore):
    """A memory store whose every request hangs while ``stalled`` is set (a listener that
    accepts and never answers); commits go through the IO loop like any remote store's."""

    stalled = False

    @property
    def inline(self) -> bool:
        return False

    async def _wait(self) -> None:
        while self.stalled:
            await asyncio.sleep(0.05)

    async def _get(self, key: str) -> Blob:
        await self._wait()
        return await super()._get(key)

    async def _head(self, key: str) -> str | None:
        await self._wait()
        return await super()._head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        await self._wait()
        return await super()._put(key, data, mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        await self._wait()
        return await super()._list(prefix, start_after, limit)

    async def _delete(self, key: str) -> None:
        await self._wait()
        await super()._delete(key)


def test_a_runner_rides_out_a_stalled_store_and_stops_within_its_deadline_while_stalled() -> None:
    """A stalled endpoint neither hangs a timer runner nor makes it fire twice: while the
    store answers nothing its listings fail within the deadline (reported, retried next
    poll); once it answers again the due timer fires once; a stop during a stall returns
    within the deadlines too (the heartbeat delete times out and is logged)."""
    store = _Stallable(f"stall-{uuid.uuid4().hex}")
    vc.init(store, settings=vc.Settings(timeout=0.3))
    try:
        session = Session.get_or_create("stalled")
        session.touch.run(0.3)
        # The 1 s deadline is the runner's: not the setup's (a loaded host's get_or_create
        # passed a 1 s one in another test).
        retune(deadline=1.0)
        store.stalled = True
        stop = threading.Event()
        reports: list[TickReport] = []
        thread = threading.Thread(
            target=lambda: reports.append(run_timers(poll=0.2, stop=stop, runner_id="stall-runner"))
        )
        thread.start()
        time.sleep(2.0)  # due meanwhile; nothing answers
        store.stalled = False
        deadline = time.monotonic() + 30
        while session.entries.run() == [] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.entries.run() == ["expired idle"]
        store.stalled = True
        stopped_at = time.monotonic()
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the runner did not stop while the store was stalled"
        stopping = time.monotonic() - stopped_at
        store.stalled = False
        (total,) = reports
        assert total.fired == 1
        assert total.errors, "the failed listings during the stall were not reported"
        assert session.entries.run() == ["expired idle"]  # once, not twice
        print(f"stopped in {stopping:.1f} s while stalled; errors reported: {len(total.errors)}")
    finally:
        store.stalled = False
        vc.shutdown()

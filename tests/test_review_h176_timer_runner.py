"""Review h176: the timer runner's open edges left by h172 (a claim task left unwatched by a
cancelled ``cut_off_after``; the tick's renewer; a torn heartbeat or claim deleted unconditionally).

A test that failed before its fix names it in its docstring; one that passed already says so.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from garbage import full_collection
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import keys
from vactor_cloud.checked_read import READS
from vactor_cloud.errors import StorageError, TruncatedObjectError
from vactor_cloud.storage import Blob, LocalStore, ObjectStore, PutMode
from vactor_cloud.testing._forwarding import ForwardingStore
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_claims import claim_actor, cut_off_after
from vactor_cloud.timer_runner import Membership, TimerRunner

pytestmark = pytest.mark.vactor_lanes("memory", "local")


# -- cut_off_after cancelled while its claim task finishes -----------------------------------------------
def _outer_cancelled_as_the_claim_ends(
    ending: Callable[[], Any], twice: bool
) -> tuple[list[dict[str, Any]], bool]:
    """Run ``cut_off_after`` over a claim that, once let go or cancelled, ends by ``ending()``
    (raises, or returns a version: the put landed). Cancel ``cut_off_after`` as the claim ends
    (``twice``: cancel it, and again while it waits for the claim it cancelled). What the
    loop's exception handler was told, once the claim task is gone; whether ``cut_off_after`` ended
    cancelled."""
    seen: list[dict[str, Any]] = []

    async def main() -> bool:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context))
        finishing = asyncio.Event()

        async def claim() -> Any:
            try:
                await finishing.wait()
            except asyncio.CancelledError:
                await asyncio.sleep(0)  # (as a store request winding down: a step more)
            return ending()

        outer = asyncio.ensure_future(cut_off_after(claim, 60.0, "timer-claims/a", "a timer claim"))
        for _ in range(3):
            await asyncio.sleep(0)
        if twice:
            outer.cancel()
            await asyncio.sleep(0)  # (it cancels the claim and waits for it...)
        else:
            finishing.set()  # (the claim's wake-up is queued before the cancellation's)
        outer.cancel()  # (...and is cancelled there)
        try:
            await outer
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        for _ in range(10):  # (the claim task ends, its callbacks run)
            await asyncio.sleep(0)
        return cancelled

    cancelled = asyncio.run(main())
    full_collection()  # (a task whose exception nobody took says so when collected)
    return seen, cancelled


def _put_failed() -> Any:
    raise StorageError("the claim put failed as the tick was cancelled", "timer-claims/a")


@pytest.mark.parametrize("twice", [False, True])
def test_a_claim_whose_within_is_cancelled_as_it_fails_has_its_error_taken(twice: bool) -> None:
    """Before: ``cut_off_after`` cancelled (the runtime shut down, Ctrl-C, the operation's deadline)
    just as its claim task failed left the task's exception unretrieved (the task done, the
    ``finally`` did not wait for it; or, cancelled twice, the wait there was cut short): the
    loop logged "Task exception was never retrieved" with a traceback. Now the task's outcome
    is always taken (a done-callback), and logged at debug."""
    seen, cancelled = _outer_cancelled_as_the_claim_ends(_put_failed, twice)
    assert cancelled
    assert seen == [], [context.get("message") for context in seen]


def test_a_claim_that_lands_under_a_cancelled_within_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Before: a claim put that landed as ``cut_off_after`` was cancelled went unseen (nobody took
    the task's result). It holds the actor for its lease at most, as a claim cut off at
    lease/3 that lands (docs/timers.md) and its runner takes it back at its next tick: now it
    is logged (debug), with the key, so an operator can tell why an actor waited a lease."""
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        seen, cancelled = _outer_cancelled_as_the_claim_ends(lambda: "v1", twice=False)
    assert cancelled and seen == []
    landed = [r.getMessage() for r in caplog.records if "landed" in r.getMessage()]
    assert landed and "timer-claims/a" in landed[0], caplog.text


# -- a tick's heartbeat renewals -------------------------------------------------------------------
class _CountingStarts:
    """Counts the threads started (``threading.Thread.start``) while installed (the IO loop's
    executor may start one for a synced write of the local store: see ``of_the_tick``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        start = threading.Thread.start

        def counted(thread: threading.Thread) -> None:
            self.names.append(thread.name)
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", counted)

    def of_the_tick(self) -> list[str]:
        """The threads the tick started itself (its renewer and the helper joining it, its pools)."""
        return [name for name in self.names if name.startswith(("vactor-timer", "vactor-close"))]


def test_a_tick_shorter_than_a_third_of_its_lease_starts_no_thread_and_renews_nothing(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: every tick (``split="runners"``) started a heartbeat renewer thread and joined
    it at its end, though most end long before the first renewal is due (lease/3): an empty
    tick cost about 1 ms more wall time for it. Now the renewals are timed on the IO loop: a
    tick that ends first starts no thread, and writes its heartbeat once (then deletes it)."""
    runtime = vc.get_runtime()
    counting = _CountingPuts(runtime.store, keys.timer_runner_key("short"))
    runtime.store = counting
    vc.fire_due_timers(runner_id="short")  # (the IO loop and the runtime's pools up already)
    counting.puts = 0
    starts = _CountingStarts(monkeypatch)
    report = vc.fire_due_timers(runner_id="short", lease=600.0)
    assert (report.fired, report.errors) == (0, [])
    assert starts.of_the_tick() == []
    assert counting.puts == 1
    assert asyncio.run(counting.inner.list(keys.TIMER_RUNNERS)) == []


class _CountingPuts(ForwardingStore):
    """Wraps a store: counts the puts of ``key``."""

    def __init__(self, inner: ObjectStore, key: str) -> None:
        super().__init__(inner)
        self.key = key
        self.puts = 0

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key == self.key:
            self.puts += 1
        return await self.inner.put(key, data, mode=mode)


class _StallingFirstRenewal(ForwardingStore):
    """Wraps a store: counts the puts of runner ``long``'s heartbeat; the second (the tick's
    first renewal) answers only once ``released`` is set (60 s at most); ``enough`` is set at
    the ``enough_at``-th put."""

    def __init__(self, inner: ObjectStore, enough_at: int) -> None:
        super().__init__(inner)
        self.puts = 0
        self.enough_at = enough_at
        self.enough = threading.Event()
        self.released = threading.Event()

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key != keys.timer_runner_key("long"):
            return await self.inner.put(key, data, mode=mode)
        self.puts += 1
        if self.puts >= self.enough_at:
            self.enough.set()
        if self.puts == 2:
            for _ in range(6000):  # (60 s at most)
                if self.released.is_set():
                    break
                await asyncio.sleep(0.01)
        return await self.inner.put(key, data, mode=mode)


_RENEWALS: list[_StallingFirstRenewal] = []


@vc.virtual_actor
class Patient:
    def wait_for_renewals(self) -> bool:
        store = _RENEWALS[-1]
        seen = store.enough.wait(60)  # (the tick lasts until its renewals are seen, or 60 s)
        store.released.set()
        return seen


def test_a_tick_renews_every_third_of_its_lease_for_as_long_as_it_lasts_past_a_stalled_renewal(
    actor_store: StoreSpec,
) -> None:
    """(Passed already, with the thread; pins the renewals now timed on the IO loop.) A tick
    lasting many periods (its timer's method waits until it has seen them) renews its
    heartbeat again and again, a renewal that stalls cut off at lease/3 and followed by the
    next: the join and four renewals, the first stalled until the end. (Mutations: a renewal
    not timing the next, or not cut off at lease/3, leave the method waiting its 60 s.)"""
    runtime = vc.get_runtime()
    retune(deadline=120.0)  # (longer than the method's wait: only the cut-off ends the stall)
    patient = Patient.get_or_create("patient")
    assert patient.wait_for_renewals.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    store = _StallingFirstRenewal(runtime.store, enough_at=5)
    _RENEWALS.append(store)
    runtime.store = store
    report = vc.fire_due_timers(runner_id="long", lease=0.6)
    assert (report.fired, report.errors) == (1, [])
    assert store.enough.is_set(), f"{store.puts} heartbeat puts (the join and its renewals)"
    puts = store.puts
    time.sleep(0.6)  # (three periods: a renewal left timed after the tick would have put again)
    assert store.puts == puts
    assert asyncio.run(store.inner.list(keys.TIMER_RUNNERS)) == []


class _CountingBeats(ForwardingStore):
    """Wraps a store: counts the puts of runner ``shut``'s heartbeat."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.puts = 0

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key == keys.timer_runner_key("shut"):
            self.puts += 1
        return await self.inner.put(key, data, mode=mode)


_HELD = threading.Event()
_FIRING = threading.Event()


@vc.virtual_actor
class Holder:
    def hold(self) -> bool:
        _FIRING.set()
        return _HELD.wait(60)


def _renewal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "renew" in r.getMessage()]


def test_a_tick_whose_runtime_is_shut_down_under_it_ends_and_renews_no_more(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """(Passed already, with the thread.) The runtime shut down while a tick fires (its method
    held past the shutdown's timeout): the tick ends, and no renewal is tried after it (each
    would be refused, and said so in the log), nor any thread left. (Mutation: a stop that
    leaves the renewals timed: a warning every period.)"""
    runtime = vc.get_runtime()
    holder = Holder.get_or_create("held")
    assert holder.hold.options(at=time.time() - 1.0, timer_key="k").run() == "k"
    store = _CountingBeats(runtime.store)
    runtime.store = store
    _HELD.clear()
    _FIRING.clear()
    before = {t.ident for t in threading.enumerate() if t.name == "vactor-timer-heartbeat"}
    ended: list[BaseException | object] = []

    def tick() -> None:
        try:
            ended.append(vc.fire_due_timers(runner_id="shut", lease=0.6))
        except BaseException as exc:
            ended.append(exc)

    ticking = threading.Thread(target=tick)
    ticking.start()
    try:
        assert _FIRING.wait(60)
        runtime.close(timeout=0.5)  # (the fire outlasts it: cut off)
    finally:
        _HELD.set()
        ticking.join(60)
    assert not ticking.is_alive() and ended, ended
    puts, tried = store.puts, len(_renewal_lines(caplog))
    time.sleep(0.6)  # (three periods: a renewal timer left armed would have tried again)
    assert store.puts == puts
    assert _renewal_lines(caplog)[tried:] == []
    left = [t for t in threading.enumerate() if t.name == "vactor-timer-heartbeat" and t.ident not in before]
    assert left == []


# -- a torn heartbeat or claim replaced between its reads and its delete ---------------------------
def _tear(store: LocalStore, key: str) -> None:
    """Leave the file of ``key`` empty: written unsynced and cut by a machine crash (shorter
    than the local store's write token: ``TruncatedObjectError``, no version)."""
    path = store._fspath(key, writing=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(b"")


class _ReplacedAfterTornReads(ForwardingStore):
    """Wraps a local store: once every read of ``key`` has found it torn (the third), ``then``
    runs (another runner writes it whole: a renewal, a claim taken), and the read fails."""

    def __init__(self, inner: LocalStore, key: str, then: Callable[[LocalStore], Awaitable[Any]]) -> None:
        super().__init__(inner)
        self.key = key
        self.then = then
        self.torn_reads = 0

    async def _get(self, key: str) -> Blob:
        try:
            return await self.inner.get(key)
        except TruncatedObjectError:
            if key == self.key:
                self.torn_reads += 1
                if self.torn_reads == READS:
                    await self.then(self.inner)
            raise


def test_a_torn_heartbeat_its_runner_renewed_meanwhile_is_kept_and_counted(tmp_path: Path) -> None:
    """Before: a heartbeat every read of which found torn was deleted unconditionally (a torn
    local file has no version a conditional delete could name): its runner's renewal landing
    after the reads was deleted, and the live runner counted gone (its share fired by the
    others too) until its next renewal. Now the object is looked at again (HEAD) before the
    delete: whole by then, it is read again and counted; only one still torn is deleted."""
    inner = LocalStore(tmp_path)
    key = keys.timer_runner_key("owner")
    _tear(inner, key)
    renewal = Membership(inner, "owner", 30.0, "all")
    store = _ReplacedAfterTornReads(inner, key, lambda _store: renewal.beat())
    assert asyncio.run(Membership(store, "me", 30.0, "all").refresh()) == ("me", "owner")
    assert asyncio.run(inner.list(keys.TIMER_RUNNERS)) == [key]


def test_a_torn_claim_another_runner_took_meanwhile_is_left_to_it(tmp_path: Path) -> None:
    """Before: a claim every read of which found torn was deleted unconditionally and created
    anew: another runner that had met the torn claim first, removed it and taken its own
    between this runner's reads and its delete, lost its claim to this one, and both fired
    the actor's timers (work twice). Now the claim is looked at again (HEAD): whole by then,
    it is judged as any claim (live: the actor is left to its holder)."""
    inner = LocalStore(tmp_path)
    key = keys.timer_claim_key("a")
    _tear(inner, key)

    async def other_takes_it(s: LocalStore) -> None:
        await s.delete(key)
        assert await claim_actor(s, "a", "other", 30.0) is not None

    store = _ReplacedAfterTornReads(inner, key, other_takes_it)
    assert asyncio.run(claim_actor(store, "a", "me", 30.0)) is None
    assert json.loads(asyncio.run(inner.get(key)).data)["runner"] == "other"


class _HeldFirstBeat(ForwardingStore):
    """Wraps a store: the first put of runner ``early``'s heartbeat is held until ``release``
    is set (60 s at most); ``renewed`` is set at a later put of it (a renewal)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.puts = 0
        self.release = threading.Event()
        self.renewed = threading.Event()

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key == keys.timer_runner_key("early"):
            self.puts += 1
            if self.puts == 1:
                for _ in range(6000):  # (60 s at most)
                    if self.release.is_set():
                        break
                    await asyncio.sleep(0.01)
            else:
                self.renewed.set()
        return await self.inner.put(key, data, mode=mode)


@pytest.mark.parametrize("how", ["tick", "run"])
def test_a_heartbeat_is_renewed_while_its_first_write_is_still_in_flight(
    actor_store: StoreSpec, how: str
) -> None:
    """Before: the renewals (a tick's, a long-running runner's) were started once the first
    write returned, though timed from when it was sent: a first write answered after 2/3 of
    the lease left its first renewal a third of the lease or less to land (h172's slow-first-
    beat tests lapsed by a few ms under load). Now they start before it: a renewal is sent
    while the first write is held."""
    runtime = vc.get_runtime()
    retune(deadline=120.0)
    store = _HeldFirstBeat(runtime.store)
    runtime.store = store
    stop = threading.Event()
    runner = TimerRunner(split="runners", lease=0.6, poll=0.05, runner_id="early")
    busy = threading.Thread(target=runner.tick if how == "tick" else functools.partial(runner.run, stop))
    busy.start()
    try:
        renewed = store.renewed.wait(60)
    finally:
        store.release.set()
        stop.set()
        busy.join(60)
    assert not busy.is_alive()
    assert renewed, "no renewal was sent while the first write was in flight"

"""Attacks on a tick's heartbeat renewals timed on the IO loop (``TickRenewals``): Ctrl-C as
they begin, ticks in a tight loop, ticks of one runner on two threads at once, a tick from
inside the IO loop."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import types
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, keys, timer_membership, timer_renewals
from vactor_cloud.storage import ObjectStore, PutMode
from vactor_cloud.testing._forwarding import ForwardingStore
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_hints import read_hint
from vactor_cloud.timer_runner import TickReport, TimerRunner

pytestmark = pytest.mark.vactor_lanes("memory", "local")

HANG = 60.0


def loop_turned() -> None:
    """Once the IO loop ran what was queued before this call (its callbacks run in order)."""
    assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0), _sync.get_loop()).result(HANG) is None


def renewals_timed() -> list[asyncio.TimerHandle]:
    """The IO loop's timers, not cancelled, that start a tick's heartbeat renewal."""
    loop_turned()
    scheduled: list[asyncio.TimerHandle] = list(_sync.get_loop()._scheduled)  # type: ignore[attr-defined]
    return [
        handle
        for handle in scheduled
        if not handle.cancelled()
        and isinstance(getattr(handle._callback, "__self__", None), timer_renewals.TickRenewals)  # type: ignore[attr-defined]
    ]


@pytest.fixture(autouse=True)
def no_renewal_left_behind() -> Any:
    """(A failing test's renewals would go on in the process: cancelled after each test.)"""
    yield
    for handle in renewals_timed():
        _sync.get_loop().call_soon_threadsafe(handle.cancel)


class InterruptedAsItArms:
    """The IO loop as ``timer_runner`` sees it, whose ``call_soon_threadsafe`` queues the
    callback and then raises ``KeyboardInterrupt`` (Ctrl-C landing as the call returns: a
    signal's handler runs once the loop's wake-up write returns), once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> Any:
        handle = self.loop.call_soon_threadsafe(callback, *args)
        if not self.fired and getattr(callback, "__name__", "") == "_arm":
            self.fired = True
            raise KeyboardInterrupt
        return handle


def test_ctrl_c_as_a_ticks_renewals_are_armed_leaves_none_timed(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewals' first timer queued on the IO loop, then the interrupt, before the tick
    held their stop: nobody stopped them, and they renewed the heartbeat every lease/3 for the
    process's life (the runner counted live by the others, its share never fired)."""
    vc.fire_due_timers(runner_id="warm")  # (the IO loop and the runtime up already)
    assert renewals_timed() == []
    loop = InterruptedAsItArms(_sync.get_loop())
    seen = types.SimpleNamespace(**{n: getattr(_sync, n) for n in dir(_sync) if not n.startswith("__")})
    seen.get_loop = lambda: loop
    monkeypatch.setattr(timer_renewals, "_sync", seen)
    with pytest.raises(KeyboardInterrupt):
        vc.fire_due_timers(runner_id="cut", lease=60.0)
    assert loop.fired
    assert renewals_timed() == [], "a renewal left timed after its tick ended"
    assert _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS)) == []


def runtime_tasks() -> set[asyncio.Task[Any]]:
    loop_turned()
    return set(asyncio.all_tasks(_sync.get_loop()))


def test_a_thousand_ticks_in_a_row_leave_no_timer_nor_task_on_the_io_loop(actor_store: StoreSpec) -> None:
    vc.fire_due_timers(runner_id="warm")
    before = runtime_tasks()
    deadline = time.monotonic() + HANG
    ticks = 0
    while ticks < 1000 and time.monotonic() < deadline:
        report = vc.fire_due_timers(runner_id="tight", lease=0.3)  # (renewals due every 0.1 s)
        assert report.errors == []
        ticks += 1
    assert ticks >= 50
    assert renewals_timed() == []
    assert runtime_tasks() - before == set()
    assert _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS)) == []


def test_ticks_of_one_runner_on_two_threads_at_once_end_and_leave_nothing_timed(
    actor_store: StoreSpec,
) -> None:
    runner = TimerRunner(lease=0.3, runner_id="twice")
    errors: list[BaseException] = []
    deadline = time.monotonic() + HANG

    def ticks() -> None:
        try:
            for _ in range(100):
                if time.monotonic() > deadline:
                    return
                assert runner.tick().errors == []
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ticks) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG * 2)
        assert not thread.is_alive()
    assert errors == []
    assert renewals_timed() == []
    assert _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS)) == []


def test_a_tick_from_inside_the_io_loop_or_an_async_function_fails_or_ends_and_never_hangs(
    actor_store: StoreSpec,
) -> None:
    vc.fire_due_timers(runner_id="warm")

    async def on_the_io_loop() -> Any:
        return vc.fire_due_timers(runner_id="inside", lease=0.3)

    ended: list[Any] = []

    def in_an_async_function() -> None:
        async def main() -> Any:
            return vc.fire_due_timers(runner_id="async", lease=0.3)

        try:
            ended.append(asyncio.run(main()))
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=in_an_async_function)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), "a tick in an async function hung"
    inside = asyncio.run_coroutine_threadsafe(on_the_io_loop(), _sync.get_loop())
    try:
        outcome: Any = inside.result(HANG)
    except Exception as exc:
        outcome = exc
    assert len(ended) == 1 and isinstance(ended[0], TickReport)  # (a blocking call there is allowed)
    assert isinstance(outcome, RuntimeError) and "IO loop" in str(outcome)  # (said, not hung)
    assert renewals_timed() == []
    assert _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS)) == []
    assert vc.fire_due_timers(runner_id="after").errors == []


class SlowHeartbeats(ForwardingStore):
    """Wraps a store: each heartbeat put and each listing takes 0 to 3 ms (renewals due every
    3 ms are in flight as ticks end); counts the heartbeat puts."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.puts = 0
        self.rng = random.Random(179)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key.startswith(keys.TIMER_RUNNERS):
            self.puts += 1
            await asyncio.sleep(self.rng.random() * 0.003)
        return await self.inner.put(key, data, mode=mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        await asyncio.sleep(self.rng.random() * 0.003)
        return await self.inner.list(prefix, start_after=start_after, limit=limit)


def test_ticks_ending_while_renewals_are_in_flight_leave_no_heartbeat_timer_nor_task(
    actor_store: StoreSpec,
) -> None:
    """A renewal landing after its tick's delete wrote the heartbeat again (the runner
    counted live for a lease it no longer serves); one timed after the stop renewed on."""
    vc.fire_due_timers(runner_id="warm")
    runtime = vc.get_runtime()
    store = SlowHeartbeats(runtime.store)
    runtime.store = store
    before = runtime_tasks()
    deadline = time.monotonic() + HANG
    ticks = 0
    while ticks < 300 and time.monotonic() < deadline:
        assert vc.fire_due_timers(runner_id="racing", lease=0.009).errors == []
        ticks += 1
    assert store.puts > ticks  # (renewals ran beside the joins)
    assert renewals_timed() == []
    # A leave waits a lease (9 ms here) at most for the renewal writes no longer waited for: on
    # a loaded host some were still in flight as their tick returned (CI), each to land with a
    # heartbeat already expired (its ``until`` is its start plus the lease). They settle by
    # themselves (bounded wait); a renewal timed after its stop would renew on, and never settle.
    settle_by = time.monotonic() + HANG
    while runtime_tasks() - before and time.monotonic() < settle_by:
        time.sleep(0.01)
    assert runtime_tasks() - before == set()
    for key in _sync.sync(store.inner.list(keys.TIMER_RUNNERS)):
        _, body, failure = _sync.sync(
            read_hint(store.inner, key, "timer-runner", runtime.settings.signing_key)
        )
        assert failure is None and body is not None and body["until"] < time.time(), (
            f"{key}: a heartbeat counted live after its tick's leave"
        )


class HeldRenewal(ForwardingStore):
    """Wraps a store so that a tick ends with its first heartbeat renewal in flight: the
    listing of the due index waits until that renewal's put (the heartbeat's second) has
    begun, and the put waits for ``release`` before it reaches the store; ``landed`` once it
    has. (For a lease of 0.3 s: the renewal is due 0.1 s after the join.)"""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.puts = 0
        self.renewing = threading.Event()
        self.release = threading.Event()
        self.landed = threading.Event()

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if not key.startswith(keys.TIMER_RUNNERS):
            return await self.inner.put(key, data, mode=mode)
        self.puts += 1
        if self.puts != 2:
            return await self.inner.put(key, data, mode=mode)
        self.renewing.set()
        assert await asyncio.to_thread(self.release.wait, HANG), "the renewal was never released"
        try:
            return await self.inner.put(key, data, mode=mode)
        finally:
            self.landed.set()

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        if prefix.startswith(keys.TIMER_INDEX):
            assert await asyncio.to_thread(self.renewing.wait, HANG), "no renewal began"
        return await self.inner.list(prefix, start_after=start_after, limit=limit)


class SlowTick(HeldRenewal):
    """:class:`HeldRenewal`, with the tick slower than a renewal's cut-off (lease/3) from the
    renewal's start to the tick's end: the due index listed 0.25 s late (a loaded host)."""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        if prefix.startswith(keys.TIMER_INDEX):
            await asyncio.sleep(0.25)
        return listed


def renewals_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat renewal is not cut off at lease/3 from now on (it waits up to ``HANG``).
    For ``HeldRenewal``: held from its start to the stop's wait, a renewal cut off at 0.1 s
    (a lease of 0.3 s) by a tick slower than that on a loaded host had ended before the stop,
    which then found no renewal in flight to wait for."""
    beat = timer_membership.Membership.beat

    async def uncut(membership: timer_membership.Membership, within: float | None = None) -> None:
        await beat(membership, None if within is None else HANG)

    monkeypatch.setattr(timer_membership.Membership, "beat", uncut)


def test_a_tick_waits_for_its_renewal_in_flight_before_it_leaves(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above cannot tell the stop's wait from the leave's: ``Membership.leave`` waits
    for the renewal writes in flight too, and its heartbeat was gone either way (a stop that
    did not wait passed it). Here the tick ends with a renewal held in flight (h184): the leave
    must begin after it landed, the stop having waited for it."""
    vc.fire_due_timers(runner_id="warm")
    runtime = vc.get_runtime()
    store = SlowTick(runtime.store)
    runtime.store = store
    leaving: list[bool] = []  # (whether the renewal had landed as the leave began)
    leave = timer_membership.Membership.leave

    async def noted(membership: timer_membership.Membership) -> None:
        leaving.append(store.landed.is_set())
        store.release.set()  # (a stop that did not wait: the leave must not hang for it)
        await leave(membership)

    monkeypatch.setattr(timer_membership.Membership, "leave", noted)
    renewals_not_cut(monkeypatch)
    waits = 0

    def released(futures: Any, timeout: float | None = None) -> bool:
        nonlocal waits
        waits += 1
        store.release.set()
        return _sync.wait_futures(futures, timeout)

    seen = types.SimpleNamespace(**{n: getattr(_sync, n) for n in dir(_sync) if not n.startswith("__")})
    seen.wait_futures = released
    monkeypatch.setattr(timer_renewals, "_sync", seen)
    assert vc.fire_due_timers(runner_id="held", lease=0.3).errors == []
    assert leaving == [True], "the leave began with the tick's renewal still in flight"
    assert waits == 1
    assert _sync.sync(store.inner.list(keys.TIMER_RUNNERS)) == []
    assert renewals_timed() == []


class RecordingMembership:
    """A membership whose renewals take 0 to 2 ms and note whether they began after the stop
    that should have ended them returned, or were still running when it returned."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.rng = random.Random(1790)
        self.stopped = False
        self.running = 0
        self.begun = 0
        self.late: list[str] = []

    async def beat(self, within: float | None = None) -> None:
        if self.stopped:
            self.late.append("a renewal began after stop(wait=True) returned")
        self.begun += 1
        self.running += 1
        try:
            await asyncio.sleep(self.rng.random() * 0.002)
        finally:
            self.running -= 1


def test_stop_racing_renewals_never_lets_one_begin_or_run_on_after_it_returns(actor_store: StoreSpec) -> None:
    runtime = vc.get_runtime()
    rng = random.Random(179)
    deadline = time.monotonic() + HANG
    rounds = begun = 0
    while rounds < 300 and time.monotonic() < deadline:
        membership = RecordingMembership(lease=0.003)  # (a renewal due every ms)
        renewals = timer_renewals.TickRenewals(runtime, membership, "stub", time.monotonic())  # type: ignore[arg-type]
        renewals.begin()
        time.sleep(rng.random() * 0.004)
        renewals.stop(True)
        running = membership.running
        membership.stopped = True
        assert running == 0, "stop(wait=True) returned with a renewal running"
        time.sleep(0.003)  # (a renewal left timed would begin within this)
        assert membership.late == []
        begun += membership.begun
        rounds += 1
    assert begun > 0
    assert renewals_timed() == []

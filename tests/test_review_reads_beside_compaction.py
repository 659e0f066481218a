"""Reads beside compaction and cache drops (the h55 review): a read whose cache keeps being
dropped, past views (``state_at``) and the read budget (``Settings.max_read_bytes``), a
read at a step compacted away. Each test failed on the code it was written against; waits
are bounded by events and counts, never timed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from actors import Shelf
from background import in_thread
from garbage import full_collection
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import history
from vactor_cloud.core import ActorCore
from vactor_cloud.log import ActorLog
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: how long a test waits for what must finish at once before calling it a hang
HANG = 120.0


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init(settings=replace(vc.Settings(storage=""), storage=store_spec.url, head_interval=3600.0))
    try:
        yield store_spec
    finally:
        vc.shutdown()


def test_a_read_whose_cache_is_dropped_after_every_load_is_answered_by_its_own_load(
    actors: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_loaded_record`` loaded the actor, then read the cache again: dropped meanwhile (a
    compaction's ``forget``, a writer's failed attempt, on another thread), it loaded again,
    and again, bounded only by ``Settings.deadline``: under drops that keep coming a read
    starved (one full load, HEAD and steps, per drop) and, on a store answering at once,
    spun. A read now runs on the step its own load found: bounded loads, however many drops."""
    gauge = Shelf.get_or_create("dropped")
    assert gauge.add.run() == 1
    vc.get_runtime().core("dropped").forget()
    drops = [40]  # bounded: the unchanged code ends once the drops stop
    loads: list[str] = []
    accept, read_head = ActorCore._accept, ActorLog.read_head

    def accept_then_drop(core: ActorCore, *args: Any, **kwargs: Any) -> None:
        accept(core, *args, **kwargs)
        if core.actor_id == "dropped" and drops[0] > 0:
            drops[0] -= 1
            core.forget()  # as a compaction's forget() on another thread, right after the load

    async def counted_read_head(log: ActorLog) -> Any:
        loads.append(log.actor_id)
        return await read_head(log)

    monkeypatch.setattr(ActorCore, "_accept", accept_then_drop)
    monkeypatch.setattr(ActorLog, "read_head", counted_read_head)
    assert gauge.value.run() == 1
    # One by the handle (the actor was not cached), one by the read's own revalidation.
    assert loads.count("dropped") <= 2, loads


# -- the read budget --------------------------------------------------------------------------------
MB = 1024 * 1024
#: the writer method of ``Desk`` has started (and holds that actor)
DESK_ENTERED = threading.Event()
#: ``Desk.work`` may go on to its read of the big actor
DESK_GO = threading.Event()
#: a read of ``Heavy`` holds its room (its method runs)
HEAVY_INSIDE = threading.Event()
HEAVY_LEAVE = threading.Event()
#: ``Heavy.held`` calls running now, and the most at once
FAN = {"now": 0, "most": 0}
FAN_LOCK = threading.Lock()
#: the futures of the reads ``Heavy.fan_out`` made
FANNED: list[Any] = []
#: released by each ``Heavy.held`` as it starts
HELD_STARTED = threading.Semaphore(0)


@vc.virtual_actor
class Heavy:
    def __init__(self, size: int) -> None:
        self.blob = bytes(size)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return len(self.blob)

    def grow(self) -> int:
        self.blob += b"+"
        return len(self.blob)

    @vc.virtual_actor.readonly
    def held(self) -> int:
        HEAVY_INSIDE.set()
        HELD_STARTED.release()
        with FAN_LOCK:
            FAN["now"] += 1
            FAN["most"] = max(FAN["most"], FAN["now"])
        try:
            assert HEAVY_LEAVE.wait(HANG), "the test never let the read go"
            return len(self.blob)
        finally:
            with FAN_LOCK:
                FAN["now"] -= 1

    @vc.virtual_actor.readonly
    def fan_out(self, count: int, wait: bool) -> int:
        # A read-only method reading this actor ``count`` times at once through run_async.
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        futures = [vc.get_actor(actor_id).held.run_async() for _ in range(count)]
        FANNED.extend(futures)
        if wait:
            concurrent.futures.wait(futures, timeout=HANG)  # (no caller-runs: the pool's threads)
        return len(self.blob)

    @vc.virtual_actor.readonly
    def hand_off(self) -> int:
        # A read making one read with run_async and returning once that one runs (not ended).
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        FANNED.append(vc.get_actor(actor_id).held.run_async())
        assert HELD_STARTED.acquire(timeout=HANG), "the read it made never started"
        return len(self.blob)

    @vc.virtual_actor.readonly
    async def fan_out_to_threads(self, count: int) -> int:
        # An async read-only method reading this actor ``count`` times at once on threads that
        # carry its context along (``asyncio.to_thread`` copies it).
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        held = vc.get_actor(actor_id).held.run
        sizes = await asyncio.gather(*(asyncio.to_thread(held) for _ in range(count)))
        return len(self.blob) + sum(sizes) - count * len(self.blob)

    @vc.virtual_actor.readonly
    async def size_again(self) -> int:
        # An async read-only method making a (blocking) read of this actor.
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        return len(self.blob) + int(vc.get_actor(actor_id).size.run())

    @vc.virtual_actor.readonly
    def size_from_a_thread(self) -> int:
        # A read waiting for a read made on a thread it started (whose context holds no read).
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        out: list[int] = []
        thread = threading.Thread(target=lambda: out.append(vc.get_actor(actor_id).size.run()))
        thread.start()
        thread.join(HANG)
        return len(self.blob) + out[0]

    @vc.virtual_actor.readonly
    def size_and_desk_once_it_waits(self, desk_id: str) -> int:
        # The same, calling the writer only once the desk's read waits for room.
        DESK_GO.set()
        assert _until(lambda: vc.get_runtime().read_room.waiting == 1), "the desk's read never waited"
        return len(self.blob) + int(vc.get_actor(desk_id).poke.run())

    @vc.virtual_actor.readonly
    def size_and_desk(self, desk_id: str) -> int:
        # A read calling a writer of an actor another thread holds, whose method reads this one.
        DESK_GO.set()
        return len(self.blob) + int(vc.get_actor(desk_id).poke.run())


@vc.virtual_actor
class Desk:
    def __init__(self) -> None:
        self.pokes = 0

    def work(self, heavy_id: str) -> int:
        DESK_ENTERED.set()
        assert DESK_GO.wait(HANG), "the read never started"
        return int(vc.get_actor(heavy_id).size.run())

    def poke(self) -> int:
        self.pokes += 1
        return self.pokes


def _budget(spec: StoreSpec, **settings: Any) -> None:
    vc.shutdown()
    spec.init(settings=vc.Settings(storage=spec.url, head_interval=3600.0, **settings))


def _until(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` came true within ``HANG`` (polled: a bound, not a timing). Not
    asked again once it held (``test_combining.wait_for`` failed so on a condition that
    stopped holding a moment later)."""
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_read_waiting_for_a_writer_whose_method_reads_lends_its_room(
    actors: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only method holding read room (``Settings.max_read_bytes``) called a writer of
    an actor another thread held, whose writer method made a read that needed that room: each
    waited for the other until ``Settings.deadline`` (30 s by default), when the bound gave way
    with a warning. A read that waits for another call now lends its room meanwhile."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=20.0, commit_timeout=60.0)
    DESK_ENTERED.clear()
    DESK_GO.clear()
    heavy = Heavy.get_or_create("heavy", MB)
    desk = Desk.get_or_create("desk")
    writer, wrote = in_thread(lambda: desk.work.run("heavy"))
    assert DESK_ENTERED.wait(HANG)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert heavy.size_and_desk.run("desk") == MB + 1
        writer.join(HANG)
    assert wrote == [MB]
    assert "for room" not in caplog.text


def test_a_read_already_waiting_for_room_takes_the_spare_lent_after_it_began_to_wait(
    actors: StoreSpec,
) -> None:
    """(With the test above) The read inside the writer method began to wait for room before the
    read-only method called that writer and lent its spare: lending must wake it. Without the
    wake-up both waited for the other until ``Settings.deadline``; with a deadline longer than
    this test's bound, the calls do not return within it."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0, commit_timeout=600.0)
    DESK_ENTERED.clear()
    DESK_GO.clear()
    heavy = Heavy.get_or_create("heavy-woken", MB)
    desk = Desk.get_or_create("desk-woken")
    writer, wrote = in_thread(lambda: desk.work.run("heavy-woken"))
    assert DESK_ENTERED.wait(HANG)
    reader, read = in_thread(lambda: heavy.size_and_desk_once_it_waits.run("desk-woken"))
    writer.join(HANG)
    reader.join(HANG)
    assert wrote == [MB] and read == [MB + 1], (wrote, read)


def test_a_past_view_takes_read_room_while_it_is_restored(actors: StoreSpec) -> None:
    """``handle.state_at(step)`` restored its copy of the state beside any number of reads
    (and of other views) without taking room: threads viewing a large actor's past held a
    copy each at once, whatever ``Settings.max_read_bytes`` said. A view now takes room while
    it is restored (the view it returns is then the caller's, as any result)."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    HEAVY_INSIDE.clear()
    HEAVY_LEAVE.clear()
    heavy = Heavy.get_or_create("viewed", MB)
    room = vc.get_runtime().read_room
    reader, read = in_thread(heavy.held.run)
    try:
        assert HEAVY_INSIDE.wait(HANG)
        viewer, viewed = in_thread(lambda: heavy.state_at(0).blob)
        assert _until(lambda: room.waiting == 1 or not viewer.is_alive())
        assert viewer.is_alive() and room.waiting == 1, viewed
    finally:
        HEAVY_LEAVE.set()
    reader.join(HANG)
    viewer.join(HANG)
    assert read == [MB] and viewed == [bytes(MB)]


#: fetched copies of the stored state alive now (``_Fetched``)
_ALIVE = [0]
_ALIVE_LOCK = threading.Lock()


class _Fetched(bytes):
    """A stored state as one read fetched it (counted while alive: how many are held at once)."""

    def __init__(self, data: bytes) -> None:
        with _ALIVE_LOCK:
            _ALIVE[0] += 1

    def __del__(self) -> None:
        with _ALIVE_LOCK:
            _ALIVE[0] -= 1


def test_reads_of_a_past_step_waiting_for_room_hold_no_fetched_copy(
    actors: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read at a past step (``run(at_step=n)``) fetched its own copy of the stored state,
    then waited for read room holding it: threads reading a large actor's past held a fetched
    copy each beside the room, unbounded (the bound counts restored copies). A read that must
    wait now lets go of its copy and reads the step again once it has room (a step compacted
    meanwhile: ``StepNotFoundError``, as for any read of it)."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    HEAVY_INSIDE.clear()
    HEAVY_LEAVE.clear()
    heavy = Heavy.get_or_create("past", MB)
    room = vc.get_runtime().read_room
    find_step = ActorLog.find_step

    async def tracked_find_step(log: ActorLog, step: int) -> Any:
        record = await find_step(log, step)
        if log.actor_id != "past":
            return record
        return replace(record, state=_Fetched(record.state))

    monkeypatch.setattr(ActorLog, "find_step", tracked_find_step)
    holder, held = in_thread(heavy.held.run)
    readers: list[tuple[threading.Thread, list[Any]]] = []
    try:
        assert HEAVY_INSIDE.wait(HANG)
        readers = [in_thread(lambda: heavy.size.run(at_step=0)) for _ in range(4)]
        assert _until(lambda: room.waiting == 4 or not all(t.is_alive() for t, _ in readers))
        full_collection()
        assert room.waiting == 4 and _ALIVE[0] == 0, (_ALIVE, [out for _, out in readers])
    finally:
        HEAVY_LEAVE.set()
    holder.join(HANG)
    for thread, out in readers:
        thread.join(HANG)
        assert out == [MB]
    assert held == [MB]


def test_past_views_waiting_for_room_hold_no_fetched_copy(
    actors: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for ``handle.state_at(step)`` (which took no room at all before)."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    HEAVY_INSIDE.clear()
    HEAVY_LEAVE.clear()
    heavy = Heavy.get_or_create("past-view", MB)
    room = vc.get_runtime().read_room
    find_step = history.find_step

    async def tracked_find_step(log: ActorLog, step: int) -> Any:
        record = await find_step(log, step)
        return replace(record, state=_Fetched(record.state))

    monkeypatch.setattr(history, "find_step", tracked_find_step)
    holder, held = in_thread(heavy.held.run)
    viewers: list[tuple[threading.Thread, list[Any]]] = []
    try:
        assert HEAVY_INSIDE.wait(HANG)
        viewers = [in_thread(lambda: len(heavy.state_at(0).blob)) for _ in range(3)]
        assert _until(lambda: room.waiting == 3 or not all(t.is_alive() for t, _ in viewers))
        full_collection()
        assert room.waiting == 3 and _ALIVE[0] == 0, (_ALIVE, [out for _, out in viewers])
    finally:
        HEAVY_LEAVE.set()
    holder.join(HANG)
    for thread, out in viewers:
        thread.join(HANG)
        assert out == [MB]
    assert held == [MB]


def test_a_read_of_a_past_step_compacted_while_it_waits_for_room_says_so(actors: StoreSpec) -> None:
    """(Pin, with the test above) A read at a past step that let go of its copy while waiting
    for room reads the step again: a compaction that deleted it meanwhile gets the caller a
    ``StepNotFoundError`` naming the steps that remain, not a partial or stale state."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0, fresh_window=0.0)
    HEAVY_INSIDE.clear()
    HEAVY_LEAVE.clear()
    heavy = Heavy.get_or_create("compacted-past", MB)
    assert heavy.grow.run() == MB + 1
    assert heavy.grow.run() == MB + 2
    room = vc.get_runtime().read_room
    holder, held = in_thread(heavy.held.run)
    try:
        assert HEAVY_INSIDE.wait(HANG)
        reader, read = in_thread(lambda: heavy.size.run(at_step=0))
        assert _until(lambda: room.waiting == 1 or not reader.is_alive())
        assert room.waiting == 1, read
        assert heavy.compact(keep_last=1, min_age=0).watermark == 2
    finally:
        HEAVY_LEAVE.set()
    holder.join(HANG)
    reader.join(HANG)
    assert held == [MB + 2]
    (error,) = read
    assert isinstance(error, vc.StepNotFoundError) and error.compacted, error
    assert "steps 2..2 remain" in str(error)


@pytest.mark.parametrize("wait", [False, True], ids=["returns", "waits"])
def test_reads_a_read_only_method_fans_out_stay_within_the_read_room(actors: StoreSpec, wait: bool) -> None:
    """A read made with ``run_async`` inside a read took no room, whatever thread ran it (its
    outer read may wait for it): a read-only method fanning out reads of a large actor restored
    as many copies at once as the read pool had threads, and as many again after it returned
    without waiting. Such a read now takes room, or runs on its outer read's spare (one at a
    time per outer read, so that an outer read waiting for them always sees them end; the outer
    read keeps its room until the read on its spare has ended, so one copy at a time here)."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    HEAVY_INSIDE.clear()
    HEAVY_LEAVE.clear()
    FAN.update(now=0, most=0)
    FANNED.clear()
    heavy = Heavy.get_or_create(f"fan-{wait}", MB)
    room = vc.get_runtime().read_room
    outer = heavy.fan_out.run_async(6, wait)
    try:
        if not wait:
            assert outer.result(HANG) == MB
        assert _until(lambda: FAN["now"] + room.waiting == 6)
        # the outer read's room is held, by it or (once it returned) by the read on its spare
        assert FAN["most"] == 1, FAN
    finally:
        HEAVY_LEAVE.set()
    assert outer.result(HANG) == MB
    assert [f.result(HANG) for f in FANNED] == [MB] * 6


def test_reads_handed_on_by_reads_that_returned_stay_within_the_read_room(actors: StoreSpec) -> None:
    """A read made with ``run_async`` inside a read ran on that read's spare (without room)
    even after the read had returned and given its room back: threads each calling a read that
    hands off one such read and returns restored a copy each at once beside the room, as many
    as there were threads (the spare of every read that returned stayed in use). A read now
    gives its room back only once the read on its spare has ended too."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    HEAVY_LEAVE.clear()
    FAN.update(now=0, most=0)
    FANNED.clear()
    while HELD_STARTED.acquire(blocking=False):
        pass
    heavy = Heavy.get_or_create("handed-off", MB)
    room = vc.get_runtime().read_room
    callers = [in_thread(heavy.hand_off.run) for _ in range(6)]
    try:
        assert _until(lambda: FAN["now"] + room.waiting == 6)
        assert FAN["most"] == 1, FAN
    finally:
        HEAVY_LEAVE.set()
    for thread, out in callers:
        thread.join(HANG)
        assert out == [MB]
    assert [f.result(HANG) for f in FANNED] == [MB] * 6
    # every read's room came back, the lenders' with their borrowers'
    assert _until(lambda: room._running == 0), (room._running, room._used)
    assert room._used == 0


def test_a_read_of_a_state_larger_than_the_room_runs(
    actors: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """(Pin of rule 2, "alone") A read whose state is larger than the whole room runs when no
    other read holds room, at once: it does not wait for the deadline. Fails (after the 20 s
    deadline, with its warning) when the rule is removed."""
    _budget(actors, max_read_bytes=MB // 2, deadline=20.0)
    heavy = Heavy.get_or_create("larger", MB)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert heavy.size.run() == MB
        assert len(heavy.state_at(0).blob) == MB
    assert "for room" not in caplog.text


def test_a_read_waiting_for_room_its_caller_holds_on_another_thread_runs_at_the_deadline(
    actors: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """(Pin of rule 5, "deadline") A read-only method holding all the room that waits for a read
    made on a thread it started (no read in that thread's context, nothing lent to it): the
    inner read waits ``Settings.deadline`` for room, then runs anyway, with a warning. Hangs
    (the method's join gives up after HANG) when the wait has no end."""
    _budget(actors, max_read_bytes=MB + MB // 2)
    heavy = Heavy.get_or_create("own-thread", MB)
    retune(deadline=1.0)  # the inner read's wait: not the 1 MB actor's creation
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert heavy.size_from_a_thread.run() == 2 * MB
    assert "for room to restore its state" in caplog.text


def test_reads_made_on_threads_that_carry_a_reads_context_stay_within_the_read_room(
    actors: StoreSpec,
) -> None:
    """A read made in the ``contextvars`` context of a running read counted as nested in it
    (no room, no wait) on whatever thread it ran: an ``async def`` read-only method fanning out
    reads with ``asyncio.to_thread`` (which carries the context to its threads) restored a copy
    each at once, beside the room. A read made on another thread than its read's is now one the
    read may wait for: it takes room or the read's spare (rule 4)."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    HEAVY_LEAVE.clear()
    FAN.update(now=0, most=0)
    heavy = Heavy.get_or_create("to-threads", MB)
    room = vc.get_runtime().read_room
    outer = heavy.fan_out_to_threads.run_async(4)
    try:
        assert _until(lambda: FAN["now"] + room.waiting == 4)
        assert FAN["most"] == 1, FAN
    finally:
        HEAVY_LEAVE.set()
    assert outer.result(HANG) == MB


def test_a_read_inside_an_async_read_run_on_its_helper_thread_does_not_wait_for_room_it_holds(
    actors: StoreSpec,
) -> None:
    """(Pin of rules 3 and 4 together) An ``async def`` read-only method called where an event
    loop runs has its body run on a helper thread, in its context: a read made there is not on
    the thread that holds the room, and runs on that read's spare (with room for one copy). Hangs
    until the method gives up (HANG) when a read carried to another thread neither counts as
    nested nor may take the spare."""
    _budget(actors, max_read_bytes=MB + MB // 2, deadline=600.0)
    heavy = Heavy.get_or_create("async-nested", MB)

    async def main() -> int:
        return int(heavy.size_again.run())  # (blocking, with this thread's loop running)

    assert asyncio.run(main()) == 2 * MB
    assert heavy.size_again.run() == 2 * MB  # (no loop here: its body runs on this thread)

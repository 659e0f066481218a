"""Read-only calls against writers, from a hostile review (review-h50).

The promise (README, docs/concepts.md "Read-only calls"): a read-only call skips
the log, runs beside writers and never waits behind a write. Each test holds a
write at one point of its path (a request held at the store, released by the
test) and shows, by order alone, that a read of the same actor is answered while
the write is held: the write is released only after the read returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from background import in_thread

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import Lane, StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a test waits for what must happen before it calls it a hang (ends as soon as it happened)
HANG = 60.0
#: a read answered while the write is held: far longer than a read takes, far shorter than HANG
READ_WAIT = 20.0


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.val = 0
        self.notes: list[str] = []

    def add(self, by: int) -> int:
        self.val += by
        return self.val

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.val

    @vc.virtual_actor.readonly
    def scribble(self, note: str) -> list[str]:
        # A read-only method that mutates its state: the change must go nowhere.
        self.notes.append(note)
        self.val += 1000
        return self.notes


@vc.virtual_actor
class Peeker:
    """Reads another actor from inside its own (writer) method."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def peek(self, other: str) -> int:
        value = int(vc.get_actor(other).value.run())
        self.seen.append(value)
        return value

    def peek_async(self, other: str) -> int:
        value = int(vc.get_actor(other).value.run_async().result())
        self.seen.append(value)
        return value


class Gate(HoldOne):
    """Holds one request once armed (:meth:`hold`); ``lose``: the next put of a key holding
    it is applied, then fails as if its answer was lost."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, "put", "/steps/", timeout=HANG)
        self.lose: str | None = None

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        lose = self.lose
        if lose is not None and operation == "put" and lose in key:
            self.lose = None
            await super()._around(operation, key, run, **batch)
            raise RetryableStorageError(f"{key}: put applied, its answer lost (injected)", key)
        return await super()._around(operation, key, run, **batch)


@pytest.fixture
def gated(store_spec: StoreSpec) -> Iterator[Callable[..., Gate]]:
    def start(**settings: Any) -> Gate:
        store_spec.init(settings=vc.Settings(storage="", **settings))
        runtime = vc.get_runtime()
        gate = Gate(runtime.store)
        runtime.store = gate
        return gate

    try:
        yield start
    finally:
        vc.shutdown()


def _reads_while_held(actor_id: str, expected: int) -> None:
    """Every way of reading ``actor_id`` answers ``expected`` now (the write stays held)."""
    tally = vc.get_actor(actor_id)
    assert tally.value.run() == expected
    assert tally.value.run_async().result(READ_WAIT) == expected
    future = tally.value.run_async()
    done, _ = concurrent.futures.wait([future], timeout=READ_WAIT)
    assert future in done, "a run_async read waited for the held write"
    assert future.result() == expected

    async def awaited() -> int:
        return int(await tally.value.run_async())

    assert asyncio.run(asyncio.wait_for(awaited(), READ_WAIT)) == expected
    # From inside another actor's writer method, blocking and through run_async.
    peeker = vc.get_actor(f"peeker-{actor_id}")
    assert peeker.peek.run(actor_id) == expected
    assert peeker.peek_async.run(actor_id) == expected


def _released(gate: Gate, thread: threading.Thread, out: list[Any]) -> Any:
    gate.release.set()
    thread.join(HANG)
    assert not thread.is_alive(), "the held write never finished"
    assert len(out) == 1
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


# -- 1. the direct path: the writer's step put held ------------------------------------------------
def test_reads_are_answered_while_this_processes_step_put_is_held(
    gated: Callable[..., Gate], store_spec: StoreSpec, store_lane: Lane
) -> None:
    gate = gated()
    tally = Tally.get_or_create("direct")
    Peeker.get_or_create("peeker-direct")
    tally.add.run(1)
    gate.hold("put", "/steps/")
    thread, out = in_thread(lambda: tally.add.run(10))
    assert gate.held.wait(HANG)
    try:
        _reads_while_held("direct", 1)
        if store_lane.multiprocess:  # another process reads it too (the put is not sent yet)
            assert _read_in_another_process(store_spec, "direct") == 1
    finally:
        assert _released(gate, thread, out) == 11
    assert tally.value.run() == 11


def _read_in_another_process(spec: StoreSpec, actor_id: str) -> int:
    script = (
        "import sys, vactor_cloud as vc\n"
        f"vc.init({spec.url!r}, **{spec.options!r})\n"
        f"print(vc.get_actor({actor_id!r}).value.run())\n"
    )
    env = {**os.environ, **spec.env}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


# -- 2. the posting path -----------------------------------------------------------------------------
def _commit_behind_its_back(actor_id: str) -> None:
    """Another writer commits the next step (same state): this process's next commit loses."""
    core = vc.get_runtime().core(actor_id)
    mine = core.record
    assert mine is not None
    theirs = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
    _sync.sync(core.log.put_step(theirs))


@pytest.mark.parametrize(
    ("operation", "part", "skip"),
    [
        ("put", "/mail/", 0),  # the batch's post, after the lost race
        ("list", "/mail/", 0),  # the lease holder's listing of the posts, mid-fold
        ("put", "/steps/", 1),  # the fold's step put (the first step put lost the race)
    ],
    ids=["post-put", "holders-list", "fold-step-put"],
)
def test_reads_are_answered_while_a_posted_write_of_this_process_is_held(
    gated: Callable[..., Gate], operation: str, part: str, skip: int
) -> None:
    gate = gated(combine_after=1, combine_window=60.0)
    tally = Tally.get_or_create("posting")
    Peeker.get_or_create("peeker-posting")
    tally.add.run(1)
    _commit_behind_its_back("posting")  # the next commit loses its race and posts
    gate.hold(operation, part, skip=skip)
    thread, out = in_thread(lambda: tally.add.run(10))
    assert gate.held.wait(HANG)
    try:
        _reads_while_held("posting", 1)
    finally:
        assert _released(gate, thread, out) == 11
    assert tally.value.run() == 11
    # Hot now (it holds the lease, within combine_window): the next write folds; its step held.
    gate.hold("put", "/steps/")  # a new hold: held and release cleared
    thread, out = in_thread(lambda: tally.add.run(100))
    assert gate.held.wait(HANG)
    try:
        _reads_while_held("posting", 11)
    finally:
        assert _released(gate, thread, out) == 111


def test_reads_are_answered_while_this_process_waits_for_another_processes_fold(
    gated: Callable[..., Gate],
) -> None:
    """This process lost a race, posted its call, and waits for the fold of the lease holder
    (another process, which folds nothing until it gives the lease up)."""
    gated(combine_after=1, combine_window=60.0)
    tally = Tally.get_or_create("waiting")
    Peeker.get_or_create("peeker-waiting")
    tally.add.run(1)
    leases = LeaseStore(vc.get_runtime().store, "waiting", None)
    theirs = _sync.sync(leases.write(Lease("", 0.0, -1, "", None), "another-process", 600.0, 1))
    assert theirs is not None
    _commit_behind_its_back("waiting")
    thread, out = in_thread(lambda: tally.add.run(10))
    assert _wait_for(lambda: bool(_sync.sync(vc.get_runtime().store.list(posts_prefix("waiting")))))
    try:
        _reads_while_held("waiting", 1)
        assert thread.is_alive()  # still waiting: the other process holds the lease
    finally:
        _sync.sync(leases.write(theirs, "another-process", 0.0, 1))  # given up: ours folds
    thread.join(HANG)
    assert out == [11]


# -- 3. a write whose outcome is unknown -------------------------------------------------------------
def test_reads_are_answered_while_a_lost_put_answer_is_being_resolved(gated: Callable[..., Gate]) -> None:
    gate = gated()
    tally = Tally.get_or_create("lost")
    Peeker.get_or_create("peeker-lost")
    tally.add.run(1)
    gate.lose = "/steps/"  # the step lands; its answer is lost
    gate.hold("get", "/steps/")  # the writer's read back of its step, to learn whether it landed
    thread, out = in_thread(lambda: tally.add.run(10))
    assert gate.held.wait(HANG)
    try:
        # The step landed: a read that started now may see it (the write is concurrent with it).
        _reads_while_held("lost", 11)
    finally:
        assert _released(gate, thread, out) == 11
    assert tally.value.run() == 11


# -- 4. run_async reads never queue behind writes on the pool ---------------------------------------
def test_a_run_async_read_is_not_queued_behind_writes_that_fill_the_pool(gated: Callable[..., Gate]) -> None:
    """``run_async`` of a read-only method went to the same pool as writes: with the pool's
    threads all committing (their puts slow), the read waited for them unless its caller
    waited in a way that runs it elsewhere (``result()``, ``await``). Seen with
    ``concurrent.futures.wait``/``as_completed`` and done callbacks: the read waited behind
    the writes."""
    gate = gated(max_workers=1)
    tally = Tally.get_or_create("pool")
    tally.add.run(1)
    gate.hold("put", "/steps/")
    writer = tally.add.run_async(10)  # on the pool's only thread, its put held
    assert gate.held.wait(HANG)
    try:
        future = tally.value.run_async()
        seen = threading.Event()
        future.add_done_callback(lambda _: seen.set())
        done, _ = concurrent.futures.wait([future], timeout=READ_WAIT)
        assert future in done, "the read waited for the pool's writes"
        assert seen.is_set()
        assert future.result() == 1
    finally:
        gate.release.set()
    assert writer.result(HANG) == 11


# -- by value --------------------------------------------------------------------------------------
def test_a_read_only_method_that_mutates_its_state_changes_nothing(gated: Callable[..., Gate]) -> None:
    """(Pin) What a read-only method does to ``self`` stays in its private copy: not in the next
    read, not in the writer's live instance, not in storage."""
    gated()
    tally = Tally.get_or_create("scribble")
    tally.add.run(1)
    first = tally.scribble.run("a")
    assert first == ["a"]
    first.append("caller's")
    assert tally.scribble.run("b") == ["b"]
    assert tally.scribble.run_async("c").result(HANG) == ["c"]
    assert tally.add.run(1) == 2  # the writer's live instance never saw +1000
    runtime = vc.get_runtime()
    core = runtime.core("scribble")
    core.forget()  # from storage
    assert tally.value.run() == 2
    assert tally.scribble.run("d") == ["d"]


# -- memory: many reads of a large state at once ---------------------------------------------------
MB = 1024 * 1024
#: read-only calls inside ``Big.held_size`` now, and the most there were at once
INSIDE = {"now": 0, "most": 0}
INSIDE_LOCK = threading.Lock()
LEAVE = threading.Event()


@vc.virtual_actor
class Big:
    def __init__(self, size: int) -> None:
        self.blob = bytes(size)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return len(self.blob)

    @vc.virtual_actor.readonly
    def held_size(self) -> int:
        with INSIDE_LOCK:
            INSIDE["now"] += 1
            INSIDE["most"] = max(INSIDE["most"], INSIDE["now"])
        try:
            assert LEAVE.wait(HANG), "the test never let the reads go"
            return len(self.blob)
        finally:
            with INSIDE_LOCK:
                INSIDE["now"] -= 1

    @vc.virtual_actor.readonly
    def size_again(self) -> int:
        # A read inside a read of the same actor (and so a second restored copy at once).
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        return len(self.blob) + int(vc.get_actor(actor_id).size.run())

    @vc.virtual_actor.readonly
    def size_again_async(self) -> int:
        # The same through run_async: a pool thread (or this one) runs the inner read.
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        return len(self.blob) + int(vc.get_actor(actor_id).size.run_async().result())


def _reads_waiting_for_room() -> int:
    room = getattr(vc.get_runtime(), "read_room", None)
    return 0 if room is None else int(room.waiting)


def _wait_for(condition: Callable[[], bool]) -> bool:
    until = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > until:
            return False
        time.sleep(0.005)
    return True


def test_reads_at_once_of_a_large_state_restore_at_most_about_the_cache_budget(
    gated: Callable[..., Gate],
) -> None:
    """Each read-only call restores a private copy of the state: 32 ``run_async`` reads (the
    pool) or any number of threads' ``run()`` of a 20 MB actor held 32 x 20 MB and more at
    once, with nothing bounding it (``max_cache_bytes`` bounds the cache only). Now the
    copies restored at once stay within ``Settings.max_read_bytes`` (a read past it waits
    for one to end; one alone always runs)."""
    INSIDE.update(now=0, most=0)
    LEAVE.clear()
    gated(max_read_bytes=3 * MB + MB // 2)  # room for three 1 MB copies
    big = Big.get_or_create("big", MB)
    readers = [in_thread(big.held_size.run) for _ in range(6)]
    try:
        assert _wait_for(lambda: INSIDE["now"] + _reads_waiting_for_room() == 6)
        assert INSIDE["most"] <= 3, f"{INSIDE['most']} copies of the state restored at once"
    finally:
        LEAVE.set()
    for thread, out in readers:
        thread.join(HANG)
        assert out == [MB]
    assert INSIDE["most"] == 3


def test_a_read_inside_a_read_of_a_large_state_does_not_wait_for_room_it_holds(
    gated: Callable[..., Gate],
) -> None:
    """(Pin of the bound above) The room one read holds never keeps its own nested reads
    waiting: with room for one copy, a read calling a read of the same actor completes."""
    gated(max_read_bytes=MB + MB // 2, deadline=600.0)
    big = Big.get_or_create("nested", MB)
    assert big.size_again.run_async().result(HANG) == 2 * MB
    assert big.size_again.run() == 2 * MB
    for _ in range(5):  # (whichever thread runs the inner read: the pool's, or the waiting one)
        assert big.size_again_async.run_async().result(HANG) == 2 * MB
        assert big.size_again_async.run() == 2 * MB


# -- a read whose cache another thread drops ---------------------------------------------------------
def test_a_read_answers_when_another_thread_drops_the_cache_under_its_probe(
    gated: Callable[..., Gate], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer's failed attempt (shutdown, a class that does not load, a step number a
    compaction freed) or a compaction's ``forget`` drops the core's cached step from its own
    thread, at any moment. A read that had just probed took the cache for still set: it
    failed with a bare ``AssertionError`` (an ``AttributeError`` under ``python -O``). The
    drop is injected right after the read's probe adopted its step, as the other thread's
    would land there."""
    gated()
    tally = Tally.get_or_create("dropped")
    tally.add.run(1)
    core = vc.get_runtime().core("dropped")
    accept = ActorCore._accept
    armed = [True]

    def accept_then_dropped(self: ActorCore, record: Any, validated_at: float, instance: Any = None) -> None:
        accept(self, record, validated_at, instance)
        if armed and self is core:
            armed.clear()
            self._invalidate()  # another thread's, at this very moment

    monkeypatch.setattr(ActorCore, "_accept", accept_then_dropped)
    assert tally.value.run() == 1
    assert not armed
    armed.append(True)
    assert tally.add.run(1) == 2  # a writer's own look at the cache copes too
    assert tally.value.run() == 2


# -- a read from a signal handler, on the thread whose write is held --------------------------------
@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_a_read_from_a_signal_handler_on_the_thread_whose_put_is_held_is_answered(
    gated: Callable[..., Gate],
) -> None:
    """(Pin) A signal handler (a "status" handler) reading the actor whose step put the
    interrupted thread waits for: a writer call there is refused (it would wait for itself),
    a read is answered at once with the committed state, and the held write carries on."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread")
    gate = gated()
    tally = Tally.get_or_create("signalled")
    tally.add.run(1)
    seen: list[Any] = []
    answered = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        try:
            seen.append(tally.value.run())
        except BaseException as exc:
            seen.append(exc)
        answered.set()

    # the handler ran while this waited for its put
    assert _signalled_while_held(gate, on_signal, answered, True, lambda: tally.add.run(10)) == 11
    assert seen == [1]


def _signalled_while_held(
    gate: Gate, on_signal: Any, answered: threading.Event, to_main: bool, call: Callable[[], int]
) -> int:
    """``call()``, a write whose step put ``gate`` holds; once held, SIGUSR2 (handled by
    ``on_signal``) goes to the main thread (``to_main``) or to another one, and the put is let
    go once ``answered``."""

    def poke() -> None:
        if gate.held.wait(HANG):
            target = threading.main_thread().ident if to_main else threading.get_ident()
            signal.pthread_kill(target or 0, signal.SIGUSR2)
            answered.wait(HANG)
        gate.release.set()

    previous = signal.signal(signal.SIGUSR2, on_signal)
    try:
        gate.hold("put", "/steps/")
        poker = threading.Thread(target=poke, daemon=True)
        poker.start()
        result = call()
        poker.join(HANG)
        return result
    finally:
        signal.signal(signal.SIGUSR2, previous)
        gate.release.set()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
@pytest.mark.parametrize("wait", ["run", "result"])
def test_a_signal_taken_by_another_thread_has_its_handler_run_while_the_main_thread_waits(
    gated: Callable[..., Gate], wait: str
) -> None:
    """A signal sent to the process may be taken by any of its threads (the kernel picks one:
    Ctrl-C's SIGINT, ``kill``), and one that lands on the main thread just before its wait's
    system call interrupts nothing either. Python runs the handler on the main thread once it
    runs Python code again: a main thread blocked in one long wait (``run()`` waiting for its
    step put, ``result()`` for its call) ran it only when the wait ended, here at the 10 s
    deadline, the put still held and the call failed; Ctrl-C so waited as long. Waits of the
    main thread now come back to Python every quarter second."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread")
    gate = gated(deadline=10.0)
    tally = Tally.get_or_create("signalled")
    tally.add.run(1)
    seen: list[Any] = []
    answered = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        seen.append(threading.current_thread() is threading.main_thread())
        answered.set()

    def call() -> int:
        return tally.add.run(10) if wait == "run" else tally.add.run_async(10).result(HANG)

    # To another thread, not the main one: the main thread's wait is not interrupted.
    assert _signalled_while_held(gate, on_signal, answered, False, call) == 11
    assert seen == [True]

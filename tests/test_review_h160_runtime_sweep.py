"""Review h160: a mutation sweep of the runtime (``runtime.py``, ``runtime_scope.py``,
``fork_guard.py``, ``guarded_executor.py``): 63 hand-made mutations, each run against the
runtime's test files on the memory and local lanes (-x).

Killed by the suite already (25): wait_done returning at once (M01); defer appending after the
settle (M04); settle not forgetting locals (M05); generator frames cleared while suspended
(M06); groups' members not followed (M08); _run_each raising the last exception (M09); weigh
counting a core not cached (M14); the count bound off by one (M16); an evicted core not kept
for take-back (M18) or its bytes not subtracted (M19); a creation started twice (M25); a
creation's settled delete key kept (M29); finish_queued_calls in a forked child (M33);
aclose's HEAD flush, lease release, applied-post deletes dropped (M38-M40); own_runtime's
scope not ended (M44); finish_queued_calls skipped at exit (M46); keep() on a stopped runtime
(M54); carry_runtime not carrying
(M57); the guarded executor not guarding (M58); fork count not kept (M59); a fork in
__getstate__ at a creation (M60); the fallen-back store warning (M63); the exit's wait for
queued calls (M64).

Killed by the tests here (21): _others counting this thread's own work, shutdown() in a method
waits 30 s for itself (M02); RuntimeWork.end not waking a shutdown off the main thread (M03);
_forget_locals not following __context__ (M07); weigh not evicting (M15b); busy actors evicted
(M17); LRU order lost (move_to_end dropped, M20); a take-back not counting its bytes (M21);
load taking a tombstone for an actor (M22); a pending creation handed to another class (M23);
_create not refusing once close began (M28); in-flight requests not cancelled past close's
timeout (M36); the pools' threads not joined (M37); get_runtime not looking again under its
lock (M41); shutdown() keeping the closed runtime as the process's (M42); own_runtime's
forked child keeping the parent's runtime (M43); the fork hook keeping it (M45); HEAD's lag
``>`` for ``>=`` (M50); run() on a stopped runtime (M52); CreationTurns' missed look (M55);
the exit waiting for executors' idle workers (M62); _waits_for seeing direct cycles only,
two creations across threads waiting for each other for good (M56).

Survived, argued equivalent or left (17): spawn's on_shutdown called after the task ran (M10:
every on_shutdown claims first); spawn ending the work of a task queued as an interrupt landed
(M11: pinned since by test_review_h166_runtime_bounds); _fail_queued without claim (M12: settle
skips done futures; a queued call is claimed by nobody); head_moved once stopped (M13: every
path to it goes through run/bounded, refused once stopped); the byte bound off by one (M15:
pinned since by test_review_h166_runtime_bounds); finish deleting another creation's entry
(M24: an id's entry is that creation until its finish); shut_down without claim (M26: a second
settle finds nothing deferred; ready() decides on the stored actor); creating() returning a
settled creation (M27: the instant between settle and unlisting); the lost race's class
compared by name (M30: _check_class after ensure_exists says the same); close in a forked child
(M31: the child reaches no runtime of its parent's, reset at fork); a second close redoing the
first (M32: each step is idempotent); close's second _fail_queued (M35: a call queued once
close began is failed by spawn's refusal, since the defect below is fixed); the exit not
joining the program's threads (M47: their later calls start a runtime the atexit hook shuts
down; a thread calling 200 times across the exit lost none); a cancelled HEAD flush not putting
its moves back (M48), HEAD's known step moved backwards (M49), a lazy move staying lazy (M51):
HEAD is a hint, cost only; ``bounded`` taking a request's own TimeoutError for the operation's
deadline (M53: the message only; not pinned).

A defect found on the way (not a mutation): ``spawn`` took the core whose queued calls a
refused drain fails from ``fn.__self__`` after ``carry_runtime`` had wrapped ``fn``: under
``own_runtime()`` a writer call queued on a closed runtime's core was never settled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forking import read_until_closed, reaped
from garbage import full_collection
from store_helpers import other_process, retune
from test_failed_creation_locals import _GIVEN, Blob, _check

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.actor import delete_actor_async
from vactor_cloud.batch import PendingCall
from vactor_cloud.creation import CreationTurns
from vactor_cloud.errors import RuntimeShutdownError
from vactor_cloud.future import ActorFuture
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: the longest a wait for what must happen lasts before it is called a hang
HANG = 20.0

#: what a shutdown logs when it stopped waiting for work still running
WAITED = "shutdown waited"

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


@vc.virtual_actor
class Swept:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def stop_runtime(self) -> int:
        vc.shutdown()
        self.n += 1
        return self.n

    def hold(self) -> int:
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        ENTERED[actor_id].set()
        assert GATES[actor_id].wait(HANG), "the test never released the writer"
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n


@pytest.fixture
def store(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()


def test_shutdown_from_inside_a_method_does_not_wait_for_that_method(
    store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutation: ``RuntimeWork._others`` counted the calling thread's own work (``ident != me``
    dropped): ``shutdown()`` in a method waited its whole 30 s for the method it runs in, then
    logged it as work left running. It returns at once; the call is refused, not applied."""
    actor = Swept.get_or_create("inside")
    actor.add.run(5)
    with (
        caplog.at_level(logging.WARNING, logger="vactor_cloud"),
        pytest.raises(RuntimeShutdownError, match="was not applied"),
    ):
        actor.stop_runtime.run()
    assert not [r for r in caplog.records if WAITED in r.getMessage()]
    assert vc.get_actor("inside").get.run() == 5


def test_a_shutdown_on_another_thread_returns_once_the_running_method_ends(store: StoreSpec) -> None:
    """Mutation: ``RuntimeWork.end`` no longer woke a waiting shutdown (``if self._waiting`` false):
    a shutdown off the main thread (no slices) waited out its whole timeout after the method it
    waited for had ended. It returns once that method's call has committed."""
    actor = Swept.get_or_create("held")
    GATES["held"], ENTERED["held"] = threading.Event(), threading.Event()
    future = actor.hold.run_async()
    assert ENTERED["held"].wait(HANG)
    runtime = runtime_module.get_runtime()
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": 60.0}, daemon=True)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "the shutdown did not wait for the running method"
    GATES["held"].set()
    assert vc.get(future, timeout=HANG) == 1
    closer.join(HANG)
    assert not closer.is_alive(), "hang: the shutdown did not return once the method ended"


# -- a failed background creation keeps none of its arguments -----------------------------------
@vc.virtual_actor
class RefusesInAHandler:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        try:
            _check(blob)
        except ValueError:
            # (raised in the handler: the ValueError, whose traceback holds ``_check``'s frame,
            # is its ``__context__`` alone)
            raise RuntimeError("the creation failed")  # noqa: B904

    def touch(self) -> None:
        pass


def test_a_failed_creation_raised_while_handling_another_holds_not_its_arguments(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``_forget_locals`` followed ``__cause__`` only, not ``__context__``: the frame
    of ``_check``, in the traceback of the exception being handled when ``__init__`` raised,
    kept the argument alive for as long as the handle (``ready()`` raises the failure)."""
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesInAHandler.get_or_create("handled", Blob())
    with pytest.raises(RuntimeError, match="the creation failed") as first:
        handle.ready().result(HANG)
    assert isinstance(first.value.__context__, ValueError)
    del first
    full_collection()
    assert len(_GIVEN) == 1
    assert _GIVEN[0]() is None, "the exception the failure was raised in handling holds the argument"


# -- the actor cache ------------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_actor_running_a_method_stays_in_the_cache_while_others_fill_it(store_spec: StoreSpec) -> None:
    """Mutation: ``_evict`` dropped busy actors too (``core.idle`` not asked): the actor whose
    method runs left the cache, its bytes no longer counted against ``max_cache_bytes`` while
    its state stayed in memory. An actor in use is never evicted; idle ones go first."""
    store_spec.init(settings=vc.Settings(max_cached_actors=2))
    held = Swept.get_or_create("busy")
    GATES["busy"], ENTERED["busy"] = threading.Event(), threading.Event()
    future = held.hold.run_async()
    try:
        assert ENTERED["busy"].wait(HANG)
        runtime = runtime_module.get_runtime()
        busy = runtime.core("busy")
        for i in range(4):
            Swept.get_or_create(f"idle-{i}").add.run(1)
        assert runtime.in_cache(busy), "the actor running a method was evicted"
        assert runtime.cached()[0] <= 2 + 1  # (the busy one may stand above the bound, alone)
    finally:
        GATES["busy"].set()
    assert vc.get(future, timeout=HANG) == 1
    assert held.get.run() == 1


@pytest.mark.usefixtures("runtime_off")
def test_an_actor_growing_past_the_cache_bytes_evicts_idle_ones_at_once(store_spec: StoreSpec) -> None:
    """Mutation: ``weigh`` no longer evicted when an actor's new weight took the cache past
    ``max_cache_bytes`` (only a new actor's arrival did): a process calling one actor whose
    state grew held every idle actor it had cached, past its bound, for good."""
    store_spec.init(settings=vc.Settings(max_cache_bytes=200_000))
    for i in range(4):  # (about 40 kB cached each: the state, and the step it was read from)
        Grows.get_or_create(f"small-{i}").grow.run(20_000)
    runtime = runtime_module.get_runtime()
    assert runtime.cached()[0] == 4
    grower = Grows.get_or_create("grower")
    grower.grow.run(60_000)  # (about 120 kB: past the bound with the four idle ones)
    assert runtime.cached()[1] <= 200_000, runtime.cached()
    assert grower.size.run() == 60_000


@vc.virtual_actor
class Grows:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def grow(self, size: int) -> None:
        self.blobs.append(b"x" * size)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return sum(len(b) for b in self.blobs)


@pytest.mark.usefixtures("runtime_off")
def test_the_cache_evicts_the_least_recently_called_actor_not_the_first_loaded(store_spec: StoreSpec) -> None:
    """Mutation: ``core()`` no longer moved an actor it found to the end of the cache's order
    (``move_to_end`` dropped): the cache evicted the actor loaded first, however often it was
    called since (its state reloaded from the store at its next call), not the idle one."""
    store_spec.init(settings=vc.Settings(max_cached_actors=3))
    for name in ("first", "second", "third"):
        Swept.get_or_create(name).add.run(1)
    Swept.get_or_create("first").add.run(1)  # the first is now the most recently called
    runtime = runtime_module.get_runtime()
    first = runtime.core("first")
    Swept.get_or_create("fourth").add.run(1)
    assert runtime.in_cache(first), "the most recently called actor was evicted"
    assert runtime.cached()[0] == 3
    assert vc.get_actor("second").get.run() == 1  # (evicted: its next call reloads it)


@pytest.mark.usefixtures("runtime_off")
def test_an_evicted_actor_taken_back_counts_its_bytes_again(store_spec: StoreSpec) -> None:
    """Mutation: ``core()`` took an evicted core still referenced back into the cache without
    adding its weight again: the byte count fell below what the cache holds, by that actor's
    state, at each take-back, and ``max_cache_bytes`` bounded less and less."""
    store_spec.init(settings=vc.Settings(max_cached_actors=2))
    Grows.get_or_create("kept").grow.run(20_000)
    runtime = runtime_module.get_runtime()
    kept = runtime.core("kept")  # referenced: evicted, it is taken back, not loaded again
    for name in ("other-1", "other-2"):
        Swept.get_or_create(name).add.run(1)
    assert not runtime.in_cache(kept)
    assert Grows.get_or_create("kept").size.run() == 20_000
    assert runtime.core("kept") is kept and runtime.in_cache(kept)
    held = sum(core._weight for core in runtime._all_cores() if runtime.in_cache(core))
    assert runtime.cached()[1] == held > 20_000


def test_a_call_queued_on_a_closed_runtime_of_an_own_runtime_scope_fails_at_once() -> None:
    """A defect (not a mutation): ``spawn`` looked for the core whose queued calls a refused
    drain must fail on ``fn.__self__`` after ``carry_runtime`` had wrapped ``fn``; under
    ``own_runtime()`` (the ``vactor`` command's ``main()``) the wrapper has none, so a writer
    call queued on a core of a runtime closed meanwhile was never settled: its caller waited
    for good. It fails with ``RuntimeShutdownError``, as on the process's runtime."""
    with runtime_module.own_runtime():
        vc.init("memory://h160-own-closed")
        Swept.get_or_create("late").add.run(1)
        runtime = runtime_module.get_runtime()
        core = runtime.core("late")
        runtime.close()
        call = PendingCall.by_value("add", (1,), {}, readonly=False, future=ActorFuture(), call_id="")
        core.submit(call)
        try:
            call.future.result(HANG)
        except RuntimeShutdownError:
            pass
        except concurrent.futures.TimeoutError:
            pytest.fail("hang: the call queued on the closed runtime was never settled")
        else:
            pytest.fail("the call was applied on a closed runtime")


# -- creations -----------------------------------------------------------------------------------
@vc.virtual_actor
class GatedInit:
    def __init__(self, gate: str) -> None:
        ENTERED[gate].set()
        assert GATES[gate].wait(HANG), "the test never released the creation"
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


@vc.virtual_actor
class OtherKind:
    def __init__(self) -> None:
        self.n = 100

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def _gate(name: str) -> None:
    GATES[name], ENTERED[name] = threading.Event(), threading.Event()


def test_a_background_creation_after_another_process_deleted_the_actor_creates_it_again(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``load`` took a core whose cached step is the tombstone for an existing actor
    (``is_deleted`` not asked): ``get_or_create(wait_for_init=False)`` after another process
    deleted the actor (a call here met its tombstone) found the actor there, started no
    creation, and every call then raised ``ActorDeletedError``. It creates the actor anew, as
    a blocking creation does."""
    Swept.get_or_create("again").add.run(5)
    other = other_process(actor_store)
    try:
        other.run(delete_actor_async("again"))
    finally:
        other.close()
    with pytest.raises(vc.ActorDeletedError):  # (this process's core now holds the tombstone)
        vc.get_actor("again").add.run(1)
    retune(wait_for_init=False)
    handle = Swept.get_or_create("again")
    handle.ready().result(HANG)
    assert handle.add.run(1) == 1


def test_a_second_background_creation_of_another_class_while_one_is_pending_is_refused(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``create_nowait`` handed a pending creation to a caller asking for another
    class without comparing them: ``get_or_create`` of ``OtherKind`` returned a handle to the
    ``GatedInit`` being created. Refused (``ActorDefinitionError``), as for an existing actor."""
    retune(wait_for_init=False)
    _gate("pending-kind")
    first = GatedInit.get_or_create("pending-kind", "pending-kind")
    try:
        assert ENTERED["pending-kind"].wait(HANG)
        with pytest.raises(vc.ActorDefinitionError, match="GatedInit"):
            OtherKind.get_or_create("pending-kind")
    finally:
        GATES["pending-kind"].set()
    first.ready().result(HANG)
    assert first.add.run(2) == 2


def test_a_creation_started_while_the_runtime_closes_is_refused_and_never_made(store: StoreSpec) -> None:
    """Mutation: ``_create`` no longer refused once ``close`` had begun (``closed``): a creation
    started while the shutdown waited for a running method ran ``__init__`` and committed its
    actor on a runtime being shut down. It fails with ``RuntimeShutdownError``, not applied."""
    actor = Swept.get_or_create("closing")
    _gate("closing")
    future = actor.hold.run_async()
    assert ENTERED["closing"].wait(HANG)
    runtime = runtime_module.get_runtime()
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": 60.0}, daemon=True)
    closer.start()
    try:
        while not runtime.closed:
            closer.join(0.001)
        with pytest.raises(RuntimeShutdownError):
            Swept.get_or_create("made-while-closing")
    finally:
        GATES["closing"].set()
    assert vc.get(future, timeout=HANG) == 1
    closer.join(HANG)
    assert not closer.is_alive()
    vc.shutdown()  # (the next call starts a new runtime on the store)
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("made-while-closing").add.run(1)


def test_a_creation_that_lost_the_race_to_another_class_is_refused(actor_store: StoreSpec) -> None:
    """Mutation: a creation whose step 0 lost the race to another process no longer compared
    the winner's class with its own (``stored != definition.name`` dropped): ``get_or_create``
    of ``GatedInit`` returned, and its handle called an ``OtherKind``."""
    _gate("raced")
    made: list[BaseException | None] = []

    def create() -> None:
        try:
            GatedInit.get_or_create("raced", "raced")
            made.append(None)
        except BaseException as exc:
            made.append(exc)

    creator = threading.Thread(target=create)
    creator.start()
    try:
        assert ENTERED["raced"].wait(HANG)
        other = other_process(actor_store)
        try:
            other.create(OtherKind.definition, "raced", (), {})
        finally:
            other.close()
    finally:
        GATES["raced"].set()
    creator.join(HANG)
    assert len(made) == 1 and isinstance(made[0], vc.ActorDefinitionError), made
    assert vc.get_actor("raced").add.run(1) == 101


# -- shutdown past its timeout --------------------------------------------------------------------
class StallingStore(MemoryStore):
    """Puts of keys naming ``stall`` wait, once ``armed``, until ``released`` (or cancelled)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.armed = threading.Event()
        self.stalled = threading.Event()
        self.released = threading.Event()

    async def _put(self, key: str, data: bytes, mode: object) -> str:
        if self.armed.is_set() and "stall" in key and not key.endswith("/HEAD"):
            self.stalled.set()
            while not self.released.is_set():
                await asyncio.sleep(0.01)
        return await super()._put(key, data, mode)  # type: ignore[arg-type]


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_out_of_time_cancels_a_stalled_request_and_joins_its_threads() -> None:
    """Mutations: past its timeout, ``_close`` no longer cancelled the storage requests in flight
    (``_sync.cancel(self._in_flight)`` dropped): a call whose step put stalled waited on after
    the shutdown returned, its request still made; and ``_close`` no longer joined the pools'
    threads: the shutdown returned with them running. The call fails (not applied, or in doubt),
    no thread of the pools is left."""
    store = StallingStore("h160-stall")
    vc.init(store)
    actor = Swept.get_or_create("stall")
    actor.add.run(1)
    runtime = runtime_module.get_runtime()
    store.armed.set()
    future = actor.add.run_async(1)
    try:
        assert store.stalled.wait(HANG)
        threads = [*runtime.executor.threads(), *runtime.read_executor.threads()]
        assert threads
        runtime.close(timeout=0.2)
        assert not [t for t in threads if t.is_alive()], "the shutdown left its pools' threads running"
        with pytest.raises((RuntimeShutdownError, vc.CommitOutcomeUnknownError)):
            future.result(HANG)
    finally:
        store.released.set()


# -- the process's runtime -------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_threads_starting_the_runtime_at_once_all_get_the_one_runtime() -> None:
    """Mutation: ``get_runtime`` no longer looked again under its lock (``if _runtime is None``
    dropped): threads whose first use came at once each started a runtime, all but the last
    left running, never shut down (their HEAD moves, leases and threads)."""
    vc.init("memory://h160-first-use")
    vc.shutdown()  # (the next use starts the runtime)
    barrier = threading.Barrier(8)
    got: list[runtime_module.Runtime] = []

    def first_use() -> None:
        barrier.wait(HANG)
        got.append(runtime_module.get_runtime())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    started = {id(runtime): runtime for runtime in got}
    for runtime in started.values():
        if runtime is not runtime_module.current_runtime():
            runtime.close()
    assert len(got) == 8 and len(started) == 1, f"{len(started)} runtimes started"


def test_a_call_after_shutdown_starts_a_fresh_runtime_on_the_same_store(store: StoreSpec) -> None:
    """Mutation: ``shutdown()`` closed the runtime but left it the process's (``_runtime`` kept):
    every later call failed with ``RuntimeShutdownError`` where the docs promise that the next
    call starts a new runtime, on the store ``init()`` chose."""
    actor = Swept.get_or_create("after")
    actor.add.run(2)
    before = runtime_module.get_runtime()
    vc.shutdown()
    assert actor.add.run(3) == 5
    after = runtime_module.get_runtime()
    assert after is not before and not after.closed
    assert after.store.describe() == before.store.describe()


def test_a_child_forked_under_own_runtime_starts_a_runtime_of_its_own() -> None:
    """Mutation: ``_OwnRuntime.get`` no longer noticed a forked child (its pid): the child used
    its copy of the parent's runtime, whose IO loop and pool threads it does not have, and
    whose close is the parent's. The child starts one of its own, on the same settings."""
    with runtime_module.own_runtime():
        vc.init("memory://h160-own-fork")
        Swept.get_or_create("forked").add.run(1)
        parent = runtime_module.get_runtime()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                mine = runtime_module.get_runtime()
                said = (
                    b"own"
                    if mine is not parent and mine.store.describe() == parent.store.describe()
                    else b"parent's"
                )
                os.write(write, said)
            finally:
                os._exit(0)
        os.close(write)
        try:
            said = read_until_closed(read)
        finally:
            os.close(read)
            reaped(pid)  # (bounded: a hung child is killed)
    assert said == b"own", f"the forked child used the {said.decode()} runtime"


def test_a_forked_child_leaves_its_copy_of_the_parents_runtime(store: StoreSpec) -> None:
    """Mutation: the fork hook (``_after_fork_in_child``) no longer dropped the process's runtime:
    a forked child's calls went through its copy of the parent's, whose threads it does not
    have, and its shutdown (or exit) closed what is the parent's. The child starts its own."""
    Swept.get_or_create("forked-plain").add.run(1)
    parent = runtime_module.get_runtime()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            left = runtime_module.current_runtime()
            os.write(write, b"none" if left is None else b"parent's")
        finally:
            os._exit(0)
    os.close(write)
    try:
        said = read_until_closed(read)
    finally:
        os.close(read)
        reaped(pid)  # (bounded: a hung child is killed)
    assert said == b"none", f"the forked child kept the {said.decode()} runtime"
    assert runtime_module.get_runtime() is parent and not parent.closed


# -- HEAD moves ------------------------------------------------------------------------------------
def _head_step(actor_id: str) -> int:
    runtime = runtime_module.get_runtime()
    head = runtime.run(runtime.core(actor_id).log.read_head())
    return -1 if head is None else head.step


def _wait_for_head(actor_id: str, step: int) -> int:
    deadline = time.monotonic() + HANG
    while (seen := _head_step(actor_id)) < step and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


@pytest.mark.usefixtures("runtime_off")
def test_head_moves_once_it_lags_head_lag_steps_behind(store_spec: StoreSpec) -> None:
    """Mutation: ``HeadFlusher._due`` moved HEAD only past ``head_lag_steps`` steps behind, not
    at them (``>`` for ``>=``): with the delay far off, HEAD stayed one step short of the lag
    the setting names (readers probing one step more each)."""
    store_spec.init(settings=vc.Settings(head_interval=0.01, head_max_delay=3600.0, head_lag_steps=3))
    actor = Swept.get_or_create("lagging")
    assert _wait_for_head("lagging", 0) == 0  # (a missing HEAD is written at once)
    for _ in range(2):
        actor.add.run(1)
    assert _head_step("lagging") == 0  # two steps behind: not due yet
    actor.add.run(1)
    assert _wait_for_head("lagging", 3) == 3, "HEAD did not move at head_lag_steps behind"


def test_a_runtime_that_stopped_runs_no_operation_handed_to_it(store: StoreSpec) -> None:
    """Mutation: ``Runtime.run`` no longer refused once the runtime had stopped: an operation
    handed to it by code that still held it (a call's thread, a handle's core) ran on the IO
    loop, its storage requests made to a store the shutdown had closed."""
    Swept.get_or_create("stopped").add.run(1)
    runtime = runtime_module.get_runtime()
    core = runtime.core("stopped")
    runtime.close()
    assert runtime.stopped
    ran: list[int] = []

    async def operation() -> None:
        ran.append(1)
        await core.log.read_head()

    with pytest.raises(RuntimeShutdownError, match="was shut down"):
        runtime.run(operation())
    assert not ran, "an operation ran on a stopped runtime"


# -- creations of one id at once ---------------------------------------------------------------------
INIT_RUNS: list[str] = []


@vc.virtual_actor
class Counted:
    def __init__(self) -> None:
        INIT_RUNS.append(vc.current_call().actor_id if vc.current_call() else "")
        time.sleep(0.01)
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def test_a_thread_whose_look_missed_a_creation_ending_runs_not_init_again(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``CreationTurns.turn`` no longer noticed a creation that ended between a
    thread's look for the actor and its turn (``missed`` false): that thread took a turn of
    its own and ran ``__init__`` again (its step 0 then lost to the first: work thrown away,
    side effects done twice). The window is forced: the second thread asks for its turn only
    once the first creation ended. ``__init__`` runs once."""
    INIT_RUNS.clear()
    original = CreationTurns.turn
    first = threading.Lock()

    def late_turn(self: CreationTurns, actor_id: str, looked: int) -> Any:
        if not first.acquire(blocking=False):  # (not the first thread: after its creation ended)
            deadline = time.monotonic() + HANG
            while self.ended == looked and time.monotonic() < deadline:
                time.sleep(0.001)
        return original(self, actor_id, looked)

    monkeypatch.setattr(CreationTurns, "turn", late_turn)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def create() -> None:
        try:
            barrier.wait(HANG)
            Counted.get_or_create("missed")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    assert not errors, errors
    assert len(INIT_RUNS) == 1, f"__init__ ran {len(INIT_RUNS)} times"


# -- interpreter exit ------------------------------------------------------------------------------
#: (``concurrent.futures.thread`` imported first: its exit hook, which ends the pool's workers,
#: then runs after vactor's)
EXIT_WITH_AN_IDLE_POOL = """
import sys, concurrent.futures.thread
import vactor_cloud as vc
from test_review_h160_runtime_sweep import Swept
vc.init(sys.argv[1])
print(Swept.get_or_create("exit").add.run(1), flush=True)
pool = concurrent.futures.thread.ThreadPoolExecutor(2)
pool.submit(print, "pool ran", flush=True).result()
"""


def test_the_exit_waits_not_for_an_idle_thread_pool(store_spec: StoreSpec, tmp_path: Path) -> None:
    """Mutation: the exit hook waited for executors' worker threads too (``_pool_threads`` not
    left out): their own exit hook, which runs after vactor's, is what ends them, so a script
    that had used a ``ThreadPoolExecutor`` took 30 s (``_EXIT_WAIT``) to exit, every time."""
    if store_spec.url.startswith("memory"):
        pytest.skip("memory stores live in one process")
    env = {**os.environ, **store_spec.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        out = subprocess.run(
            [sys.executable, "-c", EXIT_WITH_AN_IDLE_POOL, store_spec.url],
            check=False,
            capture_output=True,
            text=True,
            timeout=HANG,
            env=env,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hang: the exit waited for the thread pool's idle workers")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "pool", "ran"], out.stdout + out.stderr


@vc.virtual_actor
class CycleA:
    def __init__(self) -> None:
        CycleB.get_or_create("cycle-b")
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


@vc.virtual_actor
class CycleB:
    def __init__(self) -> None:
        if not GATES["cycle"].is_set():  # (the first creation, on its own thread: held)
            ENTERED["cycle"].set()
            assert GATES["cycle"].wait(HANG), "the test never released the creation"
        CycleA.get_or_create("cycle-a")
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def test_creations_waiting_for_each_other_across_threads_are_refused_not_hung(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``CreationTurns`` saw a cycle only when the creation waited for ran on this very
    thread (``_waits_for`` reduced to ``running[0] == me``): B's ``__init__`` (thread 2) creating
    A, whose ``__init__`` (thread 1) waits for B's creation, waited for thread 1, which waited for
    thread 2: both hung for good. One of them is refused (``ReentrantCallError``) and both end."""
    _gate("cycle")
    raised: dict[str, BaseException | None] = {}

    def create(name: str, make: Any) -> None:
        try:
            make()
            raised[name] = None
        except BaseException as exc:
            raised[name] = exc

    second = threading.Thread(target=create, args=("b", lambda: CycleB.get_or_create("cycle-b")), daemon=True)
    second.start()
    assert ENTERED["cycle"].wait(HANG)
    turns = runtime_module.get_runtime()._turns
    first = threading.Thread(target=create, args=("a", lambda: CycleA.get_or_create("cycle-a")), daemon=True)
    first.start()
    deadline = time.monotonic() + HANG
    while not turns._waiting and time.monotonic() < deadline:  # (thread 1 waits for B's creation)
        time.sleep(0.001)
    GATES["cycle"].set()
    first.join(HANG)
    second.join(HANG)
    assert not first.is_alive() and not second.is_alive(), "hang: the creations wait for each other"
    assert any(isinstance(exc, vc.ReentrantCallError) for exc in raised.values()), raised

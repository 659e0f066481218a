"""Hostile review: hangs, deadlines, leaks and bounded memory.

Each test shows a way the runtime could wait forever or wedge an actor for the rest of the
process; each failed before its fix. Waits are bounded (a join with a timeout, then the
assertion), never timed.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from child_processes import fork_and_report, held_by_another_thread
from interrupts import Interrupted

import vactor_cloud as vc
from vactor_cloud import _sync, definition, mailkey, workflow
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a test waits for what must finish at once before calling it a hang
HANG = 30.0


def _finishes(fn: Any, *args: Any) -> tuple[bool, Any]:
    """Run ``fn(*args)`` on a daemon thread; (finished within HANG, its result or exception)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn(*args))
        except BaseException as exc:  # the test looks at it
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    return (not thread.is_alive(), box[0] if box else None)


# -- sub-tasks: a pool exists only for fan-out, never as a resource nested calls can starve ----------


def _leaf(x: int) -> int:
    return 2 * x


@vc.virtual_actor
class Worker:
    def __init__(self) -> None:
        self.total = 0

    def work(self, x: int) -> int:
        self.total += sum(vc.subtask(_leaf).map([x, x]))
        return self.total


def _call_worker(i: int) -> int:
    return vc.get_actor(f"worker-{i}").work.run(i)  # type: ignore[no-any-return]


@vc.virtual_actor
class Fan:
    def __init__(self) -> None:
        self.results: list[int] = []

    def fan(self, n: int) -> list[int]:
        self.results = vc.subtask(_call_worker).map(range(n))
        return self.results


@pytest.fixture
def small_pool(store_spec: StoreSpec) -> Iterator[ThreadPoolExecutor]:
    """The runtime with a two-thread sub-task pool (the default pool has 32 threads; the
    deadlock needs as many children waiting as the pool has threads)."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="review-subtask")
    store_spec.init(subtask_executor=pool)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # (before the fix: unblocks the hung chain)
        vc.shutdown()


def test_children_calling_actors_that_launch_sub_tasks_on_the_same_pool_do_not_deadlock(
    small_pool: ThreadPoolExecutor,
) -> None:
    """A method fans out children that call other actors (documented as allowed), whose methods
    launch sub-tasks of their own on the same (default) executor. Once every pool thread ran a
    child waiting for its grandchildren, the grandchildren waited in the pool's queue for a
    thread that never came: the call hung forever. A thread waiting for its children now runs
    those no pool thread has started (caller runs)."""
    for i in range(4):
        Worker.get_or_create(f"worker-{i}")
    fan = Fan.get_or_create("fan")
    finished, result = _finishes(fan.fan.run, 4)
    assert finished, "the fan-out hung: its grandchildren never got a pool thread"
    assert result == [0, 4, 8, 12]
    assert [vc.get_actor(f"worker-{i}").work.run(0) for i in range(4)] == [0, 4, 8, 12]


#: set by the child that only the waiting method can run (both pool threads wait for it)
_released = threading.Event()


def _child(i: int) -> bool:
    """Children 0 and 1 hold both pool threads until child 2 ran; each says whether it saw no
    actor call (a child is not an actor call, wherever it runs)."""
    if i < 2:
        _released.wait(HANG)
    else:
        _released.set()
    return vc.current_call() is None


@vc.virtual_actor
class Launcher:
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def launch(self) -> list[bool]:
        self.seen = vc.subtask(_child).map(range(3))
        return self.seen


def test_a_child_run_by_its_waiting_parent_sees_no_actor_call(small_pool: ThreadPoolExecutor) -> None:
    """A child no pool thread can take (both wait for it) is run by the method waiting for it,
    and sees there what it would see on a pool thread: no actor call (so its own launches are
    not taken for the method's memoized children)."""
    _released.clear()
    launcher = Launcher.get_or_create("launcher")
    finished, result = _finishes(launcher.launch.run)
    assert finished and _released.is_set()
    assert result == [True, True, True]


# -- a call chain deeper than the interpreter's recursion limit -------------------------------------


#: the indexes of the links whose ``down`` ran (the chain stops about 50 links in)
_links_run: set[int] = set()


@vc.virtual_actor
class Link:
    def __init__(self, index: int) -> None:
        self.index = index
        self.calls = 0

    def down(self, depth: int) -> int:
        _links_run.add(self.index)
        self.calls += 1
        if depth == 0:
            return 0
        return 1 + vc.get_actor(f"link-{self.index + 1}").down.run(depth - 1)  # type: ignore[no-any-return]


@pytest.mark.usefixtures("actor_store")
def test_a_call_chain_past_the_recursion_limit_fails_and_wedges_no_actor() -> None:
    """Actors calling each other in a chain deeper than ``sys.getrecursionlimit()`` allows
    (about 100 links): the ``RecursionError`` reached the caller, but it was raised again in the
    runtime's own cleanup of some link (failing its batch, giving the actor up), which left that
    actor held by nobody: every later call to it waited, then failed with ``ActorBusyError``,
    for the rest of the process. A nested call that would leave the runtime too few frames is
    now refused at its call site, before anything is queued."""
    # More links than the limit allows: a link takes about 20 frames (at least 10), so the chain
    # stops about 50 links in. (Were the links fewer than the limit allows, the chain would end
    # on a missing actor, and the test would fail.)
    depth = sys.getrecursionlimit() // 8
    for i in range(depth + 1):
        Link.get_or_create(f"link-{i}", i)

    def every_link_answers(links: int) -> list[int]:
        return [vc.get_actor(f"link-{i}").down.run(0) for i in range(links)]

    # Started at each offset within a link's frames, the limit is met at each point of the runtime.
    for pad in range(16):
        _links_run.clear()
        with pytest.raises(RecursionError, match="recursion limit"):
            _padded(pad, vc.get_actor("link-0").down.run, depth)
        # The links the chain ran and the next two: the link left held by nobody was the one
        # after the last that ran (its call met the limit inside the runtime). Links further
        # down were never called.
        links = min(max(_links_run) + 3, depth + 1)
        finished, result = _finishes(every_link_answers, links)
        assert finished, f"(pad {pad}) an actor of the chain is held by nobody: its calls wait for it"
        assert result == [0] * links
    # A shorter chain still runs end to end.
    assert vc.get_actor("link-0").down.run(20) == 20


def _padded(frames: int, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` called ``frames`` frames deeper than this."""
    if frames == 0:
        return fn(*args)
    return _padded(frames - 1, fn, *args)


# -- waiting for events from methods run on the pool ----------------------------------------------------


@vc.virtual_actor
class Mailbox:
    def __init__(self) -> None:
        self.pings = 0

    @vc.virtual_actor.on_event("ping")
    def on_ping(self, payload: int) -> int:
        self.pings += payload
        return self.pings


@vc.virtual_actor
class Reader:
    def __init__(self, index: int) -> None:
        self.index = index
        self.got: Any = None

    def pull(self, how: str) -> Any:
        mailbox = vc.get_actor(f"mailbox-{self.index}")
        if how == "process":
            self.got = mailbox.process_events()
        else:
            self.got = mailbox.wait_for_event("ping", timeout=None)
        return self.got


@pytest.mark.parametrize("how", ["process", "wait"])
@pytest.mark.usefixtures("runtime_off")
def test_methods_on_the_pool_applying_other_actors_events_do_not_starve_it(
    store_spec: StoreSpec, how: str
) -> None:
    """``run_async`` calls whose methods apply another actor's events (``process_events`` or
    ``wait_for_event``, documented for that): the events' commit was handed to the pool, whose
    every thread was such a method waiting for it, so nothing was ever applied: the calls (and
    whoever waited on them) hung forever. The thread that waits now applies the events itself
    when nobody else does (caller runs), as a ``run()`` does."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_workers=2))
    for i in range(4):
        Reader.get_or_create(f"reader-{i}", i)
        Mailbox.get_or_create(f"mailbox-{i}")
        vc.send_event(f"mailbox-{i}", "ping", i + 1)
    futures = [vc.get_actor(f"reader-{i}").pull.run_async(how) for i in range(4)]
    finished, result = _finishes(lambda: [f.result() for f in futures])
    assert finished, "the pool's threads all wait for commits queued behind them"
    assert result == ([1, 1, 1, 1] if how == "process" else [1, 2, 3, 4])


# -- creations that do not wait (Settings.wait_for_init=False) started from methods on the pool ---------


@vc.virtual_actor
class Made:
    def __init__(self) -> None:
        self.calls = 0

    def incr(self) -> int:
        self.calls += 1
        return self.calls


@vc.virtual_actor
class Maker:
    def __init__(self, index: int) -> None:
        self.index = index

    def make(self, how: str) -> Any:
        made = Made.get_or_create(f"made-{self.index}")  # returns before __init__ commits
        if how == "run":
            return made.incr.run()
        if how == "async":
            return made.incr.run_async().result()
        return made.ready().result()


@pytest.mark.parametrize("how", ["run", "async", "ready"])
@pytest.mark.usefixtures("runtime_off")
def test_methods_on_the_pool_creating_actors_without_waiting_do_not_starve_it(
    store_spec: StoreSpec, how: str
) -> None:
    """With ``wait_for_init=False`` (Ray's way), ``get_or_create`` hands the creation to the pool
    and a call made meanwhile waits for it. Methods on the pool (``run_async``) doing so filled the
    pool with threads waiting for creations queued behind them: the calls hung forever. A thread
    that waits for a creation no thread has started now runs it itself (caller runs)."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_workers=2, wait_for_init=False))
    for i in range(4):
        Maker.get_or_create(f"maker-{i}", i).ready().result()
    futures = [vc.get_actor(f"maker-{i}").make.run_async(how) for i in range(4)]
    finished, result = _finishes(lambda: [f.result() for f in futures])
    assert finished, "the pool's threads all wait for creations queued behind them"
    assert result == ([None] * 4 if how == "ready" else [1, 1, 1, 1])
    assert [vc.get_actor(f"made-{i}").incr.run() for i in range(4)] == (
        [1] * 4 if how == "ready" else [2] * 4
    )


# -- workflow.resume waited on from methods on the pool ---------------------------------------------------

#: how many times the flaky step still fails
_flaky_failures: list[int] = []


#: while not empty, the flaky step waits for ``_gate`` (after setting ``_holding``)
_flaky_holds: list[int] = []


@workflow.step(max_retries=0)
def _flaky(amount: int) -> int:
    if _flaky_holds:
        _holding.set()
        _gate.wait(HANG)
    if _flaky_failures:
        _flaky_failures.pop()
        raise ConnectionError("the pricing service blinked")
    return amount


@workflow.virtual_actor
class Account:
    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, amount: int) -> Any:
        return self.credit.step(_flaky.step(amount))

    def credit(self, amount: int) -> int:
        self.balance += amount
        return self.balance


@vc.virtual_actor
class Resumer:
    def __init__(self, index: int) -> None:
        self.index = index

    def resume(self) -> Any:
        return workflow.resume(f"account-{self.index}").result()


@pytest.mark.usefixtures("runtime_off")
def test_methods_on_the_pool_waiting_for_a_resume_do_not_starve_it(store_spec: StoreSpec) -> None:
    """``workflow.resume(...)`` queues its re-runs for the pool; its future, unlike a call's, did
    not let a waiting thread run them. Methods on the pool (``run_async``) waiting for a resume
    filled the pool with threads waiting for re-runs queued behind them: hung forever."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_workers=2))
    for i in range(4):
        _flaky_failures[:] = [1]
        account = Account.get_or_create(f"account-{i}")
        with pytest.raises(ConnectionError):
            account.deposit.run(i + 1)
        Resumer.get_or_create(f"resumer-{i}", i)
    futures = [vc.get_actor(f"resumer-{i}").resume.run_async() for i in range(4)]
    finished, result = _finishes(lambda: [f.result() for f in futures])
    assert finished, "the pool's threads all wait for re-runs queued behind them"
    assert result == [[1], [2], [3], [4]]
    assert [workflow.get_status(f"account-{i}") for i in range(4)] == [workflow.SUCCESSFUL] * 4


# -- a done-callback raising a BaseException ----------------------------------------------------------

#: opened by the test once every call is queued behind the one waiting for it
_gate = threading.Event()
#: set by ``Tally.hold`` once it runs (the actor is then held by its thread)
_holding = threading.Event()


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.count = 0

    def hold(self) -> int:
        _holding.set()
        _gate.wait(HANG)
        self.count += 100
        return self.count

    def incr(self) -> int:
        self.count += 1
        return self.count


@pytest.mark.usefixtures("actor_store")
def test_a_done_callback_raising_a_base_exception_does_not_fail_the_other_calls_of_its_batch() -> None:
    """One caller's done-callback raised ``SystemExit`` (futures catch ``Exception`` only) while
    its batch was being settled: the exception left the settling loop, and every later call of
    that committed batch got the *callback's* ``SystemExit`` instead of its result, as if it had
    not been applied (a retry would apply it twice). Each call now gets its own outcome."""
    _gate.clear()
    tally = Tally.get_or_create("tally")
    held = tally.hold.run_async()
    futures = [tally.incr.run_async() for _ in range(4)]

    def leave(_: object) -> None:
        raise SystemExit("raised by a done-callback")

    futures[0].add_done_callback(leave)
    _gate.set()
    assert held.result(HANG) == 100
    assert [f.result(HANG) for f in futures] == [101, 102, 103, 104]
    assert tally.incr.run() == 105


# -- a BaseException raised on the IO loop ---------------------------------------------------------------


class _ExitsWhenLoaded:
    """A payload whose unpickling raises ``SystemExit`` while the test says so (a class changed
    by a new deployment, a ``__setstate__`` calling ``sys.exit``)."""

    def __init__(self) -> None:
        self.value = 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        if os.environ.get("VACTOR_REVIEW_PAYLOAD_EXITS"):
            raise SystemExit("a payload's __setstate__ called sys.exit()")
        self.__dict__.update(state)


@vc.virtual_actor
class Hub:
    def __init__(self) -> None:
        self.events = 0
        self.calls = 0

    @vc.virtual_actor.on_event("load")
    def on_load(self, payload: Any) -> int:
        self.events += 1
        return self.events

    def incr(self) -> int:
        self.calls += 1
        return self.calls


def test_a_system_exit_raised_on_the_io_loop_reaches_its_waiter_and_the_loop_carries_on() -> None:
    """asyncio lets ``SystemExit`` and ``KeyboardInterrupt`` out of its loop once the task that
    raised them has them as its outcome: the IO thread ended, and every later operation of the
    process failed at its deadline or, where none applies, hung forever. User code does run
    there (a pickled event payload is decoded when a commit folds it). The loop now carries on;
    the exception reaches the thread that waited for that work."""

    async def leave() -> None:
        await asyncio.sleep(0)
        raise SystemExit("raised on the IO loop")

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    for _ in range(3):
        finished, outcome = _finishes(_sync.sync, leave())
        assert finished and isinstance(outcome, SystemExit), outcome
        finished, outcome = _finishes(_sync.sync, answer(), 5.0)
        assert finished and outcome == 42, outcome


@pytest.mark.usefixtures("actor_store")
def test_an_event_whose_payload_raises_system_exit_when_loaded_stays_and_fails_no_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event payload (pickle) whose unpickling raised ``SystemExit`` was not caught like one
    raising an ``Exception`` (logged, the event stays in the inbox): it failed every writer call
    of the actor and every ``process_events`` while the event was there (and, raised on the IO
    loop, ended the loop: the test above). It now stays in the inbox like any unreadable payload,
    and is applied once it loads."""
    hub = Hub.get_or_create("hub")
    other = Hub.get_or_create("other")
    vc.send_event("hub", "load", _ExitsWhenLoaded(), serializer="pickle")
    monkeypatch.setenv("VACTOR_REVIEW_PAYLOAD_EXITS", "1")
    finished, outcome = _finishes(hub.process_events)
    assert finished and outcome == 0, outcome
    finished, outcome = _finishes(hub.incr.run)
    assert finished and outcome == 1, outcome
    finished, outcome = _finishes(other.incr.run)
    assert finished and outcome == 1, outcome
    monkeypatch.delenv("VACTOR_REVIEW_PAYLOAD_EXITS")
    assert hub.process_events() == 1
    assert hub.incr.run() == 2


@pytest.mark.usefixtures("runtime_off")
def test_a_call_interrupted_while_queued_behind_another_thread_is_not_applied_later(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """Ctrl-C reaching a ``run()`` that waits behind another thread holding the actor: the
    caller got the interrupt, but its call stayed queued, and the holder applied it once its
    method returned, behind the caller's back (as the interrupted commit's put once did: see
    test_ctrl_c_during_a_commit_stops_its_write). A call not started is now withdrawn."""
    store_spec.init()
    _gate.clear()
    _holding.clear()
    tally = Tally.get_or_create("queued")
    held = tally.hold.run_async()
    assert _holding.wait(HANG)
    core = vc.get_runtime().core("queued")
    waiting = threading.Event()

    def watch() -> None:  # the interrupt once the call waits (bounded)
        for _ in range(int(HANG / 0.005)):
            if core._waiters:
                waiting.set()
                return
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    ctrl_c(waiting)
    try:
        with pytest.raises(Interrupted):
            tally.incr.run()
    finally:
        _gate.set()
    assert held.result(HANG) == 100
    assert tally.incr.run() == 101, "the interrupted call was applied after all"


# -- async methods awaiting other actors' calls, run on the pool -----------------------------------------


@vc.virtual_actor
class Awaiter:
    def __init__(self, index: int) -> None:
        self.index = index

    async def pull(self) -> Any:
        return await vc.get_actor(f"awaited-{self.index}").incr.run_async()


@pytest.mark.usefixtures("runtime_off")
def test_async_methods_on_the_pool_awaiting_other_actors_calls_do_not_starve_it(
    store_spec: StoreSpec,
) -> None:
    """An ``async def`` method runs to completion on the calling thread (its own event loop);
    ``await`` on another actor's ``run_async()`` future there only waited for the pool, where a
    blocking ``.result()`` would have run the call (caller runs). ``run_async`` calls of such
    methods filled the pool with threads waiting for calls queued behind them: hung forever."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_workers=2))
    for i in range(4):
        Awaiter.get_or_create(f"awaiter-{i}", i)
        Tally.get_or_create(f"awaited-{i}")
    futures = [vc.get_actor(f"awaiter-{i}").pull.run_async() for i in range(4)]
    finished, result = _finishes(lambda: [f.result() for f in futures])
    assert finished, "the pool's threads all await calls queued behind them"
    assert result == [1, 1, 1, 1]


# -- class bodies loaded from storage by methods on the pool ---------------------------------------------


@vc.virtual_actor
class Stranger:
    """Made importable here, then forgotten: this process loads its body from storage."""

    def __init__(self) -> None:
        self.calls = 0

    def incr(self) -> int:
        self.calls += 1
        return self.calls


@vc.virtual_actor
class Caller:
    def __init__(self, index: int) -> None:
        self.index = index

    def call(self) -> Any:
        return vc.get_actor(f"stranger-{self.index}").incr.run()


@pytest.mark.usefixtures("runtime_off")
def test_methods_on_the_pool_loading_a_class_body_do_not_starve_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class this process cannot import is unpickled from storage off the IO loop, on the
    runtime's pool: methods on that pool calling such actors waited for a pool thread their
    like held, and failed with ``StorageTimeoutError`` at the deadline (forever busy, had the
    deadline been longer than their wait). The body is now unpickled on a thread of its own."""
    settings = vc.Settings(storage=store_spec.url, max_workers=2, deadline=5.0)
    store_spec.init(settings=settings)
    for i in range(4):
        Stranger.get_or_create(f"stranger-{i}")
        Caller.get_or_create(f"caller-{i}", i)
    monkeypatch.delitem(definition._REGISTRY, Stranger.name)
    store_spec.init(settings=settings)  # a fresh runtime: no class body loaded yet
    futures = [vc.get_actor(f"caller-{i}").call.run_async() for i in range(4)]
    finished, result = _finishes(lambda: [f.result() for f in futures])
    assert finished and result == [1, 1, 1, 1], result


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.usefixtures("actor_store")
def test_a_resume_in_a_child_forked_while_the_parent_re_ran_the_call_does_not_wait_for_the_parent() -> None:
    """``workflow.resume`` hands out the re-run this process has under way. A child forked while
    the parent re-ran a call inherited that in-flight record, whose re-run (the parent's threads)
    does not exist there: the child's ``resume`` returned it, and its future never settled. The
    child forgets what the parent's threads were doing (as it does the runtime)."""
    _flaky_failures[:] = [1]
    account = Account.get_or_create("forked-account")
    with pytest.raises(ConnectionError):
        account.deposit.run(5)
    _gate.clear()
    _holding.clear()
    _flaky_holds[:] = [1]
    try:
        parent = workflow.resume("forked-account")
        assert _holding.wait(HANG)  # the parent's re-run waits in its step

        def resume_in_the_child() -> bytes:
            _flaky_holds.clear()
            return repr(workflow.resume("forked-account").result(HANG / 2)).encode()

        report = fork_and_report(resume_in_the_child, HANG)
    finally:
        _flaky_holds.clear()
        _gate.set()
    assert report == b"[5]"
    # On a store both share, the parent's re-run applies on top of the child's (documented:
    # resume an actor from one process at a time); on the memory lane each has its own copy.
    assert parent.result(HANG) in ([5], [10])


# -- process-wide locks another thread may hold at a fork -------------------------------------------------


def _memory_request() -> None:
    _sync.sync(MemoryStore("forked-child").put("k", b"v"), timeout=HANG / 3)


def _class_body() -> None:
    class Fresh:
        def incr(self) -> int:
            return 1

    definition.ActorDefinition(Fresh).body()


def _mail_keys() -> None:
    mailkey.mail_keys(MemoryStore("forked-child"), None)


def _wait_graph() -> None:
    importlib.import_module("vactor_cloud.reentrancy").unblock()  # what a waiting call does


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize(
    ("module", "lock", "use"),
    [
        ("vactor_cloud.storage._memory", "_LOCK", _memory_request),
        ("vactor_cloud.definition", "_PICKLE_LOCK", _class_body),
        ("vactor_cloud.mailkey", "_KEYS_LOCK", _mail_keys),
        ("vactor_cloud.reentrancy", "_blocked_lock", _wait_graph),
    ],
)
def test_a_child_forked_while_another_thread_held_a_process_wide_lock_can_take_it(
    module: str, lock: str, use: Any
) -> None:
    """A process-wide lock held by another thread at ``fork`` (a memory-store request, a class
    body being pickled, a mail key looked up: all happen on the runtime's threads) stays held
    forever in the child, where that thread does not exist: the child's first use waited for
    ever. Each such lock is new in the child (as the IO loop's and the runtime's are)."""
    held = getattr(importlib.import_module(module), lock)

    def use_in_the_child() -> bytes | None:
        finished, outcome = _finishes(use)
        return None if finished and outcome is None else repr(outcome).encode()

    with held_by_another_thread(held, HANG):
        report = fork_and_report(use_in_the_child, 2 * HANG)
    assert report == b"ok"

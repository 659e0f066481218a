"""Hostile review of callers that give up (review-h52): ``asyncio`` cancellation and timeouts
of awaited calls, ``future.cancel()``, Ctrl-C while a call waits for its step or for another
process's fold, and shutdown with cancelled calls still queued.

What must hold: a call is applied at most once, a process's calls apply in the order it made
them, every exception reaches its caller, nothing hangs, and a caller that gave up can learn
what became of its call. Waits are bounded (``HANG``), never timed; a test that holds a
request releases it in a ``finally``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from interrupts import Interrupted
from test_combining import init_switchable, pending_posts, wait_for_no_posts
from test_review_workflow import Wallet, _step_failures_left

import vactor_cloud as vc
from vactor_cloud import _sync, workflow
from vactor_cloud.errors import CallPendingError
from vactor_cloud.lease import LeaseStore
from vactor_cloud.posting import PostBox
from vactor_cloud.subtask_executors import _from_dask
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a wait for what must happen lasts before it is called a hang
HANG = 60.0


@vc.virtual_actor
class Gate(OrderLog):
    """An ``OrderLog`` whose ``hold(token)`` blocks its writer until the test's ``opened`` event
    is set (kept outside the state, by token): the actor stays held by the thread running it."""

    def hold(self, token: str) -> int:
        _entered[token].set()
        assert _opened[token].wait(HANG), "the gate was never opened"
        self.tokens.append(token)
        return len(self.tokens)


_entered: dict[str, threading.Event] = {}
_opened: dict[str, threading.Event] = {}


def _hold_actor(gate: Any, token: str) -> threading.Thread:
    """A thread runs ``gate.hold.run(token)``: returns once the method is running (the actor is
    held by that thread until ``_opened[token]`` is set)."""
    _entered[token], _opened[token] = threading.Event(), threading.Event()
    holder = threading.Thread(target=gate.hold.run, args=(token,), daemon=True)
    holder.start()
    assert _entered[token].wait(HANG), "the holder never started"
    return holder


def _wrap(fragment: str, skip: int = 0) -> HoldOne:
    """Once armed, the next put of a key holding ``fragment`` (after ``skip`` others) lands,
    then its answer is held until ``release`` is set (the request sent, its answer on its way
    back)."""
    runtime = vc.get_runtime()
    store = HoldOne(runtime.store, "put", fragment, skip=skip, answer_first=True, timeout=HANG)
    runtime.store = store
    return store


def _hold_lease_elsewhere(actor_id: str, seconds: float) -> None:
    """Another process holds the folder lease (``seconds``; 0: it gives it up)."""
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, actor_id, runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, seconds, 1)) is not None


def _posted_call_ids(actor_id: str) -> list[str]:
    runtime = vc.get_runtime()
    box = PostBox(runtime.store, actor_id, runtime.settings.signing_key)
    return [call.call_id for post in _sync.sync(box.read(_sync.sync(box.keys()))) for call in post.calls]


# -- 1. asyncio: an awaited call cancelled (wait_for's timeout, task.cancel()) ---------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_awaited_call_cancelled_before_it_starts_is_never_applied_and_the_next_one_is(
    store_spec: StoreSpec,
) -> None:
    """(Pin.) ``asyncio.wait_for(h.m.run_async(...), t)`` running out while the call waits
    behind another thread's writer: the call is withdrawn with its awaiter (its future
    cancelled), never applied later behind the caller's back; the process's next call
    applies. Fails if ``ActorFuture.__await__`` leaves the call queued when cancelled."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    holder = _hold_actor(gate, "held")

    async def give_up() -> concurrent.futures.Future[Any]:
        future = gate.add.run_async("given-up")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(future, 0.05)  # the holder keeps the actor: it cannot start
        return future

    try:
        future = asyncio.run(give_up())
    finally:
        _opened["held"].set()
    holder.join(HANG)
    assert future.cancelled()
    assert gate.add.run("next") == 2
    assert gate.applied.run() == ["held", "next"]


@pytest.mark.vactor_lanes("memory", "local", "moto")
@pytest.mark.usefixtures("runtime_off")
def test_an_awaited_call_cancelled_while_its_step_put_is_in_flight_applies_once_and_keeps_its_outcome(
    store_spec: StoreSpec,
) -> None:
    """(Pin.) Cancelled with its step put sent: the call cannot be taken back (the put may
    land), so its future is not cancelled; it applies once, before the process's next call,
    and its future still holds its result for whoever kept it. Fails if a started call's
    future can be cancelled (``PendingCall.claim`` not marking it running)."""
    store_spec.init()
    store = _wrap("/steps/")  # (before the actor's core is made: it keeps the store it saw)
    gate = Gate.get_or_create("g")
    store.hold()

    async def give_up() -> concurrent.futures.Future[Any]:
        future = gate.add.run_async("in-flight")
        task = asyncio.ensure_future(future)
        until = time.monotonic() + HANG
        while not store.held.is_set():
            assert time.monotonic() < until, "the call's step put was never sent (nothing held)"
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return future

    try:
        future = asyncio.run(asyncio.wait_for(give_up(), 2 * HANG))  # (the loop above says why first)
    finally:
        store.release.set()
    assert not future.cancelled()
    assert future.result(HANG) == 1
    assert gate.add.run("next") == 2
    assert gate.applied.run() == ["in-flight", "next"]


@pytest.mark.usefixtures("runtime_off")
def test_calls_left_awaited_when_asyncio_run_ends_are_withdrawn_if_not_started(store_spec: StoreSpec) -> None:
    """(Pin.) ``asyncio.run`` returning with tasks still awaiting calls (the loop cancels them,
    then closes): the calls, not started, are withdrawn, none applies later (behind the
    caller's back), and the closed loop's wake-ups break nothing. Fails as the first does."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    holder = _hold_actor(gate, "held")
    futures: list[concurrent.futures.Future[Any]] = []
    left: list[asyncio.Future[Any]] = []

    async def leave_them() -> None:
        for token in ("a", "b"):
            future = gate.add.run_async(token)
            futures.append(future)
            left.append(asyncio.ensure_future(future))
        await asyncio.sleep(0)

    try:
        asyncio.run(leave_them())
    finally:
        _opened["held"].set()
    holder.join(HANG)
    assert [f.cancelled() for f in futures] == [True, True]
    assert gate.add.run("next") == 2
    assert gate.applied.run() == ["held", "next"]


@pytest.mark.usefixtures("runtime_off")
def test_calls_cancelled_behind_a_holder_that_runs_long_do_not_pile_up(store_spec: StoreSpec) -> None:
    """A caller that times out and calls again (``asyncio.wait_for`` in a request handler) while
    the actor's writer runs long: each cancelled call stayed in the write queue, arguments and
    all, until the holder reached it; memory grew with every timeout. Now a cancelled call
    leaves the queue when it is cancelled (review-h54: ``test_review_queues`` checks it at
    each cancellation)."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    holder = _hold_actor(gate, "held")
    try:
        for index in range(3000):
            assert gate.add.run_async(f"timed-out/{index}" + "x" * 100).cancel()
        queued = len(vc.get_runtime().core("g")._queue or ())
    finally:
        _opened["held"].set()
    holder.join(HANG)
    assert queued <= 1024, queued
    assert gate.add.run("next") == 2
    assert gate.applied.run() == ["held", "next"]


# -- 2. sync callers: future.cancel(), result(timeout) --------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_future_cancelled_from_sync_code_is_withdrawn_and_a_timed_out_wait_cancels_nothing(
    store_spec: StoreSpec,
) -> None:
    """(Pin.) ``fut.cancel()`` on a queued call, and a ``result(timeout)`` that ran out on
    another: the cancelled one never applies, the other still does, in order; nothing hangs.
    Fails if ``PendingCall.claim`` runs a cancelled call."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    holder = _hold_actor(gate, "held")
    try:
        first = gate.add.run_async("cancelled")
        second = gate.add.run_async("timed-out")
        assert first.cancel()
        with pytest.raises(concurrent.futures.TimeoutError):
            second.result(0.01)
    finally:
        _opened["held"].set()
    holder.join(HANG)
    assert second.result(HANG) == 2
    assert gate.applied.run() == ["held", "timed-out"]
    with pytest.raises(concurrent.futures.CancelledError):
        first.result(0)


# -- 3. Ctrl-C while a posted call waits for another process's fold ------------------------------
def _interrupt_a_posted_call(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None], *, while_posting: bool
) -> tuple[Any, Interrupted]:
    """``me/0`` commits; another process holds the folder lease; ``me/1`` loses a race and posts.
    Ctrl-C comes once the post landed: with ``while_posting``, before its put's answer was
    read; else while the call waits for the holder's fold (its first look at the steps)."""
    store = init_switchable(store_spec, combine_window=0.0 if while_posting else 60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a", 60.0)
    commit_behind_its_back("a")  # step 2: our next put loses, and we post
    posted = threading.Event()
    held = threading.Event()
    release = threading.Event()
    inner_around = store._around

    async def hold(operation: str, key: str, run: Any, **kw: Any) -> Any:
        waiting = operation == "get" and "/steps/" in key and posted.is_set() and not while_posting
        if waiting and not held.is_set():
            await hold_until_released()  # the poster's first look for the fold, on this thread
        answer = await inner_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key and not posted.is_set():
            posted.set()
            if while_posting:
                await hold_until_released()  # the post landed; its answer on its way back
        return answer

    async def hold_until_released() -> None:
        held.set()
        for _ in range(int(HANG / 0.005)):
            if release.is_set():
                break
            await asyncio.sleep(0.005)

    store._around = hold  # type: ignore[method-assign]
    ctrl_c(held)
    try:
        with pytest.raises(Interrupted) as interrupted:
            log.add.run("me/1")
    finally:
        release.set()
    return log, interrupted.value


@pytest.mark.vactor_lanes("memory", "local", "moto")
@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("moment", ["waiting-for-the-fold", "writing-the-post"])
def test_ctrl_c_on_a_posted_call_says_it_may_still_apply_and_call_outcome_tells_not_never(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None], moment: str
) -> None:
    """Ctrl-C while a call posted under contention waits for another process's fold (or while
    its post's put is answered): the post stays, and any process's fold may apply it later.
    The interrupt's note said "look at handle.history() before calling again": history does
    not show it yet, so a caller following that advice called again, and both applied. And
    ``call_outcome`` (the documented way to learn a posted call's fate) answered
    ``LookupError`` ("not applied, never will be") while it was pending. With the post's
    answer lost to the interrupt, the call was forgotten altogether: the process's next call
    raced past it (applied before it, order broken).

    Now the note says the call was posted, may still apply (once, in order) and names
    ``call_outcome`` and the call ids; ``call_outcome`` says pending until it applies, then
    gives its result; the process's next call applies after it."""
    while_posting = moment == "writing-the-post"
    log, interrupted = _interrupt_a_posted_call(store_spec, ctrl_c, while_posting=while_posting)
    (call_id,) = _posted_call_ids("a")
    notes = " ".join(getattr(interrupted, "__notes__", []))
    assert "posted" in notes and "call_outcome" in notes and call_id in notes, notes
    assert "look at handle.history()" not in notes, notes
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(call_id)  # type: ignore[attr-defined]
    _hold_lease_elsewhere("a", 0.0)  # the other process gives the lease up: we fold next
    assert log.add.run("me/2") == 3  # after its pending post, in order
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert vc.get_actor("a").call_outcome(call_id) == 2  # type: ignore[attr-defined]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_an_awaited_posted_call_cancelled_applies_once_later_and_its_future_gets_the_outcome(
    store_spec: StoreSpec,
) -> None:
    """(Pin.) The awaiter of a call posted under contention is cancelled while it waits for
    another process's fold: the call is not withdrawn (any process's fold may apply it), its
    future is not cancelled, and once the fold applies it the future holds its result."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    _hold_lease_elsewhere("a", 60.0)
    commit_behind_its_back("a")

    async def give_up() -> concurrent.futures.Future[Any]:
        future = log.add.run_async("me/1")
        task = asyncio.ensure_future(future)
        for _ in range(int(HANG / 0.005)):
            if pending_posts("a"):
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return future

    future = asyncio.run(asyncio.wait_for(give_up(), HANG))
    assert not future.cancelled() and not future.done()
    _hold_lease_elsewhere("a", 0.0)
    assert log.add.run("me/2") == 3  # after it, in order: the pool's wait took the lease and folded
    assert future.result(HANG) == 2
    assert log.applied.run() == ["me/0", "me/1", "me/2"]


# -- 4. Ctrl-C while another thread of this process commits the call -----------------------------
@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_while_another_thread_commits_the_call_says_it_may_still_apply(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """``run()`` waits while a pool thread holds the actor; that thread takes the call into its
    next batch and sends its step put; Ctrl-C comes. The call cannot be withdrawn (it started
    on the other thread, which the interrupt does not stop) and applies; its caller got a
    bare ``KeyboardInterrupt``, nothing saying so (the docs said a call still queued behind
    another thread is withdrawn, and were silent on this one). Now the interrupt's note says
    the call was being committed by another thread and may be applied."""
    store_spec.init()
    store = _wrap("/steps/", skip=1)  # once armed, hold's own step put goes; the next is held
    gate = Gate.get_or_create("g")
    _entered["pool"], _opened["pool"] = threading.Event(), threading.Event()
    holding = gate.hold.run_async("pool")  # a pool thread holds the actor
    assert _entered["pool"].wait(HANG)
    ctrl_c(store.held)

    def open_gate_once_queued() -> None:
        core = vc.get_runtime().core("g")
        for _ in range(int(HANG / 0.005)):
            if core._queue:
                break
            time.sleep(0.005)
        store.hold()
        _opened["pool"].set()

    opener = threading.Thread(target=open_gate_once_queued, daemon=True)
    opener.start()
    try:
        with pytest.raises(Interrupted) as interrupted:
            gate.add.run("ours")
    finally:
        _opened["pool"].set()
        store.release.set()
        opener.join(HANG)
    assert holding.result(HANG) == 1
    notes = " ".join(getattr(interrupted.value, "__notes__", []))
    assert "another thread" in notes and "may be applied" in notes, notes
    core = vc.get_runtime().core("g")
    for _ in range(int(HANG / 0.005)):  # the pool thread finishes our call's commit
        if core._drainer is None:
            break
        time.sleep(0.005)
    assert gate.applied.run() == ["pool", "ours"]


# -- 5. Ctrl-C while an async method runs on its helper thread ------------------------------------
@vc.virtual_actor
class AsyncGate:
    def __init__(self) -> None:
        self.n = 0

    async def work(self, token: str) -> int:
        _entered[token].set()
        try:
            for _ in range(int(HANG / 0.005)):
                if _opened[token].is_set():
                    break
                await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            _cancelled.add(token)
            raise
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def read(self) -> int:
        return self.n


_cancelled: set[str] = set()


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_while_an_async_method_runs_on_its_helper_thread_stops_the_method(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """``.run()`` of an ``async def`` method from inside a running event loop (a notebook cell,
    an async handler): the method runs on a helper thread (``asyncio.run`` cannot nest) while
    the caller's thread joins it. Ctrl-C there failed the call (excluded, not applied) but
    left the helper running the method's coroutine on its own: user code (calls to other
    actors, side effects) went on after its caller was told the call was stopped, on a thread
    nobody joins. Now the interrupt cancels the coroutine (it gets ``CancelledError``, as
    ``asyncio.run`` gives its task at Ctrl-C) and the helper ends before the caller hears."""
    store_spec.init()
    gate = AsyncGate.get_or_create("ag")
    _entered["a"], _opened["a"] = threading.Event(), threading.Event()
    ctrl_c(_entered["a"])

    async def inside_a_loop() -> int:
        return gate.work.run("a")  # type: ignore[no-any-return]

    try:
        with pytest.raises(Interrupted):
            asyncio.run(inside_a_loop())
        assert "a" in _cancelled, "the method's coroutine went on after the interrupt"
    finally:
        _opened["a"].set()
    assert gate.read.run() == 0
    _entered["b"], _opened["b"] = threading.Event(), threading.Event()
    _opened["b"].set()
    assert gate.work.run("b") == 1


# -- 6. Ctrl-C while a call waits behind this process's pending creation --------------------------
@vc.virtual_actor
class SlowInit(OrderLog):
    """An ``OrderLog`` whose ``__init__`` waits until the test opens ``_opened[token]``."""

    def __init__(self, token: str) -> None:
        _entered[token].set()
        assert _opened[token].wait(HANG), "the creation was never let through"
        super().__init__()


def _when_blocked_in(function: str, thread: threading.Thread, done: threading.Event) -> threading.Event:
    """An event set once ``thread`` is blocked in a wait below a frame of ``function`` (read
    from its stack, not guessed from time)."""
    blocked = threading.Event()

    def watch() -> None:
        for _ in range(int(HANG / 0.002)):
            if done.is_set():
                return
            frame = sys._current_frames().get(thread.ident or 0)
            names = []
            while frame is not None:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            if names and names[0] == "wait" and function in names:
                blocked.set()
                return
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()
    return blocked


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("way", ["run", "run_async-result"])
def test_ctrl_c_while_a_call_waits_for_the_pending_creation_withdraws_it(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None], way: str
) -> None:
    """With ``wait_for_init=False`` a writer call made while this process's creation of the
    actor is still running is queued behind the creation. Ctrl-C while ``run()`` (or
    ``run_async(...).result()``) waits for that creation: the caller got the interrupt, and the
    call stayed queued, to be applied once the creation committed, behind the caller's back (a
    call queued behind another thread is withdrawn at Ctrl-C, as the docs say). Now it is
    withdrawn too."""
    store_spec.init(settings=vc.Settings(storage="", wait_for_init=False))
    _entered["init"], _opened["init"] = threading.Event(), threading.Event()
    slow = SlowInit.get_or_create("s", "init")
    assert _entered["init"].wait(HANG)
    done = threading.Event()
    ctrl_c(_when_blocked_in("wait_created", threading.main_thread(), done))
    try:
        with pytest.raises(Interrupted):
            if way == "run":
                slow.add.run("interrupted")
            else:
                slow.add.run_async("interrupted").result()
    finally:
        done.set()
        _opened["init"].set()
    slow.ready().result(HANG)
    assert slow.add.run("next") == 1
    assert slow.applied.run() == ["next"]


# -- 7. Ctrl-C inside a sub-workflow ---------------------------------------------------------------
_ran: list[int] = []
_CHILDREN = ThreadPoolExecutor(1, thread_name_prefix="review-h52-children")


def _child(index: int) -> int:
    """Child 0 holds the one pool thread; the waiting thread runs the newest queued child (2)
    itself, where Ctrl-C reaches it; child 1 waits in the pool's queue."""
    _ran.append(index)
    if index == 0:
        assert _opened["child0"].wait(HANG)
    elif index == 2:
        _entered["child2"].set()
        assert _opened["child2"].wait(HANG)
    else:
        _opened["child0"].set()  # (before the fix: child 1 ran after the interrupt; finish)
    return index


@vc.virtual_actor
class Parent:
    def __init__(self) -> None:
        self.launched = 0

    def launch(self) -> list[int]:
        results = vc.subtask(_child, executor=_CHILDREN).map([0, 1, 2])
        self.launched += 1
        return results

    @vc.virtual_actor.readonly
    def read(self) -> int:
        return self.launched


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_inside_a_sub_workflow_stops_it_and_its_queued_children_never_run(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """A writer method launches children on a thread pool; the waiting thread runs a queued child
    itself (caller runs) and Ctrl-C reaches it there. The interrupt was taken for that child's
    failure: the method went on waiting for (and running) the other children, and a child
    still queued ran after the caller had pressed Ctrl-C (and its result was checkpointed by
    nobody: a retry of the call ran it again). Now the interrupt fails the call at once and the
    children not started are cancelled: child 1 never runs."""
    store_spec.init()
    parent = Parent.get_or_create("p")
    _ran.clear()
    for name in ("child0", "child2"):
        _entered[name], _opened[name] = threading.Event(), threading.Event()
    ctrl_c(_entered["child2"])
    try:
        with pytest.raises(Interrupted):
            parent.launch.run()
    finally:
        _opened["child2"].set()
        _opened["child0"].set()
    _CHILDREN.submit(lambda: None).result(HANG)  # the pool's thread is done with child 0
    assert 2 in _ran and 1 not in _ran, _ran  # (child 0 too is cancelled if the pool had not started it)
    assert parent.read.run() == 0


# -- 8. workflow.resume's future -------------------------------------------------------------------
def test_a_resume_whose_future_is_cancelled_does_not_say_cancelled_of_re_runs_that_apply(
    actor_store: StoreSpec,
) -> None:
    """``workflow.resume`` submits the failed calls again and returns one future for them all.
    ``fut.cancel()`` on it (or cancelling a task awaiting it) returned ``True``, the future
    said cancelled, and the re-runs were applied all the same (they were never withdrawn):
    a caller told its resume was cancelled found the deposit credited. Now the future is
    running from the start: ``cancel()`` is ``False`` and it gives the re-runs' results."""
    _step_failures_left[:] = [1, 1, 1, 1]  # the first run and its three retries fail
    wallet = Wallet.get_or_create("w")
    with pytest.raises(ConnectionError):
        wallet.deposit.run(5)
    _step_failures_left.clear()
    future = workflow.resume("w")
    cancelled = future.cancel()
    for _ in range(int(HANG / 0.01)):  # the re-run was submitted: it applies either way
        if wallet.view.run() == 5:
            break
        time.sleep(0.01)
    assert wallet.view.run() == 5
    assert not cancelled and future.result(HANG) == [5]


def test_a_dask_child_cancelled_with_its_call_settles_without_raising_into_dask() -> None:
    """The children a Ctrl-C leaves unstarted are cancelled (``Runner.run``); on Dask that is
    the wrapper future, whose Dask task may still finish: settling the cancelled wrapper raised
    ``InvalidStateError`` into Dask's done callback. (Fails without the guard in
    ``subtask_executors._from_dask``.)"""

    class FakeDaskFuture:
        def __init__(self) -> None:
            self.callbacks: list[Callable[[Any], None]] = []

        def add_done_callback(self, callback: Callable[[Any], None]) -> None:
            self.callbacks.append(callback)

        def result(self) -> int:
            return 7

    dask_future = FakeDaskFuture()
    wrapper = _from_dask(dask_future)
    assert wrapper.cancel()
    for callback in dask_future.callbacks:
        callback(dask_future)  # the Dask task finished after all
    assert wrapper.cancelled()
    settled = _from_dask(dask_future)
    dask_future.callbacks[-1](dask_future)
    assert settled.result(0) == 7

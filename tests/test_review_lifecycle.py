"""Hostile review: the runtime's lifecycle (shutdown, init again) and whole-operation deadlines.

Each test failed before its fix. Premises are made to happen with events (a request held
in the store until the test lets it go), never with sleeps; waits are bounded (a join with a
timeout, then the assertion) and timing is asserted only as a generous "does not hang".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from actors import OrderLog
from background import in_thread
from test_combining import commit_behind_its_back, foreign_box, post_adds

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.keys import posts_prefix
from vactor_cloud.runtime import Runtime
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a test waits for what must happen at once before calling it a hang
HANG = 60.0


# -- helpers ------------------------------------------------------------------------------------
class Recorder(FaultyStore):
    """Forwards everything and records each request (operation, key). ``hold(match)``: the
    next requests ``match`` accepts wait (``entered`` set) until ``release`` is set."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, FaultConfig())
        self.log: list[tuple[str, str]] = []
        #: requests that went on to the wrapped store (past a hold)
        self.reached: list[tuple[str, str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._match: Callable[[str, str], bool] | None = None
        self._slow: Callable[[str, str], bool] | None = None
        self._seconds = 0.0
        #: set by ``heal()``: the slow requests still waiting end their wait at once
        self._healed = threading.Event()

    def slow_down(self, match: Callable[[str, str], bool], seconds: float) -> None:
        """Requests ``match`` accepts each take ``seconds`` longer (a slow store), until ``heal()``."""
        self._healed.clear()
        self._slow, self._seconds = match, seconds

    def heal(self) -> None:
        """No request is slow any more, nor those still waiting out their ``seconds``: once a
        test has seen what it checks, the runtime's shutdown need not wait for them."""
        self._slow = None
        self._healed.set()

    def hold(self, match: Callable[[str, str], bool]) -> None:
        self.entered.clear()
        self.release.clear()
        self._match = match

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        self.log.append((operation, key))
        slow = self._slow
        if slow is not None and slow(operation, key):
            until = time.monotonic() + self._seconds
            while not self._healed.is_set() and time.monotonic() < until:
                await asyncio.sleep(0.01)
        match = self._match
        if match is not None and match(operation, key):
            self.entered.set()
            until = time.monotonic() + HANG
            while not self.release.is_set() and time.monotonic() < until:
                await asyncio.sleep(0.002)
        self.reached.append((operation, key))
        return await super()._around(operation, key, run, **batch)


def recorded(spec: StoreSpec, **settings: Any) -> tuple[Runtime, Recorder]:
    spec.init(settings=vc.Settings(storage="", **settings))
    runtime = vc.get_runtime()
    store = Recorder(runtime.store)
    runtime.store = store
    return runtime, store


def step_put(operation: str, key: str) -> bool:
    return operation == "put" and "/steps/" in key


def wait_until(condition: Callable[[], bool], seconds: float = HANG) -> bool:
    until = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > until:
            return False
        time.sleep(0.001)
    return True


def close_in_a_second(runtime: Runtime) -> None:
    """``runtime.close(timeout=1)`` on another thread, which must return."""
    stopping, _ = in_thread(lambda: runtime.close(timeout=1.0))
    stopping.join(HANG)
    assert not stopping.is_alive(), "close(timeout=1) hangs"


def assert_nothing_written_since(store: Any, made: int) -> None:
    """Once the IO loop has run what was due, ``store`` saw no request past its ``made``-th."""
    settle_the_loop()
    assert store.log[made:] == [], "storage requests after shutdown returned"


def pool_threads_alive(runtime: Runtime) -> list[str]:
    return [t.name for t in runtime.executor.threads()]


def settle_the_loop() -> None:
    """A few turns of the IO loop (whatever was scheduled on it runs)."""
    for _ in range(5):
        _sync.sync(asyncio.sleep(0.01))


def become_lease_holder(runtime: Runtime) -> Any:
    """Actor "a" of OrderLog, whose lease this process holds and serves (folds others' posts
    on a pool thread)."""
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")  # our next commit loses the race, posts, and takes the lease
    log.add.run("me/1")
    core = runtime.core("a")
    assert wait_until(lambda: core._serving), "the lease holder does not serve"
    return log


# -- 1. shutdown leaves nothing running ------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_shutdown_timing_out_on_a_holders_stalled_fold_stops_it_and_nothing_runs_after(
    store_spec: StoreSpec,
) -> None:
    """The lease holder's fold of another process's post stalls in its step put; close(timeout)
    runs out: on return the holder's thread has ended, a call queued behind it has its
    outcome, and the runtime makes no storage request afterwards. (Before: close returned
    with the holder's thread still in its fold, which then went on writing to the store.)"""
    runtime, store = recorded(store_spec, combine_after=1, combine_window=60.0)
    log = become_lease_holder(runtime)
    store.hold(step_put)
    post_adds(foreign_box("a"), ["other/0"])
    try:
        assert store.entered.wait(HANG), "the holder did not fold the post"
        queued = log.add.run_async("me/2")
        close_in_a_second(runtime)
        assert pool_threads_alive(runtime) == [], "a thread of the shut-down runtime still runs"
        assert queued.done(), "a call in flight has no outcome after shutdown"
        assert isinstance(queued.exception(0), vc.RuntimeShutdownError), queued.exception(0)
        made = len(store.log)
    finally:
        store.release.set()
    assert_nothing_written_since(store, made)


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_timing_out_on_a_stalled_commit_reports_its_outcome_unknown(store_spec: StoreSpec) -> None:
    """A caller's commit is in its step put when close(timeout) runs out: the call fails with
    CommitOutcomeUnknownError (the put may land), by the time close returns; nothing is
    written afterwards. (Before: close returned with the call still waiting on its put.)"""
    runtime, store = recorded(store_spec)
    log = OrderLog.get_or_create("b")
    log.add.run("me/0")
    store.hold(step_put)
    caller, box = in_thread(lambda: log.add.run("me/1"))
    try:
        assert store.entered.wait(HANG)
        close_in_a_second(runtime)
        caller.join(HANG)  # (close returned: the call must have its outcome already)
        assert box, "the call in flight has no outcome"
        assert isinstance(box[0], vc.CommitOutcomeUnknownError), box
        made = len(store.log)
    finally:
        store.release.set()
    assert_nothing_written_since(store, made)


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_waits_for_a_holders_fold_in_flight_which_commits_once(store_spec: StoreSpec) -> None:
    """The holder's fold is in its step put when shutdown begins: shutdown waits for it (the
    other process's call is applied once, its post deleted), then the holder stops; once
    shutdown returned, nothing of the runtime runs or writes."""
    runtime, store = recorded(store_spec, combine_after=1, combine_window=60.0)
    log = become_lease_holder(runtime)
    store.hold(step_put)
    post_adds(foreign_box("a"), ["other/0"])
    try:
        assert store.entered.wait(HANG), "the holder did not fold the post"
        stopping, _ = in_thread(vc.shutdown)
        assert wait_until(lambda: runtime.closed)
    finally:
        store.release.set()
    stopping.join(HANG)
    assert not stopping.is_alive(), "shutdown hangs"
    assert pool_threads_alive(runtime) == [], "a thread of the shut-down runtime still runs"
    made = len(store.log)
    assert_nothing_written_since(store, made)
    assert log.applied.run() == ["me/0", "me/1", "other/0"]
    assert _sync.sync(store.inner.list(posts_prefix("a"))) == [], "the folded post was left behind"


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_waits_for_a_commit_in_flight_and_its_caller_gets_the_result(store_spec: StoreSpec) -> None:
    """A caller's commit is in its step put when shutdown begins: shutdown waits for it and
    the caller gets its result (an acknowledged commit, never a lost one)."""
    runtime, store = recorded(store_spec)
    log = OrderLog.get_or_create("c")
    log.add.run("me/0")
    store.hold(step_put)
    caller, box = in_thread(lambda: log.add.run("me/1"))
    try:
        assert store.entered.wait(HANG)
        stopping, _ = in_thread(vc.shutdown)
        assert wait_until(lambda: runtime.closed)
    finally:
        store.release.set()
    stopping.join(HANG)
    assert not stopping.is_alive(), "shutdown hangs"
    caller.join(HANG)
    assert box == [2], box
    made = len(store.log)
    assert_nothing_written_since(store, made)


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_timing_out_on_a_stalled_background_delete_cancels_it(store_spec: StoreSpec) -> None:
    """The delete of folded posts (a background request of the runtime) stalls; close(timeout)
    runs out: the delete is cancelled, not sent once the store answers again after shutdown
    returned. (Before: it went on to the store later.)"""
    runtime, store = recorded(store_spec, combine_after=1, combine_window=60.0)
    become_lease_holder(runtime)
    store.hold(lambda operation, key: operation == "delete" and "/mail/" in key)
    post_adds(foreign_box("a"), ["other/0"])
    try:
        assert store.entered.wait(HANG), "the folded post was not deleted"
        close_in_a_second(runtime)
        reached = len(store.reached)
    finally:
        store.release.set()
    settle_the_loop()
    assert store.reached[reached:] == [], "a request reached the store after shutdown returned"


# -- 4. a done-callback raising while a posted batch still waits ------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_done_callback_raising_in_a_fold_that_left_our_post_out_does_not_fail_our_calls(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Our batch is posted; our fold applies another process's post only (the batch is full)
    and settles its calls, one of whose done-callbacks raises SystemExit. Our calls, still
    pending, must get their own outcomes from the next fold (before: the callback's
    SystemExit failed them, as if not applied, while their post stayed to be applied later),
    and the callback's exception is logged (before: unseen on the pool thread)."""
    recorded(store_spec, combine_after=1, combine_window=60.0, max_batch=2)
    log = OrderLog.get_or_create("d")
    log.add.run("me/0")
    box = foreign_box("d")
    theirs = post_adds(box, ["c/0", "c/1"])  # fills the fold's batch:
    post_adds(box, ["c/2"])  # the fold stops here, before our post
    original = PendingCall.deliver

    def deliver(self: PendingCall, outcome: Any) -> None:
        if self.call_id == theirs[0]:

            def leave(_: object) -> None:
                raise SystemExit("raised by a done-callback")

            self.future.add_done_callback(leave)
        original(self, outcome)

    monkeypatch.setattr(PendingCall, "deliver", deliver)
    commit_behind_its_back("d")  # our next commit loses the race, posts, and folds
    with caplog.at_level(logging.ERROR, logger="vactor_cloud"):
        mine = log.add.run_async("me/1")
        assert mine.result(HANG) == 5, "our pending call did not get its own outcome"
    assert log.applied.run() == ["me/0", "c/0", "c/1", "c/2", "me/1"]
    assert any(
        "raised by a done-callback" in r.getMessage()
        or (r.exc_info and "raised by a done-callback" in str(r.exc_info[1]))
        for r in caplog.records
    ), "the callback's exception was not reported"


# -- 2. whole operations bounded by Settings.deadline -----------------------------------------------
#: each request of the slow store takes this long: within Settings.timeout (10 s), past the deadline
SLOW = 3.0
#: Settings.deadline in these tests
DEADLINE = 1.0


def every_request(operation: str, key: str) -> bool:
    return True


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    @vc.virtual_actor.readonly
    def get_total(self) -> int:
        return self.total

    def doubled_in_children(self, values: list[int]) -> list[int]:
        return list(vc.subtask(_double).map(values))

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: int) -> None:
        self.total += payload


def _double(x: int) -> int:
    return 2 * x


def slow_runtime(spec: StoreSpec) -> Recorder:
    _, store = recorded(spec, deadline=DEADLINE, timeout=10.0, fresh_window=0.0)
    return store


def raises_past_the_deadline(fn: Callable[[], Any], hint: str) -> None:
    """``fn()`` ends with StorageTimeoutError naming Settings.deadline and what to do (``hint``),
    well before what the slow store would take to answer it all."""
    thread, box = in_thread(fn)
    thread.join(HANG)
    assert not thread.is_alive(), "the operation hangs"
    assert box and isinstance(box[0], vc.StorageTimeoutError), f"not bounded by Settings.deadline: {box}"
    assert "Settings.deadline" in str(box[0]) and hint in str(box[0]), str(box[0])
    # Checked: the requests still slow (a shutdown would wait up to SLOW for them) end now.
    store = vc.get_runtime().store
    assert isinstance(store, Recorder), store
    store.heal()


@pytest.mark.usefixtures("runtime_off")
def test_send_event_on_a_slow_store_is_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    Ledger.get_or_create("e1")
    store.slow_down(every_request, SLOW)
    raises_past_the_deadline(lambda: vc.send_event("e1", "paid", 5, event_id="pay-1"), "event_id='pay-1'")


@pytest.mark.usefixtures("runtime_off")
def test_send_event_async_on_a_slow_store_is_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    Ledger.get_or_create("e2")
    store.slow_down(every_request, SLOW)
    raises_past_the_deadline(
        lambda: asyncio.run(vc.send_event_async("e2", "paid", 5, event_id="pay-2")), "event_id='pay-2'"
    )


@pytest.mark.usefixtures("runtime_off")
def test_list_actors_on_a_slow_store_is_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    Ledger.get_or_create("l1")
    store.slow_down(every_request, SLOW)
    raises_past_the_deadline(vc.list_actors, "limit=")


@pytest.mark.usefixtures("runtime_off")
def test_compact_on_a_slow_store_is_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    ledger = Ledger.get_or_create("c1")
    for amount in range(4):
        ledger.add.run(amount)
    store.slow_down(every_request, SLOW)
    raises_past_the_deadline(lambda: ledger.compact(keep_last=1, min_age=1e-6), "compacting again is safe")


@pytest.mark.usefixtures("runtime_off")
def test_process_events_waiting_for_slow_deletes_is_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    ledger = Ledger.get_or_create("p1")
    vc.send_event("p1", "paid", 5, event_id="pay-3")
    store.slow_down(lambda operation, key: operation == "delete", SLOW)
    raises_past_the_deadline(ledger.process_events, "applied 1 event")
    assert ledger.add.run(0) == 5  # applied once


@pytest.mark.usefixtures("runtime_off")
def test_subtask_checkpoint_writes_on_a_slow_store_are_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    ledger = Ledger.get_or_create("s1")
    store.slow_down(lambda operation, key: operation == "put" and "/tasks/" in key, SLOW)
    raises_past_the_deadline(lambda: ledger.doubled_in_children.run([1, 2]), "not checkpointed")


@pytest.mark.usefixtures("runtime_off")
def test_subtask_checkpoint_reads_on_a_slow_store_are_bounded_by_the_deadline(store_spec: StoreSpec) -> None:
    store = slow_runtime(store_spec)
    ledger = Ledger.get_or_create("s2")
    store.slow_down(lambda operation, key: operation == "list" and "/tasks/" in key, SLOW)
    raises_past_the_deadline(lambda: ledger.doubled_in_children.run([1, 2]), "no child was run")


# -- 3. a lease holder folding for others does not keep a pool thread ---------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_pool_work_runs_while_a_lease_holder_folds_for_others_on_every_pool_thread(
    store_spec: StoreSpec,
) -> None:
    """With max_workers=1, the one pool thread serves the lease of a contended actor whose other
    process keeps posting. A read-only run_async on another actor, waited for with a timeout
    (which does not run it on the waiting thread), must still run: before, it waited for as
    long as the other process posted (the holder's serving loop kept the thread)."""
    runtime, _ = recorded(store_spec, combine_after=1, combine_window=600.0, max_workers=1)
    other = Ledger.get_or_create("r1")
    become_lease_holder(runtime)
    stop = threading.Event()
    box = foreign_box("a")

    def keep_posting() -> None:
        seq = 0
        while not stop.is_set():
            post_adds(box, [f"other/{seq}"])
            seq += 1

    poster, _ = in_thread(keep_posting)
    try:
        assert wait_until(lambda: runtime.core("a").record.step > 4), "the holder does not fold"  # type: ignore[union-attr]
        read = other.get_total.run_async()
        done, _ = concurrent.futures.wait([read], timeout=HANG / 3)
        assert done, "a read-only call waited for the pool while a lease holder folded for others"
        assert read.result(0) == 0
        assert runtime.core("a")._serving or runtime.core("a")._holding(), "(the premise: still holding)"
    finally:
        stop.set()
        poster.join(HANG)


# -- other lifecycle defects ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["close", "shutdown"])
@pytest.mark.usefixtures("runtime_off")
def test_a_second_close_or_shutdown_returns_only_once_the_first_has_settled_every_call(
    store_spec: StoreSpec, how: str
) -> None:
    """Two threads close one runtime (``init()`` again while the exit hook shuts down, say):
    the second ``Runtime.close`` returned at once, and the second ``vc.shutdown()`` found no
    runtime (the first had taken it) and returned at once, while the first still waited for a
    commit in flight: its caller went on as if the runtime were shut down with that commit
    still running."""
    runtime, store = recorded(store_spec)
    close = runtime.close if how == "close" else vc.shutdown
    log = OrderLog.get_or_create(how)
    log.add.run("me/0")
    store.hold(step_put)
    caller, box = in_thread(lambda: log.add.run("me/1"))
    try:
        assert store.entered.wait(HANG)
        first, _ = in_thread(close)
        assert wait_until(lambda: runtime.closed)
        second, _ = in_thread(close)
        second.join(0.5)  # (long enough for a second one that does not wait to return)
        if not second.is_alive():
            assert box, f"the second {how} returned before the commit in flight settled"
    finally:
        store.release.set()
    for thread in (first, second, caller):
        thread.join(HANG)
    assert not first.is_alive() and not second.is_alive()
    assert box == [2], box


#: (test_shutdown_waits_for_a_creation_whose_init_runs) entered / released by Slow.__init__
INIT_ENTERED = threading.Event()
INIT_RELEASE = threading.Event()


@vc.virtual_actor
class SlowInit:
    def __init__(self) -> None:
        INIT_ENTERED.set()
        assert INIT_RELEASE.wait(HANG), "the test never released __init__"
        self.ready = True

    @vc.virtual_actor.readonly
    def is_ready(self) -> bool:
        return self.ready


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_waits_for_a_creation_whose_init_runs(store_spec: StoreSpec) -> None:
    """get_or_create runs __init__ on the caller's thread when shutdown begins: shutdown waits
    for the creation, which commits; nothing is written once shutdown returned. (Before:
    shutdown returned at once and the creation wrote its step 0 afterwards.)"""
    INIT_ENTERED.clear()
    INIT_RELEASE.clear()
    _, store = recorded(store_spec)
    creator, box = in_thread(lambda: SlowInit.get_or_create("h"))
    made: int | None = None
    try:
        assert INIT_ENTERED.wait(HANG)
        stopping, _ = in_thread(vc.shutdown)
        stopping.join(0.5)  # (long enough for a shutdown that does not wait to return)
        if not stopping.is_alive():
            made = len(store.log)
    finally:
        INIT_RELEASE.set()
    stopping.join(HANG)
    creator.join(HANG)
    assert not stopping.is_alive() and not creator.is_alive()
    made = len(store.log) if made is None else made
    assert_nothing_written_since(store, made)
    assert box and not isinstance(box[0], BaseException), box
    assert SlowInit.get_or_create("h").is_ready.run() is True  # (a new runtime reads it)


#: (test_a_method_still_running_when_close_times_out...) entered / released by Gated.hold
HOLD_ENTERED = threading.Event()
HOLD_RELEASE = threading.Event()


@vc.virtual_actor
class Gated:
    def __init__(self) -> None:
        self.n = 0

    def hold(self) -> int:
        HOLD_ENTERED.set()
        assert HOLD_RELEASE.wait(HANG), "the test never released the method"
        self.n += 1
        return self.n


@pytest.mark.usefixtures("runtime_off")
def test_a_method_still_running_when_close_times_out_commits_nothing_afterwards(
    store_spec: StoreSpec,
) -> None:
    """A method body runs past close(timeout): close returns (logging it); when the body ends,
    its commit is refused (RuntimeShutdownError: not applied) and nothing is written. (Before:
    it committed to the store of a runtime shut down long ago.)"""
    HOLD_ENTERED.clear()
    HOLD_RELEASE.clear()
    runtime, store = recorded(store_spec)
    gated = Gated.get_or_create("m")
    caller, box = in_thread(gated.hold.run)
    try:
        assert HOLD_ENTERED.wait(HANG)
        close_in_a_second(runtime)
        made = len(store.log)
    finally:
        HOLD_RELEASE.set()
    caller.join(HANG)
    assert_nothing_written_since(store, made)
    assert box and isinstance(box[0], vc.RuntimeShutdownError), box

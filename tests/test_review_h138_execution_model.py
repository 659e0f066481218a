"""Review h138: a mutation sweep of the execution model (core, batch, future, byvalue, handle,
read_room, call_queue).

Each test here holds a guarantee that a small, plausible change to the code broke while the
tests that should have caught it still passed (the mutation is named in each docstring):

* by value: a keyword argument (or a list inside a tuple) is copied at the call; each retry of
  a body gets a fresh copy of its arguments; callers of one key answered from the table in one
  batch get their own copies;
* run once: ``max_retries`` runs a body at most N + 1 times and never again after an interrupt;
  a cancelled call, wherever it sits in the queue, never runs; a step put that landed unseen is
  not run again on top of itself; the live instance a raising call ran on is not reused;
* every exception reaches its caller: an interrupt in a group commit fails its own call only,
  one in an ``async def`` method run on a helper thread reaches its caller, a done callback's
  ``SystemExit`` leaves the other callbacks and calls settled; Ctrl-C while queued withdraws;
* nothing hangs: a same-thread wait closing a cycle is refused naming it, a nested read never
  waits for its own read's spare, a wait with a timeout runs no body itself;
* bounds and answers: ``max_batch`` bounds a group commit, a raise on a stale cached step runs
  again on the newest, an actor is RUNNING only while its writer runs.

(Two were also caught elsewhere, less directly: the stale-step raise by
``test_review_warm_after_delete`` in its delete case, the callbacks' ``SystemExit`` by
``test_review_hangs`` through the thread-exception check of its teardown.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import Counter
from typing import Any

import pytest
from interrupts import Interrupted, InterruptOnce
from store_helpers import other_process, retune
from test_delete_actor import call_on
from test_idempotency import LostResponseStore

import vactor_cloud as vc
from vactor_cloud import handle as handle_module
from vactor_cloud import holding, workflow
from vactor_cloud.batch import PendingCall, deliver_all
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.testing.lanes import StoreSpec

#: bodies run, by (actor id, label)
RUNS: Counter[tuple[str, str]] = Counter()
#: gates that hold a writer inside its method, by actor id
GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    RUNS.clear()


def _count(label: str) -> int:
    call = vc.current_call()
    assert call is not None
    RUNS[(call.actor_id, label)] += 1
    return RUNS[(call.actor_id, label)]


@vc.virtual_actor
class Sweep:
    def __init__(self) -> None:
        self.val = 0
        self.kept: list[Any] = []
        self.opened = False

    def hold(self) -> None:
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        ENTERED[actor_id].set()
        assert GATES[actor_id].wait(60), "the test never released the writer"

    def bump(self, label: str, amount: int) -> int:
        _count(label)
        self.val += amount
        return self.val

    def interrupt(self, label: str, kind: str) -> None:
        _count(label)
        self.val += 1000
        raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[kind]()

    def always_fails(self, label: str) -> None:
        _count(label)
        self.val += 1000
        raise ValueError(label)

    def fails_first(self, label: str, items: list[Any]) -> int:
        """Mutates its argument, then raises on its first run only."""
        items.append("this run's")
        if _count(label) == 1:
            raise ValueError("first run")
        self.kept = items
        return len(items)

    def keep(self, item: Any = None, *, named: Any = None) -> None:
        self.kept.append(item if named is None else named)

    @vc.virtual_actor.readonly
    def kept_items(self) -> list[Any]:
        return self.kept

    def listed(self, label: str) -> list[Any]:
        _count(label)
        return [self.val, "fresh"]

    def open_gate(self) -> None:
        self.opened = True

    def enter(self, label: str) -> int:
        _count(label)
        if not self.opened:
            raise PermissionError("the gate is closed")
        self.val += 1
        return self.val

    async def leave(self, kind: str) -> None:
        self.val += 1000
        await asyncio.sleep(0)
        raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[kind]()

    def relay(self, other: str) -> int:
        """Calls ``other``'s ``call_back``, which calls this actor back (a cycle)."""
        self.val += 1
        return int(vc.get_actor(other).call_back.run(vc.current_call().actor_id))  # type: ignore[union-attr]

    def call_back(self, first: str) -> int:
        """Calls ``first`` without waiting (no cycle yet), then waits for that call."""
        self.val += 1
        return int(vc.get_actor(first).bump.run_async("called back", 1).result())

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.val


def _hold(actor_id: str) -> tuple[vc.ActorFuture[Any], threading.Event]:
    """Start a writer that stays inside its method until the returned event is set: the calls
    made meanwhile queue behind it and are applied as one group commit."""
    GATES[actor_id] = threading.Event()
    ENTERED[actor_id] = threading.Event()
    held = vc.get_actor(actor_id).hold.run_async()
    assert ENTERED[actor_id].wait(30), "the held writer never started"
    return held, GATES[actor_id]


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_an_interrupt_in_a_group_commit_fails_its_own_call_only(actor_store: StoreSpec, kind: str) -> None:
    """Mutation: ``apply_batch`` catching ``Exception`` instead of ``BaseException`` around the
    body. The interrupt then escaped the batch: every batch-mate failed with it (the caller of
    each heard an interrupt it never raised) and nothing of theirs was applied."""
    actor_id = f"interrupt-batch-{kind}"
    box = Sweep.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    before = box.bump.run_async("before", 1)
    raising = box.interrupt.run_async("raising", kind)
    after = box.bump.run_async("after", 10)
    gate.set()
    held.result(60)
    assert before.result(60) == 1
    assert isinstance(raising.exception(60), SystemExit | KeyboardInterrupt)
    assert after.result(60) == 11
    assert box.value.run() == 11  # the raising call's own change was dropped
    assert [RUNS[(actor_id, label)] for label in ("before", "raising", "after")] == [1, 1, 1]


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_max_retries_never_runs_a_body_again_after_an_interrupt(actor_store: StoreSpec, kind: str) -> None:
    """Mutation: dropping ``isinstance(exc, Exception)`` from the retry test in ``apply_batch``:
    a Ctrl-C in the body ran it again (and again), instead of stopping its caller."""
    actor_id = f"interrupt-retries-{kind}"
    box = Sweep.get_or_create(actor_id)
    with pytest.raises(SystemExit if kind == "SystemExit" else KeyboardInterrupt):
        box.interrupt.options(max_retries=3).run("raising", kind)
    assert RUNS[(actor_id, "raising")] == 1
    assert box.value.run() == 0
    assert box.bump.run("after", 1) == 1  # still usable


def test_max_retries_runs_a_raising_body_exactly_one_more_time_per_retry(actor_store: StoreSpec) -> None:
    """Mutation: ``range(max_retries + 2)``: a body that kept raising ran once more than asked."""
    box = Sweep.get_or_create("retries-count")
    with pytest.raises(ValueError, match="always"):
        box.always_fails.options(max_retries=2).run("always")
    assert RUNS[("retries-count", "always")] == 3
    with pytest.raises(ValueError, match="never retried"):
        box.always_fails.run("never retried")
    assert RUNS[("retries-count", "never retried")] == 1
    assert box.value.run() == 0


def test_each_retry_of_a_body_gets_a_fresh_copy_of_its_arguments(actor_store: StoreSpec) -> None:
    """Mutation: ``PendingCall.arguments`` thawing the pickled arguments once and handing that
    copy to every run: a run that mutated its argument and then raised left the mutation to the
    retry (which then saw ``[..., "this run's", "this run's"]``)."""
    box = Sweep.get_or_create("retry-arguments")
    given = ["caller's"]
    assert box.fails_first.options(max_retries=1).run("fails first", given) == 2
    assert RUNS[("retry-arguments", "fails first")] == 2
    assert given == ["caller's"]


def test_callers_of_one_key_answered_from_the_table_in_one_batch_get_their_own_copies(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``dedup.delivered`` handing out the recorded outcome itself: the calls of one
    key answered from the table in the same batch all got the table's object, and one caller's
    change to its result was every other's."""
    actor_id = "keyed-batch-copies"
    box = Sweep.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    futures = [box.listed.options(idempotency_key="k").run_async("keyed") for _ in range(3)]
    gate.set()
    held.result(60)
    results = [f.result(60) for f in futures]
    assert RUNS[(actor_id, "keyed")] == 1
    assert results == [[0, "fresh"]] * 3
    results[1].append("the second caller's own")
    assert results[2] == [0, "fresh"]
    assert results[0] == [0, "fresh"]


def test_a_raising_call_alone_leaves_nothing_to_the_next_commit(actor_store: StoreSpec) -> None:
    """Mutation: ``_attempt_base`` no longer taking the live instance (``core._live``) out of
    the cache. A call that raised ran on that instance, mutated it and committed nothing; the
    next commit built on the mutated instance and stored the raising call's changes."""
    box = Sweep.get_or_create("raising-alone")
    assert box.bump.run("warm", 1) == 1  # (a commit of this process: its instance is kept live)
    with pytest.raises(ValueError, match="raises"):
        box.always_fails.run("raises")
    assert box.bump.run("next", 10) == 11
    assert box.value.run() == 11


def test_a_call_that_raised_on_a_cached_step_another_process_passed_runs_on_the_newest(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``_answers_from_newest`` always True. A call that raised (committing nothing)
    on a cached step trusted within ``fresh_window`` was answered so, though another process
    had committed since: the caller heard an error of a state that was no longer the actor's
    (no put told, as one does for a call that commits)."""
    retune(fresh_window=3600.0)  # (the cache stays trusted however loaded the host)
    box = Sweep.get_or_create("gate")
    box.bump.run("warm", 0)  # cached here: the gate closed
    other = other_process(actor_store)
    try:
        call_on(other, "gate", "open_gate")
    finally:
        other.close()
    assert box.enter.run("enter") == 1


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_an_interrupt_in_an_async_method_called_inside_an_event_loop_reaches_its_caller(
    actor_store: StoreSpec, kind: str
) -> None:
    """Mutation: the helper thread that runs an ``async def`` method for a caller that already
    runs an event loop (``call_bodies._run_coroutine``) catching ``Exception`` only. The interrupt
    ended the helper with no outcome, and the caller got an ``IndexError`` of the runtime's."""
    box = Sweep.get_or_create(f"async-interrupt-{kind}")

    async def caller() -> None:
        box.leave.run(kind)  # (blocks this loop, as documented: the method runs on a helper)

    with pytest.raises(SystemExit if kind == "SystemExit" else KeyboardInterrupt):
        asyncio.run(caller())
    assert box.value.run() == 0
    assert box.bump.run("after", 1) == 1


def test_an_actor_is_running_while_its_writer_runs_and_not_after(actor_store: StoreSpec) -> None:
    """Mutation: ``call_bodies.invoke`` no longer counting a writer's run down as it ends
    (``count_applying(context, -1)``): every actor a writer had run on stayed RUNNING
    (``workflow.get_status``, ``list_all``) for the rest of the process."""
    actor_id = "running-status"
    box = Sweep.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    try:
        assert workflow.get_status(actor_id) == workflow.RUNNING
    finally:
        gate.set()
    held.result(60)
    with pytest.raises(ValueError, match="raised"):
        box.always_fails.run("raised")
    assert box.bump.run("after", 1) == 1
    assert workflow.get_status(actor_id) == workflow.SUCCESSFUL


def test_a_done_callback_raising_system_exit_leaves_the_next_callbacks_to_run(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutation: ``future._run_callbacks`` (callbacks moved off the thread that holds the actor,
    which settles a writer's future) catching ``Exception`` only: a callback raising
    ``SystemExit`` ended that thread quietly, and the callbacks after it never ran."""
    box = Sweep.get_or_create("callback-exit")
    held, gate = _hold("callback-exit")
    future = box.bump.run_async("queued", 1)
    ran = threading.Event()

    def leaves(_: object) -> None:
        raise SystemExit(3)

    future.add_done_callback(leaves)
    future.add_done_callback(lambda _: ran.set())
    gate.set()
    held.result(60)
    assert future.result(60) == 1
    assert ran.wait(30), "the callback after the one that raised SystemExit never ran"
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)


def test_a_call_cancelled_in_the_middle_of_a_queue_is_never_applied(actor_store: StoreSpec) -> None:
    """Mutation: ``ActorCore._claim_batch`` taking a call into the batch whether or not its
    claim succeeded. The queue drops a cancelled call at once only at its ends (or once the
    cancelled calls may be half of it, ``CallQueue``); one cancelled in the middle of a long
    queue waits there for the drainer, whose claim must refuse it: it ran and was applied,
    behind the back of a caller told it was cancelled."""
    actor_id = "cancel-middle"
    box = Sweep.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    futures = [box.bump.run_async(f"queued {i}", 10**i) for i in range(5)]
    assert futures[2].cancel()
    gate.set()
    held.result(60)
    for i in (0, 1, 3, 4):
        assert futures[i].exception(60) is None
    assert futures[2].cancelled()
    assert RUNS[(actor_id, "queued 2")] == 0
    assert box.value.run() == 11011


def test_deliver_all_settles_every_call_before_it_raises_a_callbacks_base_exception() -> None:
    """Mutation: ``batch.deliver_all`` raising a done callback's ``BaseException`` at once. The
    calls after that one's were left unsettled, their callers waiting for good. (A user's
    callback on an ``ActorFuture`` runs off the thread that holds the actor, so only a plain
    future's callback reaches ``deliver_all`` now: this holds its own promise.)"""
    futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in range(3)]
    calls = [PendingCall("m", (), {}, False, f, f"call-{i}") for i, f in enumerate(futures)]

    def leave(_: object) -> None:
        raise SystemExit("raised by a done callback")

    futures[0].add_done_callback(leave)
    with pytest.raises(SystemExit, match="done callback"):
        deliver_all([(call, Outcome(True, i)) for i, call in enumerate(calls)])
    assert [f.result(0) for f in futures] == [0, 1, 2]


def test_waiting_on_this_thread_for_a_call_back_into_its_own_writer_is_refused_at_once(
    store_spec: StoreSpec,
) -> None:
    """Mutation: ``ActorCore.help`` no longer asking ``call_cycle``: A's writer calls B on this
    thread, B's method calls A with ``run_async`` (allowed: nothing waits yet) and then waits
    for it. That wait is for A's writer, further up this same thread: it waited the busy bound
    (``max(deadline, commit_timeout)``, set far beyond this test's wait) for ``ActorBusyError``."""
    store_spec.init(settings=vc.Settings(deadline=600, commit_timeout=600))
    try:
        Sweep.get_or_create("cycle-a")
        Sweep.get_or_create("cycle-b")
        outcome: list[BaseException | object] = []

        def call() -> None:
            try:
                outcome.append(vc.get_actor("cycle-a").relay.run("cycle-b"))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "A -> B -> A on one thread: still waiting after 20 s"
        assert len(outcome) == 1 and isinstance(outcome[0], vc.ReentrantCallError), outcome
        assert "cycle-a -> cycle-b -> cycle-a" in str(outcome[0]), outcome[0]
        assert vc.get_actor("cycle-a").value.run() == 0
        assert vc.get_actor("cycle-b").value.run() == 0
    finally:
        vc.shutdown()


def test_a_step_put_that_landed_unseen_is_not_retried_on_top_of_itself(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``_storage_failed`` retrying a storage error whatever ``c.put_sent`` says. The
    step put landed, its answer was lost and no read-back could tell (the reads failed too);
    once the store answered again, the retry found that step, took it for another writer's,
    and ran the batch again on top of it: the call applied twice (with no key to tell)."""
    runtime = vc.get_runtime()
    store = LostResponseStore(runtime.store)
    runtime.store = store  # (before the actor's core exists: its log uses it)
    box = Sweep.get_or_create("landed-unseen")
    real = ActorCore._storage_failed

    def blip_ends(self: ActorCore, c: Any, exc: Any) -> Any:
        store.blind = False  # the store answers again from the commit's next request on
        return real(self, c, exc)

    monkeypatch.setattr(ActorCore, "_storage_failed", blip_ends)
    store.armed = store.blind = True
    with pytest.raises(vc.StorageError):  # (no read told whether the step landed)
        box.bump.run("landed", 40)
    assert store.lost_key is not None
    assert box.value.run() == 40
    assert RUNS[("landed-unseen", "landed")] == 1


#: a read's entry and its release, by actor id (``Large.entered_then_held``)
READ_ENTERED: dict[str, threading.Event] = {}
READ_RELEASED: dict[str, threading.Event] = {}
MB = 1024 * 1024


@vc.virtual_actor
class Large:
    def __init__(self) -> None:
        self.blob = bytes(MB)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return len(self.blob)

    @vc.virtual_actor.readonly
    def entered_then_held(self) -> int:
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        READ_ENTERED[actor_id].set()
        assert READ_RELEASED[actor_id].wait(60), "the outer read never released this one"
        return len(self.blob)

    @vc.virtual_actor.readonly
    def hand_on_then_nest(self) -> int:
        """Hands a read on (``run_async``: it runs on this read's spare, and stays there until
        released), then reads the actor on this thread (nested), then releases the first."""
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        handle = vc.get_actor(actor_id)
        READ_ENTERED[actor_id], READ_RELEASED[actor_id] = threading.Event(), threading.Event()
        handed = handle.entered_then_held.run_async()
        assert READ_ENTERED[actor_id].wait(60), "the handed-on read never started"
        nested = int(handle.size.run())
        READ_RELEASED[actor_id].set()
        return int(handed.result()) + nested + len(self.blob)


def test_a_nested_read_never_waits_for_the_spare_its_own_read_lent(store_spec: StoreSpec) -> None:
    """Mutation: ``ReadRoom.taken`` without rule 3 (a read nested in a running read on its
    thread takes no room and never waits). Every test still passed: a nested read ran on its
    read's spare. Here the spare is taken by a read the outer one handed on, which waits for
    the outer one: the nested read waited for it, up to ``Settings.deadline``."""
    store_spec.init(settings=vc.Settings(max_read_bytes=MB + MB // 2, deadline=600.0))
    try:
        big = Large.get_or_create("nest-behind-spare")
        outcome: list[object] = []
        thread = threading.Thread(target=lambda: outcome.append(big.hand_on_then_nest.run()), daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "the nested read still waits for the spare its read lent"
        assert outcome == [3 * MB]
    finally:
        READ_RELEASED.get("nest-behind-spare", threading.Event()).set()
        vc.shutdown()


@pytest.mark.parametrize("how", ["keyword", "positional"])
def test_an_argument_mutated_after_run_async_reaches_the_actor_as_it_was_given(
    actor_store: StoreSpec, how: str
) -> None:
    """Mutations: ``freeze_arguments`` looking at the positional arguments only, and ``_atomic``
    taking any tuple for immutable. The argument was not copied at the call: a caller's change
    after ``run_async`` (a queued call) was applied and stored."""
    actor_id = f"alias-{how}"
    # A keyword argument's value; a tuple holding a list.
    given: Any = ["x"] if how == "keyword" else ("x", ["y"])
    box = Sweep.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    future = box.keep.run_async(named=given) if how == "keyword" else box.keep.run_async(given)
    (given if how == "keyword" else given[1]).append("changed after the call")
    gate.set()
    vc.get([held, future], timeout=60)
    expected = ["x"] if how == "keyword" else ["x", ["y"]]
    assert [list(item) for item in box.kept_items.run()] == [expected]


def test_a_group_commit_applies_at_most_max_batch_calls(store_spec: StoreSpec) -> None:
    """Mutation: ``_claim_batch`` taking every queued call, whatever ``Settings.max_batch`` says.
    No test failed; one step then held every call queued behind a slow writer (its state, its
    call records, each result held until the put), however many there were."""
    store_spec.init(settings=vc.Settings(max_batch=2))
    try:
        actor_id = "max-batch"
        box = Sweep.get_or_create(actor_id)
        held, gate = _hold(actor_id)
        futures = [box.bump.run_async(f"queued {i}", 1) for i in range(5)]
        gate.set()
        held.result(60)
        assert [f.result(60) for f in futures] == [1, 2, 3, 4, 5]
        sizes = [len(entry.calls) for entry in box.history() if entry.step > 0]
        assert sum(sizes) == 6 and max(sizes) <= 2, sizes
    finally:
        vc.shutdown()


@pytest.mark.parametrize("way", ["run", "run_async"])
def test_ctrl_c_while_queued_behind_another_threads_writer_withdraws_the_call(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """Mutation: ``ActorCore._help`` no longer withdrawing its call when an interrupt lands in
    its wait behind another thread's writer (only adding the note). ``run()`` still withdrew it
    (``ActorCore.call`` takes it back too); ``run_async(...).result()``, whose wait helps the
    same way, did not: the caller got the interrupt, and the call, still queued, was applied
    by that thread behind its back."""
    actor_id = f"ctrl-c-queued-{way}"
    box = Sweep.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    interrupted_wait = InterruptOnce(holding.interruptible_wait)
    monkeypatch.setattr(holding, "interruptible_wait", interrupted_wait)
    try:
        with pytest.raises(Interrupted):
            if way == "run":
                box.bump.run("interrupted", 1)
            else:
                box.bump.run_async("interrupted", 1).result()
    finally:
        gate.set()
    assert interrupted_wait.fired
    held.result(60)
    assert box.bump.run("next", 10) == 10
    assert RUNS[(actor_id, "interrupted")] == 0


#: events of ``SlowInit.__init__``, by actor id: entered, and allowed to return
INIT_ENTERED: dict[str, threading.Event] = {}
INIT_OPENED: dict[str, threading.Event] = {}


@vc.virtual_actor
class SlowInit:
    def __init__(self, actor_id: str) -> None:
        INIT_ENTERED[actor_id].set()
        assert INIT_OPENED[actor_id].wait(60), "the test never let the creation finish"
        self.applied: list[str] = []

    def add(self, label: str) -> int:
        self.applied.append(label)
        return len(self.applied)

    @vc.virtual_actor.readonly
    def added(self) -> list[str]:
        return self.applied


def test_ctrl_c_as_a_run_is_queued_behind_the_pending_creation_withdraws_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``ActorMethod._run`` no longer cancelling a call queued behind this process's
    pending creation when an interrupt reaches it. The waits withdraw it themselves
    (``_help_after_creation``), so only an interrupt landing just as the call was queued
    (handled as ``_after_creation`` returned) shows it: the call was applied once the creation
    committed, behind its caller's back."""
    store_spec.init(settings=vc.Settings(wait_for_init=False))
    try:
        actor_id = "slow-init"
        INIT_ENTERED[actor_id], INIT_OPENED[actor_id] = threading.Event(), threading.Event()
        slow = SlowInit.get_or_create(actor_id, actor_id)
        assert INIT_ENTERED[actor_id].wait(60)
        queued_then_interrupted = InterruptOnce(handle_module.ActorMethod._after_creation, after=True)
        monkeypatch.setattr(handle_module.ActorMethod, "_after_creation", queued_then_interrupted)
        try:
            with pytest.raises(Interrupted):
                slow.add.run("interrupted")
        finally:
            INIT_OPENED[actor_id].set()
        assert queued_then_interrupted.fired
        slow.ready().result(60)
        assert slow.add.run("next") == 1
        assert slow.added.run() == ["next"]
    finally:
        vc.shutdown()


def test_a_wait_with_a_timeout_runs_no_writer_body_itself(store_spec: StoreSpec) -> None:
    """Mutation: ``ActorFuture._wait_helping`` running the call on the waiting thread whatever
    the timeout. ``fut.result(timeout)`` then ran a method body (that cannot be stopped half
    way) and waited as long as it took, past its timeout; here, for good: the body waits for
    the test, which waits for the timeout (docs/concepts.md: with a timeout it waits for the pool)."""
    store_spec.init(settings=vc.Settings(max_workers=1))
    try:
        busy_id, queued_id = "pool-busy", "queued-behind-pool"
        Sweep.get_or_create(busy_id)
        Sweep.get_or_create(queued_id)
        held, busy_gate = _hold(busy_id)  # the one pool thread
        GATES[queued_id], ENTERED[queued_id] = threading.Event(), threading.Event()
        queued = vc.get_actor(queued_id).hold.run_async()  # waits for the pool
        outcome: list[BaseException | object] = []

        def wait_briefly() -> None:
            try:
                outcome.append(queued.result(0.5))
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait_briefly, daemon=True)
        waiter.start()
        waiter.join(20)
        alive = waiter.is_alive()
        busy_gate.set()
        GATES[queued_id].set()
        assert not alive, "result(0.5) ran the held body itself and waited for it"
        assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome
        held.result(60)
        assert queued.result(60) is None
    finally:
        vc.shutdown()

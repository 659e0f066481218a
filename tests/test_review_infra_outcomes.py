"""Review h89: an error about the machinery is not a call's outcome.

An idempotency key records a call's outcome, the exception its method raised included, so
that a retry with the key answers the same and applies nothing. A fault of the store
(``StorageError``, ``IntegrityError``), of the runtime (``RuntimeShutdownError``, a commit
that gave up or whose outcome is unknown, a busy actor), of the process (``MemoryError``)
or an interrupt says nothing about the call: a method that raises one
(or lets it through from a nested actor call) fails its caller with it, and nothing of it
is recorded, so that a retry with the same key applies the call (once). Before, every
``Exception`` was recorded, and the key answered the store's fault for as long as the
dedup window kept it. The same holds for a call posted under contention and folded, an
event's handler (the event stays in the inbox) and a fired timer (it stays pending).
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from chaos_workers import read_chain
from combining_workers import commit_behind_its_back
from store_helpers import retune
from test_combining import foreign_box, init_switchable

import vactor_cloud as vc
from vactor_cloud import _sync, workflow
from vactor_cloud.errors import (
    ActorBusyError,
    CallPendingError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    IntegrityError,
    NestedCallPendingError,
    NotFoundError,
    PermissionDeniedError,
    RetryableStorageError,
    RuntimeShutdownError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
    VirtualActorNotInitializedError,
)
from vactor_cloud.posting import PostedCall, decode_outcomes
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import list_failures

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: entry -> the error ``Ledger.add(entry)`` raises (every run of its body: a lost race runs it
#: again) until the test takes it out
_faults: dict[str, BaseException] = {}


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.entries: list[str] = []

    def add(self, entry: str) -> int:
        self.entries.append(entry)  # discarded when the call raises
        fault = _faults.get(entry)
        if fault is not None:
            raise fault
        return len(self.entries)

    def add_through(self, entry: str, other: str) -> int:
        """Add ``entry`` here and to actor ``other`` (a nested actor call)."""
        self.entries.append(entry)
        Ledger.get_or_create(other).add.run(entry)
        return len(self.entries)

    def add_through_keyed(self, entry: str, other: str) -> int:
        """``add_through`` whose nested call has a key derived from this call's id; then a
        fault (``_faults["after " + entry]``), the nested call committed already."""
        self.entries.append(entry)
        call = vc.current_call()
        assert call is not None
        Ledger.get_or_create(other).add.options(idempotency_key=f"{call.call_id}/add").run(entry)
        fault = _faults.get(f"after {entry}")
        if fault is not None:
            raise fault
        return len(self.entries)

    def add_value_of(self, other: str) -> int:
        """Add what actor ``other`` (a ``Slow``) holds: a read-only nested call."""
        self.entries.append(str(vc.get_actor(other).get.run()))
        return len(self.entries)

    @vc.virtual_actor.on_event("entry")
    def on_entry(self, entry: str) -> int:
        return self.add(entry)

    def arm(self, entry: str) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("add", after=0, args=(entry,), key="t")

    @vc.virtual_actor.readonly
    def read(self) -> list[str]:
        return list(self.entries)


INFRASTRUCTURE: dict[str, Callable[[], BaseException]] = {
    "StorageError": lambda: StorageError("the store failed", "actors/x/steps/1"),
    "RetryableStorageError": lambda: RetryableStorageError("503", "actors/x/steps/1"),
    "StorageTimeoutError": lambda: StorageTimeoutError("stalled", "k", write_in_flight=True),
    "NotFoundError": lambda: NotFoundError("gone", "k"),
    "PermissionDeniedError": lambda: PermissionDeniedError("AccessDenied", "k"),
    "TruncatedObjectError": lambda: TruncatedObjectError("short", "k"),
    "IntegrityError": lambda: IntegrityError("k", "signature mismatch"),
    "RuntimeShutdownError": lambda: RuntimeShutdownError("the runtime shut down"),
    "CommitConflictError": lambda: CommitConflictError("other", 16),
    "CommitOutcomeUnknownError": lambda: CommitOutcomeUnknownError("other", 7),
    "CallPendingError": lambda: CallPendingError("other", ["c1"]),
    "NestedCallPendingError": lambda: NestedCallPendingError("other", "c0", "third", ["c1"], "pending"),
    "ActorBusyError": lambda: ActorBusyError("busy"),
    "VirtualActorNotInitializedError": lambda: VirtualActorNotInitializedError("other"),
    "MemoryError": MemoryError,
    "ExceptionGroup of StorageErrors": lambda: ExceptionGroup("nested calls", [StorageError("a", "k")]),
    # (recorded as an outcome before review h97: a group is not one if it holds any fault)
    "ExceptionGroup of a StorageError and a ValueError": lambda: ExceptionGroup(
        "mixed", [StorageError("a", "k"), ValueError("b")]
    ),
    # Never recorded before either (not an Exception): kept so by the same rule.
    "CancelledError": asyncio.CancelledError,
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": lambda: SystemExit(3),
}

#: exceptions a method raises as its result: recorded, a retry with the key re-raises them
OUTCOMES: dict[str, Callable[[], BaseException]] = {
    "ValueError": lambda: ValueError("no funds"),
    "RecursionError": lambda: RecursionError("maximum recursion depth exceeded"),
    "OSError of the method's own": lambda: ConnectionError("the payment API refused"),
    "TimeoutError of the method's own": lambda: TimeoutError("the payment API timed out"),
    "ExceptionGroup of the method's own errors": lambda: ExceptionGroup(
        "own", [KeyError("a"), ValueError("b")]
    ),
}


def _steps(actor_id: str) -> int:
    return len(Ledger.get_or_create(actor_id).history())


@pytest.fixture(autouse=True)
def _no_faults_left() -> None:
    _faults.clear()


@pytest.mark.parametrize("name", list(INFRASTRUCTURE))
def test_an_infrastructure_error_is_not_recorded_as_a_keyed_calls_outcome(
    actor_store: StoreSpec, name: str
) -> None:
    ledger = Ledger.get_or_create("l")
    steps = _steps("l")
    fault = _faults["a"] = INFRASTRUCTURE[name]()
    # (a call in doubt that a body lets through is another call's: its caller hears of its own)
    in_doubt = isinstance(fault, (CommitOutcomeUnknownError, NestedCallPendingError))
    with pytest.raises(NestedCallPendingError if in_doubt else type(fault)):
        ledger.add.options(idempotency_key="k").run("a")
    assert ledger.read.run() == [] and _steps("l") == steps, "the call was not applied, nothing committed"
    _faults.clear()
    # The retry with the same key applies the call, once.
    assert ledger.add.options(idempotency_key="k").run("a") == 1
    assert ledger.add.options(idempotency_key="k").run("a") == 1
    assert ledger.read.run() == ["a"]


@pytest.mark.parametrize("name", list(OUTCOMES))
def test_an_exception_the_method_raises_as_its_result_stays_recorded(
    actor_store: StoreSpec, name: str
) -> None:
    ledger = Ledger.get_or_create("l")
    fault = _faults["a"] = OUTCOMES[name]()
    with pytest.raises(type(fault)):
        ledger.add.options(idempotency_key="k").run("a")
    _faults.clear()
    with pytest.raises(type(fault)):  # answered from the table: the method does not run
        ledger.add.options(idempotency_key="k").run("a")
    assert ledger.read.run() == []


def test_a_nested_calls_storage_fault_is_not_the_keyed_callers_outcome(store_spec: StoreSpec) -> None:
    """The real thing: the nested call's step put is refused (403), the outer call gets the
    error; once the store lets it, the retry with the key applies both, once."""
    store = init_switchable(store_spec)
    try:
        outer = Ledger.get_or_create("outer")
        inner = Ledger.get_or_create("inner")
        inner.read.run()

        def refuse(operation: str, key: str) -> Exception | None:
            if operation == "put" and key.startswith("actors/inner/steps/"):
                return PermissionDeniedError("AccessDenied", key)
            return None

        store.fail = refuse
        with pytest.raises(PermissionDeniedError):
            outer.add_through.options(idempotency_key="k").run("a", "inner")
        store.fail = lambda operation, key: None
        assert outer.add_through.options(idempotency_key="k").run("a", "inner") == 1
        assert outer.add_through.options(idempotency_key="k").run("a", "inner") == 1
        assert (outer.read.run(), inner.read.run()) == (["a"], ["a"])
    finally:
        vc.shutdown()


def test_a_retry_after_a_fault_applies_a_nested_call_keyed_by_the_call_id_once(
    actor_store: StoreSpec,
) -> None:
    """What docs/idempotency.md advises for the actor calls a method made before its fault:
    the retry runs the method again, and the nested call's key (from the call id, the same
    in every run of a keyed call) answers it without applying it again."""
    outer = Ledger.get_or_create("outer")
    inner = Ledger.get_or_create("inner")
    _faults["after a"] = StorageError("the store failed", "k")
    with pytest.raises(StorageError):
        outer.add_through_keyed.options(idempotency_key="k").run("a", "inner")
    assert (outer.read.run(), inner.read.run()) == ([], ["a"])
    _faults.clear()
    assert outer.add_through_keyed.options(idempotency_key="k").run("a", "inner") == 1
    assert (outer.read.run(), inner.read.run()) == (["a"], ["a"])


@pytest.mark.parametrize("name", ["StorageError", "MemoryError", "SystemExit", "ValueError"])
def test_a_folded_keyed_calls_fault_is_delivered_not_recorded(store_spec: StoreSpec, name: str) -> None:
    """Another process's keyed call, posted under contention and folded by ours: its outcome
    (in the step) is the error; its key records a fault nothing, so that its retry with the key
    applies it, and an exception of the method's own as usual (the retry re-raises it).
    (A call of ours that raises never reaches a put: it is answered by the attempt that ran it.)"""
    fault = {**INFRASTRUCTURE, **OUTCOMES}[name]()
    init_switchable(store_spec, combine_window=60.0)
    try:
        ledger = Ledger.get_or_create("f")
        ledger.add.run("me/0")
        _faults["other/1"] = fault
        arguments = pickle.dumps((("other/1",), {}))
        theirs = PostedCall("add", arguments, uuid.uuid4().hex, idempotency_key="theirs")
        box = foreign_box("f")
        _sync.sync(box.send(box.prepare((theirs,))))
        time.sleep(0.003)  # our post gets a later millisecond: theirs is folded first
        commit_behind_its_back("f")  # our next call loses the race, posts, folds theirs and ours
        assert ledger.add.run("me/1") == 2
        _faults.clear()
        outcomes = {}
        for record in read_chain("f"):
            outcomes.update(decode_outcomes(record.posted))
        assert type(outcomes[theirs.call_id].value) is type(fault), outcomes
        assert ledger.read.run() == ["me/0", "me/1"]
        if name in OUTCOMES:
            with pytest.raises(type(fault)):
                ledger.add.options(idempotency_key="theirs").run("other/1")
            assert ledger.read.run() == ["me/0", "me/1"]
        else:
            assert ledger.add.options(idempotency_key="theirs").run("other/1") == 3
            assert ledger.add.options(idempotency_key="theirs").run("other/1") == 3
            assert ledger.read.run() == ["me/0", "me/1", "other/1"]
    finally:
        vc.shutdown()


def test_an_events_handler_that_meets_a_storage_fault_leaves_the_event_to_apply_later(
    actor_store: StoreSpec,
) -> None:
    ledger = Ledger.get_or_create("e")
    _faults["a"] = StorageError("the store failed", "k")
    vc.send_event("e", "entry", "a", event_id="ev-1")
    ledger.process_events()
    assert ledger.read.run() == []
    _faults.clear()
    ledger.process_events()
    assert ledger.read.run() == ["a"]
    assert ledger.wait_for_event("entry", timeout=30, event_id="ev-1") == 1


def test_a_timer_whose_method_meets_a_storage_fault_stays_pending_and_fires_again(
    actor_store: StoreSpec,
) -> None:
    ledger = Ledger.get_or_create("t")
    _faults["a"] = StorageError("the store failed", "k")
    ledger.arm.run("a")
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
    first = vc.fire_due_timers()
    assert first.fired == 0 and len(first.errors) == 1, first
    assert "StorageError" in first.errors[0] and "stays due" in first.errors[0], first.errors
    assert [t["key"] for t in ledger.timers()] == ["t"]
    _faults.clear()
    second = vc.fire_due_timers()
    assert second.fired == 1 and not second.errors, second
    assert ledger.read.run() == ["a"] and ledger.timers() == []


#: inputs ``square`` fails on (a storage fault of the child's own); and how often it ran each
_failing_children: set[int] = set()
_child_runs: list[int] = []


def square(x: int) -> int:
    _child_runs.append(x)
    if x in _failing_children:
        raise StorageError(f"child {x}: the store failed", "k")
    return x * x


@workflow.step(max_retries=0)
def square_step(x: int) -> int:
    return square(x)


@workflow.virtual_actor
class Sweep:
    def __init__(self) -> None:
        self.total = 0

    def sweep(self, n: int) -> int:
        self.total += sum(vc.subtask(square).map(range(n)))
        return self.total

    def sweep_steps(self, x: int) -> Any:
        return self.keep.step(square_step.step(x))

    def keep(self, value: int) -> int:
        self.total += value
        return self.total


@pytest.fixture
def _children() -> Iterator[None]:
    _failing_children.clear()
    _child_runs.clear()
    yield
    _failing_children.clear()


@pytest.mark.usefixtures("_children")
def test_a_sub_tasks_storage_fault_is_not_the_keyed_calls_outcome(actor_store: StoreSpec) -> None:
    """The child's fault reaches the method and its caller; the retry with the key runs the
    failed child again (the finished ones read back from their checkpoints) and applies once."""
    sweep = Sweep.get_or_create("s")
    _failing_children.add(2)
    with pytest.raises(StorageError, match="child 2"):
        sweep.sweep.options(idempotency_key="k").run(3)
    assert sorted(_child_runs) == [0, 1, 2]
    _failing_children.clear()
    assert sweep.sweep.options(idempotency_key="k").run(3) == 5
    assert sweep.sweep.options(idempotency_key="k").run(3) == 5
    assert sorted(_child_runs) == [0, 1, 2, 2]


class _LosesWorkers(ThreadPoolExecutor):
    """An executor whose workers die while ``broken`` is set: each child fails with
    ``lost()`` (``BrokenProcessPool``, as a process pool's does when the OOM killer takes a
    worker)."""

    broken = True

    def __init__(self, workers: int, lost: Callable[[], BaseException] | None = None) -> None:
        super().__init__(workers)
        self.lost = lost or (lambda: BrokenProcessPool("a process in the pool was terminated abruptly"))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not self.broken:
            return super().submit(fn, *args, **kwargs)
        lost: Future[Any] = Future()
        lost.set_exception(self.lost())
        return lost


@pytest.mark.usefixtures("_children")
def test_an_executor_that_lost_its_worker_is_not_the_keyed_calls_outcome(actor_store: StoreSpec) -> None:
    """A child whose executor failed (a process pool's worker killed) is no answer of the
    method's: the retry with the key runs the children again on a working executor."""
    executor = _LosesWorkers(2)
    try:

        @vc.virtual_actor
        class Fan:
            def __init__(self) -> None:
                self.total = 0

            def fan(self, n: int) -> int:
                self.total += sum(vc.subtask(square, executor=executor).map(range(n)))
                return self.total

        fan = Fan.get_or_create("p")
        with pytest.raises(BrokenProcessPool):
            fan.fan.options(idempotency_key="k").run(3)
        executor.broken = False
        assert fan.fan.options(idempotency_key="k").run(3) == 5
        assert fan.fan.options(idempotency_key="k").run(3) == 5
    finally:
        executor.shutdown()


class _DeadWorker:
    """What Dask's ``KilledWorker`` names as the last worker that ran the task."""

    address = "tcp://127.0.0.1:0"


@pytest.mark.usefixtures("_children")
def test_a_dask_task_whose_workers_all_died_is_not_the_keyed_calls_outcome(actor_store: StoreSpec) -> None:
    """Dask's ``KilledWorker`` (every worker that ran the task died: OOM, preemption, a node
    lost) is, like a process pool's ``BrokenProcessPool``, no answer of the method's: it was
    recorded under the key, and the retry re-raised it. (A fake executor settles the child
    with it: a Dask cluster whose workers die takes seconds to stand up.)"""
    scheduler = pytest.importorskip("distributed.scheduler")
    executor = _LosesWorkers(2, lambda: scheduler.KilledWorker("square-1", _DeadWorker(), 3))
    try:

        @vc.virtual_actor
        class Fan:
            def __init__(self) -> None:
                self.total = 0

            def fan(self, n: int) -> int:
                self.total += sum(vc.subtask(square, executor=executor).map(range(n)))
                return self.total

        fan = Fan.get_or_create("d")
        with pytest.raises(scheduler.KilledWorker):
            fan.fan.options(idempotency_key="k").run(3)
        executor.broken = False
        assert fan.fan.options(idempotency_key="k").run(3) == 5
        assert fan.fan.options(idempotency_key="k").run(3) == 5
    finally:
        executor.shutdown()


def test_an_error_named_killedworker_of_another_module_stays_an_outcome() -> None:
    """Only Dask's own ``KilledWorker`` is a fault: matched as that class, not by name."""
    lookalike = type("KilledWorker", (Exception,), {"__module__": "myapp.scheduler"})
    assert vc.dedup.is_outcome(lookalike("mine"))


def test_is_outcome_does_not_import_dask() -> None:
    """(KilledWorker is recognized only where distributed was imported already: a process
    that never imported it holds none.)"""
    code = (
        "import sys; from vactor_cloud.dedup import is_outcome; "
        "assert is_outcome(ValueError()) and not is_outcome(MemoryError()); "
        "assert 'distributed' not in sys.modules, 'distributed imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


_slow_may_start = threading.Event()


@vc.virtual_actor
class Slow:
    def __init__(self) -> None:
        _slow_may_start.wait(60)  # bounded: a test that fails does not hang
        self.value = 7

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


def test_a_nested_read_of_an_actor_still_being_created_is_not_the_keyed_calls_outcome(
    actor_store: StoreSpec,
) -> None:
    """``VirtualActorNotInitializedError`` (a read of an actor whose ``__init__``, created with
    ``wait_for_init=False``, has not committed yet) says "not yet": the retry with the key,
    once the creation committed, reads it. Before, the key recorded the error for good."""
    ledger = Ledger.get_or_create("v")
    retune(wait_for_init=False)
    _slow_may_start.clear()
    try:
        slow = Slow.get_or_create("slow")  # returns at once; __init__ waits for the event
        with pytest.raises(VirtualActorNotInitializedError):
            ledger.add_value_of.options(idempotency_key="k").run("slow")
    finally:
        _slow_may_start.set()
    slow.ready().result(60)
    assert ledger.add_value_of.options(idempotency_key="k").run("slow") == 1
    assert ledger.add_value_of.options(idempotency_key="k").run("slow") == 1
    assert ledger.read.run() == ["7"]


@pytest.mark.usefixtures("_children")
def test_a_keyed_workflow_step_storage_fault_is_retried_with_the_key_not_by_resume(
    actor_store: StoreSpec,
) -> None:
    """A keyed call leaves no failure record (resume would run it without its key, and the
    caller's retry with the key would apply it a second time): its caller retries with the key."""
    sweep = Sweep.get_or_create("w")
    _failing_children.add(7)
    with pytest.raises(StorageError, match="child 7"):
        sweep.sweep_steps.options(idempotency_key="k").run(7)
    assert _sync.sync(list_failures(vc.get_runtime().store, "w", None)) == []
    _failing_children.clear()
    assert sweep.sweep_steps.options(idempotency_key="k").run(7) == 49
    assert sweep.sweep_steps.options(idempotency_key="k").run(7) == 49


@pytest.mark.parametrize("name", ["KeyboardInterrupt", "SystemExit", "CancelledError", "StorageError"])
def test_catch_exceptions_hands_back_exceptions_not_interrupts(actor_store: StoreSpec, name: str) -> None:
    """``options(catch_exceptions=True)`` (Ray's) returns ``(None, exc)`` for an exception, a
    fault included; an interrupt (Ctrl-C reaching the body, which runs on the caller's
    thread) still raises: before, ``run()`` returned ``(None, KeyboardInterrupt())`` and the
    program went on as if Ctrl-C had not been pressed. As Ray's steps (and ours:
    ``workflow.step(catch_exceptions=True)``) catch ``Exception`` alone."""
    ledger = Ledger.get_or_create("c")
    fault = _faults["a"] = INFRASTRUCTURE[name]()
    method = ledger.add.options(catch_exceptions=True)
    if isinstance(fault, Exception):
        result, error = method.run("a")
        assert result is None and type(error) is type(fault)
    else:
        with pytest.raises(type(fault)):
            method.run("a")
    _faults.clear()
    assert method.run("b") == (1, None)
    assert ledger.read.run() == ["b"]

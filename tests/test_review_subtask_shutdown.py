"""Sub-task checkpoints of a call whose runtime shuts down while one is being written.

A child's checkpoint write starts on the pool thread as the child returns
(``subtask_checkpoints.Checkpoints``). The runtime shut down meanwhile must still give the method's
caller a clear exception (no hang), and a run of the call again after a fresh ``init`` must
run only the children whose checkpoints did not land. The checkpoint put of position 1 is
held by the store (``HoldOne``) while another thread shuts the runtime down; every wait is
bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from garbage import full_collection
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import RuntimeShutdownError
from vactor_cloud.subtask import tasks_prefix
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: a bound on every wait: far longer than any step of these tests takes
HANG = 30.0
#: the children run, by argument, in this process (thread pool)
RAN: list[int] = []
#: what the method's launch of its children raised
RAISED: list[BaseException] = []
_ran_lock = threading.Lock()


#: child 1 waits for it once armed (``GATE_ARMED``), and sets ``AT_GATE`` as it does
GATE = threading.Event()
GATE_ARMED = threading.Event()
AT_GATE = threading.Event()


def child(n: int) -> int:
    with _ran_lock:
        RAN.append(n)
    if n == 1 and GATE_ARMED.is_set():
        AT_GATE.set()
        GATE.wait(HANG)
    return n * 10


@vc.virtual_actor
class Fanner:
    def __init__(self) -> None:
        self.total = 0

    def fan(self, n: int) -> list[int]:
        try:
            results = vc.subtask(child).map(range(n))
        except BaseException as exc:
            RAISED.append(exc)
            raise
        self.total += sum(results)
        return results


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    RAN.clear()
    RAISED.clear()
    yield
    GATE.set()
    for event in (GATE, GATE_ARMED, AT_GATE):
        event.clear()
    RAN.clear()
    RAISED.clear()


def _hold_checkpoint_one(spec: StoreSpec) -> HoldOne:
    runtime = init(spec, deadline=HANG)
    store = HoldOne(runtime.store, "put", "/tasks/", timeout=HANG)
    runtime.store = store  # before any actor is touched: every log and memo uses it
    Fanner.get_or_create("f")
    store.hold("put", "/000001")
    return store


def _rerun_after_a_fresh_init(spec: StoreSpec) -> list[int]:
    """The call again (same idempotency key) on a fresh runtime; the children it ran."""
    vc.shutdown()
    RAN.clear()
    init(spec)
    assert Fanner.get_or_create("f").fan.options(idempotency_key="k").run(3) == [0, 10, 20]
    return sorted(RAN)


@pytest.mark.parametrize("how", ["lands", "cut"])
def test_shutdown_while_a_checkpoint_is_written_fails_the_call_clearly(
    spec: StoreSpec, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``lands``: the held put is released once the shutdown began (it waits for the call);
    ``cut``: the shutdown's timeout passes first and cancels it. Either way the caller gets
    its outcome, and a rerun runs only the child whose checkpoint is missing. The cancelled
    write's task leaves no "Task exception was never retrieved" behind (logged by the
    garbage collector wherever it runs: inside pytest's ``ast.parse`` it crashed the session
    with "SystemError: AST constructor recursion depth mismatch")."""
    store = _hold_checkpoint_one(spec)
    runtime = vc.get_runtime()
    with ThreadPoolExecutor(2) as threads:
        call = threads.submit(Fanner.get_or_create("f").fan.options(idempotency_key="k").run, 3)
        assert store.held.wait(HANG), "the checkpoint put was never sent"
        closing = threads.submit(runtime.close, HANG if how == "lands" else 0.2)
        if how == "lands":
            assert _wait_until(lambda: runtime.closed), "the shutdown never began"
            store.release.set()
        try:
            outcome: Any = call.result(HANG)
        except Exception as exc:
            outcome = exc
        finally:
            store.release.set()
        closing.result(HANG)
    assert sorted(RAN) == [0, 1, 2]
    landed = _sync.sync(store.inner.list(tasks_prefix("f")))
    if how == "lands":
        assert outcome == [0, 10, 20] or isinstance(outcome, RuntimeShutdownError), repr(outcome)
    else:
        # The method heard why its child's checkpoint was not written (it heard the
        # cancelled write's concurrent.futures.CancelledError), and its caller that the call
        # ran but was not applied (it heard "shut down before this call started").
        assert [type(e) for e in RAISED] == [RuntimeShutdownError], RAISED
        assert isinstance(outcome, RuntimeShutdownError), repr(outcome)
        assert "before this call started" not in str(outcome) and "not applied" in str(outcome)
        assert not [k for k in landed if k.endswith("/000001")], landed
    rerun = _rerun_after_a_fresh_init(spec)
    assert rerun == ([] if how == "lands" else [1]), (rerun, landed)
    full_collection()  # (a cancelled task's exception is logged when the task is freed)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.mark.parametrize("keyed", [True, False])
def test_a_checkpoint_write_that_starts_after_the_shutdown_fails_the_call_clearly(
    spec: StoreSpec, keyed: bool
) -> None:
    """Child 1 returns only after the shutdown's timeout passed: its checkpoint write, about
    to start, is refused; the method and its caller hear ``RuntimeShutdownError`` (no hang),
    the caller that its call was not applied (h89: unkeyed, it heard only that "this
    operation" was stopped), and a rerun after a fresh init runs child 1 alone (with the
    key: without it, the rerun is another call)."""
    runtime = init(spec, deadline=HANG)
    Fanner.get_or_create("f")
    GATE_ARMED.set()
    options: dict[str, Any] = {"idempotency_key": "k"} if keyed else {}
    with ThreadPoolExecutor(1) as threads:
        call = threads.submit(Fanner.get_or_create("f").fan.options(**options).run, 3)
        try:
            assert AT_GATE.wait(HANG), "child 1 never ran"
            runtime.close(0.2)  # (the method still runs: logged, not waited for past 0.2 s)
        finally:
            GATE.set()
        with pytest.raises(RuntimeShutdownError) as raised:
            call.result(HANG)
    assert "not applied" in str(raised.value)
    assert [type(e) for e in RAISED] == [RuntimeShutdownError], RAISED
    GATE_ARMED.clear()
    assert _rerun_after_a_fresh_init(spec) == ([1] if keyed else [0, 1, 2])


def _wait_until(condition: Any) -> bool:
    give_up = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True

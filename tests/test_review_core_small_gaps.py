"""Small gaps of the core call path left by review h102, closed by review h107.

1. A step whose bytes fail to encode was never sent: the call fails with that error (not
   applied), not ``CommitOutcomeUnknownError``.
2. ``own_runtime()``'s lock is new in a forked child: a child forked while another thread
   held it used it without waiting for ever.
3. ``run(at_step=N)`` through a stand-in method (a handle unpickled where its class is not
   defined) is taken as a handle of the class takes it, not passed to the method (a writer's
   refused; a read-only method's read at step N since h109).
4. A writer calling its own actor's read-only method through a handle is refused with the
   true reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from child_processes import fork_and_report, held_by_another_thread
from test_review_stand_in_methods import _ledger_as_b, _stand_in_ledger

import vactor_cloud as vc
from vactor_cloud import log_records, timers, workflow_steps
from vactor_cloud import runtime as runtime_module
from vactor_cloud.runtime_scope import own
from vactor_cloud.testing.lanes import StoreSpec

HANG = 30.0  # (a bound on a hang, not a measure)

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self, amount: int) -> int:
        self.n += amount
        return self.n

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n

    def peek_through_handle(self) -> int:
        return int(vc.get_actor(vc.current_call().actor_id).peek.run())

    def add_through_handle(self) -> int:
        return int(vc.get_actor(vc.current_call().actor_id).add.run(1))


@pytest.fixture
def tally(store_spec: StoreSpec) -> Iterator[Any]:
    vc.shutdown()
    store_spec.init()
    try:
        yield Tally.get_or_create("gaps-tally")
    finally:
        vc.shutdown()


def test_a_step_that_fails_to_encode_fails_the_call_as_not_applied(
    tally: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tally.add.run(1) == 1
    encode = log_records.StepRecord.encode
    failures = []

    def failing(record: Any, key: str, signing_key: bytes | None) -> bytes:
        if not failures:
            failures.append(record.step)
            raise MemoryError("injected: building the step's bytes")
        return encode(record, key, signing_key)

    monkeypatch.setattr(log_records.StepRecord, "encode", failing)
    with pytest.raises(MemoryError, match="injected"):  # before: CommitOutcomeUnknownError
        tally.add.run(10)
    assert failures == [2]
    assert tally.peek.run() == 1  # not applied
    assert tally.add.run(2) == 3
    assert len(list(tally.history())) == 3


def test_a_child_forked_while_another_thread_holds_the_own_runtime_lock_can_use_it(
    store_spec: StoreSpec,
) -> None:
    """Before: the child's first ``get_runtime()`` waited for ever on the lock the parent's
    other thread held at the fork."""
    with runtime_module.own_runtime():
        store_spec.init()
        scope = own.get()
        with held_by_another_thread(scope.lock, HANG):
            report = fork_and_report(lambda: _done(Tally.get_or_create("gaps-fork").add.run(1)), HANG)
        assert report == b"ok"


def _recorded_lock() -> Any:
    return workflow_steps._recorded._lock


def _index_lock() -> Any:
    return timers._memory.lock


@pytest.mark.parametrize(
    ("lock", "use"),
    [
        (_recorded_lock, lambda: workflow_steps._recorded.add("gaps-actor", "a-call")),
        (_index_lock, lambda: timers._memory.known(vc.get_runtime().store, "gaps-actor")),
    ],
    ids=["workflow-recorded-failures", "timer-index-memory"],
)
def test_a_child_forked_while_another_thread_holds_a_module_lock_can_use_it(
    tally: Any, lock: Any, use: Any
) -> None:
    """Module-level state with a lock that a child forked while another thread held it waited
    on for ever (the others reset theirs at fork: ``os.register_at_fork``)."""
    with held_by_another_thread(lock(), HANG):
        report = fork_and_report(lambda: _done(use()), HANG)
    assert report == b"ok"


def _done(_: object) -> None:
    """(What a child reports once its call returned: ``b"ok"``.)"""


def test_a_writer_reading_its_own_actor_through_a_handle_is_told_the_true_reason(tally: Any) -> None:
    """Let through, such a read answered at once from the last committed step, without the
    change the writer had made so far (it waits for nothing): the message said it "would wait
    for itself"."""
    assert tally.add.run(1) == 1
    with pytest.raises(vc.ReentrantCallError) as caught:
        tally.peek_through_handle.run()
    message = str(caught.value)
    assert "wait for itself" not in message
    assert "last committed" in message and "self.peek()" in message
    assert tally.peek.run() == 1


def test_a_writer_calling_its_own_writer_through_a_handle_still_says_it_would_wait(
    tally: Any,
) -> None:
    with pytest.raises(vc.ReentrantCallError, match="wait for itself"):
        tally.add_through_handle.run()


@pytest.fixture
def stand_in(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A ``Ledger`` handle unpickled where ``Ledger`` is not defined (its methods stand-ins), on
    an actor with n == 1 (``test_review_stand_in_methods``)."""
    vc.shutdown()
    try:
        yield _stand_in_ledger(store_spec, "gaps-stand-in", monkeypatch)
    finally:
        vc.shutdown()


def test_at_step_through_a_stand_in_writer_is_refused_as_a_handle_of_the_class_refuses_it(
    store_spec: StoreSpec, stand_in: Any
) -> None:
    """Before: ``at_step`` was passed to ``add`` (a ``TypeError`` from the call)."""
    before = _ledger_as_b(store_spec, "gaps-stand-in")
    with pytest.raises(ValueError, match=r"add\(\) is a writer method; at_step="):
        stand_in.add.run(5, at_step=1)
    assert _ledger_as_b(store_spec, "gaps-stand-in") == before


def test_at_step_through_a_stand_in_read_reads_the_step(store_spec: StoreSpec, stand_in: Any) -> None:
    """Before: ``at_step`` was passed to ``peek`` (a ``TypeError``); then (h107) refused with
    ``ValueError``; since h109 the step is read, as a handle of the class reads it
    (``test_review_at_step_reads``)."""
    assert stand_in.peek.run(at_step=5) == 0
    assert stand_in.peek.run() == 1

"""Review h228: a mutation sweep of the workflow layer (``workflow_steps.py``, ``workflow.py``).

TABLE
"""

from __future__ import annotations

from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: closed: ``gate`` raises (the sub-workflow fails, the call is recorded for resume)
_gate_closed: list[bool] = []


@workflow.step(max_retries=0)
def gate(x: Any) -> Any:
    if _gate_closed:
        raise ConnectionError("the gate is closed")
    return x


@workflow.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def grow(self, items: list[int]) -> Any:
        items.append(len(items))  # the body changes its own copy of the argument
        return self.keep.step(gate.step(list(items)))

    def keep(self, x: Any) -> Any:
        self.seen.append(x)
        return x

    def knot(self) -> Any:
        box: list[Any] = []
        node = gate.step(box)
        box.append(node)  # the node is among its own arguments: it waits for itself
        return node

    @workflow.virtual_actor.readonly
    def view(self) -> list[Any]:
        return list(self.seen)


@pytest.fixture
def gate_closed() -> Any:
    _gate_closed[:] = [True]
    yield
    _gate_closed.clear()


def test_a_resumed_call_whose_body_changes_its_arguments_is_recorded_with_the_arguments_it_was_called_with(
    actor_store: StoreSpec, gate_closed: None
) -> None:
    """Arguments are by value: every run of a call's body gets its own copy. A call re-run by
    ``resume`` whose sub-workflow failed again is recorded again for the next resume: with the
    arguments it was called with, not with what its body made of them."""
    ledger = Ledger.get_or_create("grow")
    with pytest.raises(ConnectionError):
        ledger.grow.run([])
    with pytest.raises(ConnectionError):
        vc.get(workflow.resume("grow"), timeout=60)
    with pytest.raises(ConnectionError):
        vc.get(workflow.resume("grow"), timeout=60)
    _gate_closed.clear()
    assert vc.get(workflow.resume("grow"), timeout=60) == [[0]]
    assert ledger.view.run() == [[0]]


def test_a_sub_workflow_whose_step_waits_for_itself_fails_its_call(actor_store: StoreSpec) -> None:
    """A step among its own inputs (put there after it was made) can never be ready: the call
    fails with ``ValueError``, and the actor takes its next call."""
    ledger = Ledger.get_or_create("knot")
    future = ledger.knot.run_async()
    with pytest.raises(ValueError, match="cycle"):
        future.result(timeout=60)  # (a bound for a hang, not a measure: it fails at once)
    assert ledger.view.run() == []

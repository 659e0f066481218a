"""Ray-spelled sub-workflows (``workflow_steps.py``, ``workflow.resume``): guarantees that a
mutation sweep (review-h140) found no test holding. Each test failed with the mutation named
in its docstring applied to the library, and passes without it."""

from __future__ import annotations

from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec, workflow
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_runs: list[str] = []


@workflow.step(catch_exceptions=True, max_retries=2)
def bail() -> None:
    _runs.append("bail")
    raise SystemExit(3)


@workflow.step
def first(x: int) -> int:
    return x + 1


@workflow.step
def second(x: int) -> int:
    return x + 2


@workflow.step
def combine(a: int, b: int) -> int:
    return a * 100 + b


@workflow.step(checkpoint=False)
def unsaved(x: int) -> int:
    _runs.append("unsaved")
    return x


_gate_closed: list[bool] = []


@workflow.step(max_retries=0)
def gate(x: int) -> int:
    if _gate_closed:
        raise ConnectionError("the gate is closed")
    return x


@workflow.virtual_actor
class Pipeline:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def bail_out(self) -> Any:
        self.seen.append(-1)
        return bail.step()

    def fan_in(self) -> Any:
        return combine.step(first.step(1), second.step(1))

    def through_unsaved(self, x: int) -> Any:
        return self.keep.step(gate.step(unsaved.step(x)))

    def through_gate(self, x: int) -> Any:
        return self.keep.step(gate.step(x))

    def keep(self, x: int) -> int:
        self.seen.append(x)
        return x

    @workflow.virtual_actor.readonly
    def view(self) -> list[int]:
        return list(self.seen)


def _checkpoints(actor_id: str) -> dict[int, str]:
    """The actor's sub-task checkpoints (of its one call), position -> the function's name."""
    store = vc.get_runtime().store
    found: dict[int, str] = {}
    for key in _sync.sync(store.list(f"actors/{actor_id}/tasks/")):
        if key.endswith("/failed"):
            continue
        meta = codec.decode(key, _sync.sync(store.get(key)).data).meta
        found[int(meta["position"])] = str(meta["fingerprint"]).split(":")[0].rsplit(".", 1)[-1]
    return found


def test_a_step_raising_system_exit_is_neither_caught_nor_retried(actor_store: StoreSpec) -> None:
    """``catch_exceptions`` and ``max_retries`` are about the step's ``Exception``s: a
    ``SystemExit`` (or Ctrl-C) is the process's, not the step's outcome. Caught with
    ``except BaseException`` in ``_StepCall``, it was run three times, swallowed into
    ``(None, SystemExit)`` and the call committed."""
    _runs.clear()
    pipeline = Pipeline.get_or_create("bail")
    with pytest.raises(SystemExit):
        pipeline.bail_out.run()
    assert _runs == ["bail"]
    assert pipeline.view.run() == []  # nothing committed


def test_steps_are_checkpointed_dependencies_first_then_left_to_right(actor_store: StoreSpec) -> None:
    """The positions of a sub-workflow's steps are documented (dependencies first, then left to
    right): a release that numbered them otherwise would find none of an earlier release's
    checkpoints on a resume (every step run again). Without ``reversed`` in ``_post_order`` the
    right-hand dependency took position 0."""
    pipeline = Pipeline.get_or_create("fan-in")
    assert pipeline.fan_in.run() == 203
    assert _checkpoints("fan-in") == {0: "first", 1: "second", 2: "combine"}


def test_a_step_without_checkpoint_runs_again_when_its_call_is_resumed(actor_store: StoreSpec) -> None:
    """``checkpoint=False`` (Ray's option): the step writes no checkpoint and runs again on every
    re-run of its call. Ignored (always checkpointed), the resume read it back."""
    _runs.clear()
    _gate_closed[:] = [True]
    pipeline = Pipeline.get_or_create("unsaved")
    with pytest.raises(ConnectionError):
        pipeline.through_unsaved.run(7)
    assert _checkpoints("unsaved") == {}
    _gate_closed.clear()
    assert vc.get(workflow.resume("unsaved"), timeout=60) == [7]
    assert _runs == ["unsaved", "unsaved"]
    assert pipeline.view.run() == [7]


def test_resume_runs_the_failed_calls_in_the_order_they_first_failed(actor_store: StoreSpec) -> None:
    """``workflow.resume`` runs the recorded calls "in the order they first failed". Taken in the
    order the store lists the records (by call id, random), they were applied shuffled."""
    _gate_closed[:] = [True]
    pipeline = Pipeline.get_or_create("ordered")
    for x in range(8):
        with pytest.raises(ConnectionError):
            pipeline.through_gate.run(x)
    _gate_closed.clear()
    assert vc.get(workflow.resume("ordered"), timeout=60) == list(range(8))
    assert pipeline.view.run() == list(range(8))

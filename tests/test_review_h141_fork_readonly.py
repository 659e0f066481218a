"""Review h141: a read-only method that forks (``os.fork()`` in its body) and returns in the
child too ends the child at once, as a writer's does (``call_bodies._end_a_forked_child``: status 70,
why on stderr), and the parent answers the read.

Before, nothing stopped it. On the caller's thread the child went back to its caller inside
the parent's runtime (locks held at the fork, an IO loop it does not have). On a pool thread
(``run_async``) the child, whose only thread is that pool thread, went back to the pool's wait
for work and stayed there: a process left running for good. Each child here is reaped by the
test (killed first if it has not ended): none outlives it.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from forking import HANG, read_until_closed, reaped, run_in_both

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]

#: gates a forking method waits at, by actor id
GATES: dict[str, threading.Event] = {}


@vc.virtual_actor
class Reader:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def fork_and_read(self) -> tuple[str, int]:
        child = os.fork()
        return ("child", self.n) if child == 0 else ("parent", child)

    @vc.virtual_actor.readonly
    def fork_after_gate(self) -> tuple[str, int]:
        here = sys.modules[__name__]
        assert here.GATES[vc.current_call().actor_id].wait(HANG)  # type: ignore[union-attr]
        child = os.fork()
        return ("child", self.n) if child == 0 else ("parent", child)

    @vc.virtual_actor.readonly
    async def fork_async(self) -> tuple[str, int]:
        child = os.fork()
        return ("child", self.n) if child == 0 else ("parent", child)

    def fork_writer_after_gate(self) -> tuple[str, int]:
        here = sys.modules[__name__]
        assert here.GATES[vc.current_call().actor_id].wait(HANG)  # type: ignore[union-attr]
        self.n += 1
        child = os.fork()
        return ("child", self.n) if child == 0 else ("parent", child)


def test_a_read_only_method_that_forks_ends_the_child_and_the_parent_reads(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    a = Reader.get_or_create("fork-read")
    assert a.bump.run() == 1
    got, said = run_in_both(a.fork_and_read.run)
    assert got[0] == "parent"
    status = reaped(got[1])
    # Before: the child returned into its caller, ('child', 1).
    assert said == "", f"the child went on after the fork: {said}"
    assert status == 70
    err = capfd.readouterr().err
    assert "vactor_cloud: fork_and_read() of actor 'fork-read' forked (os.fork())" in err, err
    assert "read-only" in err
    assert a.bump.run() == 2  # the parent goes on


def test_an_async_read_only_method_that_forks_ends_the_child(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    a = Reader.get_or_create("fork-read-async")
    got, said = run_in_both(a.fork_async.run)
    assert got[0] == "parent"
    status = reaped(got[1])
    assert said == "", f"the child went on after the fork: {said}"
    assert status == 70
    assert "fork_async() of actor 'fork-read-async' forked" in capfd.readouterr().err


def test_a_read_only_method_forking_on_a_pool_thread_ends_the_child(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    # run_async runs the read on a pool thread: the child's only thread. Before, the child went
    # back to the pool's wait for work and never ended (killed here after 20 s).
    a = Reader.get_or_create("fork-read-pool")
    gate = GATES["fork-read-pool"] = threading.Event()
    read, write = os.pipe()
    future = a.fork_after_gate.run_async()
    try:
        gate.set()
        done, _ = concurrent.futures.wait([future], HANG)  # (no helping: the pool runs it)
        assert done == {future}
    finally:
        os.close(write)
    try:
        got = future.result()
        assert got[0] == "parent"
        status = reaped(got[1])
        assert read_until_closed(read) == b""  # (every copy of the pipe's write end closed)
    finally:
        os.close(read)
    assert status == 70, f"the child ended with status {status}"
    assert "fork_after_gate() of actor 'fork-read-pool' forked" in capfd.readouterr().err


def test_a_writer_forking_on_a_pool_thread_ends_the_child(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    # (A pin: a writer's child ended at the guard already; reaped here, status 70.)
    a = Reader.get_or_create("fork-write-pool")
    gate = GATES["fork-write-pool"] = threading.Event()
    future = a.fork_writer_after_gate.run_async()
    gate.set()
    done, _ = concurrent.futures.wait([future], HANG)
    assert done == {future}
    got = future.result()
    assert got[0] == "parent"
    assert reaped(got[1]) == 70
    assert "fork_writer_after_gate() of actor 'fork-write-pool' forked" in capfd.readouterr().err
    assert a.bump.run() == 2


#: the children the forking methods made, by actor id (the parent's record)
CHILDREN: dict[str, int] = {}


@workflow.step
def _noted_step(path: str) -> int:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    return os.getpid()


@workflow.virtual_actor
class SubWorkflow:
    def __init__(self) -> None:
        self.n = 0

    def fork_then_step(self, path: str) -> Any:
        self.n += 1
        child = os.fork()
        if child:
            CHILDREN[vc.current_call().actor_id] = child  # type: ignore[union-attr]
        return _noted_step.step(path)

    @workflow.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def test_a_method_that_forks_and_returns_a_sub_workflow_ends_the_child_before_it_runs(
    actor_store: StoreSpec, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The child returned the sub-workflow too: it ran it (its step, inside the parent's
    # runtime) before the guard after the body's return ended it.
    a = SubWorkflow.get_or_create("fork-sub-workflow")
    noted = tmp_path / "steps"
    got, said = run_in_both(lambda: a.fork_then_step.run(str(noted)))
    status = reaped(CHILDREN.pop("fork-sub-workflow"))
    assert said == "", f"the child went on after the fork: {said}"
    assert noted.read_text() == f"{os.getpid()}\n", "the child ran the sub-workflow's step"
    assert got == os.getpid()
    assert status == 70
    assert "fork_then_step() of actor 'fork-sub-workflow' forked" in capfd.readouterr().err
    assert a.count.run() == 1

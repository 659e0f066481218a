"""Review h143: the fork guard (``fork_guard.py``, in ``call_bodies.invoke``) ends only a child that
came back out of the method: code that forks and ends its child itself is untouched.

A method that forks, ends its child there (``os._exit``) and waits for it returns normally in
the parent, writer or read-only, plain or ``async``, called directly or nested inside another
actor's method, and so does a sub-task's function; ``multiprocessing`` with the fork start
method and ``subprocess.run`` inside a method work as they do anywhere. Each child is reaped
here (by the method, or by the test).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]


def _fork_and_wait(status: int) -> int:
    """Fork a child that ends at once with ``status``; its exit code, reaped."""
    child = os.fork()
    if child == 0:
        os._exit(status)
    _, waited = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(waited)


def _square(x: int, answers: multiprocessing.queues.Queue[int]) -> None:
    answers.put(x * x)


def _by_a_forked_process(x: int) -> int:
    """``x * x`` computed by a process started with the fork start method, joined."""
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.queues.Queue[int] = context.Queue()
    process = context.Process(target=_square, args=(x, answers))
    process.start()
    try:
        return answers.get(timeout=60)
    finally:
        process.join(60)
        if process.is_alive():
            process.kill()
            process.join()


@vc.virtual_actor
class Forker:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def fork_and_wait(self, status: int) -> int:
        self.codes.append(_fork_and_wait(status))
        return self.codes[-1]

    @vc.virtual_actor.readonly
    def read_forking(self, status: int) -> tuple[int, list[int]]:
        return _fork_and_wait(status), list(self.codes)

    async def fork_async(self, status: int) -> int:
        self.codes.append(_fork_and_wait(status))
        return self.codes[-1]

    def by_process(self, x: int) -> int:
        self.codes.append(_by_a_forked_process(x))
        return self.codes[-1]

    def by_subprocess(self) -> str:
        done = subprocess.run(
            [sys.executable, "-c", "print('from a subprocess')"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.codes.append(done.returncode)
        return done.stdout.strip()

    def by_sub_tasks(self, statuses: list[int]) -> list[int]:
        found = vc.subtask(_fork_and_wait, executor="thread").map(statuses)
        self.codes.extend(found)
        return found

    def nested(self, other: str, status: int) -> int:
        return Forker.get_or_create(other).fork_and_wait.run(status)

    @vc.virtual_actor.readonly
    def seen(self) -> list[int]:
        return list(self.codes)


def test_a_method_that_ends_its_own_child_returns_in_the_parent(actor_store: StoreSpec) -> None:
    f = Forker.get_or_create("own-child")
    assert f.fork_and_wait.run(3) == 3
    assert f.fork_and_wait.run_async(4).result(60) == 4
    assert f.read_forking.run(5) == (5, [3, 4])
    assert f.read_forking.run_async(6).result(60) == (6, [3, 4])
    assert f.fork_async.run(7) == 7
    assert f.seen.run() == [3, 4, 7]  # each applied once, in the parent


def test_a_nested_call_whose_method_ends_its_own_child_returns(actor_store: StoreSpec) -> None:
    outer = Forker.get_or_create("outer")
    assert outer.nested.run("inner", 9) == 9
    assert Forker.get_or_create("inner").seen.run() == [9]


def test_sub_tasks_that_end_their_own_children_return_in_the_parent(actor_store: StoreSpec) -> None:
    f = Forker.get_or_create("sub-tasks")
    assert f.by_sub_tasks.run([3, 4, 5]) == [3, 4, 5]
    assert f.seen.run() == [3, 4, 5]


def test_multiprocessing_fork_and_subprocess_inside_methods_work(actor_store: StoreSpec) -> None:
    f = Forker.get_or_create("processes")
    assert f.by_process.run(7) == 49
    assert f.by_process.run_async(8).result(60) == 64
    assert f.by_subprocess.run() == "from a subprocess"
    assert f.seen.run() == [49, 64, 0]

"""Review h141: a sub-task (``vc.subtask(fn)``, run for an actor call on a pool) whose function
forks and returns in the child too: the child ends at once (status 70, why on stderr), as a
method's does. Its result is the parent's, which checkpoints it and hands it to the method.

Before, on the thread executor, the child's only thread was the pool thread that ran the
function: it went back to the pool's wait for work and the process never ended. On the process
executor the grandchild went back to its worker's loop, taking work (and the pool's shutdown
sentinels) meant for the worker. Each child here is ended by the test if still running.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time

import pytest
from forking import HANG, reaped

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]

#: the process pools of the actors that fork in them, by actor id
POOLS: dict[str, concurrent.futures.ProcessPoolExecutor] = {}

#: set once the forking child of ``fork_on_a_pool_thread`` started
STARTED = threading.Event()


def fork_on_a_pool_thread(index: int) -> tuple[str, int]:
    """Child 0 forks, on a pool thread: the first queued, it is the first a pool thread takes,
    and the waiting method thread runs the newest not started, child 1, which waits for it.
    (A pool thread that took 0 and has not marked it running yet may lose it to the method
    thread: then it forks there, and its child ends at the same guard.)"""
    if index == 1:
        assert STARTED.wait(HANG)
        return ("other", 0)
    STARTED.set()
    child = os.fork()
    return ("child", os.getpid()) if child == 0 else ("parent", child)


def fork_in_a_worker(_: int) -> tuple[str, int, int]:
    worker = os.getpid()
    child = os.fork()
    return ("child", os.getpid(), worker) if child == 0 else ("parent", child, worker)


@vc.virtual_actor
class Launcher:
    def __init__(self) -> None:
        self.n = 0

    def on_threads(self) -> list[tuple[str, int]]:
        self.n += 1
        return vc.subtask(fork_on_a_pool_thread, executor="thread").map([0, 1])

    def on_processes(self) -> list[tuple[str, int, int]]:
        self.n += 1
        pool = sys.modules[__name__].POOLS[vc.current_call().actor_id]  # type: ignore[union-attr]
        return vc.subtask(fork_in_a_worker, executor=pool).map([0])

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def test_a_sub_task_that_forks_on_a_pool_thread_ends_the_child(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    STARTED.clear()
    a = Launcher.get_or_create("subtask-thread-fork")
    got = a.on_threads.run()
    assert got[1] == ("other", 0)
    assert got[0][0] == "parent", got
    # Before: still running after 20 s (killed).
    assert reaped(got[0][1]) == 70
    err = capfd.readouterr().err
    assert "the sub-task test_review_h141_fork_subtask.fork_on_a_pool_thread forked (os.fork())" in err, err
    assert a.count.run() == 1


def _state(pid: int) -> str | None:
    """The state letter of process ``pid`` (``Z``: ended, not reaped), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_a_sub_task_that_forks_in_a_worker_process_ends_the_child(actor_store: StoreSpec) -> None:
    # The grandchild is the worker's child: not ours to reap. It must end (a zombie or gone).
    # A pool of the test's own: a grandchild left running (before) is killed with the worker it
    # wedged (it held the pool's call queue), and the broken pool is let go, not waited for.
    pool = POOLS["subtask-process-fork"] = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    )
    a = Launcher.get_or_create("subtask-process-fork")
    got = a.on_processes.run()
    _, grandchild, worker = got[0]  # (the grandchild's own pid, if its result came back)
    deadline = time.monotonic() + HANG / 3
    try:
        # Before: the method got the grandchild's result, ('child', pid, worker), which it
        # sent back on the worker's result queue, in the worker's place.
        assert got[0][0] == "parent", got
        while _state(grandchild) not in ("Z", "X", None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(grandchild) in ("Z", "X", None), "the worker's forked child is still running"
        pool.shutdown()
    finally:
        if _state(grandchild) not in ("Z", "X", None):
            os.kill(grandchild, 9)
            os.kill(worker, 9)
            pool.shutdown(wait=False, cancel_futures=True)
        del POOLS["subtask-process-fork"]
    assert a.count.run() == 1

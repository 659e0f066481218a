"""Review h135: the guard that stops a forked child from committing its parent's batch
(``call_bodies._end_a_forked_child``) must not stop the ways a method starts processes that
never return into it: ``multiprocessing`` with the fork start method (the child runs its target
and exits) and ``subprocess`` (fork and exec). And a method run by ``run_async`` on a pool
thread, or in a fold of the lease holder, that forks and returns in the child too is applied
once, the child ended at the guard (status 70, why on stderr). Every child path ends in
``os._exit``."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from forking import HANG, read_until_closed, run_in_both
from test_combining import commit_behind_its_back, init_switchable
from test_review_fork_in_method import Forker

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local", "moto"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]

#: gates a forking method waits at, by actor id
GATES: dict[str, threading.Event] = {}


def _child_target(write: int) -> None:
    os.write(write, b"the target ran")


@vc.virtual_actor
class Spawner:
    def __init__(self) -> None:
        self.n = 0

    def start_process(self, write: int) -> int:
        self.n += 1
        child = multiprocessing.get_context("fork").Process(target=_child_target, args=(write,))
        child.start()
        child.join(HANG)
        return child.exitcode if child.exitcode is not None else -1

    def run_subprocess(self) -> str:
        self.n += 1
        # (preexec_fn: Python's fork here runs the at-fork handlers, in the child and this process)
        command = [sys.executable, "-c", "print('hi')"]
        done = subprocess.run(command, capture_output=True, check=True, timeout=HANG, preexec_fn=os.setpgrp)
        return done.stdout.decode().strip()

    def fork_after_gate(self) -> tuple[str, int]:
        here = sys.modules[__name__]
        assert here.GATES[vc.current_call().actor_id].wait(HANG)  # type: ignore[union-attr]
        self.n += 1
        return ("child" if os.fork() == 0 else "parent", self.n)

    def fork_now(self) -> str:
        self.n += 1
        return "child" if os.fork() == 0 else "parent"

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def test_a_method_that_starts_a_forked_multiprocessing_child_is_applied_once(actor_store: StoreSpec) -> None:
    a = Spawner.get_or_create("mp-fork")
    read, write = os.pipe()
    try:
        assert a.start_process.run(write) == 0
    finally:
        os.close(write)
    try:
        assert read_until_closed(read) == b"the target ran"
    finally:
        os.close(read)
    assert a.count.run() == 1


def test_a_method_that_runs_a_subprocess_is_applied_once(actor_store: StoreSpec) -> None:
    a = Spawner.get_or_create("subprocess")
    assert a.run_subprocess.run() == "hi"
    assert a.run_subprocess.run_async().result(HANG) == "hi"
    assert a.count.run() == 2


def test_a_method_run_async_that_forks_is_applied_once_and_the_childs_future_fails(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    a = Spawner.get_or_create("fork-on-pool")
    gate = GATES["fork-on-pool"] = threading.Event()
    parent = os.getpid()
    read, write = os.pipe()

    def in_the_child(f: Any) -> None:
        if os.getpid() == parent:
            return
        try:
            error = f.exception(0)
            os.write(write, f"{type(error).__name__}: {error}".encode()[:4000])
        finally:
            os._exit(0)

    future = a.fork_after_gate.run_async()
    future.add_done_callback(in_the_child)
    gate.set()
    try:
        got = future.result(HANG)
    finally:
        os.close(write)
    try:
        said = read_until_closed(read).decode()
    finally:
        os.close(read)
    assert got == ("parent", 1)
    assert said == "", f"the child went on after the fork: {said}"  # (it never settled its copy)
    err = capfd.readouterr().err
    assert "fork_after_gate() of actor 'fork-on-pool' forked" in err, err
    assert a.count.run() == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_method_that_forks_in_a_fold_is_applied_once(
    store_spec: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    # The call loses its race, so the process takes the folder lease and applies it in a fold
    # (its body runs inside the lease holder's commit): the child must stop there as well.
    init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    a = Forker.get_or_create("fold-forker")
    assert a.count.run() == 0
    commit_behind_its_back("fold-forker")
    got, said = run_in_both(a.fork_and_count.run)
    assert got == ("parent", 1)
    assert said == "", f"the child went on after the fork: {said}"
    assert "fork_and_count() of actor 'fold-forker' forked" in capfd.readouterr().err
    assert a.count.run() == 1
    assert vc.get_runtime().core("fold-forker")._holding(), "the call was not applied in a fold"
    vc.shutdown()


@vc.virtual_actor
class Outer:
    def __init__(self) -> None:
        self.n = 0

    def call_a_forker(self, inner: str) -> tuple[str, int]:
        # The inner call forks; in the child the guard ends the child there (before, it raised,
        # this body swallowed that and returned: the outer call must not commit in the child).
        self.n += 1
        here = os.getpid()
        with contextlib.suppress(RuntimeError):
            Spawner.get_or_create(inner).fork_now.run()
        return ("child" if os.getpid() != here else "parent", self.n)

    async def fork_async(self) -> tuple[str, int]:
        self.n += 1
        return ("child" if os.fork() == 0 else "parent", self.n)

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def test_a_nested_call_that_forks_leaves_the_outer_call_applied_once(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    outer = Outer.get_or_create("outer")
    got, said = run_in_both(lambda: outer.call_a_forker.run("inner-forker"))
    assert got == ("parent", 1)
    assert said == "", f"the child went on after the fork: {said}"
    assert "fork_now() of actor 'inner-forker' forked" in capfd.readouterr().err
    assert outer.count.run() == 1
    assert Spawner.get_or_create("inner-forker").count.run() == 1


def test_an_async_method_that_forks_is_applied_once(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    outer = Outer.get_or_create("async-forker")
    got, said = run_in_both(outer.fork_async.run)
    assert got == ("parent", 1)
    assert said == "", f"the child went on after the fork: {said}"
    assert "fork_async() of actor 'async-forker' forked" in capfd.readouterr().err
    assert outer.count.run() == 1

"""A method that forks (``os.fork()`` in its body) and returns in the child as well.

The child then held the parent's batch on its own thread, went on to commit it, and the call
was applied twice: the child's commit raced the parent's, and the loser ran the body again on
the winner's step (forking once more). Now the child ends there, before committing anything
(status 70, why on stderr: going back to its caller ran the parent's runtime, and a child forked
inside a fold once hung there on a lock); the parent applies the call once. The test failed
before the fix (the child returned ``('child', 2)``)."""

from __future__ import annotations

import os

import pytest
from forking import run_in_both

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local", "moto"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]


@vc.virtual_actor
class Forker:
    def __init__(self) -> None:
        self.n = 0

    def fork_and_count(self) -> tuple[str, int]:
        self.n += 1
        return ("child" if os.fork() == 0 else "parent", self.n)

    def fork_then_exit(self) -> str:
        # The child raises SystemExit (a BaseException) out of the body: caught by the batch as
        # any exception is, it must end the child there too, not unwind through the runtime.
        self.n += 1
        if os.fork() == 0:
            raise SystemExit(3)
        return "parent"

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def test_a_method_that_forks_is_applied_once_and_the_child_says_why(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    a = Forker.get_or_create("forker")
    got, said = run_in_both(a.fork_and_count.run)
    assert got == ("parent", 1)
    assert said == "", f"the child went on after the fork: {said}"
    err = capfd.readouterr().err
    assert "vactor_cloud: fork_and_count() of actor 'forker' forked (os.fork())" in err, err
    assert "committed nothing and exits now (status 70)" in err
    assert a.count.run() == 1


def test_a_forked_child_whose_body_raises_a_base_exception_ends_at_the_guard_too(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    a = Forker.get_or_create("forker-exits")
    got, said = run_in_both(a.fork_then_exit.run)
    assert got == "parent"
    assert said == "", f"the child went on after the fork: {said}"  # (SystemExit reached run())
    assert "fork_then_exit() of actor 'forker-exits' forked" in capfd.readouterr().err
    assert a.count.run() == 1

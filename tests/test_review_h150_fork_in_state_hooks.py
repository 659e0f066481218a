"""Review h150: an actor class's ``__getstate__`` or ``__setstate__`` that forks (``os.fork()``)
and returns in the child as well. vactor runs them for the call (capturing the state after the
body, rebuilding it before) or the creation (capturing the state ``__init__`` left), after
``fork_guard``'s check of the body: the child went on, committed the call a second time
(n == 2: a writer call applied twice) or the creation, and returned to its caller as though it
were the parent. Now it ends at once (status 70, why on stderr), as one forked in the body."""

from __future__ import annotations

import os
from typing import Any

import pytest
from forking import reaped

import vactor_cloud as vc
from vactor_cloud.fork_guard import STATUS
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local"),
    pytest.mark.usefixtures("forked_children_reaped"),
]

#: the next ``__getstate__`` / ``__setstate__`` to run forks (once: cleared before the fork)
FORK_IN: dict[str, bool] = {"getstate": False, "setstate": False}
#: the children forked, as the parent saw them
CHILDREN: list[int] = []


def _fork_if(hook: str) -> None:
    if FORK_IN[hook]:
        FORK_IN[hook] = False
        pid = os.fork()
        if pid:
            CHILDREN.append(pid)


@vc.virtual_actor
class ForksInItsHooks:
    def __init__(self) -> None:
        self.n = 0

    def __getstate__(self) -> dict[str, Any]:
        _fork_if("getstate")
        return {"n": self.n}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _fork_if("setstate")
        self.n = state["n"]

    def add(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


def _the_child_ended_at_the_guard(parent: int) -> None:
    """(In a child that came back to the test: ends here, status 0.)"""
    if os.getpid() != parent:
        os._exit(0)
    (child,) = CHILDREN
    assert reaped(child) == STATUS, "the child went on past the fork"


@pytest.fixture(autouse=True)
def _no_fork_pending() -> Any:
    CHILDREN.clear()
    yield
    FORK_IN.update(getstate=False, setstate=False)


def test_a_getstate_that_forks_in_a_call_applies_it_once(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    handle = ForksInItsHooks.get_or_create("getstate-call")
    parent = os.getpid()
    FORK_IN["getstate"] = True
    assert handle.add.run() == 1
    _the_child_ended_at_the_guard(parent)
    assert handle.value.run() == 1
    assert "of actor 'getstate-call'" in capfd.readouterr().err


def test_a_setstate_that_forks_in_a_call_applies_it_once(actor_store: StoreSpec) -> None:
    handle = ForksInItsHooks.get_or_create("setstate-call")
    parent = os.getpid()
    FORK_IN["setstate"] = True
    handle.add.run()
    if not CHILDREN and os.getpid() == parent:
        pytest.skip("no __setstate__ ran for this call (a warm instance)")
    _the_child_ended_at_the_guard(parent)
    assert handle.value.run() == 1


def test_a_setstate_that_forks_in_a_read_ends_the_child(actor_store: StoreSpec) -> None:
    handle = ForksInItsHooks.get_or_create("setstate-read")
    handle.add.run()
    parent = os.getpid()
    FORK_IN["setstate"] = True
    assert handle.value.run() == 1
    _the_child_ended_at_the_guard(parent)


def test_a_getstate_that_forks_at_the_creation_creates_the_actor_once(actor_store: StoreSpec) -> None:
    parent = os.getpid()
    FORK_IN["getstate"] = True
    handle = ForksInItsHooks.get_or_create("getstate-creation")
    _the_child_ended_at_the_guard(parent)
    assert handle.add.run() == 1
    assert sorted(e.step for e in handle.history()) == [0, 1]

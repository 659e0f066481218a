"""Review h144: an actor's ``__init__`` that forks (``os.fork()``, reached by ``get_or_create``)
and returns in the child too ends the child at once, as a method's or a sub-task's does
(``fork_guard``: status 70, why on stderr); the parent creates the actor.

Before, nothing stopped it: the child went on through the creation inside the parent's runtime
(locks held at the fork, an IO loop it does not have) and, on the caller's thread, back to its
caller; with ``wait_for_init=False``, on a pool thread (the child's only thread), back to the
pool's wait for work for good. Each child here is reaped by the test (killed first if it has
not ended): none outlives it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from forking import HANG, reaped, run_in_both

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]

#: what ``os.fork()`` returned in each ``__init__``, by actor id (0 in the child)
FORKED: dict[str, int] = {}


@vc.virtual_actor
class Forker:
    def __init__(self, actor_id: str) -> None:
        self.n = 1
        FORKED[actor_id] = os.fork()

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


def test_an_init_that_forks_ends_the_child_and_the_parent_creates_the_actor(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    def create() -> tuple[str, Any]:
        handle = Forker.get_or_create("fork-init", "fork-init")
        child = FORKED["fork-init"]
        return ("child", handle.actor_id) if child == 0 else ("parent", child)

    got, said = run_in_both(create)
    assert got[0] == "parent"
    status = reaped(got[1])
    # Before: the child went on through the creation, inside the parent's runtime.
    assert said == "", f"the child went on after the fork: {said}"
    assert status == 70
    err = capfd.readouterr().err
    assert "vactor_cloud: the __init__ of actor 'fork-init' (Forker) forked (os.fork())" in err, err
    assert "the creation is the parent's" in err, err
    assert Forker.get_or_create("fork-init", "fork-init").value.run() == 1  # created, by the parent


def test_an_init_that_forks_on_a_pool_thread_ends_the_child(
    store_spec: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    # wait_for_init=False runs __init__ on a pool thread: the child's only thread. Before, the
    # child went back to the pool's wait for work and never ended (killed here after 20 s).
    store_spec.init(settings=vc.Settings(wait_for_init=False))
    try:
        handle = Forker.get_or_create("fork-init-pool", "fork-init-pool")
        handle.ready().result(HANG)
        status = reaped(FORKED["fork-init-pool"])
        assert status == 70
        assert "the __init__ of actor 'fork-init-pool' (Forker) forked" in capfd.readouterr().err
        assert handle.value.run() == 1
    finally:
        vc.shutdown()

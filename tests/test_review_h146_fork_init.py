"""Review h146: attacks on h144's end of a child forked in an actor's ``__init__``."""

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

INITS: list[int] = []
CHILD: dict[str, int] = {}


@vc.virtual_actor
class ForksAndReaps:
    """Forks in ``__init__``, ends its child itself and waits for it."""

    def __init__(self) -> None:
        INITS.append(os.getpid())
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        self.status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.status


@vc.virtual_actor
class ForksThenRaises:
    def __init__(self, actor_id: str) -> None:
        CHILD[actor_id] = os.fork()
        raise ValueError("no")

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return 1


def test_an_init_that_ends_its_own_child_creates_the_actor_once(actor_store: StoreSpec) -> None:
    INITS.clear()
    handle = ForksAndReaps.get_or_create("reaps")
    assert handle.value.run() == 7
    assert len(INITS) == 1 and INITS[0] == os.getpid()
    assert ForksAndReaps.get_or_create("reaps").value.run() == 7
    assert len(INITS) == 1  # (get_or_create of an existing actor runs no __init__)


def test_an_init_that_raises_after_a_fork_fails_in_the_parent_and_ends_the_child(
    actor_store: StoreSpec,
) -> None:
    def create() -> Any:
        with pytest.raises(ValueError, match="no"):  # (in the parent: the child ends inside)
            ForksThenRaises.get_or_create("raises", "raises")
        return ("child", None) if CHILD["raises"] == 0 else ("parent", CHILD["raises"])

    got, said = run_in_both(create)
    assert got[0] == "parent"
    assert reaped(got[1]) == 70
    assert said == "", said
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("raises")
    # the id is free: created by a class whose __init__ does not fail
    assert ForksAndReaps.get_or_create("raises").value.run() == 7


@vc.virtual_actor
class Inner:
    def __init__(self, actor_id: str) -> None:
        CHILD[actor_id] = os.fork()
        self.n = 2

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@vc.virtual_actor
class Outer:
    """Creates another actor, whose ``__init__`` forks, in its own ``__init__``."""

    def __init__(self, inner_id: str) -> None:
        self.inner = Inner.get_or_create(inner_id, inner_id).value.run()

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.inner


def test_an_init_that_creates_an_actor_whose_init_forks_ends_the_child_at_the_inner_init(
    actor_store: StoreSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    def create() -> Any:
        handle = Outer.get_or_create("outer", "inner")
        return ("child", None) if CHILD["inner"] == 0 else ("parent", handle.value.run())

    got, said = run_in_both(create)
    assert got == ("parent", 2)
    assert reaped(CHILD["inner"]) == 70
    assert said == "", said
    assert "the __init__ of actor 'inner' (Inner) forked" in capfd.readouterr().err
    assert Inner.get_or_create("inner", "inner").value.run() == 2


def test_an_init_that_forks_on_a_pool_thread_and_raises_leaves_the_id_free(
    store_spec: StoreSpec,
) -> None:
    store_spec.init(settings=vc.Settings(wait_for_init=False))
    try:
        handle = ForksThenRaises.get_or_create("raises-pool", "raises-pool")
        # (the creation's ValueError if it is still pending; once settled, it is forgotten)
        with pytest.raises((ValueError, vc.ActorNotFoundError)):
            handle.ready().result(HANG)
        assert reaped(CHILD["raises-pool"]) == 70
        with pytest.raises(vc.ActorNotFoundError):
            vc.get_actor("raises-pool")
        again = ForksAndReaps.get_or_create("raises-pool")
        again.ready().result(HANG)
        assert again.value.run() == 7
    finally:
        vc.shutdown()

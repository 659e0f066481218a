"""Review h146: ``handle.cancel_timer(key)`` and ``handle.timers()`` while this process creates
the actor (``Settings(wait_for_init=False)``), and ``cancel_timer`` from inside the actor."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_init_may_end = threading.Event()


@vc.virtual_actor
class Gated:
    """An ``__init__`` that waits for the test's word, then fails if asked to."""

    def __init__(self, fail: bool = False) -> None:
        assert _init_may_end.wait(30)
        if fail:
            raise ValueError("the creation failed")
        self.rang = 0

    def ring(self) -> None:
        self.rang += 1

    def schedule_and_cancel(self) -> Any:
        self.ring.options(delay=3600, timer_key="t")
        return vc.get_actor(self.actor_id).cancel_timer("t")

    @property
    def actor_id(self) -> str:
        return "inside"


def _release_after(seconds: float) -> threading.Timer:
    _init_may_end.clear()
    release = threading.Timer(seconds, _init_may_end.set)
    release.start()
    return release


def test_cancel_timer_raises_the_failure_of_the_pending_creation(actor_store: StoreSpec) -> None:
    retune(wait_for_init=False)
    release = _release_after(0.3)
    try:
        handle = Gated.get_or_create("fails", True)
        assert vc.get_runtime().creating("fails") is not None
        with pytest.raises(ValueError, match="the creation failed"):
            handle.cancel_timer("t")
    finally:
        release.cancel()
        _init_may_end.set()
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("fails")


def test_timers_during_the_pending_creation_is_a_read_before_init(actor_store: StoreSpec) -> None:
    """A read-only call made while this process creates the actor raises
    ``VirtualActorNotInitializedError`` (docs/migrating-from-ray.md): ``timers()`` reads too."""
    retune(wait_for_init=False)
    _init_may_end.clear()
    try:
        handle = Gated.get_or_create("pending")
        assert vc.get_runtime().creating("pending") is not None
        with pytest.raises(vc.VirtualActorNotInitializedError):
            handle.timers()
    finally:
        _init_may_end.set()
    handle.ready().result(30)
    assert handle.timers() == []

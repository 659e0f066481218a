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

    def schedule(self) -> None:
        vc.current_call().schedule("ring", after=3600, key="t")

    def cancel_through_a_handle(self, actor_id: str, key: str) -> Any:
        return vc.get_actor(actor_id).cancel_timer(key)

    @vc.virtual_actor.readonly
    def cancel_while_reading(self, actor_id: str, key: str) -> Any:
        return vc.get_actor(actor_id).cancel_timer(key)


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


@pytest.mark.parametrize("key", ["t", "none-such"])
def test_cancel_timer_through_a_handle_inside_a_writer_of_the_actor_is_refused(
    actor_store: StoreSpec, key: str
) -> None:
    """No deadlock: the cancel would wait for the writer it runs in (``current_call().cancel_timer``
    is the way there); inside a read-only method it commits as from outside."""
    _init_may_end.set()
    handle = Gated.get_or_create("inside")
    handle.schedule.run()
    with pytest.raises(vc.ReentrantCallError, match="call cycle inside -> inside"):
        handle.cancel_through_a_handle.run_async("inside", key).result(20)
    assert [t["key"] for t in handle.timers()] == ["t"]
    assert handle.cancel_while_reading.run_async("inside", key).result(20) is (key == "t")
    assert [t["key"] for t in handle.timers()] == ([] if key == "t" else ["t"])


@vc.virtual_actor
class CancelsInInit:
    def __init__(self, actor_id: str) -> None:
        try:
            self.got = repr(vc.get_actor(actor_id).cancel_timer("t"))
        except Exception as exc:
            self.got = type(exc).__name__

    @vc.virtual_actor.readonly
    def value(self) -> str:
        return self.got


@pytest.mark.parametrize(
    ("wait_for_init", "error"), [(True, "ActorNotFoundError"), (False, "ReentrantCallError")]
)
def test_cancel_timer_of_the_actor_in_its_own_init_fails_as_a_writer_call_there(
    actor_store: StoreSpec, wait_for_init: bool, error: str
) -> None:
    """As ``handle.method.run()`` there: no actor yet (waiting for the creation), or a creation
    on this very thread (``wait_for_init=False``) that it would wait for, for good."""
    retune(wait_for_init=wait_for_init)
    handle = CancelsInInit.get_or_create("in-init", "in-init")
    handle.ready().result(20)
    assert handle.value.run() == error


def test_cancel_timer_waiting_for_a_creation_while_the_runtime_shuts_down(
    actor_store: StoreSpec,
) -> None:
    """The creation ends after the shutdown began: the cancel, behind it, reads the store before
    the runtime stopped (no timer: False) or says the runtime shut down; it does not hang."""
    retune(wait_for_init=False)
    _init_may_end.clear()
    got: list[Any] = []
    handle = Gated.get_or_create("shut")

    def cancel() -> None:
        try:
            got.append(handle.cancel_timer("t"))
        except BaseException as exc:
            got.append(exc)

    canceller = threading.Thread(target=cancel)
    canceller.start()
    release = threading.Timer(0.3, _init_may_end.set)
    release.start()
    try:
        vc.shutdown()
    finally:
        _init_may_end.set()
        canceller.join(20)
    assert not canceller.is_alive()
    assert len(got) == 1 and (got[0] is False or isinstance(got[0], vc.RuntimeShutdownError)), got


@pytest.mark.parametrize("read", ["history", "state_at"])
def test_history_and_state_at_during_the_pending_creation_are_reads_before_init(
    actor_store: StoreSpec, read: str
) -> None:
    """As ``timers()`` and a read-only call: no committed step yet, and one is coming."""
    retune(wait_for_init=False)
    _init_may_end.clear()
    try:
        handle = Gated.get_or_create("pending-read")
        assert vc.get_runtime().creating("pending-read") is not None
        with pytest.raises(vc.VirtualActorNotInitializedError):
            handle.history() if read == "history" else handle.state_at(0)
    finally:
        _init_may_end.set()
    handle.ready().result(30)
    assert len(handle.history()) == 1 and handle.state_at(0).rang == 0


def test_a_background_creation_that_fails_with_nobody_waiting_is_logged(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``wait_for_init=False`` an ``__init__`` exception reaches the calls made while the
    creation is pending; one that fails before any is made (or with none made) reached nobody:
    every later call finds no actor (``ActorNotFoundError``), and the reason was said nowhere."""
    retune(wait_for_init=False)
    _init_may_end.set()
    with caplog.at_level("WARNING", logger="vactor_cloud"):
        Gated.get_or_create("unheard", True)
        vc.get_runtime().wait_created("unheard")
    said = [r.getMessage() for r in caplog.records if "unheard" in r.getMessage()]
    assert len(said) == 1, said
    assert "ValueError: the creation failed" in said[0], said

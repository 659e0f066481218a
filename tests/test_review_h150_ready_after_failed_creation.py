"""Review h150: ``handle.ready()`` and writer calls against a creation that ran in the background
(``Settings(wait_for_init=False)``) and failed. Whatever the order of the failure being recorded
and the check, they raise the creation's exception: never ``ActorNotFoundError`` (which says
nothing of why), never ready, never a hang. The orders are forced by holding the check back
(a stand-in ``spawn``) or by settling the creation between a call's look and its queueing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.core import ActorCore
from vactor_cloud.creation import Creation
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class FailsToInit:
    def __init__(self, fail: bool = True) -> None:
        if fail:
            raise ValueError("the creation failed")
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def _hold_spawned(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, count: int) -> list[Callable[[], None]]:
    """The next ``count`` tasks this runtime spawns are kept (in the list returned), not run."""
    held: list[Callable[[], None]] = []
    spawn_for_real = runtime.spawn

    def spawn(fn: Callable[[], None], on_shutdown: Any = None, *, read: bool = False) -> None:
        if len(held) < count:
            held.append(fn)
        else:
            spawn_for_real(fn, on_shutdown, read=read)

    monkeypatch.setattr(runtime, "spawn", spawn)
    return held


def test_ready_asked_while_the_creation_runs_raises_its_failure_recorded_before_the_check(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 2)
    FailsToInit.get_or_create("a")
    assert runtime.creating("a") is not None
    ready = vc.get_actor("a").ready()  # (a handle that did not start the creation)
    start_creation, check = held
    start_creation()  # the creation fails, and its failure is recorded in full ...
    assert runtime.wait_created("a") is None  # (... gone: nothing pending to wait for)
    check()  # ... before ready()'s check runs
    with pytest.raises(ValueError, match="the creation failed"):
        ready.result(timeout=10)


def test_ready_on_the_handle_of_a_failed_creation_raises_its_failure_every_time(
    actor_store: StoreSpec,
) -> None:
    retune(wait_for_init=False)
    handle = FailsToInit.get_or_create("b")
    runtime = vc.get_runtime()
    runtime.wait_created("b")  # the background creation has failed and been recorded
    assert runtime.creating("b") is None
    for _ in range(2):
        with pytest.raises(ValueError, match="the creation failed"):
            vc.get(handle.ready(), timeout=10)


def test_a_writer_call_made_while_the_creation_runs_raises_its_failure_settled_before_queueing(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 1)
    handle = FailsToInit.get_or_create("c")
    (start_creation,) = held
    defer = Creation.defer

    def failing_then_defer(creation: Creation, fn: Any) -> Any:
        start_creation()  # the creation fails between the call's look and its queueing
        return defer(creation, fn)

    monkeypatch.setattr(Creation, "defer", failing_then_defer)
    with pytest.raises(ValueError, match="the creation failed"):
        vc.get(handle.add.run_async(1), timeout=10)


def test_a_creation_that_succeeds_still_reports_ready(actor_store: StoreSpec) -> None:
    retune(wait_for_init=False)
    handle = FailsToInit.get_or_create("d", False)
    vc.get(handle.ready(), timeout=10)
    vc.get(handle.ready(), timeout=10)
    assert handle.add.run(2) == 2


#: what ``ready()`` of its own actor raised in ``ReadyInInit.__init__``
SAID_IN_INIT: list[BaseException] = []


@vc.virtual_actor
class ReadyInInit:
    def __init__(self, actor_id: str) -> None:
        try:
            vc.get(vc.get_actor(actor_id).ready(), timeout=5)
        except Exception as exc:
            SAID_IN_INIT.append(exc)
        self.n = 0

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


def test_ready_of_its_own_actor_in_a_background_init_is_refused_at_once(actor_store: StoreSpec) -> None:
    """Asked in the ``__init__`` of the creation (on a pool thread), ``ready()``'s check ran on
    another pool thread, waiting for the creation, which waited for it: a timeout (waited for
    without one, the waiter helped only if it claimed the check first: else a hang)."""
    retune(wait_for_init=False)
    SAID_IN_INIT.clear()
    handle = ReadyInInit.get_or_create("self-ready", "self-ready")
    vc.get(handle.ready(), timeout=30)
    assert [type(e) for e in SAID_IN_INIT] == [vc.ReentrantCallError], SAID_IN_INIT
    assert handle.value.run() == 0


def test_a_run_made_while_the_creation_runs_raises_its_failure_recorded_in_full_after_its_look(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run()`` looked for the pending creation twice: to pick its future, then to queue the
    call. Failed and unlisted in between, the second look found none and the call met no
    actor (``ActorNotFoundError``)."""
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 1)
    add = FailsToInit.get_or_create("e").add  # (the handle's look for the method, before)
    (start_creation,) = held
    looked = runtime.creating

    def failing_after_the_first_look(actor_id: str) -> Any:
        creation = looked(actor_id)
        if creation is not None:
            start_creation()  # fails and is recorded in full (unlisted) right after this look
        return creation

    monkeypatch.setattr(runtime, "creating", failing_after_the_first_look)
    with pytest.raises(ValueError, match="the creation failed"):
        add.run(1)


def test_an_interrupt_while_the_creation_hands_over_its_queued_calls_leaves_none_waiting(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A creation that settles hands each call queued behind it to the actor, then says it is
    done. An interrupt (Ctrl-C) taken in one hand-over, on the thread that ran the creation,
    stopped it there: the calls after it were never handed over, the creation never said done,
    and every wait for it (their callers, ``ready()``, a delete) hung for good."""
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 1)
    handle = FailsToInit.get_or_create("f", False)
    (start_creation,) = held
    first, second = handle.add.run_async(1), handle.add.run_async(2)
    submit = ActorCore.submit
    interrupts = [KeyboardInterrupt()]

    def submit_then_interrupted(core: ActorCore, call: Any) -> None:
        submit(core, call)
        if interrupts:
            raise interrupts.pop()  # (taken just after the first call was handed over)

    monkeypatch.setattr(ActorCore, "submit", submit_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        start_creation()
    monkeypatch.setattr(ActorCore, "submit", submit)
    assert vc.get([first, second], timeout=10) == [1, 3]
    vc.get(handle.ready(), timeout=10)


def test_ready_on_the_handle_of_a_failed_creation_resolves_once_the_actor_was_created_since(
    actor_store: StoreSpec,
) -> None:
    """The failure is why there is no actor; once one was created under the id (a later
    ``get_or_create`` here, or another process), ``ready()`` says what is true: it is ready."""
    retune(wait_for_init=False)
    failed = FailsToInit.get_or_create("h")
    with pytest.raises(ValueError, match="the creation failed"):
        vc.get(failed.ready(), timeout=10)
    retune(wait_for_init=True)
    FailsToInit.get_or_create("h", False)
    vc.get(failed.ready(), timeout=10)
    assert failed.add.run(1) == 1

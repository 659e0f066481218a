"""Deleting an actor (``vc.delete_actor``) under faults: a caller that gives up (a cancelled
``delete_actor_async``, Ctrl-C), requests whose answers are lost, a stalled endpoint, and a
deleting process killed at each point of the delete.

Each test attacks one promise: a delete reports what happened (True, False, or an error that
says it may have committed and what to do), ends by its deadline, writes one tombstone, gives
back a folder lease it took over, and a delete its caller gave up on writes nothing after."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from interrupts import Interrupted

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.deletion import is_deleted
from vactor_cloud.log import StepRecord
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    yield store_spec
    vc.shutdown()


def init(spec: StoreSpec, **settings: Any) -> Runtime:
    spec.init(settings=vc.Settings(storage="", **settings))
    return vc.get_runtime()


def other_process(spec: StoreSpec, **settings: Any) -> Runtime:
    """Another process on the same store (a runtime of its own)."""
    return Runtime(Settings(storage=spec.url, storage_options=spec.options, **settings))


def tombstones(runtime: Runtime, actor_id: str) -> list[int]:
    log = runtime.log(actor_id)
    found = []
    for step in _sync.sync(log.list_steps()):
        record = _sync.sync(log.read_step(step))
        if record is not None and is_deleted(record):
            found.append(step)
    return found


def newest(runtime: Runtime, actor_id: str) -> StepRecord:
    record = _sync.sync(runtime.log(actor_id).load_latest(None))
    assert record is not None
    return record


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(60), f"{what} never happened"


# -- a caller that gives up ---------------------------------------------------------------------
def test_a_cancelled_delete_actor_async_writes_no_tombstone_after_its_cancel(spec: StoreSpec) -> None:
    """The awaiting task cancels ``delete_actor_async`` while its tombstone put is held: the
    delete stops there. It went on on a thread of its own, its put landed after the caller
    had heard "cancelled", and the actor the caller went on using was deleted under it."""
    runtime = init(spec)
    store = HoldOne(runtime.store, "put", "/steps/")
    runtime.store = store
    Tally.get_or_create("tally-1").add.run("a")
    store.hold()

    async def cancel_it() -> None:
        task = asyncio.ensure_future(vc.delete_actor_async("tally-1"))
        held = await asyncio.to_thread(store.held.wait, 60)
        assert held, "the tombstone put was never sent"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.release.set()  # the caller heard "cancelled": the endpoint answers again

    asyncio.run(cancel_it())
    wait_for(store.ended, "the end of the hold")
    vc.shutdown()  # (waits for what still runs: a delete that went on after its cancel)
    observer = other_process(spec)
    try:
        assert tombstones(observer, "tally-1") == [], "the cancelled delete committed after its cancel"
        assert observer.log("tally-1") is not None
    finally:
        observer.close()
    init(spec)
    assert Tally.get_or_create("tally-1").add.run("b") == 2


def test_ctrl_c_during_delete_actor_reaches_the_caller_and_writes_nothing(
    spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """Ctrl-C while the tombstone put is held: the interrupt reaches the caller at once, the
    put is never sent (the delete stops with its caller), and a second delete deletes."""
    runtime = init(spec)
    store = HoldOne(runtime.store, "put", "/steps/")
    runtime.store = store
    Tally.get_or_create("tally-2").add.run("a")
    store.hold()
    ctrl_c(store.held)
    with pytest.raises(Interrupted):
        vc.delete_actor("tally-2")
    wait_for(store.ended, "the end of the hold (cancelled with the delete)")
    assert not store.release.is_set()
    assert tombstones(runtime, "tally-2") == []
    assert Tally.get_or_create("tally-2").add.run("b") == 2
    assert vc.delete_actor("tally-2") is True
    assert vc.delete_actor("tally-2") is False
    assert len(tombstones(runtime, "tally-2")) == 1


def test_delete_actor_async_deletes_and_then_says_deleted_already(spec: StoreSpec) -> None:
    init(spec)
    Tally.get_or_create("tally-3").add.run("a")

    async def twice() -> tuple[bool, bool]:
        return await vc.delete_actor_async("tally-3"), await vc.delete_actor_async("tally-3")

    assert asyncio.run(twice()) == (True, False)
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("tally-3")

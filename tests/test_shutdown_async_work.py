"""``vc.shutdown()`` and the work the async twins run on the IO loop.

``close`` promises that once it returns the runtime makes no storage request, and that what
runs is waited for (up to its timeout, then cut off). The async twins (``compact_async``,
``send_event_async``, ``delete_actor_async``) ran as tasks only the loop knew, and the
clean-up a delete leaves running after its commit (the lease release, the posts' deletes,
HEAD, the failed-call records) likewise: shutdown returned under them, and they went on
against a store it had closed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import RuntimeShutdownError
from vactor_cloud.keys import inbox_prefix
from vactor_cloud.testing.faults import FaultConfig, FaultyStore, HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int) -> int:
        self.n += by
        return self.n


def held_runtime(spec: StoreSpec, actor_id: str, operation: str, fragment: str, **settings: Any) -> HoldOne:
    """A fresh runtime on ``spec`` whose next ``operation`` on a key with ``fragment`` waits
    (60 s at most) for its ``release``; ``actor_id`` created with 2 steps before it."""
    init(spec)
    handle = Counter.get_or_create(actor_id)
    handle.add.run(1)
    vc.shutdown()
    runtime = init(spec, **settings)
    store = HoldOne(runtime.store, operation, fragment, timeout=60.0)
    runtime.store = store
    store.hold()
    return store


class InThread:
    """``make()``'s coroutine run by ``asyncio.run`` on a thread of its own (a user's loop)."""

    def __init__(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self.thread.start()

    def _run(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            self.result = asyncio.run(make())
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the async call never ended"


def shutdown_waits_for(store: HoldOne) -> list[str]:
    """Shut down while ``store`` holds a request; release it after 2 s (or once shutdown has
    returned, if sooner): the order in which the two happened."""
    order: list[str] = []

    def close() -> None:
        vc.shutdown()
        order.append("shutdown returned")

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(2.0)  # (a shutdown that does not wait returns long before)
    order.append("released")
    store.release.set()
    closer.join(60)
    assert not closer.is_alive(), "shutdown never returned"
    return order


ASYNC_TWINS: dict[str, tuple[str, str, Callable[[str], Coroutine[Any, Any, Any]]]] = {
    "compact_async": ("get", "/HEAD", lambda a: vc.ActorHandle(a).compact_async(keep_last=1)),
    "send_event_async": ("put", "/inbox/", lambda a: vc.events.send_event_async(a, "ping", 1)),
    "delete_actor_async": ("put", "/steps/", vc.delete_actor_async),
}


@pytest.mark.parametrize("twin", list(ASYNC_TWINS))
def test_shutdown_waits_for_an_async_twin_in_flight(spec: StoreSpec, twin: str) -> None:
    """An async twin's request is held when ``vc.shutdown()`` starts: shutdown returns after
    the twin has ended, and the twin succeeded. It returned at once, and the twin's request
    went on against the closed store."""
    operation, fragment, make = ASYNC_TWINS[twin]
    actor_id = f"twin-{twin}"
    store = held_runtime(spec, actor_id, operation, fragment)
    call = InThread(lambda: make(actor_id))
    assert store.held.wait(60), f"{twin} never sent its {operation} of {fragment}"
    assert shutdown_waits_for(store) == ["released", "shutdown returned"]
    call.join()
    assert call.error is None, f"{twin} failed: {call.error!r}"


def test_an_async_twin_past_the_shutdown_timeout_fails_with_runtime_shutdown_error(spec: StoreSpec) -> None:
    """Past ``close(timeout)`` the twin still held is cut off as a blocking call is: its caller
    hears ``RuntimeShutdownError`` (not a ``CancelledError`` it never asked for, not a hang),
    and its held request is never applied."""
    actor_id = "twin-cut"
    store = held_runtime(spec, actor_id, "put", "/inbox/")
    runtime = vc.get_runtime()
    call = InThread(lambda: vc.events.send_event_async(actor_id, "ping", 1))
    assert store.held.wait(60), "the event's put was never sent"
    runtime.close(timeout=0.5)
    call.join()
    assert isinstance(call.error, RuntimeShutdownError), repr(call.error)
    assert store.ended.wait(60)
    vc.shutdown()
    fresh = init(spec)
    assert _sync.sync(fresh.store.list(inbox_prefix(actor_id))) == [], "the cut-off event was stored"


def test_shutdown_waits_for_a_delete_clean_up_left_running(spec: StoreSpec) -> None:
    """The clean-up after a delete's commit stalls (its listing of the failed-call records) past
    the share of ``Settings.deadline`` the delete waits for it: the delete says True, and the
    clean-up goes on by itself. ``vc.shutdown()`` then waits for it; it returned under it."""
    # 3 s, not 1: under load (the clean-clone check beside other work, load average 12) the
    # moto lane's delete took more than 1 s for its own requests and failed with the
    # deadline's error before its clean-up was reached (as its sibling below did)
    store = held_runtime(spec, "cleanup-1", "list", "/tasks/", deadline=3.0)
    assert vc.delete_actor("cleanup-1") is True
    assert store.held.is_set(), "the clean-up never listed the failed-call records"
    assert shutdown_waits_for(store) == ["released", "shutdown returned"]
    assert store.ended.is_set()


class ExitsIn(FaultyStore):
    """``raising`` comes out of the first ``operation`` on a key containing ``fragment``."""

    def __init__(self, inner: Any, operation: str, fragment: str, raising: BaseException) -> None:
        super().__init__(inner, FaultConfig())
        self.operation, self.fragment, self.raising = operation, fragment, raising
        self.raised = False

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if not self.raised and operation == self.operation and self.fragment in key:
            self.raised = True
            raise self.raising
        return await run()


@pytest.mark.parametrize(
    "interrupt", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"]
)
def test_an_exit_raised_in_a_delete_clean_up_reaches_the_caller(
    spec: StoreSpec, interrupt: BaseException
) -> None:
    """A store raises ``SystemExit`` (or ``KeyboardInterrupt``) in the clean-up after the
    tombstone: it reaches ``delete_actor``'s caller (the delete committed), and the process's
    IO loop goes on serving calls. It was swallowed: the delete said True."""
    init(spec)
    Counter.get_or_create("cleanup-2").add.run(1)
    vc.shutdown()
    runtime = init(spec)
    store = ExitsIn(runtime.store, "list", "/tasks/", interrupt)
    runtime.store = store
    with pytest.raises(type(interrupt)):
        vc.delete_actor("cleanup-2")
    assert store.raised
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("cleanup-2")
    assert Counter.get_or_create("cleanup-3").add.run(2) == 2
    assert vc.delete_actor("cleanup-2") is False


def test_work_handed_to_a_stopped_runtime_is_refused_and_never_runs(spec: StoreSpec) -> None:
    """A coroutine handed to ``Runtime.bounded`` after the runtime stopped (an async twin that
    got the runtime just before another thread shut it down) is refused with
    ``RuntimeShutdownError`` and never runs: it went on against the closed store."""
    runtime = init(spec)
    runtime.close()
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    with pytest.raises(RuntimeShutdownError, match="shut down"):
        _sync.sync(runtime.bounded(work()))
    assert ran == []


def test_a_clean_up_handed_over_after_the_runtime_stopped_is_cancelled(spec: StoreSpec) -> None:
    """Work close cut off past its timeout may still hand a clean-up to ``Runtime.keep`` as it
    ends: the runtime has stopped, so the clean-up is cancelled at once. It was kept and ran
    on, against a closed store, with nothing left to wait for or cancel it."""
    runtime = init(spec)
    runtime.close()
    started = threading.Event()

    async def clean_up() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def hand_over() -> asyncio.Task[None]:
        task = asyncio.ensure_future(clean_up())
        runtime.keep(task)
        await asyncio.wait({task}, timeout=5.0)
        return task

    task = _sync.sync(hand_over())
    assert task.cancelled(), "the clean-up kept running after the runtime had stopped"
    assert not started.is_set()


def test_a_delete_finding_the_actor_deleted_already_says_false_though_its_clean_up_stalls(
    spec: StoreSpec,
) -> None:
    """A second delete finds the tombstone and deletes the failed-call records left; its listing
    stalls. It said ``StorageTimeoutError`` ("call delete_actor again"), for a delete that had
    nothing to do; it now says False by its deadline, the clean-up going on by itself (and
    shutdown waiting for it)."""
    store = held_runtime(spec, "cleanup-4", "list", "/tasks/")
    store.hold(skip=1)  # (the first delete's own clean-up lists once: not that one)
    assert vc.delete_actor("cleanup-4") is True
    vc.shutdown()
    # (3 s: the delete's own requests took more than 1 s on a loaded CI moto lane, and the
    # delete then failed with the deadline's error before its clean-up was reached)
    runtime = init(spec, deadline=3.0)
    store = HoldOne(runtime.store, "list", "/tasks/", timeout=60.0)
    runtime.store = store
    store.hold()
    assert vc.delete_actor("cleanup-4") is False
    assert store.held.is_set(), "the second delete never listed the failed calls"
    assert shutdown_waits_for(store) == ["released", "shutdown returned"]

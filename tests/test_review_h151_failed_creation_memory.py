"""Review h151: what a failed background creation's ``ready()`` leaves held once the handle is gone.

h150 made ``handle.ready()`` load the actor first and raise the creation's failure in place of
``ActorNotFoundError``. The load's failure is kept by the actor's core (``_load_failed``, the
answer for callers queued behind that load) for as long as the core stays cached: with its
traceback, which holds ``ready()``'s check frame, whose locals hold the handle, the creation and
its failure, whose traceback holds the frames of ``__init__`` and the arguments it was given.
Dropping the handle freed none of it. The core now keeps a failed load only while a caller
waits for it. (Under pytest the warning that the creation failed, its record kept by the log
capture, held the failure too: it now carries the failure's text.)"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from garbage import full_collection
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.core import ActorCore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: a weak reference to each argument an ``__init__`` below was given
_GIVEN: list[weakref.ref[object]] = []


class Blob:
    """An argument: a large one, in a real program."""

    def __init__(self) -> None:
        self.data = bytearray(1000)


@vc.virtual_actor
class RefusesItsArgument:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        raise ValueError("the creation failed")

    def touch(self) -> None:
        pass


def test_the_arguments_of_a_failed_creation_are_freed_once_its_handle_is_dropped(
    actor_store: StoreSpec,
) -> None:
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesItsArgument.get_or_create("held", Blob())
    with pytest.raises(ValueError, match="the creation failed"):
        handle.ready().result(30)
    with pytest.raises(ValueError, match="the creation failed"):
        handle.ready().result(30)  # (a second time: the failed load met again)
    assert len(_GIVEN) == 1
    del handle
    full_collection()
    assert _GIVEN[0]() is None, "the failed creation's argument is still held"


@pytest.mark.usefixtures("runtime_off")
def test_ready_on_a_handle_whose_creation_failed_on_another_store_says_there_is_no_actor() -> None:
    """A handle's failed creation speaks for the store it ran on: after ``init`` of another
    store, which has no such actor, ``ready()`` raised that creation's failure (before) where
    the store in use has no actor at all."""
    vc.init(settings=vc.Settings(storage="memory://h151-first", wait_for_init=False))
    try:
        handle = RefusesItsArgument.get_or_create("moved", Blob())
        with pytest.raises(ValueError, match="the creation failed"):
            handle.ready().result(30)
    finally:
        vc.shutdown()
    vc.init(settings=vc.Settings(storage="memory://h151-second", wait_for_init=False))
    try:
        with pytest.raises(vc.ActorNotFoundError):
            handle.ready().result(30)
    finally:
        vc.shutdown()


@vc.virtual_actor
class Appends:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, k: int) -> list[int]:
        self.seen.append(k)
        return list(self.seen)

    @vc.virtual_actor.readonly
    def order(self) -> list[int]:
        return self.seen


@pytest.mark.parametrize("way", ["run_async", "run"])
def test_a_call_made_while_the_creation_hands_over_its_queued_calls_applies_after_them(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """One thread's calls apply in its order. Calls made while a background creation was pending
    are queued behind it, and handed over to the actor as it settles; a call made once it had
    settled, while the hand-over went on, saw no creation pending (``creating()``: settled) and
    went to the actor at once, ahead of the calls still being handed over (before: [4, 1, 2,
    3])."""
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held: list[Callable[[], None]] = []
    spawn_for_real = runtime.spawn

    def spawn(fn: Callable[[], None], on_shutdown: Any = None, *, read: bool = False) -> None:
        if not held:
            held.append(fn)  # (the creation: started below, on a thread of the test's)
        else:
            spawn_for_real(fn, on_shutdown, read=read)

    monkeypatch.setattr(runtime, "spawn", spawn)
    handle = Appends.get_or_create("ordered")
    queued = [handle.add.run_async(k) for k in (1, 2, 3)]
    handing_over, sent = threading.Event(), threading.Event()
    submit_for_real = ActorCore.submit
    creation_thread: list[int] = []
    caller = threading.get_ident()

    def submit(core: ActorCore, call: Any) -> None:
        if threading.get_ident() in creation_thread and not handing_over.is_set():
            handing_over.set()  # (the first queued call's hand-over: the creation has settled)
            # until the later call was sent to the actor, or waits in Creation.defer
            deadline = time.monotonic() + 30
            while not sent.is_set() and not _waits_in(caller, "defer") and time.monotonic() < deadline:
                time.sleep(0.01)
        submit_for_real(core, call)
        if threading.get_ident() == caller:
            sent.set()

    call_for_real = ActorCore.call

    def call_here(core: ActorCore, call: Any) -> None:
        sent.set()  # (the caller's: the creation's thread hands over with submit)
        call_for_real(core, call)

    monkeypatch.setattr(ActorCore, "submit", submit)
    monkeypatch.setattr(ActorCore, "call", call_here)

    def create() -> None:
        creation_thread.append(threading.get_ident())
        held[0]()

    creating = threading.Thread(target=create)
    creating.start()
    assert handing_over.wait(30), "the creation did not hand its queued calls over"
    if way == "run_async":
        handle.add.run_async(4).result(30)  # (made after the three, by the same thread)
    else:
        handle.add.run(4)
    creating.join(30)
    for future in queued:
        future.result(30)
    assert handle.order.run() == [1, 2, 3, 4]


def _waits_in(thread: int, function: str) -> bool:
    """Whether ``thread`` is inside a call of a function named ``function`` now."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


@vc.virtual_actor
class FailsWithACause:
    def __init__(self) -> None:
        try:
            {}["setting"]
        except KeyError as exc:
            raise ValueError("the creation failed") from exc

    def touch(self) -> None:
        pass


def test_ready_raises_a_failed_creations_exception_with_its_cause(actor_store: StoreSpec) -> None:
    """``ready()`` raised the creation's exception ``from None`` (in place of the load's
    ``ActorNotFoundError``): that set the shared exception's ``__cause__`` to None, so its own
    cause (the ``KeyError`` ``__init__`` raised it from) was gone from it, for ``ready()`` and
    for every call failed with it."""
    retune(wait_for_init=False)
    handle = FailsWithACause.get_or_create("caused")
    for _ in range(2):
        with pytest.raises(ValueError, match="the creation failed") as raised:
            handle.ready().result(30)
        assert isinstance(raised.value.__cause__, KeyError), repr(raised.value.__cause__)

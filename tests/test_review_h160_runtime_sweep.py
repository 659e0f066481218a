"""Review h160: a mutation sweep of the runtime (``runtime.py``, ``runtime_scope.py``,
``fork_guard.py``, ``guarded_executor.py``).

TABLE
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator

import pytest
from garbage import full_collection
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.errors import RuntimeShutdownError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: the longest a wait for what must happen lasts before it is called a hang
HANG = 20.0

#: what a shutdown logs when it stopped waiting for work still running
WAITED = "shutdown waited"

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


@vc.virtual_actor
class Swept:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def stop_runtime(self) -> int:
        vc.shutdown()
        self.n += 1
        return self.n

    def hold(self) -> int:
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        ENTERED[actor_id].set()
        assert GATES[actor_id].wait(HANG), "the test never released the writer"
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n


@pytest.fixture
def store(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()


def test_shutdown_from_inside_a_method_does_not_wait_for_that_method(
    store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutation: ``_Work._others`` counted the calling thread's own work (``ident != me``
    dropped): ``shutdown()`` in a method waited its whole 30 s for the method it runs in, then
    logged it as work left running. It returns at once; the call is refused, not applied."""
    actor = Swept.get_or_create("inside")
    actor.add.run(5)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        with pytest.raises(RuntimeShutdownError, match="was not applied"):
            actor.stop_runtime.run()
    assert not [r for r in caplog.records if WAITED in r.getMessage()]
    assert vc.get_actor("inside").get.run() == 5


def test_a_shutdown_on_another_thread_returns_once_the_running_method_ends(store: StoreSpec) -> None:
    """Mutation: ``_Work.end`` no longer woke a waiting shutdown (``if self._waiting`` false):
    a shutdown off the main thread (no slices) waited out its whole timeout after the method it
    waited for had ended. It returns once that method's call has committed."""
    actor = Swept.get_or_create("held")
    GATES["held"], ENTERED["held"] = threading.Event(), threading.Event()
    future = actor.hold.run_async()
    assert ENTERED["held"].wait(HANG)
    runtime = runtime_module.get_runtime()
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": 60.0}, daemon=True)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "the shutdown did not wait for the running method"
    GATES["held"].set()
    assert vc.get(future, timeout=HANG) == 1
    closer.join(HANG)
    assert not closer.is_alive(), "hang: the shutdown did not return once the method ended"


# -- a failed background creation keeps none of its arguments -----------------------------------
_GIVEN: list[weakref.ref[object]] = []


class Blob:
    def __init__(self) -> None:
        self.data = bytearray(1000)


def _check(blob: Blob) -> None:
    raise ValueError(f"refused a blob of {len(blob.data)} bytes")


@vc.virtual_actor
class RefusesInAHandler:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        try:
            _check(blob)
        except ValueError:
            # (raised in the handler: the ValueError, whose traceback holds ``_check``'s frame,
            # is its ``__context__`` alone)
            raise RuntimeError("the creation failed")  # noqa: B904

    def touch(self) -> None:
        pass


def test_a_failed_creation_raised_while_handling_another_holds_not_its_arguments(
    actor_store: StoreSpec,
) -> None:
    """Mutation: ``_forget_locals`` followed ``__cause__`` only, not ``__context__``: the frame
    of ``_check``, in the traceback of the exception being handled when ``__init__`` raised,
    kept the argument alive for as long as the handle (``ready()`` raises the failure)."""
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesInAHandler.get_or_create("handled", Blob())
    with pytest.raises(RuntimeError, match="the creation failed") as first:
        handle.ready().result(HANG)
    assert isinstance(first.value.__context__, ValueError)
    del first
    full_collection()
    assert len(_GIVEN) == 1
    assert _GIVEN[0]() is None, "the exception the failure was raised in handling holds the argument"


# -- the actor cache ------------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_actor_running_a_method_stays_in_the_cache_while_others_fill_it(store_spec: StoreSpec) -> None:
    """Mutation: ``_evict`` dropped busy actors too (``core.idle`` not asked): the actor whose
    method runs left the cache, its bytes no longer counted against ``max_cache_bytes`` while
    its state stayed in memory. An actor in use is never evicted; idle ones go first."""
    store_spec.init(settings=vc.Settings(max_cached_actors=2))
    held = Swept.get_or_create("busy")
    GATES["busy"], ENTERED["busy"] = threading.Event(), threading.Event()
    future = held.hold.run_async()
    try:
        assert ENTERED["busy"].wait(HANG)
        runtime = runtime_module.get_runtime()
        busy = runtime.core("busy")
        for i in range(4):
            Swept.get_or_create(f"idle-{i}").add.run(1)
        assert runtime.in_cache(busy), "the actor running a method was evicted"
        assert runtime.cached()[0] <= 2 + 1  # (the busy one may stand above the bound, alone)
    finally:
        GATES["busy"].set()
    assert vc.get(future, timeout=HANG) == 1
    assert held.get.run() == 1


@pytest.mark.usefixtures("runtime_off")
def test_an_actor_growing_past_the_cache_bytes_evicts_idle_ones_at_once(store_spec: StoreSpec) -> None:
    """Mutation: ``weigh`` no longer evicted when an actor's new weight took the cache past
    ``max_cache_bytes`` (only a new actor's arrival did): a process calling one actor whose
    state grew held every idle actor it had cached, past its bound, for good."""
    store_spec.init(settings=vc.Settings(max_cache_bytes=200_000))
    for i in range(4):  # (about 40 kB cached each: the state, and the step it was read from)
        Grows.get_or_create(f"small-{i}").grow.run(20_000)
    runtime = runtime_module.get_runtime()
    assert runtime.cached()[0] == 4
    grower = Grows.get_or_create("grower")
    grower.grow.run(60_000)  # (about 120 kB: past the bound with the four idle ones)
    assert runtime.cached()[1] <= 200_000, runtime.cached()
    assert grower.size.run() == 60_000


@vc.virtual_actor
class Grows:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def grow(self, size: int) -> None:
        self.blobs.append(b"x" * size)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return sum(len(b) for b in self.blobs)


@pytest.mark.usefixtures("runtime_off")
def test_the_cache_evicts_the_least_recently_called_actor_not_the_first_loaded(store_spec: StoreSpec) -> None:
    """Mutation: ``core()`` no longer moved an actor it found to the end of the cache's order
    (``move_to_end`` dropped): the cache evicted the actor loaded first, however often it was
    called since (its state reloaded from the store at its next call), not the idle one."""
    store_spec.init(settings=vc.Settings(max_cached_actors=3))
    for name in ("first", "second", "third"):
        Swept.get_or_create(name).add.run(1)
    Swept.get_or_create("first").add.run(1)  # the first is now the most recently called
    runtime = runtime_module.get_runtime()
    first = runtime.core("first")
    Swept.get_or_create("fourth").add.run(1)
    assert runtime.in_cache(first), "the most recently called actor was evicted"
    assert runtime.cached()[0] == 3
    assert vc.get_actor("second").get.run() == 1  # (evicted: its next call reloads it)

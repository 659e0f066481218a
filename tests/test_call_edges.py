"""Edges of the call path: what the runtime promises where a call meets something unusual.

Pins: a writer cycle through another actor (A -> B -> A) fails at once with
``ReentrantCallError`` instead of hanging; ``await`` on a call that raised
``StopIteration`` delivers the failure; ``vc.get`` refuses what is not a
future with a clear ``TypeError``; a call queued at shutdown is settled;
an actor method named like a handle helper is refused at definition;
``__init__`` arguments are passed by value (as method arguments are); a
module global that a method reads (a secret, a lock) is not written into the
stored class body; ``get_or_create`` of another class on an existing actor
is refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


@vc.virtual_actor
class Acct:
    def __init__(self) -> None:
        self.val = 0

    def incr(self, by: int = 1) -> int:
        self.val += by
        return self.val

    def hold(self) -> None:
        # Looked up through sys.modules: the gates (events) are this process's own objects.
        here = sys.modules[__name__]
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        here.ENTERED[actor_id].set()
        assert here.GATES[actor_id].wait(30), "the test never released the writer"
        self.val += 1

    def call_other(self, other: str, back: str) -> int:
        self.val += 1
        return int(vc.get_actor(other).call_back.run(back))

    def call_back(self, back: str) -> int:
        self.val += 1
        return int(vc.get_actor(back).incr.run(1))

    def call_other_reading(self, other: str, back: str) -> int:
        self.val += 1
        return int(vc.get_actor(other).read_back.run(back))

    @vc.virtual_actor.readonly
    def read_back(self, back: str) -> int:
        return int(vc.get_actor(back).incr.run(1))

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.val


def _hold(actor_id: str) -> tuple[vc.ActorFuture[Any], threading.Event]:
    GATES[actor_id] = threading.Event()
    ENTERED[actor_id] = threading.Event()
    held = vc.get_actor(actor_id).hold.run_async()
    assert ENTERED[actor_id].wait(30), "the held writer never started"
    return held, GATES[actor_id]


# -- nested calls ---------------------------------------------------------------------------
def test_a_call_cycle_through_another_actor_does_not_hang(actor_store: StoreSpec) -> None:
    Acct.get_or_create("cycle-a")
    Acct.get_or_create("cycle-b")
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(vc.get_actor("cycle-a").call_other.run("cycle-b", "cycle-a"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "A -> B -> A: the call hangs forever (no error, no deadline)"
    assert len(outcome) == 1 and isinstance(outcome[0], vc.ReentrantCallError), outcome
    assert "cycle-a -> cycle-b -> cycle-a" in str(outcome[0]), outcome[0]
    # Nothing of the failed cycle was applied; both actors still work.
    assert vc.get_actor("cycle-a").value.run() == 0
    assert vc.get_actor("cycle-b").value.run() == 0
    assert vc.get_actor("cycle-a").incr.run(1) == 1


def test_a_cycle_through_a_read_only_method_is_refused(actor_store: StoreSpec) -> None:
    Acct.get_or_create("ro-cycle-a")
    Acct.get_or_create("ro-cycle-b")
    with pytest.raises(vc.ReentrantCallError, match="ro-cycle-a -> ro-cycle-b -> ro-cycle-a"):
        vc.get_actor("ro-cycle-a").call_other_reading.run("ro-cycle-b", "ro-cycle-a")
    assert vc.get_actor("ro-cycle-a").value.run() == 0


def test_a_call_queued_behind_a_stuck_writer_is_withdrawn_not_applied(store_spec: StoreSpec) -> None:
    from vactor_cloud.errors import ActorBusyError

    store_spec.init()
    try:
        Acct.get_or_create("stuck")
        held, gate = _hold("stuck")
        # The 1 s bounds are the queued call's alone (set up and checked under the defaults).
        retune(deadline=1.0, commit_timeout=1.0)
        with pytest.raises(ActorBusyError, match="not applied"):
            vc.get_actor("stuck").incr.run(5)
        retune(deadline=vc.Settings.deadline, commit_timeout=vc.Settings.commit_timeout)
        gate.set()
        held.result(30)
        assert vc.get_actor("stuck").value.run() == 1  # the held writer's own increment only
    finally:
        GATES["stuck"].set()
        vc.shutdown()


# -- asyncio: every exception reaches an awaiting caller ---------------------------------------
@vc.virtual_actor
class Iter:
    def __init__(self) -> None:
        self.val = 0

    def pop(self) -> int:
        self.val += 1
        return next(iter([]))  # an empty iterator: StopIteration, as user code often does

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return next(iter([]))


@pytest.mark.parametrize("method", ["pop", "peek"])
def test_awaiting_a_call_that_raised_stop_iteration_delivers_it(actor_store: StoreSpec, method: str) -> None:
    it = Iter.get_or_create(f"stop-{method}")

    async def main() -> BaseException | None:
        try:
            await asyncio.wait_for(getattr(it, method).run_async(), 10)
        except TimeoutError:
            return None
        except BaseException as exc:  # whatever it is, the caller heard of the failure
            return exc
        return None

    got = asyncio.run(main())
    assert got is not None, "await on the call's future hangs: the exception never reaches the caller"
    assert isinstance(got.__cause__, StopIteration), repr(got)
    # .result() still raises the StopIteration itself.
    with pytest.raises(StopIteration):
        getattr(it, method).run_async().result(10)


@pytest.mark.parametrize("bad", [5, [1], "abc", None])
def test_get_refuses_what_is_not_a_future_naming_what_it_accepts(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"vc\.get\(\) takes a future .* or a list of futures"):
        vc.get(bad)


# -- shutdown with calls in flight -----------------------------------------------------------
def test_a_call_in_flight_at_shutdown_is_settled(store_spec: StoreSpec) -> None:
    store_spec.init(settings=vc.Settings(max_workers=1))
    try:
        Acct.get_or_create("inflight-a")
        Acct.get_or_create("inflight-b")
        _held, gate = _hold("inflight-a")  # the only pool thread
        queued = vc.get_actor("inflight-b").incr.run_async(1)  # its pool task waits
        stopping = threading.Thread(target=vc.shutdown)  # (it waits for the running call)
        stopping.start()
        done, _ = concurrent.futures.wait([queued], timeout=10)
        gate.set()
        stopping.join(60)
        assert done, "a run_async future pending at shutdown is never settled"
        with pytest.raises(vc.VactorError, match="shut down"):
            queued.result(0)
        assert not stopping.is_alive()
    finally:
        GATES["inflight-a"].set()
        vc.shutdown()


# -- actor methods with the names of handle helpers ---------------------------------------------
def test_an_actor_method_named_like_a_handle_helper_is_callable_or_refused(actor_store: StoreSpec) -> None:
    try:

        @vc.virtual_actor
        class Chat:
            def __init__(self) -> None:
                self.lines: list[str] = []

            def say(self, line: str) -> None:
                self.lines.append(line)

            @vc.virtual_actor.readonly
            def history(self) -> list[str]:
                return list(self.lines)

    except vc.ActorDefinitionError as exc:
        assert "history" in str(exc) and "rename" in str(exc)
        return  # refused at definition, with an error saying why: fine
    chat = Chat.get_or_create("room")
    chat.say.run("hi")
    assert chat.history.run() == ["hi"]  # AttributeError: the handle's own history() answers


def test_the_reserved_method_names_are_the_handles_public_attributes() -> None:
    from vactor_cloud.definition import RESERVED_METHOD_NAMES

    public = {name for name in dir(vc.ActorHandle) if not name.startswith("_")}
    assert public == set(RESERVED_METHOD_NAMES)
    for name in sorted(public):
        with pytest.raises(vc.ActorDefinitionError, match=name):
            vc.virtual_actor(type("Shadowed", (), {name: lambda self: None}))


# -- __init__ arguments by value ------------------------------------------------------------
@vc.virtual_actor
class Bag:
    def __init__(self, items: list[Any]) -> None:
        self.items = items
        items.append("added by __init__")

    @vc.virtual_actor.readonly
    def contents(self) -> list[Any]:
        return self.items


def test_init_mutating_its_argument_does_not_change_the_callers_object(actor_store: StoreSpec) -> None:
    mine = ["a"]
    Bag.get_or_create("bag-init", mine)
    assert mine == ["a"], "__init__ changed the caller's list: constructor arguments are not copied"


def test_mutating_an_init_argument_after_a_non_waiting_get_or_create_does_not_reach_storage(
    store_spec: StoreSpec,
) -> None:
    store_spec.init(settings=vc.Settings(max_workers=1, wait_for_init=False))
    try:
        Acct.get_or_create("bag-busy")
        held, gate = _hold("bag-busy")  # the only pool thread: the creation waits for it
        mine = ["a"]
        bag = Bag.get_or_create("bag-nowait", mine)
        mine.clear()
        mine.append("changed after the call")
        gate.set()
        held.result(30)
        bag.ready().result(30)
        assert bag.contents.run() == ["a", "added by __init__"]
    finally:
        GATES["bag-busy"].set()
        vc.shutdown()


def test_an_init_argument_that_cannot_be_copied_is_refused_at_the_call_site(actor_store: StoreSpec) -> None:
    with pytest.raises(TypeError, match="argument"):
        Bag.get_or_create("bag-lock", [threading.Lock()])
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("bag-lock")


# -- the stored class body and the module's globals ----------------------------------------
_API_TOKEN = "sk-live-" + "5e1f0c2a9b7d4e33"  # e.g. read from the environment at import time
_LEDGER_LOCK = threading.Lock()


@vc.virtual_actor
class Billing:
    def __init__(self) -> None:
        self.charged = 0

    def charge(self, amount: int) -> str:
        self.charged += amount
        return f"Bearer {_API_TOKEN}"[:7]


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        with _LEDGER_LOCK:  # a module-level lock (or client, connection pool ...)
            self.total += amount
        return self.total


def test_a_module_global_a_method_reads_is_not_written_to_storage(actor_store: StoreSpec) -> None:
    from vactor_cloud import _sync

    Billing.get_or_create("billing").charge.run(5)
    store = vc.get_runtime().store
    keys = _sync.sync(store.list("actors/billing/"))
    assert keys
    leaked = [k for k in keys if _API_TOKEN.encode() in _sync.sync(store.get(k)).data]
    assert not leaked, f"the module's secret is stored in {leaked}"


def test_an_actor_whose_method_uses_a_module_level_lock_can_be_created(actor_store: StoreSpec) -> None:
    assert Ledger.get_or_create("ledger").add.run(5) == 5


# -- get_or_create of another class on an existing actor --------------------------------------
@vc.virtual_actor
class Other:
    def __init__(self) -> None:
        self.val = 100

    def incr(self, by: int = 1) -> int:
        self.val += by
        return self.val


@pytest.mark.parametrize("wait_for_init", [True, False])
def test_get_or_create_with_another_class_on_an_existing_actor_is_refused(
    store_spec: StoreSpec, wait_for_init: bool
) -> None:
    store_spec.init(settings=vc.Settings(wait_for_init=wait_for_init))
    try:
        Acct.get_or_create("owned").ready().result(30)
        with pytest.raises(vc.ActorDefinitionError) as refused:
            Other.get_or_create("owned")
        message = str(refused.value)
        assert Acct.name in message and Other.name in message and "get_actor" in message
        # The actor is untouched and still runs its own class's methods.
        assert vc.get_actor("owned").incr.run(1) == 1
        assert vc.get_actor("owned").value.run() == 1
        # The same class attaches as before.
        assert Acct.get_or_create("owned").incr.run(1) == 2
    finally:
        vc.shutdown()

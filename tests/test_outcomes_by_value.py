"""Call outcomes by value: what a call returns or raises reaches its own caller, alone.

Pins that an exception which cannot be pickled, or pickles but cannot be unpickled (or whose
repr raises), reaches its caller and never poisons the idempotency table or fails batch-mates
(a retry gets a ``RecordedError`` naming it); that a table already holding such a row is still
read; that a result which cannot be unpickled fails only its own call; that every caller (two
callers of one key, a retry served from a cached checkpoint) gets its own copy of a result; and
that async methods run when called from a thread that runs an event loop.
"""

from __future__ import annotations

import asyncio
import copyreg
import sys
import threading
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.dedup import RecordedError
from vactor_cloud.testing.lanes import StoreSpec

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


class TwoArgError(Exception):
    """The classic exception that pickles but cannot be unpickled (``__init__`` takes two args)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@pytest.fixture(autouse=True)
def _exceptions_pickle_as_python_does() -> None:
    """tblib (which Dask's distributed installs in a process that ran a Dask test) registers
    a reducer for every exception class then defined, which makes TwoArgError round-trip:
    these tests are about exceptions pickled as Python pickles them."""
    copyreg.dispatch_table.pop(TwoArgError, None)


class Unloadable:
    """An object that pickles, but whose unpickling fails."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise ValueError("this object cannot be rebuilt")


class BadReprError(Exception):
    """An exception whose ``repr`` raises (history lines and json tables use it)."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class LockedError(Exception):
    """An exception carrying an unpicklable attribute."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


@vc.virtual_actor
class Acct:
    def __init__(self) -> None:
        self.val = 0
        self.items: list[Any] = []

    def incr(self, by: int = 1) -> int:
        self.val += by
        return self.val

    def add(self, item: Any) -> list[Any]:
        self.items.append(item)
        return list(self.items)

    def big(self, n: int) -> list[str]:
        self.val += 1
        return [f"{i:04d}" * 25 for i in range(n)]  # distinct strings: > 2 KB pickled

    def raise_two_arg(self) -> None:
        self.val += 1000
        raise TwoArgError(7, "declined")

    def raise_locked(self) -> None:
        self.val += 1000
        raise LockedError("locked")

    def raise_bad_repr(self) -> None:
        self.val += 1000
        raise BadReprError("hidden")

    def return_unloadable(self) -> Any:
        self.val += 1000
        return Unloadable()

    def hold(self) -> None:
        # Looked up through sys.modules: the class body is pickled by value, with the globals
        # its methods name; the gates (events) must not be among them.
        here = sys.modules[__name__]
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        here.ENTERED[actor_id].set()
        assert here.GATES[actor_id].wait(30), "the test never released the writer"
        self.val += 1

    async def aincr(self, by: int) -> int:
        await asyncio.sleep(0)
        self.val += by
        return self.val

    async def acall(self) -> str:
        await asyncio.sleep(0)
        self.val += 1
        call = vc.current_call()
        return f"{call.actor_id}.{call.method}" if call is not None else "no call"

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.val

    @vc.virtual_actor.readonly
    async def avalue(self) -> int:
        await asyncio.sleep(0)
        return self.val


@vc.virtual_actor(serializer="json")
class JsonAcct:
    def __init__(self) -> None:
        self.val = 0

    def incr(self, by: int = 1) -> int:
        self.val += by
        return self.val

    def raise_bad_repr(self) -> None:
        self.val += 1000
        raise BadReprError("hidden")

    def hold(self) -> None:  # as Acct.hold
        here = sys.modules[__name__]
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        here.ENTERED[actor_id].set()
        assert here.GATES[actor_id].wait(30), "the test never released the writer"
        self.val += 1

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.val


def _hold(actor_id: str) -> tuple[vc.ActorFuture[Any], threading.Event]:
    """Start a writer of ``actor_id`` that waits on the returned gate: later calls queue up
    behind it and are applied together, as one batch, once the gate is set."""
    GATES[actor_id] = threading.Event()
    ENTERED[actor_id] = threading.Event()
    held = vc.get_actor(actor_id).hold.run_async()
    assert ENTERED[actor_id].wait(30), "the held writer never started"
    return held, GATES[actor_id]


def _fresh_process(spec: StoreSpec) -> None:
    """What a new process sees: a new runtime on the same store (no cached steps or tables)."""
    vc.shutdown()
    spec.init()


# -- exceptions that cannot be unpickled / pickled -------------------------------------------
def test_a_keyed_call_raising_an_unloadable_exception_poisons_every_later_keyed_call(
    actor_store: StoreSpec,
) -> None:
    a = Acct.get_or_create("poison-exc")
    with pytest.raises(TwoArgError):
        a.raise_two_arg.options(idempotency_key="k-bad").run()
    _fresh_process(actor_store)
    a = vc.get_actor("poison-exc")
    # A different key, on the same actor, from a fresh process: must simply apply.
    assert a.incr.options(idempotency_key="k-good").run(5) == 5


def test_a_retry_of_an_unloadable_exception_raises_a_stand_in_naming_it(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("poison-exc-retry")
    with pytest.raises(TwoArgError):
        a.raise_two_arg.options(idempotency_key="k-bad").run()
    _fresh_process(actor_store)
    a = vc.get_actor("poison-exc-retry")
    with pytest.raises(RecordedError) as info:
        a.raise_two_arg.options(idempotency_key="k-bad").run()
    assert info.value.type_name.endswith("TwoArgError")
    assert "declined" in str(info.value)
    assert a.value.run() == 0  # not run again, and the raising call changed nothing


def test_a_keyed_call_raising_an_unpicklable_exception_gets_its_own_exception(
    actor_store: StoreSpec,
) -> None:
    a = Acct.get_or_create("locked-exc")
    with pytest.raises(LockedError):
        a.raise_locked.options(idempotency_key="k-locked").run()
    assert a.value.run() == 0


def test_an_unpicklable_exception_of_one_keyed_call_does_not_fail_its_batch_mates(
    actor_store: StoreSpec,
) -> None:
    a = Acct.get_or_create("locked-mates")
    held, gate = _hold("locked-mates")
    bad = a.raise_locked.options(idempotency_key="k-locked").run_async()
    good = a.incr.run_async(1)
    gate.set()
    held.result(30)
    assert good.result(30) == 2  # the held writer added 1
    with pytest.raises(LockedError):
        bad.result(30)


def test_an_unloadable_result_of_one_call_does_not_fail_its_batch_mates(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("unloadable-mates")
    held, gate = _hold("unloadable-mates")
    bad = a.return_unloadable.run_async()
    good = a.incr.run_async(1)
    gate.set()
    held.result(30)
    bad.exception(30)
    assert good.result(30) == 2  # the held writer added 1; the bad call changed nothing


def test_a_retry_of_an_unpicklable_exception_raises_a_stand_in_naming_it(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("locked-exc-retry")
    with pytest.raises(LockedError):
        a.raise_locked.options(idempotency_key="k-locked").run()
    for fresh in (False, True):
        if fresh:
            _fresh_process(actor_store)
            a = vc.get_actor("locked-exc-retry")
        with pytest.raises(RecordedError) as info:
            a.raise_locked.options(idempotency_key="k-locked").run()
        assert info.value.type_name.endswith("LockedError")
        assert "locked" in str(info.value)
    assert a.value.run() == 0


def test_a_keyed_result_that_cannot_be_read_back_fails_its_call_alone(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("unloadable-keyed")
    with pytest.raises(TypeError, match="reading it back fails"):
        a.return_unloadable.options(idempotency_key="k-unloadable").run()
    _fresh_process(actor_store)
    a = vc.get_actor("unloadable-keyed")
    assert a.incr.options(idempotency_key="k-next").run(2) == 2  # the table stays readable
    with pytest.raises(TypeError, match="reading it back fails"):  # recorded: not run again
        a.return_unloadable.options(idempotency_key="k-unloadable").run()
    assert a.value.run() == 2


@pytest.mark.parametrize("cls", [Acct, JsonAcct], ids=["pickle", "json"])
def test_an_exception_whose_repr_raises_reaches_its_caller_and_spares_its_batch_mates(
    actor_store: StoreSpec, cls: Any
) -> None:
    actor_id = f"bad-repr-{cls.__name__}"
    a = cls.get_or_create(actor_id)
    held, gate = _hold(actor_id)
    bad = a.raise_bad_repr.options(idempotency_key="k-bad-repr").run_async()
    good = a.incr.run_async(1)
    gate.set()
    held.result(30)
    assert good.result(30) == 2  # the held writer added 1
    with pytest.raises(BadReprError):
        bad.result(30)
    with pytest.raises((BadReprError, RecordedError)):  # a retry re-raises what was recorded
        a.raise_bad_repr.options(idempotency_key="k-bad-repr").run()
    assert a.value.run() == 2


# -- results by value between callers -----------------------------------------------------
def test_two_callers_with_one_key_in_one_batch_do_not_share_the_result_object(
    actor_store: StoreSpec,
) -> None:
    a = Acct.get_or_create("shared-key-batch")
    held, gate = _hold("shared-key-batch")
    first = a.add.options(idempotency_key="k").run_async("x")
    retry = a.add.options(idempotency_key="k").run_async("x")
    gate.set()
    held.result(30)
    one, two = first.result(30), retry.result(30)
    assert one == two == ["x"]
    one.append("first caller's own")
    assert two == ["x"], "the retry's result is the first caller's list"


def test_mutating_a_keyed_result_does_not_change_what_a_retry_returns(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("shared-key-checkpoint")
    got = a.big.options(idempotency_key="k-big").run(40)  # > 2 KB: the commit writes a checkpoint
    assert len(got) == 40
    got.clear()  # the caller owns its copy
    again = a.big.options(idempotency_key="k-big").run(40)
    assert len(again) == 40, "a retry returned the first caller's mutated list"


def test_each_wait_for_one_future_gets_its_own_copy_of_the_result(actor_store: StoreSpec) -> None:
    # As ``ray.get`` of one reference twice: two waiters (threads of a program, or one caller
    # that reads the result again) never share the list, whichever of them reads first.
    a = Acct.get_or_create("one-future-two-waits")
    future = a.add.run_async("x")
    first = vc.get(future)
    first.append("the first waiter's own")
    assert vc.get(future) == ["x"], "a second wait got the first waiter's mutated list"
    assert future.result() == ["x"]
    assert future.result() is not future.result()


def test_a_done_callback_and_the_caller_do_not_share_the_result(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("callback-and-caller")
    seen: list[list[Any]] = []
    done = threading.Event()

    def mutate(f: Any) -> None:
        got = f.result()
        got.append("the callback's own")
        seen.append(got)
        done.set()

    future = a.add.run_async("y")
    future.add_done_callback(mutate)
    got = future.result(30)
    assert done.wait(30)
    assert got == ["y"] or seen[0] == ["y"], "the callback and the caller shared one list"
    assert future.result() == ["y"]


def test_an_awaited_future_and_a_later_result_do_not_share_the_result(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("awaited-then-result")
    future = a.add.run_async("z")

    async def main() -> list[Any]:
        return await future

    awaited = asyncio.run(main())
    awaited.append("the coroutine's own")
    assert future.result() == ["z"], "result() after an await got the awaiter's mutated list"


# -- asyncio -------------------------------------------------------------------------------
def test_an_async_writer_method_runs_when_called_from_inside_an_event_loop(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("async-in-loop")

    async def main() -> int:
        return int(a.aincr.run(3))

    assert asyncio.run(main()) == 3


def test_an_async_readonly_method_runs_when_called_from_inside_an_event_loop(
    actor_store: StoreSpec,
) -> None:
    a = Acct.get_or_create("async-ro-in-loop")
    a.incr.run(4)

    async def main() -> int:
        return int(a.avalue.run())

    assert asyncio.run(main()) == 4


def test_an_async_method_called_from_inside_an_event_loop_sees_its_call(actor_store: StoreSpec) -> None:
    a = Acct.get_or_create("async-context-in-loop")

    async def main() -> str:
        return str(a.acall.run())

    assert asyncio.run(main()) == "async-context-in-loop.acall"
    assert a.acall.run() == "async-context-in-loop.acall"  # and from plain code, as before

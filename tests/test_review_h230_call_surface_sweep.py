"""Review h230: a mutation sweep of the call surface (``handle.py``, ``future.py``, ``byvalue.py``).

137 hand-made mutations, one at a time, each run against the tests that cover what it changes
(memory and local lanes, ``-x``, at most 400 s a run). "survived": no test there failed; "h230":
a test here kills it (each checked by applying its mutation again). "(300 s)": a mutation that
hangs, killed only at that test's own bound. One survivor's test showed a defect, fixed: see
below the table.

==== ======================================================== ======== ====================================
id   mutation                                                 survived killed by / why
==== ======================================================== ======== ====================================
B01  _atomic: a list taken for an atom (shared)               no       outcomes_by_value
B02  _atomic: everything atomic (no copies)                   no       outcomes_by_value
B03  freeze_arguments keeps the caller's kwargs dict          yes      equivalent (below)
B04  thaw_arguments: atomic kwargs dict shared by attempts    yes      equivalent (below)
B05  _dumps: only TypeError falls back to cloudpickle         no       h209_read_result_copy
B06  _dumps raises ValueError                                 no       h135_future_copies
B07  thaw catches TypeError only                              no       outcomes_by_value
B08  thaw_arguments catches TypeError only                    yes      h230 (argument not read back)
B09  freeze_arguments: keyword arguments not looked into      yes      h230 (keyword list)
B10  _atomic: a tuple's items not looked into                 no       call_edges
B11  freeze: the call's name dropped from the error           yes      h230 (result names its call)
B12  thaw: the call's name dropped from the error             yes      h230 (result names its call)
B13  bytearray taken for an atom (shared)                     yes      h230 (bytearray argument)
F01  a bounded wait runs the call itself                      no       h138_execution_model
F02  a bounded wait on a read starts no thread of its own     yes      h230 (bounded wait, full read pool)
F03  _wait_helping on the IO loop                             yes      not reachable (below)
F04  a callback not run in its registrant's context           no       callback_context
F05  callbacks always run on the settling thread              no       h138_execution_model
F06  moved callbacks also run on the settling thread (twice)  no       callback_context
F07  result(): one plain wait (no slices on the main thread)  yes      h230 (signal on the main thread)
F08  result() not by value                                    no       h209_read_result_copy
F09  copies_from on a settled future                          yes      equivalent (below)
F10  pristine matched by equality                             yes      h230 (result without equality)
F11  catch_exceptions pair not held as its pickle             no       h141_future_memory
F12  set_exception keeps the pristine result                  yes      h230 (failed future, no result)
F13  a caught exception copied by value                       yes      h230 (caught exception, every read)
F14  later reads of an unpickled result share the object      no       h135_future_copies
F15  every read gets the object itself                        no       h135_future_copies
F16  a copy that cannot be read back raises                   no       h135_future_copies
F17  the pair lost                                            no       h135_future_copies
F18  read-only and writer messages swapped                    no       h143_future_reads
F19  exception() does not help (caller runs)                  no       user_edges
F20  a cancelled await does not cancel the call               no       h230 (below)
F21  StopIteration through an await                           yes      h230 (awaited StopIteration)
F22  await of a cancelled future: concurrent CancelledError   yes      h230 (await of a cancelled future)
F23  await of a read does not run it on the loop's executor   yes      h230 (awaited read, full read pool)
F24  await in an async method does not help                   yes      h230 (await in an async method)
F25  a settled future refused in a forked child               yes      h230 (settled before a fork)
F26  _wake of a cancelled waiter                              yes      h230 (cancelled await)
F27  helping error not logged                                 yes      not reached (below)
F28  CallFuture cancels a running call                        no       call_future
F29  CallFuture.set_result skips callbacks                    no       call_future
F30  CallFuture wait: no TimeoutError                         no       call_future
F31  CallFuture.result of a cancelled one                     no       call_future
F32  CallFuture callback on a done future not run             no       call_future
F33  CallFuture set_exception twice                           yes      h230 (second outcome)
F34  vc.get of a str/dict                                     yes      h230 (mapping of futures)
F35  vc.get: each future gets the whole timeout               yes      h230 (what is left of the timeout)
F36  _waited_plain: a timed-out wait waits again              yes      h230 (plain future timed out)
F37  _run_callbacks: a SystemExit ends the thread             no       h138_execution_model
F38  _run_callbacks stops at the first raising callback       no       h138_execution_model
F39  a callback not inside the settling read                  yes      equivalent in reach (below)
F40  _actor_held always False                                 no       h138_execution_model
F41  CallFuture.result swallows the exception                 no       call_future
F42  CallFuture set_exception does not wake the waiter        no       user_edges
F43  vc.get timeout count wrong                               yes      h230 (how many did not finish)
F44  ActorFuture pickling message                             no       callers
H01  _refuse without claim                                    yes      h230 (shutdown, read a waiter runs)
H02  a cancelled read's future keeps _help                    yes      h230 (cancelled reads' memory)
H03  a cancelled read's task keeps its call                   yes      h230 (cancelled reads' memory)
H04  _read_waiting without WaitingInsideWriter                yes      equivalent (below)
H05  _read_waiting not work of the runtime                    yes      not killed (below)
H06  _too_deep never                                          no       hangs
H07  _help_after_creation: an interrupted wait not withdrawn  yes      h230 (interrupted behind a creation)
H08  unpickled handle without origin                          yes      h230 (store of a handle of no class)
H09  StorageNotChosenError never                              no       loose_ends
H10  origin kept after first use                              yes      h230 (store after first use)
H11  superseded definition kept                               yes      h230 (class defined again)
H12  a private name looked up (I/O)                           yes      h230 (private name, no I/O)
H13  a handle's class ignored                                 no       pickled_handles
H14  the handle's own class not preferred                     yes      equivalent (below)
H15  ready() in own __init__                                  no       h150_ready_after_failed_creation
H16  ready() check runs twice                                 no       wait_for_init
H17  ready(): creation failure not given                      no       h150_ready_after_failed_creation
H18  ready(): the handle's own creation not asked             no       h150_ready_after_failed_creation
H19  _creation_on: other store's creation                     yes      h230 (ready after another store)
H20  ready(): waiter does not check                           yes      h230 (waiter runs ready's check)
H21  ready(): shutdown not claimed                            yes      h230 (shutdown, ready check)
H22  call_outcome returns the Outcome                         no       outcome_lookup
H23  history() before init                                    no       h146_cancel_in_creation
H24  state_at() before init                                   no       h146_cancel_in_creation
H25  compact ignores min_age                                  no       compaction
H26  compact_async ignores min_age                            no       compaction
H27  __copy__ drops the creation                              no       h230 (copy after a new runtime)
H28  __reduce__: received origin not passed on                no       loose_ends
H29  __reduce__ drops the class                               no       pickled_handles
H30  __eq__ by identity                                       yes      h230 (equal handles)
H31  __hash__ by identity                                     yes      h230 (equal handles)
H32  send_event: serializer dropped                           yes      h230 (event serializer)
H33  wait_for_event: no deadline                              no       events (300 s); h230
H34  chained options drop the key                             yes      h230 (chained options)
H35  chained options drop catch_exceptions                    yes      h230 (chained options)
H36  a key on a read-only method accepted                     yes      h230 (options refused)
H37  max_retries=-1 accepted                                  yes      h230 (options refused)
H38  max_retries=True accepted                                yes      h230 (options refused)
H39  both delay= and at= accepted                             yes      h230 (options refused)
H40  a timer of a read-only method                            yes      h230 (options refused)
H41  max_retries with a timer accepted                        no       timers
H42  chained options drop the timer's time                    no       api
H43  catch_exceptions ignored                                 no       h135_future_copies
H44  a non-str name accepted                                  yes      h230 (options refused)
H45  unrecordable name/metadata accepted                      yes      h230 (options refused)
H46  run() on the IO loop                                     yes      h230 (run on the IO loop)
H47  run(): read behind a settled creation refused            yes      not killed (below)
H48  run() in a method without WaitingInsideWriter            no       call_edges
H49  _run: note dropped                                       yes      h230 (interrupted as queued)
H50  run(): reads go through the writer queue                 no       api
H51  run_async: note on an Exception too                      yes      not reached (below)
H52  run_async: interrupted call not withdrawn                yes      h230 (interrupted as queued)
H53  run_async read: _read_only not set                       yes      h230 (bounded wait, full read pool)
H54  run_async reads go through the writer queue              no       reads_beside_writes
H55  run_async writer: waiter does not help                   no       user_edges
H56  a read's enclosing read dropped                          no       reads_beside_writes
H57  a read spawned on the writers' pool                      no       reads_beside_writes
H58  a writer after a settled creation goes ahead             yes      h230 (hand-over order)
H59  read behind a creation never settled                     no       wait_for_init (300 s)
H60  a call behind a failed creation never settled            no       h150 ready tests (300 s)
H61  submit failure double-settles                            yes      not killed (below)
H62  _make_call depth check dropped                           no       hangs
H63  a method's own at_step keyword eaten                     no       history
H64  a method schedules its own actor through a handle        no       api
H65  a read of a step refused in its writer                   no       at_step_reads
H66  keyed call id random                                     yes      h230 (a keyed call's id)
H67  an at_step call not read-only                            yes      equivalent (below)
H68  a call not made for its class                            no       pickled_handles
H69  _as_its_class: class change ignored                      yes      h230 (stand-in given at_step)
H70  _as_its_class: at_step not checked                       yes      h230 (stand-in given at_step)
H71  reentrancy never refused                                 no       call_edges
H72  a queued cycle call refused                              no       user_edges
H73  a read of own actor through a handle let through         no       at_step_reads
H74  a pickled method loses its options                       yes      h230 (pickled options)
H75  a pickled method loses its timer                         yes      h230 (pickled timer)
H76  a pickled method loses its class                         no       pickled_handles
H77  unpickled method looks up its info each use              yes      equivalent (below)
H78  _not_a_method says nothing                               no       actor_class_attributes
H79  run() behind a creation with a CallFuture                no       h150 ready tests (300 s); h230
H80  _of_class drops the creation                             no       h230 (copy after a new runtime)
==== ======================================================== ======== ====================================

The defect: a writer method waiting without a timeout (``.result()``, ``vc.get``, ``await``) for
a read-only call of another actor that the read pool runs, which calls the writer's actor back:
no thread can go on, but a wait for a read was no edge of the process's wait-for graph
(``reentrancy.refuse_wait_cycle``), so the call back waited ``max(deadline, commit_timeout)``
(120 s by default) for ``ActorBusyError``, where docs/concepts.md says such a cycle is refused
at once. A writer's wait for a read another thread runs is now such an edge
(``pooled_reads._ReadRun``), and the call closing the cycle is refused with ``ReentrantCallError``
(``test_a_cycle_through_a_read_another_thread_runs_is_refused_at_once``, which also fails with
each of: no edge, the edge never checked, the read's thread not named).

Survivors not killed here:

* B03, B04: every caller of ``freeze_arguments`` passes a dict made for the call (``**kwargs``)
  that nobody keeps; readers of thawed arguments splat them (a new dict), copy them
  (``FreshDefaults.fill``) or only read them.
* F03: only vactor's own code runs on its IO loop (a done callback settled there is moved to a
  thread of its own).
* F09: ``copies_from`` is called by the run of a call it claimed (its future running: neither
  done nor cancellable); folds run posted calls with futures of their own.
* F27: the executor's job raises only if ``_read_waiting`` does, and ``core.read`` settles the
  call's future with any error of the read.
* F39: a read gives its room back before its future settles (``core.read``): a callback
  settled inline runs inside a read only on a thread running a read nested in another, in a
  context its registrant shares.
* H04: the waiter that runs the read holds the writer's actor itself (caller runs): the call
  back is a cycle of one in the wait-for graph, refused at once all the same.
* H05, H47: telling needs a window (shutdown returning while a waiter's read runs; a read made
  while a settled creation hands its calls over); not built.
* H14: the class registered under the handle's class's name is that class or its definition
  again, which runs the actors of that name anyway.
* H51: no ``Exception`` (not an interrupt) is known to leave ``_queue`` once the call started.
* H61: a hand-over interrupted just after ``core.submit``: the call had been applied (or claimed
  by a pool drain) by then in every attempt made.
* H67: ``at_step`` passes ``check_at_step`` for read-only methods only (a stand-in is resolved to
  its class's method first). H77: the same ``MethodInfo``, looked up again at each use.
* F20: the sweep's run failed on a test of another subject (``test_review_main_thread_waits``,
  under load): killed by the test here.

Noticed and left: a failed call's exception (and so its future) holds, through its traceback's
frames, the batch it failed in, the results its method returned included, as long as it is kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import pickle
import sys
import threading
import time
import tracemalloc
import types
import uuid
import weakref
from typing import Any

import pytest
from child_processes import fork_and_report
from garbage import full_collection
from interrupts import Interrupted, InterruptOnce
from store_helpers import retune
from test_combining import wait_for
from test_review_class_identity import _define
from test_review_h135_future_copies import Unloadable
from test_review_h150_ready_after_failed_creation import FailsToInit, _hold_spawned
from test_review_own_runtime_waits import HANG, HELD, _answered, _handler_ran_while_waiting

import vactor_cloud as vc
from vactor_cloud import _sync, pooled_reads, reentrancy, stand_ins
from vactor_cloud import future as future_module
from vactor_cloud import handle as handle_module
from vactor_cloud.core import ActorCore
from vactor_cloud.creation import Creation
from vactor_cloud.future import CallFuture
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")

#: gates of ``Surface.hold_read``: set as it begins, and what lets it end
READING = threading.Event()
LET_GO = threading.Event()

#: gates of ``Surface.hold_second_read``
SECOND_READING = threading.Event()
SECOND_LET_GO = threading.Event()

#: every ``Tracked`` alive (made by the method, or rebuilt from its pickle)
TRACKED: weakref.WeakSet[Any] = weakref.WeakSet()


class Tracked:
    """A result that cannot be recorded as JSON; each copy of it is counted in ``TRACKED``."""

    def __init__(self) -> None:
        TRACKED.add(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tracked, ())


class NoEquality:
    """A result that cannot be compared (as a numpy array cannot be taken for a bool)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of this object is ambiguous")

    __hash__ = object.__hash__


async def _awaited(future: Any) -> Any:
    return await future


@vc.virtual_actor
class Surface:
    def __init__(self) -> None:
        self.n = 0
        self.seen: list[Any] = []

    def keep(self, *items: Any, **named: Any) -> int:
        """Keeps what it was given, then changes what it was given (its own copies)."""
        self.n += 1
        self.seen.append((items, named))
        for value in (*items, *named.values()):
            if isinstance(value, list):
                value.append("the method's")
            elif isinstance(value, bytearray):
                value[0:1] = b"M"
        return self.n

    @vc.virtual_actor.readonly
    def kept(self) -> list[Any]:
        return self.seen

    def unpicklable(self) -> Any:
        self.n += 1
        return threading.Lock()

    def unloadable(self) -> Any:
        self.n += 1
        return Unloadable()

    def incomparable(self) -> NoEquality:
        self.n += 1
        return NoEquality(self.n)

    def fail_with_a_cause(self) -> None:
        self.n += 1
        try:
            raise KeyError("the cause")
        except KeyError as cause:
            raise ValueError("the failure") from cause

    def tracked(self) -> Tracked:
        self.n += 1
        return Tracked()

    def stop_iteration(self) -> None:
        self.n += 1
        raise StopIteration("done")

    def incr(self) -> int:
        self.n += 1
        return self.n

    async def relay(self, other: str) -> int:
        """Awaits a writer of another actor, on the thread this async method runs on."""
        return await Surface.get_or_create(other).incr.run_async()

    def wait_for_a_read_calling_back(self, other: str, how: str) -> Any:
        """A writer waiting (``how``, without a timeout) for a read of ``other`` that calls
        this actor's writer back."""
        me = vc.current_call().actor_id  # type: ignore[union-attr]
        future = Surface.get_or_create(other).call_back.run_async(me)
        if how == "result":
            return future.result()
        if how == "get":
            return vc.get([future])[0]
        return asyncio.run(_awaited(future))

    @vc.virtual_actor.readonly
    def call_back(self, writer: str) -> int:
        return Surface.get_or_create(writer).incr.run()

    @vc.virtual_actor.readonly
    def sized(self, blob: bytes) -> int:
        return len(blob)

    def listed(self) -> list[int]:
        self.n += 1
        return [self.n]

    @vc.virtual_actor.on_event("noted")
    def on_noted(self, payload: Any) -> list[int]:
        self.n += 1
        return sorted(payload)

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n

    @vc.virtual_actor.readonly
    def hold_read(self) -> bool:
        READING.set()
        return LET_GO.wait(HANG)

    def hold_write(self) -> bool:
        READING.set()
        return LET_GO.wait(HANG)

    @vc.virtual_actor.readonly
    def hold_second_read(self) -> bool:
        SECOND_READING.set()
        return SECOND_LET_GO.wait(HANG)

    @vc.virtual_actor.readonly
    def held(self) -> bool:
        """Holds until the signal handler ran (at most ``HELD``): whether it did."""
        return _answered.wait(HELD)


def _pool_held(store_spec: StoreSpec, holder: str, method: str) -> Any:
    """``init`` with pools of one thread, which ``method`` of actor ``holder`` holds until
    ``LET_GO`` (``hold_read``: the read pool's; ``hold_write``: the writers' and the actor):
    its future, once it holds."""
    store_spec.init(settings=vc.Settings(max_workers=1))
    READING.clear()
    LET_GO.clear()
    holding = getattr(Surface.get_or_create(holder), method).run_async()
    assert READING.wait(HANG)
    return holding


# -- by value ---------------------------------------------------------------------------------------
def test_an_argument_that_cannot_be_read_back_fails_with_type_error_and_runs_nothing(
    actor_store: StoreSpec,
) -> None:
    """B08: ``thaw_arguments`` catching ``TypeError`` only. An argument that pickles but whose
    unpickling raises ``ValueError`` reached the method's run as that ``ValueError`` (taken for
    the method's own, and run again by ``max_retries``)."""
    a = Surface.get_or_create("unloadable-argument")
    with pytest.raises(TypeError, match="reading it back fails"):
        a.keep.options(max_retries=2).run(Unloadable())
    assert a.count.run() == 0


def test_a_list_keyword_argument_is_the_methods_own_copy(actor_store: StoreSpec) -> None:
    """B09: ``freeze_arguments`` looking at the positional arguments only: a list passed by
    keyword was handed to the method as it is, and the method's change reached the caller."""
    a = Surface.get_or_create("keyword-list")
    mine = ["the caller's"]
    a.keep.run(items=mine)
    assert mine == ["the caller's"]
    mine.append("later")
    assert a.kept.run() == [((), {"items": ["the caller's", "the method's"]})]


def test_a_bytearray_argument_is_the_methods_own_copy(actor_store: StoreSpec) -> None:
    """B13: a ``bytearray`` taken for an immutable scalar (passed as it is)."""
    a = Surface.get_or_create("bytearray-argument")
    mine = bytearray(b"caller")
    a.keep.run(mine)
    assert mine == bytearray(b"caller")
    assert a.kept.run() == [((bytearray(b"Maller"),), {})]


def test_a_result_that_cannot_be_copied_names_its_call(actor_store: StoreSpec) -> None:
    """B11 and B12: ``freeze`` and ``thaw`` not passing on which call returned the result: a
    caller with many calls in flight could not tell which one failed."""
    a = Surface.get_or_create("uncopiable-results")
    with pytest.raises(TypeError, match=r"the result of unpicklable\(\) of actor 'uncopiable-results'"):
        a.unpicklable.run()
    with pytest.raises(TypeError, match=r"the result of unloadable\(\) of actor 'uncopiable-results'"):
        a.unloadable.run()
    assert a.count.run() == 0  # (each failed alone, not applied)


# -- futures ----------------------------------------------------------------------------------------
def test_a_result_that_cannot_be_compared_settles_its_future(actor_store: StoreSpec) -> None:
    """F10: the future telling the result its run read back by equality, not identity: an
    ``__eq__`` that raises (a numpy array's) failed the settling of every such call."""
    a = Surface.get_or_create("incomparable")
    future = a.incomparable.run_async()
    assert future.result(HANG).n == 1
    assert a.incomparable.run().n == 2


def test_a_caught_exception_that_pickles_is_the_same_exception_at_every_read(actor_store: StoreSpec) -> None:
    """F13: an exception ``catch_exceptions=True`` hands back copied at each read as a result is:
    the second read got a copy, its traceback lost."""
    a = Surface.get_or_create("caught-twice")
    future = a.fail_with_a_cause.options(catch_exceptions=True).run_async()
    value, error = future.result(HANG)
    assert value is None and isinstance(error, ValueError)
    again, error_again = future.result()
    assert again is None and error_again is error
    assert error_again.__traceback__ is not None


def test_a_failed_call_future_holds_no_copy_of_the_result_its_method_returned(store_spec: StoreSpec) -> None:
    """F12: ``set_exception`` keeping the result a run delivered before its call failed (here its
    step's put): the failed future held a copy of a result nobody can read."""
    store_spec.init()
    step_1 = FaultRule(
        "fail_before", retryable=False, key_contains="/steps/00000000000000000001", probability=1
    )
    install(FaultConfig(rules=(step_1,)))
    a = Surface.get_or_create("failed-put")
    future = a.tracked.run_async()
    error = future.exception(HANG)
    assert isinstance(error, vc.StorageError)
    # (its traceback's frames hold the batch, the result too, as any exception's do: let go)
    seen: BaseException | None = error
    while seen is not None:
        seen.__traceback__ = None
        seen = seen.__cause__ or seen.__context__
    del seen, error
    full_collection()
    assert len(TRACKED) == 0, "the failed call's future holds a copy of the result"
    assert future.exception() is not None


def test_an_awaited_stop_iteration_says_what_happened(actor_store: StoreSpec) -> None:
    """F21: without its own translation, PEP 479 still turned the ``StopIteration`` into a
    ``RuntimeError`` (``generator raised StopIteration``), which did not say why."""
    a = Surface.get_or_create("awaited-stop")

    async def wait() -> None:
        await a.stop_iteration.run_async()

    with pytest.raises(RuntimeError, match="cannot be raised through an await") as raised:
        asyncio.run(wait())
    assert isinstance(raised.value.__cause__, StopIteration)


@pytest.mark.parametrize("how", ["result", "await"])
def test_a_wait_for_a_read_does_not_wait_for_the_full_read_pool(store_spec: StoreSpec, how: str) -> None:
    """F02, F23: a bounded ``result(timeout)``, or an ``await``, of a read-only call left it to
    the read pool, which a slow read kept busy: the wait ran into its timeout."""
    holding = _pool_held(store_spec, f"full-read-pool-{how}", "hold_read")
    a = Surface.get_or_create(f"full-read-pool-{how}")
    try:
        future = a.count.run_async()  # (the holding read waits for HANG: these for half)
        if how == "result":
            assert future.result(HANG / 2) == 0
        else:
            assert asyncio.run(asyncio.wait_for(_awaited(future), HANG / 2)) == 0
    finally:
        LET_GO.set()
    assert holding.result(HANG) is True


def test_a_bounded_result_wait_on_the_main_thread_lets_a_signal_handler_run(actor_store: StoreSpec) -> None:
    """F07: ``ActorFuture.result(timeout)`` waiting in the stdlib's one ``Condition.wait``: a
    signal another thread took had its handler run only once the call ended."""
    a = Surface.get_or_create("main-thread-result")
    a.count.run()
    future = a.held.run_async()
    got, seen = _handler_ran_while_waiting("result", lambda: future.result(HANG))
    assert seen == [True]
    assert got is True, "the handler ran only after the call had given up waiting for it"


def test_an_awaited_call_in_an_async_method_on_the_only_pool_thread_is_run_there(
    store_spec: StoreSpec,
) -> None:
    """F24: ``await`` of a writer's future in an async actor method leaving the call to the
    pool: with the method on the pool's only thread, the call queued behind it, never run."""
    store_spec.init(settings=vc.Settings(max_workers=1))
    Surface.get_or_create("awaited-other")
    relay = Surface.get_or_create("awaiting").relay.run_async("awaited-other")
    assert relay.result(HANG) == 1  # (bounded: a writer left to the pool, which runs the relay)


def test_a_future_settled_before_a_fork_is_read_in_the_child(actor_store: StoreSpec) -> None:
    """F25: a forked child's copy of a settled future refused as one still pending (whose
    call is the parent's): its result is there to read, as a copy of its own."""
    a = Surface.get_or_create("settled-before-fork")
    future = a.listed.run_async()
    assert future.result(HANG) == [1]
    assert fork_and_report(lambda: repr(future.result()).encode(), HANG) == b"[1]"
    assert future.result() == [1]


class Clocked(CallFuture[str]):
    """A future whose wait takes ``STEP`` seconds of a fake clock, then finds it settled; the
    timeouts it was given, in ``asked``."""

    STEP = 6.0

    def __init__(self, clock: list[float], asked: list[float | None]) -> None:
        super().__init__()
        self.clock, self.asked = clock, asked
        self.set_result("done")

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.asked.append(timeout)
        self.clock[0] += self.STEP
        return None


def test_vc_get_gives_each_future_what_is_left_of_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """F35: ``vc.get`` giving each future of a list the whole timeout (a list of n waited up to
    n times as long as asked)."""
    clock = [100.0]
    asked: list[float | None] = []
    monkeypatch.setattr(future_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    futures = [Clocked(clock, asked), Clocked(clock, asked)]
    assert vc.get(futures, timeout=10.0) == ["done", "done"]
    assert asked == [10.0, 4.0]


def test_vc_get_of_a_plain_future_that_timed_out_does_not_wait_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """F36: ``_waited_plain`` giving back the whole timeout after the sliced wait ran out: the
    future's own wait then waited as long again."""
    asked: list[float | None] = []

    class Plain(concurrent.futures.Future[int]):
        def exception(self, timeout: float | None = None) -> BaseException | None:
            asked.append(timeout)
            raise concurrent.futures.TimeoutError

    monkeypatch.setattr(future_module, "wait_futures", lambda futures, timeout: False)
    with pytest.raises(TimeoutError, match=r"1 of 1 calls did not finish within 5\.0 s"):
        vc.get([Plain()], timeout=5.0)
    assert asked == [0.0]


def test_vc_get_says_how_many_calls_did_not_finish() -> None:
    """F43: the ``TimeoutError`` counting every future of the list, the finished ones too."""
    finished: CallFuture[int] = CallFuture()
    finished.set_result(1)
    with pytest.raises(TimeoutError, match="1 of 2 calls did not finish within 0 s"):
        vc.get([finished, CallFuture()], timeout=0)


def test_vc_get_refuses_a_mapping_of_futures() -> None:
    """F34: a ``dict`` keyed by futures taken for an iterable of them (its keys' results)."""
    future: CallFuture[int] = CallFuture()
    future.set_result(1)
    with pytest.raises(TypeError, match="got dict"):
        vc.get({future: "label"})  # type: ignore[call-overload]


def test_a_settled_call_future_refuses_a_second_outcome() -> None:
    """F33: ``CallFuture.set_exception`` on a settled future replacing its outcome (as the
    stdlib's refuses with ``InvalidStateError``)."""
    future: CallFuture[int] = CallFuture()
    future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_exception(ValueError("late"))
    assert future.result() == 1


# -- handles and options -----------------------------------------------------------------------------
def _refused_options(a: Any) -> list[tuple[str, Any, type[Exception], str]]:
    """(mutation, what the options call is, the error, its message) of ``options`` refusals."""
    return [
        ("H36", lambda: a.count.options(idempotency_key="k"), ValueError, "idempotency keys apply"),
        ("H37", lambda: a.incr.options(max_retries=-1), ValueError, "max_retries must be"),
        ("H38", lambda: a.incr.options(max_retries=True), ValueError, "max_retries must be"),
        ("H39", lambda: a.incr.options(delay=5, at=1e10), ValueError, "exactly one of delay"),
        ("H40", lambda: a.count.options(delay=5), ValueError, "timers call writer methods"),
        ("H41", lambda: a.incr.options(delay=5, max_retries=1), ValueError, "max_retries cannot be given"),
        ("H44", lambda: a.incr.options(name=7), TypeError, "name must be a string"),
        ("H45", lambda: a.incr.options(metadata={"x": object()}), TypeError, "metadata"),
    ]


def test_options_refuse_what_cannot_apply(actor_store: StoreSpec) -> None:
    """H36-H41, H44, H45: each check of ``options`` dropped or loosened (a key on a read, a
    negative or boolean ``max_retries``, both times of a timer, a read-only timer, a timer's
    option it would fire without, a name not a string, metadata no commit can hold)."""
    a = Surface.get_or_create("refused-options")
    for mutation, make, error, message in _refused_options(a):
        with pytest.raises(error, match=message):
            make()
            pytest.fail(f"{mutation}: accepted")
    assert a.count.run() == 0


def test_chained_options_keep_the_earlier_key_and_catch(actor_store: StoreSpec) -> None:
    """H34, H35: ``options`` not starting from the earlier options: a key given first, then a
    name, was lost (the second call ran the method again); so was ``catch_exceptions``."""
    a = Surface.get_or_create("chained-options")
    keyed = a.incr.options(idempotency_key="once").options(name="named")
    assert keyed.run() == 1
    assert keyed.run() == 1
    caught = a.fail_with_a_cause.options(catch_exceptions=True).options(name="named")
    value, error = caught.run()
    assert value is None and isinstance(error, ValueError)


def test_a_private_name_is_refused_without_asking_the_store(actor_store: StoreSpec) -> None:
    """H12: a name starting with ``_`` looked up among the actor's methods: on a handle of no
    actor ``hasattr(h, "_x")`` (as pickle, copy and notebooks ask) raised ``ActorNotFoundError``."""
    handle: vc.ActorHandle[Any] = vc.ActorHandle("no-such-actor-h230")
    with pytest.raises(AttributeError, match="private to the actor's class"):
        handle._secret  # noqa: B018
    assert not hasattr(handle, "_ipython_canary_method_should_not_exist_")


@pytest.mark.parametrize("how", ["result", "get", "await"])
@pytest.mark.parametrize("attempt", range(2))  # (which thread runs the read is a race)
def test_a_cycle_through_a_read_another_thread_runs_is_refused_at_once(
    store_spec: StoreSpec, how: str, attempt: int
) -> None:
    """A writer of A waiting (``.result()``, ``vc.get``, ``await``) for a read of B that the read
    pool runs, which calls A's writer: no thread could go on. The wait for the read was no edge
    of the wait-for graph (``reentrancy.refuse_wait_cycle``), so the call back to A waited
    ``max(deadline, commit_timeout)`` for ``ActorBusyError`` (120 s by default) instead of
    being refused at once, as a cycle through a writer on a pool thread is. The bound is
    set far beyond the test's own wait."""
    store_spec.init(settings=vc.Settings(deadline=600, commit_timeout=600))
    _assert_the_read_cycle_is_refused("cycle", how, HANG / 3)


def _assert_the_read_cycle_is_refused(name: str, how: str, bound: float) -> None:
    """``<name>-writer`` waits (``how``) for a read of ``<name>-reader`` that calls it back, on a
    thread of the test: it ends within ``bound`` with ``ReentrantCallError``, nothing applied."""
    Surface.get_or_create(f"{name}-reader")
    writer = Surface.get_or_create(f"{name}-writer")
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(writer.wait_for_a_read_calling_back.run(f"{name}-reader", how))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"writer -> read -> writer across threads ({how}): still waiting"
    assert len(outcome) == 1 and isinstance(outcome[0], vc.ReentrantCallError), outcome
    assert f"{name}-writer -> {name}-reader -> {name}-writer" in str(outcome[0]), outcome[0]
    assert writer.count.run() == 0


@pytest.mark.parametrize("how", ["result", "get"])
def test_a_cycle_is_refused_when_the_writer_waits_before_the_pool_thread_names_itself(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The window between the read pool's thread winning ``_ReadRun.start``'s count and recording
    itself as the thread running the read: the writer of A, finding the read started, waits for
    it then, its edge leading to no thread yet. The cycle is still refused at once: the read's
    call back into A closes it from the pool thread's side, whose own thread the edge names by
    then. The writer is held until the pool thread has won, and the pool thread until the writer
    waits (bounded: a wait that times out fails the test)."""
    store_spec.init(settings=vc.Settings(deadline=600, commit_timeout=600))
    start = pooled_reads._ReadRun.start
    pool_won = threading.Event()
    writer_waits: list[bool] = []

    def held_start(run: pooled_reads._ReadRun) -> bool:
        if reentrancy.writers_on_this_thread():  # the writer: after the pool thread won
            assert pool_won.wait(HANG / 3), "the pool thread never started the read"
            return start(run)
        if next(run._starts) != 0:
            return False
        pool_won.set()
        # (the writer, refused the start, waits for the read: its edge, to no thread yet)
        writer_waits.append(wait_for(lambda: len(reentrancy._blocked) == 1, HANG / 3))
        run._drainer = threading.get_ident()
        return True

    monkeypatch.setattr(pooled_reads._ReadRun, "start", held_start)
    _assert_the_read_cycle_is_refused("window", how, HANG / 2)
    assert writer_waits == [True], "the writer did not wait inside the window"


BLOB = 4 * 1024 * 1024


def test_cancelled_reads_queued_behind_a_full_read_pool_hold_no_arguments(store_spec: StoreSpec) -> None:
    """H02, H03: a cancelled read's future keeping its ``_help`` (the call and its arguments),
    or its pool task keeping the call: each cancelled read held its arguments while the pool's
    slow read ran."""
    holding = _pool_held(store_spec, "cancelled-reads", "hold_read")
    a = Surface.get_or_create("cancelled-reads")
    try:
        full_collection()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            futures = [a.sized.run_async(bytes(BLOB)) for _ in range(3)]
            assert all(f.cancel() for f in futures)
            full_collection()
            held = (tracemalloc.get_traced_memory()[0] - before) / BLOB
        finally:
            tracemalloc.stop()
        assert held < 1, f"3 cancelled reads hold {held:.1f} copies of their arguments"
        assert all(f.cancelled() for f in futures)
    finally:
        LET_GO.set()
    assert holding.result(HANG) is True


def test_a_handle_of_no_class_passed_on_unused_keeps_the_store_it_came_with(actor_store: StoreSpec) -> None:
    """H08: ``_get_actor_handle`` dropping the store of a handle of no class (``vc.get_actor``;
    a handle of a class gets it again from its pickle's state): the next process's
    ``StorageNotChosenError`` had no store to name, and it looked in its default store."""
    Surface.get_or_create("no-class-origin")
    handle = pickle.loads(pickle.dumps(vc.get_actor("no-class-origin")))
    handle._origin = "file:///where/the/actor/is"  # as unpickled from a process with that store
    assert pickle.loads(pickle.dumps(handle))._origin == "file:///where/the/actor/is"


def test_a_received_handle_used_here_passes_on_this_processs_store(actor_store: StoreSpec) -> None:
    """H10: an unpickled handle keeping the store it came with after its first use here (where
    this process chose its store): passed on, it named a store its actor is not in."""
    Surface.get_or_create("used-here")
    handle = pickle.loads(pickle.dumps(vc.get_actor("used-here")))
    handle._origin = "file:///another/store"  # (this process chose its own: the call goes there)
    assert handle.count.run() == 0
    assert pickle.loads(pickle.dumps(handle))._origin == vc.get_runtime().store.describe()


def test_a_method_a_class_gained_when_defined_again_is_found_before_any_call(store_spec: StoreSpec) -> None:
    """H11: ``vc.get_actor`` looking methods up in the class the loaded actor was created with,
    not in the class defined again under its name: a method the new body added was "no
    method" until a call through the new class reloaded it."""
    store_spec.init()
    _define(1).get_or_create("regained").incr.run()
    _define(10)
    assert vc.get_actor("regained").reset.run() == 0


def test_ready_after_init_of_another_store_does_not_raise_the_other_stores_failure(
    store_spec: StoreSpec,
) -> None:
    """H19: ``_creation_on`` without its store check: after ``init`` of another store, the
    failure of the background creation made on the first one was given as why the actor
    there is not ready (no actor of that id was ever created there)."""
    store_spec.init()
    retune(wait_for_init=False)
    handle = FailsToInit.get_or_create("failed-elsewhere")
    vc.get_runtime().wait_created("failed-elsewhere")
    vc.shutdown()
    vc.init("memory://h230-another-store")
    with pytest.raises(vc.ActorNotFoundError):
        handle.ready().result(HANG)


def test_a_waiter_on_ready_runs_the_check_and_the_creation_no_thread_started(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H20: ``ready()``'s future without its ``_help``: a waiter left the check to the pool, and
    with the pool's tasks held back (a pool busy with slow writes) waited for good."""
    retune(wait_for_init=False)
    held = _hold_spawned(vc.get_runtime(), monkeypatch, 2)
    handle = FailsToInit.get_or_create("ready-helped", False)
    ready = handle.ready()
    assert len(held) == 2  # the creation and the check: neither runs on the pool
    waited: list[object] = []
    waiter = threading.Thread(target=lambda: waited.append(ready.result()), daemon=True)
    waiter.start()
    waiter.join(HANG / 3)
    assert not waiter.is_alive(), "the waiter on ready() waited for a check no thread runs"
    assert waited == [None]
    assert handle.add.run(2) == 2


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_a_copy_keeps_the_creation_failure_a_new_runtime_no_longer_knows(
    store_spec: StoreSpec, duplicate: Any
) -> None:
    """H27: ``__copy__`` not copying ``_creation``: once the runtime that ran the failed
    background creation was shut down (a new one on the same store knows no failure), the
    copy's ``ready()`` said ``ActorNotFoundError`` where the original's raises the failure."""
    store_spec.init()
    retune(wait_for_init=False)
    handle = FailsToInit.get_or_create("copied-failure")
    vc.get_runtime().wait_created("copied-failure")
    vc.shutdown()
    store_spec.init()
    for each in (handle, duplicate(handle)):
        with pytest.raises(ValueError, match="the creation failed"):
            each.ready().result(HANG)


def test_handles_of_one_actor_are_equal_and_hash_alike(actor_store: StoreSpec) -> None:
    """H30, H31: a handle equal to itself alone (or hashed by identity): a handle of a class,
    one of ``vc.get_actor`` and an unpickled one, all of one actor, were three keys of a dict."""
    made = Surface.get_or_create("equal-handles")
    found = vc.get_actor("equal-handles")
    received = pickle.loads(pickle.dumps(made))
    assert made == found == received
    assert len({made, found, received}) == 1
    assert made != Surface.get_or_create("equal-handles-other")


def test_send_event_passes_its_serializer_on(actor_store: StoreSpec) -> None:
    """H32: ``ActorHandle.send_event`` dropping ``serializer=``: a payload only pickle carries
    (a ``set``) was refused as JSON."""
    a = Surface.get_or_create("pickled-event")
    a.send_event("noted", {2, 1}, serializer="pickle")
    assert a.process_events() == 1
    assert a.wait_for_event("noted", timeout=HANG) == [1, 2]


def test_wait_for_event_on_a_handle_ends_at_its_timeout(actor_store: StoreSpec) -> None:
    """H33: ``ActorHandle.wait_for_event`` dropping ``timeout``: a wait for an event never sent
    never ended."""
    a = Surface.get_or_create("never-noted")
    ended: list[BaseException] = []

    def wait() -> None:
        try:
            a.wait_for_event("noted", timeout=0.05)
        except BaseException as exc:
            ended.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(HANG / 3)
    assert not waiter.is_alive(), "wait_for_event(timeout=0.05) still waiting"
    assert len(ended) == 1 and isinstance(ended[0], TimeoutError), ended


def test_a_wait_behind_a_pending_creation_interrupted_withdraws_its_call(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H07: ``_help_after_creation`` not cancelling the call when the wait for the creation is
    interrupted (Ctrl-C): the call, whose caller saw only the interrupt, was applied once the
    creation committed, behind its back."""
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 1)
    handle = FailsToInit.get_or_create("interrupted-behind-creation", False)
    future = handle.add.run_async(5)
    monkeypatch.setattr(runtime, "wait_created", InterruptOnce(runtime.wait_created))
    with pytest.raises(Interrupted):
        future.result()
    assert future.cancelled()
    held[0]()  # the creation commits now
    assert handle.add.run(1) == 1


def test_shutdown_refusing_a_read_a_waiter_runs_leaves_its_outcome_to_the_read(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H01: ``_refuse`` settling the call's future without claiming the call: shutdown, which
    refuses the pool tasks not started, failed a read that a waiting thread was running
    (``RuntimeShutdownError`` for a read that went on and answered)."""
    SECOND_READING.clear()
    SECOND_LET_GO.clear()
    refused = threading.Event()
    refuse = pooled_reads._refuse

    def noted(call: Any, error: BaseException) -> None:
        refuse(call, error)
        refused.set()

    monkeypatch.setattr(pooled_reads, "_refuse", noted)
    holding = _pool_held(store_spec, "refused-while-run", "hold_read")
    a = Surface.get_or_create("refused-while-run")
    second = a.hold_second_read.run_async()  # its task queued behind
    answers: list[object] = []
    waiter = threading.Thread(target=lambda: answers.append(second.exception() or second.result()))
    waiter.start()  # runs the second read itself
    closing = threading.Thread(target=vc.shutdown, daemon=True)
    try:
        assert SECOND_READING.wait(HANG)
        closing.start()
        assert refused.wait(HANG)  # the second read's pool task, refused
    finally:
        LET_GO.set()
        SECOND_LET_GO.set()
    waiter.join(HANG)
    closing.join(HANG)
    assert not waiter.is_alive() and not closing.is_alive()
    assert answers == [True]
    assert holding.result(HANG) is True


def test_shutdown_refusing_a_ready_check_a_waiter_ran_logs_nothing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """H21: ``ready()``'s shutdown refusal not asking who checks: shutdown's refusal of the
    pool task of a check a waiter had already run set the settled future running again
    (``RuntimeError`` in the pool's done-callback, logged)."""
    holding = _pool_held(store_spec, "ready-refused-holder", "hold_write")
    a = Surface.get_or_create("ready-refused")
    closing = threading.Thread(target=vc.shutdown, daemon=True)
    try:
        ready = a.ready()  # its check queued behind
        assert ready.result() is None  # (run here)
        closing.start()
    finally:
        LET_GO.set()
    closing.join(HANG)
    assert holding.result(HANG) is True
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_a_pickled_method_keeps_its_options_and_its_timer(actor_store: StoreSpec) -> None:
    """H74, H75: ``ActorMethod.__reduce__`` dropping the method's options (a key: applied
    twice) or its timer (the call ran at once instead of being scheduled)."""
    a = Surface.get_or_create("pickled-options")
    keyed = pickle.loads(pickle.dumps(a.incr.options(idempotency_key="once")))
    assert keyed.run() == 1
    assert keyed.run() == 1
    timer = pickle.loads(pickle.dumps(a.incr.options(delay=3600, timer_key="later")))
    assert timer.run() == "later"
    assert a.count.run() == 1
    assert [t["key"] for t in a.timers()] == ["later"]


def test_run_behind_a_pending_creation_no_thread_started_runs_it(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H79: ``run()`` behind this process's pending creation waiting on a future nobody helps
    (``CallFuture``): with the pool's tasks held back, the creation never ran, nor the call."""
    retune(wait_for_init=False)
    held = _hold_spawned(vc.get_runtime(), monkeypatch, 1)
    handle = FailsToInit.get_or_create("run-behind-creation", False)
    assert len(held) == 1  # the creation: not run on the pool
    answers: list[object] = []
    caller = threading.Thread(target=lambda: answers.append(handle.add.run(3)), daemon=True)
    caller.start()
    caller.join(HANG / 3)
    assert not caller.is_alive(), "run() waited for a creation no thread runs"
    assert answers == [3]


def test_a_cancelled_await_withdraws_a_call_not_started(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """F20, F26: the awaiting task cancelled while its call waits on the busy pool: the call
    was not cancelled with it (applied later, its awaiter gone); and the wake-up of the
    cancelled awaiter set its result (``InvalidStateError``, logged by the loop)."""
    holding = _pool_held(store_spec, "await-cancelled-holder", "hold_write")
    a = Surface.get_or_create("await-cancelled")

    async def give_up() -> concurrent.futures.Future[int]:
        future = a.incr.run_async()  # queued behind it
        task = asyncio.ensure_future(_awaited(future))
        await asyncio.sleep(0)  # (awaiting)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(3):
            await asyncio.sleep(0)  # (the loop runs the wake-up of the awaiter)
        return future

    try:
        future = asyncio.run(asyncio.wait_for(give_up(), HANG))
    finally:
        LET_GO.set()
    assert holding.result(HANG) is True
    assert future.cancelled()
    assert a.count.run() == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_an_await_of_a_cancelled_future_raises_asyncio_cancelled_error(actor_store: StoreSpec) -> None:
    """F22: ``await`` of a future cancelled before it: ``concurrent.futures.CancelledError``
    (an ``Exception``), which an ``except Exception`` in the awaiting coroutine swallowed."""
    future: future_module.ActorFuture[int] = future_module.ActorFuture()
    assert future.cancel()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_awaited(future))


@pytest.mark.parametrize("how", ["run", "run_async"])
def test_a_call_interrupted_as_it_is_queued_behind_a_pending_creation_is_withdrawn(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """H49, H52: Ctrl-C landing just as the call was queued behind this process's pending
    creation (``Creation.defer`` returned), before its caller had a future: the call was not
    withdrawn, and applied once the creation committed, behind its caller's back."""
    retune(wait_for_init=False)
    held = _hold_spawned(vc.get_runtime(), monkeypatch, 1)
    handle = FailsToInit.get_or_create(f"interrupted-as-queued-{how}", False)
    monkeypatch.setattr(Creation, "defer", InterruptOnce(Creation.defer, after=True))
    with pytest.raises(Interrupted):
        getattr(handle.add, how)(5)
    held[0]()  # the creation commits now
    assert handle.add.run(1) == 1


def test_run_on_the_io_loop_is_refused(actor_store: StoreSpec) -> None:
    """H46: ``run()`` made on vactor's IO loop (code the loop runs) not refused: it waited for
    a commit that needs the loop it blocked."""
    a = Surface.get_or_create("run-on-the-loop")

    async def on_the_loop() -> int:
        return a.incr.run()

    with pytest.raises(RuntimeError, match="called on vactor_cloud's IO loop"):
        _sync.submit(on_the_loop()).result(HANG / 3)
    assert a.count.run() == 0


def _waits_in(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None and frame.f_code.co_name != function:
        frame = frame.f_back
    return frame is not None


def test_a_writer_made_while_a_settled_creation_hands_its_calls_over_goes_after_them(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H58: a writer call made while the creation, settled, still hands the calls queued behind
    it over to the actor sent to the actor at once: it went ahead of them (``add(1)`` queued
    first, applied second)."""
    retune(wait_for_init=False)
    held = _hold_spawned(vc.get_runtime(), monkeypatch, 1)
    handle = FailsToInit.get_or_create("hand-over-order", False)
    first = handle.add.run_async(1)  # queued behind the creation
    made: list[Any] = []
    submit = ActorCore.submit

    def handing_over(core: ActorCore, call: Any) -> None:
        if not made:  # (the first hand-over: a second call is made meanwhile, on another thread)
            second = threading.Thread(target=lambda: made.append(handle.add.run_async(10)), daemon=True)
            made.append(second)
            second.start()
            ends = time.monotonic() + HANG
            while len(made) == 1 and not _waits_in(second, "defer") and time.monotonic() < ends:
                time.sleep(0.001)
        submit(core, call)

    monkeypatch.setattr(ActorCore, "submit", handing_over)
    held[0]()  # the creation commits, then hands its queued call over
    made[0].join(HANG)
    assert first.result(HANG) == 1
    assert made[1].result(HANG) == 11


def test_a_keyed_calls_id_is_the_one_every_process_derives(actor_store: StoreSpec) -> None:
    """H66: a keyed call given a random id: the id docs/protocol.md gives it (the same in every
    process: a run of the call again finds its sub-tasks' checkpoints by it) was not the one
    committed."""
    a = Surface.get_or_create("keyed-id")
    assert a.incr.options(idempotency_key="k").run() == 1
    assert a.history(1)[0].calls[-1].call_id == uuid.uuid5(uuid.NAMESPACE_URL, "keyed-id/k").hex


def test_a_stand_in_method_given_at_step_is_checked_as_its_class_defines_it(actor_store: StoreSpec) -> None:
    """H69, H70: a method of a class this process does not define (a handle unpickled where
    it is not: ``stand_ins._stand_in``) given ``at_step``, resolved to the class's method: the
    actor holding another class now ran that class's method of the name (not
    ``ActorClassChangedError``); a writer of the name ran at a step (not ``ValueError``)."""
    a = Surface.get_or_create("stand-in-at-step")
    a.incr.run()
    other = handle_module.ActorMethod("stand-in-at-step", stand_ins._stand_in("elsewhere:Other", "count"))
    with pytest.raises(vc.ActorClassChangedError):
        other.options(at_step=0).run()
    own = stand_ins._stand_in(Surface.name, "incr")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="at_step"):
        handle_module.ActorMethod("stand-in-at-step", own).options(at_step=0).run()
    assert a.count.run() == 1

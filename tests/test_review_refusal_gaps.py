"""Review h97: three gaps around class refusals and nested doubt (each test failed before its
fix unless its docstring begins "Held").

* The probe that decides a class refusal before a commit's attempts (``_choose_way``) read
  the store outside the attempt loop: a failed read there failed the whole batch, calls of
  the actor's class included, where the same read inside an attempt is retried.
* A method that lets an ``ExceptionGroup`` holding a nested call's doubt through (a
  ``TaskGroup`` of nested calls) was not translated to ``NestedCallPendingError``, and a group
  mixing a fault with an error of the method's own was recorded under the call's key.
* A read ``at_step`` refused for its class said the actor "is now an instance of" the past
  step's class.

Process A is this test's runtime with a warm cache; process B (``as_b``) deletes the id and
makes it again as another class.
"""

from __future__ import annotations

import asyncio
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chaos_workers import read_chain
from combining_workers import commit_behind_its_back
from store_helpers import retune
from test_combining import foreign_box, init_switchable
from test_review_warm_after_delete import WARM, Basket, Till, as_a, as_b, warm_till

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.batch import CallOptions, PendingCall
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import (
    CallPendingError,
    CommitOutcomeUnknownError,
    NestedCallPendingError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.future import ActorFuture
from vactor_cloud.posting import PostedCall, decode_outcomes
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


# -- 1. a failed read of the refusal probe before the attempts ----------------------------------
class FailArmedReads(FaultyStore):
    """Fails every read (get, head, list) with ``StorageTimeoutError`` while ``armed`` (a
    stalled endpoint); ``failed`` counts them. ``refusals_to_fail``: how many class-refusal
    checks from now on have their reads failed (see ``fail_refusal_probes``)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, FaultConfig())
        self.armed = False
        self.failed = 0
        self.refusals_to_fail = 0

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if self.armed and operation not in {"put", "delete"}:
            self.failed += 1
            raise StorageTimeoutError(f"{operation} of {key} got no answer (injected)", key)
        return await super()._around(operation, key, run, batch=batch)


def fail_refusal_probes(monkeypatch: pytest.MonkeyPatch) -> FailArmedReads:
    """Wrap A's store (before any actor is touched) so that the reads made by the next
    ``store.refusals_to_fail`` class-refusal checks fail: a commit's first check is the one
    before its attempts."""
    runtime = vc.get_runtime()
    store = FailArmedReads(runtime.store)
    runtime.store = store
    original = ActorCore._refuse_other_class

    def refuse(self: ActorCore, c: Any, record: Any, validated: float) -> bool:
        store.armed = store.refusals_to_fail > 0
        store.refusals_to_fail = max(0, store.refusals_to_fail - 1)
        try:
            return original(self, c, record, validated)
        finally:
            store.armed = False

    monkeypatch.setattr(ActorCore, "_refuse_other_class", refuse)
    return store


def till_basket_till(spec: StoreSpec, actor_id: str) -> tuple[vc.ActorHandle[Till], vc.ActorHandle[Basket]]:
    """A's ``Till`` handle and ``Basket`` handle of ``actor_id``; A's cache holds B's basket
    (A learnt it from a refusal), and B has made a ``Till`` (start 50) of the id since."""
    till = warm_till(actor_id)

    def basket_now() -> None:
        assert vc.delete_actor(actor_id) is True
        Basket.get_or_create(actor_id)

    as_b(spec, basket_now)
    with pytest.raises(vc.ActorClassChangedError):
        till.add.run(7)
    basket = Basket.get_or_create(actor_id)

    def till_again() -> None:
        assert vc.delete_actor(actor_id) is True
        Till.get_or_create(actor_id, 50)

    as_b(spec, till_again)
    return till, basket


def test_a_failed_read_of_the_refusal_probe_before_the_attempts_is_retried(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's cache holds a basket; the id holds a ``Till`` again. The ``Till`` handle's ``add``
    differs from the cached class: one probe decides before the attempts, and its read timed
    out. The caller got that ``StorageTimeoutError`` (not retried, as the same read inside an
    attempt is): now the call runs on the ``Till``."""
    as_a(spec, WARM)
    store = fail_refusal_probes(monkeypatch)
    till, _ = till_basket_till(spec, "rg-probe")
    store.refusals_to_fail = 1
    assert till.add.run(1) == 51
    assert store.failed >= 1, "the probe before the attempts made no read: the test proves nothing"
    assert till.get.run() == 51


def _queued(method: str, arg: Any, for_class: str, key: str | None = None) -> PendingCall:
    options = CallOptions(idempotency_key=key) if key is not None else CallOptions()
    call = PendingCall.by_value(
        method,
        (arg,),
        {},
        readonly=False,
        future=ActorFuture(),
        call_id=uuid.uuid4().hex,
        options=options,
        for_class=for_class,
    )
    assert call.claim()  # as the actor's queue hands it out
    return call


@pytest.mark.parametrize("contended", [False, True], ids=["racing", "folding"])
def test_a_failed_refusal_probe_leaves_the_calls_of_the_actors_class_in_its_batch_unharmed(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, contended: bool
) -> None:
    """One batch: the ``Basket`` handle's keyed ``add`` (the id holds a ``Till`` again) and
    the ``Till`` handle's keyed ``add``. The probe before the attempts failed: both calls got
    its error. Now the basket's call is refused (its key records nothing) and the till's is
    applied, once: its retry with the key is answered from the table. "folding": contended
    (a post of ours lately), the commit takes the folder lease and folds, the same."""
    as_a(spec, WARM)
    store = fail_refusal_probes(monkeypatch)
    till_basket_till(spec, "rg-batch")
    core = vc.get_runtime().core("rg-batch")
    stale = _queued("add", 3, Basket.name, key="k3")
    right = _queued("add", 4, Till.name, key="k4")
    if contended:
        retune(combine_window=60.0)
        core._posted_at = time.monotonic()
    store.refusals_to_fail = 1
    core._commit([stale, right])  # one batch, as a drain claims queued calls
    assert store.failed >= 1, "the probe before the attempts made no read: the test proves nothing"
    assert core._holding() is contended
    with pytest.raises(vc.ActorClassChangedError):
        stale.future.result(0)
    assert right.future.result(0) == 54
    till = Till.get_or_create("rg-batch", 0)
    assert till.add.options(idempotency_key="k4").run(4) == 54
    assert till.add.options(idempotency_key="k3").run(3) == 57  # (k3 was not recorded)
    assert till.get.run() == 57


def test_a_store_that_keeps_failing_from_the_refusal_probe_on_fails_the_call_with_its_error(
    spec: StoreSpec,
) -> None:
    """Every read fails from the probe before the attempts on. The probe's first failure
    failed the call, never retried; now the probe refuses nothing, the attempt's reads are
    retried (``_TRANSIENT_RETRIES``) and the call fails with the store's error, as a commit
    whose reads keep failing does. Nothing was applied."""
    as_a(spec, WARM)
    runtime = vc.get_runtime()
    store = runtime.store = FailArmedReads(runtime.store)
    till, _ = till_basket_till(spec, "rg-exhausted")
    store.armed = True
    try:
        with pytest.raises(StorageTimeoutError, match="injected"):
            till.add.run(1)
    finally:
        store.armed = False
    assert store.failed > 1, "no read was retried"
    assert till.get.run() == 50


# -- 2. an ExceptionGroup holding a nested call's doubt or a fault --------------------------------
#: entry -> the errors ``Fanout.add``'s nested tasks raise (the test takes them out)
_task_errors: dict[str, list[Exception]] = {}


@vc.virtual_actor
class Fanout:
    def __init__(self) -> None:
        self.entries: list[str] = []

    async def add(self, entry: str) -> int:
        """Add ``entry``, then run a ``TaskGroup`` of nested tasks (as nested actor calls would
        run), each raising one of ``_task_errors[entry]``."""
        self.entries.append(entry)  # discarded when the call raises

        async def nested(error: Exception) -> None:
            raise error

        async with asyncio.TaskGroup() as group:
            for error in _task_errors.get(entry, []):
                group.create_task(nested(error))
        return len(self.entries)

    def arm(self, entry: str) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("add", after=0, args=(entry,), key="t")

    @vc.virtual_actor.readonly
    def read(self) -> list[str]:
        return list(self.entries)


def _pending() -> Exception:
    return CallPendingError("other", ["c1"])


IN_DOUBT: dict[str, Callable[[], list[Exception]]] = {
    "a CallPendingError": lambda: [_pending()],
    "a CallPendingError and a ValueError": lambda: [ValueError("no funds"), _pending()],
    "a group holding a CommitOutcomeUnknownError": lambda: [
        ExceptionGroup("inner", [CommitOutcomeUnknownError("other", 7)])
    ],
}


@pytest.mark.parametrize("name", list(IN_DOUBT))
def test_a_group_holding_a_nested_calls_doubt_fails_the_keyed_call_as_nested_pending(
    actor_store: StoreSpec, name: str
) -> None:
    """A method's ``TaskGroup`` of nested calls raised an ``ExceptionGroup`` holding a nested
    call's doubt: its caller got the group, not ``NestedCallPendingError`` naming its own call
    (as for the bare doubt), and a group with a ``ValueError`` beside it was recorded under
    the key (the retry re-raised it, the method never ran again). Now: the caller hears
    ``NestedCallPendingError`` (the group its cause), nothing is recorded, the retry applies
    the call once."""
    fanout = Fanout.get_or_create("fan")
    _task_errors["a"] = IN_DOUBT[name]()
    try:
        with pytest.raises(NestedCallPendingError) as raised:
            fanout.add.options(idempotency_key="k").run("a")
    finally:
        _task_errors.clear()
    assert raised.value.actor_id == "fan"
    assert raised.value.nested_actor_id == "other"
    assert isinstance(raised.value.__cause__, ExceptionGroup)
    assert fanout.read.run() == []
    assert fanout.add.options(idempotency_key="k").run("a") == 1
    assert fanout.add.options(idempotency_key="k").run("a") == 1
    assert fanout.read.run() == ["a"]


def test_a_group_mixing_a_storage_fault_with_an_error_of_its_own_is_not_recorded(
    actor_store: StoreSpec,
) -> None:
    """A group of a ``StorageError`` and a ``ValueError`` was recorded under the key as the
    call's outcome (a group was an outcome if any error in it was): the store's passing fault
    answered every retry. A group holding any fault is not an outcome: the caller gets the
    group, the retry runs the method again."""
    fanout = Fanout.get_or_create("fan-mixed")
    _task_errors["a"] = [StorageError("the store failed", "k"), ValueError("no funds")]
    try:
        with pytest.raises(ExceptionGroup):
            fanout.add.options(idempotency_key="k").run("a")
    finally:
        _task_errors.clear()
    assert fanout.add.options(idempotency_key="k").run("a") == 1
    assert fanout.read.run() == ["a"]


def test_held_a_group_of_errors_of_the_methods_own_stays_recorded(actor_store: StoreSpec) -> None:
    """Held: a group of the method's own errors is its outcome, recorded: the retry with the
    key re-raises it, and the method does not run again."""
    fanout = Fanout.get_or_create("fan-own")
    _task_errors["a"] = [ValueError("no funds"), KeyError("card")]
    try:
        with pytest.raises(ExceptionGroup):
            fanout.add.options(idempotency_key="k").run("a")
    finally:
        _task_errors.clear()
    with pytest.raises(ExceptionGroup):
        fanout.add.options(idempotency_key="k").run("a")
    assert fanout.read.run() == []


def test_a_folded_keyed_calls_group_holding_a_doubt_is_delivered_as_nested_pending_not_recorded(
    store_spec: StoreSpec,
) -> None:
    """Attack on the group's translation: another process's keyed call, posted and folded by
    ours, whose ``TaskGroup`` lets a nested ``CallPendingError`` through beside a
    ``ValueError``. Its outcome in the step is ``NestedCallPendingError`` naming it; its key
    records nothing: the retry with the key applies it, once."""
    init_switchable(store_spec, combine_window=60.0, fresh_window=WARM)
    try:
        fanout = Fanout.get_or_create("fan-fold")
        fanout.add.run("me/0")
        _task_errors["other/1"] = [ValueError("no funds"), _pending()]
        arguments = pickle.dumps((("other/1",), {}))
        theirs = PostedCall("add", arguments, uuid.uuid4().hex, idempotency_key="theirs")
        box = foreign_box("fan-fold")
        _sync.sync(box.send(box.prepare((theirs,))))
        time.sleep(0.003)  # our post gets a later millisecond: theirs is folded first
        commit_behind_its_back("fan-fold")  # our next call loses the race, posts, folds theirs and ours
        assert fanout.add.run("me/1") == 2
        _task_errors.clear()
        outcomes = {}
        for record in read_chain("fan-fold"):
            outcomes.update(decode_outcomes(record.posted))
        folded = outcomes[theirs.call_id].value
        assert isinstance(folded, NestedCallPendingError), outcomes
        assert (folded.call_id, folded.nested_actor_id) == (theirs.call_id, "other")
        assert fanout.add.options(idempotency_key="theirs").run("other/1") == 3
        assert fanout.add.options(idempotency_key="theirs").run("other/1") == 3
        assert fanout.read.run() == ["me/0", "me/1", "other/1"]
    finally:
        _task_errors.clear()
        vc.shutdown()


def test_a_timer_whose_method_raises_a_group_holding_a_fault_stays_pending(actor_store: StoreSpec) -> None:
    """Attack on the rule "a group holding any fault is no outcome", for timers: a fired
    timer's method raised a ``TaskGroup``'s group of a ``StorageError`` and a ``ValueError``.
    The timer was consumed (the group recorded as its outcome, the store's passing fault
    ending it for good); now it stays due, as for a bare fault, and fires once the fault is
    gone."""
    fanout = Fanout.get_or_create("fan-timer")
    _task_errors["a"] = [StorageError("the store failed", "k"), ValueError("no funds")]
    try:
        fanout.arm.run("a")
        time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
        first = vc.fire_due_timers()
        assert first.fired == 0 and len(first.errors) == 1, first
        assert "stays due" in first.errors[0], first.errors
        assert [t["key"] for t in fanout.timers()] == ["t"]
    finally:
        _task_errors.clear()
    second = vc.fire_due_timers()
    assert second.fired == 1 and not second.errors, second
    assert fanout.read.run() == ["a"] and fanout.timers() == []


# -- 3. what a refused read at a past step says ---------------------------------------------------
def test_a_read_at_a_step_of_the_earlier_actor_says_what_happened_and_what_to_do(spec: StoreSpec) -> None:
    """A ``Basket`` handle's read ``at_step`` of a step of the id's earlier ``Till`` is
    refused. It said the actor "is now an instance of" ``Till`` (the past step's class, the
    id holds a basket now) and pointed at ``vc.get_actor``, whose methods are the basket's
    too. Now it names the step and its class, and what reads it: ``handle.state_at(N)``."""
    as_a(spec, WARM)
    warm_till("rg-at-step")
    old = vc.get_runtime().core("rg-at-step").record
    assert old is not None
    assert vc.delete_actor("rg-at-step") is True
    basket = Basket.get_or_create("rg-at-step")
    assert basket.add.run(4) == 1
    with pytest.raises(vc.ActorClassChangedError) as raised:
        basket.get.run(at_step=old.step)
    message = str(raised.value)
    assert "is now an instance of" not in message
    assert f"step {old.step} of actor 'rg-at-step'" in message
    assert Till.name in message and Basket.name in message
    assert f"state_at({old.step})" in message
    assert raised.value.at_step == old.step
    assert str(pickle.loads(pickle.dumps(raised.value))) == message
    # What it says to do reads the step, and teaches the process nothing.
    assert basket.state_at(old.step).total == 12  # type: ignore[attr-defined]
    assert Basket.get_or_create("rg-at-step").get.run() == [4]
    assert vc.get_actor("rg-at-step").add.run(5) == 2


def test_held_a_refusal_without_a_step_pickles_as_a_release_before_at_step_reads_it() -> None:
    """Held (an attack on the fix above): a fold records a posted call's refusal for its
    poster, maybe a process of an earlier release, whose ``ActorClassChangedError`` takes
    four arguments. One without ``at_step`` still pickles with those four."""
    error = vc.ActorClassChangedError("a", "add", "m:Till", "m:Basket")
    assert error.__reduce__()[1] == ("a", "add", "m:Till", "m:Basket")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.at_step) == (str(error), None)


def test_a_read_at_a_step_of_the_earlier_actor_through_its_own_class_teaches_no_class(
    spec: StoreSpec,
) -> None:
    """Attack on "teaches the process nothing": the old ``Till`` handle reads ``at_step`` a
    step of the earlier ``Till`` (allowed: the step is of its class). The read loaded the
    step's class as the actor's: the process took the id for a ``Till`` again, and
    ``Basket.get_or_create`` raised ``ActorDefinitionError`` on the basket the id holds."""
    as_a(spec, WARM)
    till = warm_till("rg-own-step")
    old = vc.get_runtime().core("rg-own-step").record
    assert old is not None
    assert vc.delete_actor("rg-own-step") is True
    basket = Basket.get_or_create("rg-own-step")
    assert basket.add.run(4) == 1
    assert till.get.run(at_step=old.step) == 12
    assert Basket.get_or_create("rg-own-step").get.run() == [4]
    assert vc.get_actor("rg-own-step").add.run(5) == 2
    with pytest.raises(vc.ActorClassChangedError):
        till.add.run(1)

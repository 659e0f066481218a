"""Ray-spelled sub-workflows (``workflow_steps.py``) and ``subtask``, from a hostile review
(review-h19): each test failed on the code it was written against."""

from __future__ import annotations

from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec, workflow
from vactor_cloud.keys import task_key
from vactor_cloud.state import dumps_state
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@workflow.step
def make() -> list[int]:
    return [1]


@workflow.step
def grow(items: list[int]) -> int:
    items.append(len(items) + 1)  # a step that changes its argument: its own copy
    return len(items)


@workflow.step
def tag(tags: set[str]) -> int:
    tags.add("tagged by the step")  # a step that changes its argument: its own copy
    return len(tags)


@workflow.step
def pair(a: int, b: int) -> tuple[int, int]:
    return a, b


@workflow.virtual_actor
class Shop:
    def __init__(self) -> None:
        self.tags = {"new"}

    def diamond(self) -> Any:
        made = make.step()
        return pair.step(grow.step(made), grow.step(made))

    def from_state(self) -> Any:
        return tag.step(self.tags)

    @workflow.virtual_actor.readonly
    def view(self) -> set[str]:
        return self.tags


def test_steps_sharing_an_input_each_get_their_own_copy(actor_store: StoreSpec) -> None:
    """Ray passes a step's inputs by value (through its object store): two steps fed by one
    step's result each see that result as it was returned. Here the ready steps ran on the
    subtask thread pool with the one object, so each saw the other's change (a data race
    between threads), and a re-run reading the result back from its checkpoint saw neither."""
    assert Shop.get_or_create("s").diamond.run() == (2, 2)


def test_a_step_given_the_actors_state_does_not_change_it_behind_the_method(actor_store: StoreSpec) -> None:
    """A function step runs on another thread, and is memoized: it must not reach into the
    instance. Given ``self.tags`` (a set: lists, tuples and dicts were copied on the way, other
    objects not), it changed the live set, so the committed state held a change no method made
    (and a re-run, reading the step back from its checkpoint, would not)."""
    shop = Shop.get_or_create("s")
    assert shop.from_state.run() == 2
    assert shop.view.run() == {"new"}


# -- subtask: a body run again by options(max_retries=...) ------------------------------------------
_charged: list[str] = []
_failures_left: list[int] = []


def charge(order: str) -> str:
    _charged.append(order)  # the side effect a subtask exists to make once
    return f"receipt for {order}"


@workflow.virtual_actor
class Checkout:
    def __init__(self) -> None:
        self.receipts: list[str] = []

    def pay(self, order: str) -> str:
        receipt = vc.subtask(charge).run(order)
        if _failures_left:
            _failures_left.pop()
            raise ConnectionError("the ledger blinked after the card was charged")
        self.receipts.append(receipt)
        return receipt


def test_a_body_retried_by_max_retries_reuses_its_finished_children(actor_store: StoreSpec) -> None:
    """Children are memoized per run of the call, by position; each run starts at position 0.
    A run was told apart by its ``CallContext``, but ``options(max_retries=N)`` runs the body
    again with the same one: the retry's children took new positions (1, 2, ...), found no
    checkpoint and ran again (the card charged twice), which a conflict retry, a resume or a
    keyed re-send never does."""
    _charged.clear()
    _failures_left[:] = [1]
    checkout = Checkout.get_or_create("c")
    assert checkout.pay.options(max_retries=2).run("o-1") == "receipt for o-1"
    assert _charged == ["o-1"]


# -- subtask: a checkpoint another run wrote first, for another child ------------------------------
def plant_then_compute(actor_id: str, call_id: str, x: int) -> int:
    """A child that, while it runs, has another run of its call checkpoint position 0 first, for
    another child (a method whose runs launch different children: not deterministic)."""
    key = task_key(actor_id, call_id, 0)
    meta = {"kind": "task", "position": 0, "fingerprint": "elsewhere:other-child", "serializer": "pickle"}
    data = codec.encode(key, meta, {"result": dumps_state("the other child's result", "pickle")})
    _sync.sync(vc.get_runtime().store.put(key, data, mode="create"))
    return x * 10


@vc.virtual_actor
class Planter:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def work(self, x: int) -> Any:
        call = vc.current_call()
        assert call is not None
        value = vc.subtask(plant_then_compute).run(call.actor_id, call.call_id, x)
        self.got.append(value)
        return value


def test_a_checkpoint_another_run_wrote_first_for_another_child_is_not_taken(actor_store: StoreSpec) -> None:
    """A checkpoint written for another child than the one now at its position "is not used"
    (subtask.py): read before the children run, it was not; but one that
    another run wrote first, found when this run's create-only put failed, was taken whatever it
    was written for: the method got another child's result."""
    assert Planter.get_or_create("p").work.run(4) == 40


# -- a failure record left by a run that a later run of the same call overcame ---------------------
_step_failures_left: list[int] = []


@workflow.step(max_retries=0)
def flaky_total(amount: int) -> int:
    if _step_failures_left:
        _step_failures_left.pop()
        raise ConnectionError("the pricing service blinked")
    return amount


@workflow.virtual_actor
class Wallet:
    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, amount: int) -> Any:
        return self.credit.step(flaky_total.step(amount))

    def credit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    @workflow.virtual_actor.readonly
    def view(self) -> int:
        return self.balance


def test_a_call_whose_retry_succeeded_is_not_left_for_resume_to_apply_again(actor_store: StoreSpec) -> None:
    """A sub-workflow that raises records its call for ``workflow.resume``. A call run again
    (``options(max_retries=N)``; also a batch re-run after a lost commit race) that succeeds
    commits, but its record stayed: ``get_status`` said FAILED and ``resume`` applied the
    committed, unkeyed call a second time (a deposit credited twice)."""
    _step_failures_left[:] = [1]
    wallet = Wallet.get_or_create("w")
    assert wallet.deposit.options(max_retries=1).run(5) == 5
    assert workflow.get_status("w") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("w")) == []
    assert wallet.view.run() == 5


def test_resume_called_again_while_a_resume_runs_applies_the_call_once(actor_store: StoreSpec) -> None:
    """``workflow.resume`` re-runs each recorded call under its call id, unkeyed. A second
    ``resume`` (a retry loop, a second click) while the first still ran listed the same record
    and submitted the call again: both were applied (the deposit credited twice)."""
    _step_failures_left[:] = [1, 1, 1, 1]  # a first run and its three Ray-default retries: none
    wallet = Wallet.get_or_create("w")
    with pytest.raises(ConnectionError):
        wallet.deposit.run(5)
    assert workflow.get_status("w") == workflow.FAILED
    _step_failures_left.clear()
    first, second = workflow.resume("w"), workflow.resume("w")
    assert vc.get(first, timeout=60) == [5]
    # The same re-run's result, or nothing left to resume if the first was done already.
    assert vc.get(second, timeout=60) in ([5], [])
    assert wallet.view.run() == 5
    assert workflow.get_status("w") == workflow.SUCCESSFUL


def test_a_resume_whose_listing_raced_another_resumes_re_run_applies_the_call_once(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above, with the window it left forced: the second ``resume`` lists the record
    while the first re-run is under way, and that re-run finishes (commits, deletes the record)
    before the second looks up what is under way. It found nothing running and applied the call
    again (balance 10; the test above failed so in a CI run)."""
    import asyncio

    _step_failures_left[:] = [1, 1, 1, 1]
    wallet = Wallet.get_or_create("w")
    with pytest.raises(ConnectionError):
        wallet.deposit.run(5)
    _step_failures_left.clear()
    real = workflow.list_failures
    runs: dict[str, Any] = {}

    async def listing(store: Any, actor_id: str, signing_key: Any, **kwargs: Any) -> Any:
        found = await real(store, actor_id, signing_key, **kwargs)
        if "first" in runs:  # the second resume: the first re-run ends after this listing
            await asyncio.wrap_future(runs["first"])
        return found

    monkeypatch.setattr(workflow, "list_failures", listing)
    runs["first"] = workflow.resume("w")
    second = workflow.resume("w")
    assert vc.get(runs["first"], timeout=60) == [5]
    assert vc.get(second, timeout=60) in ([5], [])
    assert wallet.view.run() == 5


# -- subtask positions around a nested actor call -----------------------------------------------------
@vc.virtual_actor
class Helper:
    def __init__(self) -> None:
        self.runs = 0

    def help(self) -> str:
        self.runs += 1
        return vc.subtask(charge).run(f"helper-{self.runs}")


@vc.virtual_actor
class Outer:
    def __init__(self) -> None:
        self.receipts: list[str] = []

    def work(self) -> list[str]:
        first = vc.subtask(charge).run("outer-first")
        nested = Helper.get_or_create("helper").help.run()  # runs on this thread: the caller runs
        second = vc.subtask(charge).run("outer-second")
        if _failures_left:
            _failures_left.pop()
            raise ConnectionError("blinked after every child finished")
        self.receipts += [first, nested, second]
        return self.receipts


def test_a_nested_actor_call_does_not_restart_the_callers_sub_task_positions(actor_store: StoreSpec) -> None:
    """Positions count the children one run of a call launches. A method calling another actor
    (run on the same thread) whose method launched children of its own reset the thread's count:
    the caller's next launch took position 0 again, met the first launch's checkpoint (another
    child), ran unmemoized, and ran again on the retry (charged twice)."""
    _charged.clear()
    _failures_left[:] = [1]
    receipts = Outer.get_or_create("outer").work.options(max_retries=1).run()
    # (The nested call is a call of its own, made again by the retry: the helper's second.)
    assert receipts == ["receipt for outer-first", "receipt for helper-2", "receipt for outer-second"]
    assert sorted(_charged) == ["helper-1", "helper-2", "outer-first", "outer-second"]


# -- subtask: a result that pickles but does not unpickle ------------------------------------------
def make_coded(error_class: type[Exception], code: int) -> Exception:
    return error_class(code, "coded")


_blinks: list[int] = []


@vc.virtual_actor
class Coder:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def work(self, error_class: type[Exception], code: int) -> int:
        made = vc.subtask(make_coded).run(error_class, code)
        if _blinks:
            _blinks.pop()
            raise ConnectionError("blinked after the child finished")
        self.codes.append(made.code)  # type: ignore[attr-defined]
        return int(made.code)  # type: ignore[attr-defined]


def test_a_sub_task_result_that_does_not_unpickle_fails_its_first_run_not_every_re_run(
    actor_store: StoreSpec,
) -> None:
    """The checkpoint of such a result was written, and the run that wrote it got on; every later
    run of the call (a retry, a conflict, the same key after a crash) then read it back and failed
    with "IntegrityError: the checkpointed result cannot be decoded", for good. It is refused when
    it is written, by the run that made it, with the fix named."""
    from test_review_api import coded_error_class

    from vactor_cloud.errors import StateSerializationError

    _blinks[:] = [1]
    coder = Coder.get_or_create("coder")
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        coder.work.options(max_retries=1).run(coded_error_class(), 7)

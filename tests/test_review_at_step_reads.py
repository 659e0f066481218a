"""Reads at a given step (``run(at_step=N)``) from where they were refused, review h109.

1. A writer method reading a committed step of its own actor through a handle: such a read
   runs on an immutable step the writer cannot change, and waits for no writer; it was
   refused as a read at the newest step is (which would miss the writer's own changes).
2. The same read from the inner writer of a call cycle A -> B -> A: refused as "would wait
   for itself", which it would not.
3. The neighbourhood, pinned: a read at the newest step from inside a writer of the actor is
   still refused, now naming ``run(at_step=N)``; at_step 0, negative, not an int, a bool,
   beyond the newest step, of a compacted step, of a deleted actor.
4. A stand-in's read-only method (a handle unpickled where its class is not defined) given
   ``at_step``: refused, it now reads the step as a handle of the class does, with the
   class's method loaded from its stored body.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_review_stand_in_methods import Gauge2, _stand_in_ledger
from test_review_warm_after_delete import WARM, as_a, as_b

import vactor_cloud as vc
from vactor_cloud import definition as definition_module
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Dial:
    def __init__(self) -> None:
        self.n = 0

    def add(self, amount: int) -> int:
        self.n += amount
        return self.n

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n

    def add_then_read(self, amount: int, step: int, how: str) -> tuple[int, int]:
        """Add ``amount`` (not committed yet), then read step ``step`` through a handle."""
        self.n += amount
        peek = vc.get_actor(vc.current_call().actor_id).peek
        if how == "run":
            seen = peek.run(at_step=step)
        elif how == "options":
            seen = peek.options(at_step=step).run()
        else:
            seen = peek.run_async(at_step=step).result()
        return self.n, int(seen)

    def add_then_read_newest(self, amount: int) -> int:
        self.n += amount
        return int(vc.get_actor(vc.current_call().actor_id).peek.run())

    def ask(self, other: str, step: int) -> int:
        """A writer calling ``other``'s writer, which reads this actor at ``step``."""
        self.n += 100
        return int(vc.get_actor(other).read_back.run(vc.current_call().actor_id, step))

    def read_back(self, caller: str, step: int) -> int:
        self.n += 1
        return int(vc.get_actor(caller).peek.run(at_step=step))

    def ask_newest(self, other: str) -> int:
        self.n += 100
        return int(vc.get_actor(other).read_back_newest.run(vc.current_call().actor_id))

    def read_back_newest(self, caller: str) -> int:
        return int(vc.get_actor(caller).peek.run())

    def add_then_read_newest_async(self, amount: int) -> int:
        self.n += amount
        return int(vc.get_actor(vc.current_call().actor_id).peek.run_async().result())


@pytest.fixture
def dial(store_spec: StoreSpec) -> Iterator[Any]:
    """A ``Dial`` at step 2 (n: 0 at step 0, 5 at step 1, 12 at step 2); ``fresh_window`` 0,
    so that a compaction may delete steps at once (``min_age=0``)."""
    vc.shutdown()
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    try:
        handle = Dial.get_or_create("at-step-dial")
        assert handle.add.run(5) == 5
        assert handle.add.run(7) == 12
        yield handle
    finally:
        vc.shutdown()


def _steps(handle: Any) -> list[int]:
    return sorted(entry.step for entry in handle.history())


@pytest.mark.parametrize("how", ["run", "options", "run_async"])
def test_a_writer_reads_a_committed_step_of_its_own_actor_through_a_handle(dial: Any, how: str) -> None:
    """Before: ``ReentrantCallError`` (as a read at the newest step). The read sees step 1
    exactly, not the writer's change, nor step 2; the writer's step commits after it."""
    assert dial.add_then_read.run(1000, 1, how) == (1012, 5)
    assert dial.peek.run() == 1012
    assert _steps(dial) == [0, 1, 2, 3]
    assert dial.add_then_read.run(1, 3, how) == (1013, 1012)  # the newest committed step


def test_a_writer_reading_the_step_it_is_about_to_commit_is_told_it_is_not_written(dial: Any) -> None:
    """Step 3 is the writer's own, not committed while it runs: not found (not its
    uncommitted state, no wait for itself); the writer's exception drops its change."""
    with pytest.raises(vc.StepNotFoundError, match="not written yet") as caught:
        dial.add_then_read.run(1000, 3, "run")
    assert not caught.value.compacted
    assert dial.peek.run() == 12
    assert _steps(dial) == [0, 1, 2]


def test_the_inner_writer_of_a_call_cycle_reads_a_committed_step_of_the_outer_actor(
    dial: Any,
) -> None:
    """A -> B -> A.peek.run(at_step=1): before, refused as a cycle that "would wait for itself";
    the read waits for neither writer."""
    other = Dial.get_or_create("at-step-other")
    assert dial.ask.run("at-step-other", 1) == 5
    assert dial.peek.run() == 112
    assert other.peek.run() == 1


def test_a_writer_reading_its_own_actor_at_the_newest_step_is_refused_naming_at_step(dial: Any) -> None:
    """Still refused (it would answer without the writer's change): the message also names
    the read of a committed step that is allowed."""
    with pytest.raises(vc.ReentrantCallError) as caught:
        dial.add_then_read_newest.run(1)
    message = str(caught.value)
    assert "last committed" in message and "self.peek()" in message
    assert "run(at_step=N)" in message
    assert dial.peek.run() == 12


def test_a_writer_reading_its_own_actor_at_the_newest_step_with_run_async_is_refused_too(dial: Any) -> None:
    with pytest.raises(vc.ReentrantCallError, match=r"last committed.*run\(at_step=N\)"):
        dial.add_then_read_newest_async.run(1)
    assert dial.peek.run() == 12


def test_the_inner_writer_of_a_cycle_reading_the_outer_actor_at_the_newest_step_is_told_why(
    dial: Any,
) -> None:
    """A -> B -> A.peek.run(): refused (it would answer without A's running change), but the
    message said it "would wait for itself", which a read never does."""
    Dial.get_or_create("at-step-other")
    with pytest.raises(vc.ReentrantCallError) as caught:
        dial.ask_newest.run("at-step-other")
    message = str(caught.value)
    assert "wait for itself" not in message, message
    assert "last committed" in message and "run(at_step=N)" in message, message
    assert dial.peek.run() == 12


@pytest.mark.parametrize("bad", [-1, 1.0, "2", True, False, None])
def test_an_at_step_that_is_no_step_number_is_refused_before_anything_runs(dial: Any, bad: object) -> None:
    """(None through ``run``: passed on as a keyword it would be the option's "not given".)"""
    if bad is None:
        with pytest.raises(ValueError, match="at_step must be a step number"):
            dial.peek.run(at_step=bad)
        return
    with pytest.raises(ValueError, match="at_step must be a step number"):
        dial.peek.run(at_step=bad)
    with pytest.raises(ValueError, match="at_step must be a step number"):
        dial.peek.options(at_step=bad)


@pytest.mark.parametrize("bad", [-1, 1.0, "1", True, None])
def test_state_at_a_step_that_is_no_step_number_is_refused_saying_so(dial: Any, bad: object) -> None:
    """The sibling of ``run(at_step=N)``. Before: ``state_at(True)`` read step 1, ``state_at(1.0)``
    raised "Unknown format code 'd'", ``"1"`` and None a ``TypeError`` about ``<``."""
    with pytest.raises(ValueError, match=r"state_at\(\)'s step must be a step number \(an int >= 0\)"):
        dial.state_at(bad)


def test_at_step_zero_reads_the_first_state_and_beyond_the_newest_says_not_written(dial: Any) -> None:
    """Step 0 is ``__init__``'s."""
    assert dial.peek.run(at_step=0) == 0
    for step in (3, 99):
        with pytest.raises(vc.StepNotFoundError, match=r"not written yet.*steps 0\.\.2 remain") as caught:
            dial.peek.run(at_step=step)
        assert caught.value.remaining == (0, 2) and not caught.value.compacted


def test_at_step_of_a_compacted_step_says_compacted(dial: Any) -> None:
    dial.compact(keep_last=1, min_age=0)
    with pytest.raises(vc.StepNotFoundError, match="step 1 was compacted") as caught:
        dial.peek.run(at_step=1)
    assert caught.value.compacted
    assert dial.peek.run(at_step=2) == 12


def test_at_step_of_a_deleted_actor_reads_steps_before_the_tombstone(dial: Any) -> None:
    assert vc.delete_actor("at-step-dial") is True
    assert dial.peek.run(at_step=1) == 5
    with pytest.raises(vc.ActorDeletedError):
        dial.peek.run(at_step=3)  # the tombstone: no state to read
    with pytest.raises(vc.ActorDeletedError):
        dial.peek.run()


# -- through a stand-in (a handle unpickled where its class is not defined) -----------------------
@pytest.fixture
def stand_in(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``test_review_stand_in_methods``' ``Ledger`` handle, unpickled where ``Ledger`` is not
    defined, the id's steps: 0-1 a first ``Ledger`` (n 0, 1), 2 its tombstone, 3 a ``Gauge2``,
    4 its tombstone, 5-6 a ``Ledger`` again (n 0, 1)."""
    vc.shutdown()
    try:
        handle = _stand_in_ledger(store_spec, "at-step-stand-in", monkeypatch)
        assert _steps_as_b(store_spec, "at-step-stand-in") == list(range(7))
        yield handle
    finally:
        vc.shutdown()


def _steps_as_b(spec: StoreSpec, actor_id: str) -> list[int]:
    return list(as_b(spec, lambda: _steps(vc.ActorHandle(actor_id))))


def test_a_stand_in_reads_a_step_of_its_class_as_a_handle_of_the_class_does(
    store_spec: StoreSpec, stand_in: Any
) -> None:
    """Before: ``ValueError`` (the call, made as a writer's, could not read a past step). The
    method is the class's, loaded from its stored body: a read at step N, committing nothing."""
    assert stand_in.peek.run(at_step=5) == 0
    assert stand_in.peek.run(at_step=6) == 1
    assert stand_in.peek.options(at_step=5).run() == 0
    assert stand_in.peek.run_async(at_step=5).result() == 0
    assert stand_in.peek.run(at_step=1) == 1  # the first Ledger's, as its handle reads it
    assert _steps_as_b(store_spec, "at-step-stand-in") == list(range(7))


def test_a_stand_in_read_at_a_step_it_cannot_read_says_why(store_spec: StoreSpec, stand_in: Any) -> None:
    with pytest.raises(vc.ActorClassChangedError) as changed:
        stand_in.peek.run(at_step=3)  # the Gauge2's
    assert changed.value.at_step == 3
    with pytest.raises(vc.StepNotFoundError, match="not written yet"):
        stand_in.peek.run(at_step=7)
    with pytest.raises(ValueError, match="at_step must be a step number"):
        stand_in.peek.run(at_step=True)
    with pytest.raises(ValueError, match=r"add\(\) is a writer method; at_step="):
        stand_in.add.run(5, at_step=5)
    assert _steps_as_b(store_spec, "at-step-stand-in") == list(range(7))
    assert stand_in.peek.run() == 1


def test_a_stand_in_writer_given_at_step_by_options_is_refused_as_a_writer(
    store_spec: StoreSpec, stand_in: Any
) -> None:
    """``options(at_step=N)`` on a stand-in cannot tell a writer yet (before: every stand-in
    was refused there as "a writer method", ``peek`` too); the call, the method known, is."""
    with pytest.raises(ValueError, match=r"add\(\) is a writer method; at_step="):
        stand_in.add.options(at_step=5).run(1)
    with pytest.raises(ValueError, match="at_step must be a step number"):
        stand_in.peek.options(at_step=-1)
    assert _steps_as_b(store_spec, "at-step-stand-in") == list(range(7))


def test_a_stand_in_read_at_a_step_while_the_id_holds_another_class_is_refused(
    store_spec: StoreSpec, stand_in: Any
) -> None:
    """The method cannot be looked up in the class the actor holds now: refused, as the stand-in's
    other calls are there, nothing run."""

    def gauge_again() -> None:
        assert vc.delete_actor("at-step-stand-in") is True
        Gauge2.get_or_create("at-step-stand-in")

    as_b(store_spec, gauge_again)
    with pytest.raises(vc.ActorClassChangedError, match="Gauge2"):
        stand_in.peek.run(at_step=5)


def test_a_stand_in_reads_a_step_before_the_tombstone_of_its_deleted_actor(
    store_spec: StoreSpec, stand_in: Any
) -> None:
    """As a handle of the class does (its class looked up in the tombstone's)."""
    as_b(store_spec, lambda: vc.delete_actor("at-step-stand-in"))
    assert stand_in.peek.run(at_step=6) == 1
    with pytest.raises(vc.ActorDeletedError):
        stand_in.peek.run(at_step=7)


@vc.virtual_actor
class Stamp:
    def __init__(self) -> None:
        self.stamps: list[int] = []

    def stamp(self, *, at_step: int) -> int:
        """A writer taking ``at_step`` itself: the keyword is its argument, no step option."""
        self.stamps.append(at_step)
        return len(self.stamps)

    @vc.virtual_actor.readonly
    def seen(self, at_step: int = -1) -> tuple[int, int]:
        return at_step, len(self.stamps)


def test_a_stand_in_of_a_method_taking_at_step_itself_passes_it_to_the_method(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a handle of the class does: the keyword is the method's argument (the writer commits,
    the read reads the newest step); ``options(at_step=N)`` selects the step of the read."""
    vc.shutdown()
    try:
        as_a(store_spec, WARM)
        made = Stamp.get_or_create("at-step-stamp")
        data = pickle.dumps(made)

        def again(cls: Any) -> Callable[[], None]:
            def action() -> None:
                assert vc.delete_actor("at-step-stamp") is True
                cls.get_or_create("at-step-stamp")

            return action

        as_b(store_spec, again(Gauge2))
        with pytest.raises(vc.ActorClassChangedError):
            made.stamp.run(at_step=1)  # A learns the id holds a Gauge2
        as_b(store_spec, again(Stamp))  # steps: 0 Stamp, 1 tombstone, 2 Gauge2, 3 tombstone, 4 Stamp
        monkeypatch.delitem(definition_module._REGISTRY, Stamp.name)
        stand_in = pickle.loads(data)
        assert stand_in.stamp.run(at_step=99) == 1  # step 5
        assert tuple(stand_in.seen.run(at_step=7)) == (7, 1)
        assert tuple(stand_in.seen.options(at_step=4).run(at_step=7)) == (7, 0)
        assert _steps_as_b(store_spec, "at-step-stamp") == list(range(6))
    finally:
        vc.shutdown()

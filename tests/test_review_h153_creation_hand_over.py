"""Review h153: a background creation (``wait_for_init=False``) that settles hands the calls queued
behind it over one by one (``Creation.settle``). h150 made every hand-over run when one is
interrupted; an interrupt (Ctrl-C) landing *between* two hand-overs, where the loop goes on to
the next, still stopped the rest: their callers waited for good. The interrupt is forced there
with a trace function (an exception a trace function raises is raised in the traced frame, as
a signal handler's is, at the next line of the runtime's modules run after the first hand-over
returned: ``RUNTIME_FILES``)."""

from __future__ import annotations

import linecache
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest
from store_helpers import retune
from test_review_h150_ready_after_failed_creation import _hold_spawned

import vactor_cloud as vc
from vactor_cloud import (
    actor_runtime,
    class_bodies,
    head_flusher,
    init_settings,
    method_calls,
    runtime_creation,
    runtime_shutdown,
    runtime_work,
)
from vactor_cloud import creation as creation_module
from vactor_cloud import runtime as runtime_module
from vactor_cloud.core import ActorCore
from vactor_cloud.creation import Creation
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: the files of the runtime's code: ``runtime.py`` and the modules it is built of
RUNTIME_FILES = {
    m.__file__
    for m in (
        runtime_module,
        actor_runtime,
        runtime_work,
        runtime_creation,
        runtime_shutdown,
        class_bodies,
        creation_module,
        head_flusher,
        init_settings,
    )
}


@contextmanager
def _interrupt_at_the_next_runtime_line_once(armed: Callable[[], bool]) -> Iterator[list[int]]:
    """While inside: a ``KeyboardInterrupt`` at the first line of ``RUNTIME_FILES`` run once
    ``armed()`` is true (once). Yields a list that holds 1 once it was raised."""
    raised: list[int] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and not raised and armed():
            raised.append(1)
            raise KeyboardInterrupt
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in RUNTIME_FILES else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        yield raised
    finally:
        sys.settrace(before)


@pytest.mark.parametrize("error", [None, ValueError("the creation failed")])
def test_an_interrupt_between_two_hand_overs_leaves_no_queued_call_without_its_outcome(
    error: BaseException | None,
) -> None:
    creation = Creation(definition=None)  # type: ignore[arg-type]
    handed: list[tuple[int, BaseException | None]] = []
    for n in range(3):
        creation.defer(lambda e, n=n: handed.append((n, e)))
    # (The interrupt still reaches the thread it landed on.)
    with (
        _interrupt_at_the_next_runtime_line_once(lambda: len(handed) == 1) as raised,
        pytest.raises(KeyboardInterrupt),
    ):
        creation.settle(error)
    assert raised == [1]
    assert handed == [(0, error), (1, error), (2, error)]  # before: [(0, error)], the others never
    assert creation.settled and not creation.deferred


def test_an_interrupt_in_a_hand_over_still_hands_over_the_others_and_is_raised_first() -> None:
    """(h150's case, unit-sized: the interrupt raised by a hand-over itself.)"""
    creation = Creation(definition=None)  # type: ignore[arg-type]
    handed: list[int] = []

    def interrupted(_: BaseException | None) -> None:
        handed.append(0)
        raise KeyboardInterrupt

    def fails(_: BaseException | None) -> None:
        handed.append(1)
        raise ValueError("a hand-over failed")

    creation.defer(interrupted)
    creation.defer(fails)
    creation.defer(lambda _: handed.append(2))
    with pytest.raises(KeyboardInterrupt):
        creation.settle(None)
    assert handed == [0, 1, 2]


@vc.virtual_actor
class Adder:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def test_the_calls_queued_behind_a_background_creation_all_apply_when_an_interrupt_lands_between_hand_overs(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: three writer calls queued behind the creation; the interrupt lands on the
    thread that ran the creation, after the first was handed over to the actor."""
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 1)
    handle = Adder.get_or_create("h")
    (start_creation,) = held
    calls = [handle.add.run_async(k) for k in (1, 2, 3)]
    submit = ActorCore.submit
    submitted: list[int] = []

    def counted(core: ActorCore, call: Any) -> None:
        submit(core, call)
        submitted.append(1)

    monkeypatch.setattr(ActorCore, "submit", counted)
    with (
        _interrupt_at_the_next_runtime_line_once(lambda: len(submitted) == 1) as raised,
        pytest.raises(KeyboardInterrupt),
    ):
        start_creation()
    assert raised == [1]
    assert vc.get(calls, timeout=10) == [1, 3, 6]  # before: the 2nd and 3rd never finished
    vc.get(handle.ready(), timeout=10)


def test_an_interrupt_in_a_hand_over_before_the_call_reaches_the_actor_fails_that_call_with_it(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt landing in a hand-over before it gave the call to the actor (as it looks the
    actor's core up) left that call with no outcome: its caller waited for good. It is withdrawn
    now, failed with the interrupt (never applied later); the calls after it apply."""
    retune(wait_for_init=False)
    runtime = vc.get_runtime()
    held = _hold_spawned(runtime, monkeypatch, 1)
    handle = Adder.get_or_create("i")
    (start_creation,) = held
    calls = [handle.add.run_async(k) for k in (1, 2, 3)]
    raised: list[int] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and not raised and "runtime.core(" in _source_line(frame):
            raised.append(1)
            raise KeyboardInterrupt  # (the first hand-over, as it looks the core up)
        return local

    def hand_overs(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        return local if code.co_filename == method_calls.__file__ and code.co_name == "submit" else None

    before = sys.gettrace()
    sys.settrace(hand_overs)
    try:
        with pytest.raises(KeyboardInterrupt):
            start_creation()
    finally:
        sys.settrace(before)
    assert raised == [1]
    with pytest.raises(KeyboardInterrupt):  # before: TimeoutError (the call had no outcome)
        calls[0].result(timeout=10)
    assert vc.get(calls[1:], timeout=10) == [2, 5]


def _source_line(frame: FrameType) -> str:
    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)

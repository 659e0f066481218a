"""Review h153: a background creation (``wait_for_init=False``) that settles hands the calls queued
behind it over one by one (``Creation.settle``). h150 made every hand-over run when one is
interrupted; an interrupt (Ctrl-C) landing *between* two hand-overs, where the loop goes on to
the next, still stopped the rest: their callers waited for good. The interrupt is forced there
with a trace function (an exception a trace function raises is raised in the traced frame, as
a signal handler's is, at the next line of ``vactor_cloud/runtime.py`` run after the first
hand-over returned)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

from vactor_cloud import runtime as runtime_module
from vactor_cloud.runtime import Creation

pytestmark = pytest.mark.vactor_lanes("memory")


@contextmanager
def _interrupt_at_the_next_runtime_line_once(armed: Callable[[], bool]) -> Iterator[list[int]]:
    """While inside: a ``KeyboardInterrupt`` at the first line of ``runtime.py`` run once
    ``armed()`` is true (once). Yields a list that holds 1 once it was raised."""
    raised: list[int] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and not raised and armed():
            raised.append(1)
            raise KeyboardInterrupt
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == runtime_module.__file__ else None

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

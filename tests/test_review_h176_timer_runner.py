"""Review h176: the timer runner's open edges left by h172 (a claim task left unwatched by a
cancelled ``_within``; the tick's renewer; a torn heartbeat or claim deleted unconditionally).

A test that failed before its fix names it in its docstring; one that passed already says so.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import pytest

from vactor_cloud.errors import StorageError
from vactor_cloud.timer_runner import _within


# -- _within cancelled while its claim task finishes -----------------------------------------------
def _outer_cancelled_as_the_claim_ends(
    ending: Callable[[], Any], twice: bool
) -> tuple[list[dict[str, Any]], bool]:
    """Run ``_within`` over a claim that, once let go or cancelled, ends by ``ending()``
    (raises, or returns a version: the put landed). Cancel ``_within`` as the claim ends
    (``twice``: cancel it, and again while it waits for the claim it cancelled). What the
    loop's exception handler was told, once the claim task is gone; whether ``_within`` ended
    cancelled."""
    seen: list[dict[str, Any]] = []

    async def main() -> bool:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context))
        finishing = asyncio.Event()

        async def claim() -> Any:
            try:
                await finishing.wait()
            except asyncio.CancelledError:
                await asyncio.sleep(0)  # (as a store request winding down: a step more)
            return ending()

        outer = asyncio.ensure_future(_within(claim, 60.0, "timer-claims/a", "a timer claim"))
        for _ in range(3):
            await asyncio.sleep(0)
        if twice:
            outer.cancel()
            await asyncio.sleep(0)  # (it cancels the claim and waits for it...)
        else:
            finishing.set()  # (the claim's wake-up is queued before the cancellation's)
        outer.cancel()  # (...and is cancelled there)
        try:
            await outer
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        for _ in range(10):  # (the claim task ends, its callbacks run)
            await asyncio.sleep(0)
        return cancelled

    cancelled = asyncio.run(main())
    gc.collect()  # (a task whose exception nobody took says so when collected)
    return seen, cancelled


def _put_failed() -> Any:
    raise StorageError("the claim put failed as the tick was cancelled", "timer-claims/a")


@pytest.mark.parametrize("twice", [False, True])
def test_a_claim_whose_within_is_cancelled_as_it_fails_has_its_error_taken(twice: bool) -> None:
    """Before: ``_within`` cancelled (the runtime shut down, Ctrl-C, the operation's deadline)
    just as its claim task failed left the task's exception unretrieved (the task done, the
    ``finally`` did not wait for it; or, cancelled twice, the wait there was cut short): the
    loop logged "Task exception was never retrieved" with a traceback. Now the task's outcome
    is always taken (a done-callback), and logged at debug."""
    seen, cancelled = _outer_cancelled_as_the_claim_ends(_put_failed, twice)
    assert cancelled
    assert seen == [], [context.get("message") for context in seen]


def test_a_claim_that_lands_under_a_cancelled_within_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Before: a claim put that landed as ``_within`` was cancelled went unseen (nobody took
    the task's result). It holds the actor for its lease at most, as a claim cut off at
    lease/3 that lands (docs/timers.md) and its runner takes it back at its next tick: now it
    is logged (debug), with the key, so an operator can tell why an actor waited a lease."""
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        seen, cancelled = _outer_cancelled_as_the_claim_ends(lambda: "v1", twice=False)
    assert cancelled and seen == []
    landed = [r.getMessage() for r in caplog.records if "landed" in r.getMessage()]
    assert landed and "timer-claims/a" in landed[0], caplog.text

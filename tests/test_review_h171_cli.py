"""Review h171: ``vactor timers repair`` with an actor named twice, and ``vactor call``'s exit
code for a library error raised by the body of a method written otherwise than as a plain
``def`` (``async def``, under a decorator, a callable object, a nested helper).

Each test that failed before its fix says so in its docstring.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR, EXIT_NOT_FOUND


# -- 4. timers repair --actor X --actor X -----------------------------------------------------------
@vc.virtual_actor
class Alarm:
    def ring(self) -> None:
        pass


def test_an_actor_named_twice_to_timers_repair_is_repaired_once(store: str, vactor: Vactor) -> None:
    """Before: ``--actor a --actor a`` repaired ``a`` twice, and said "indexed 2 pending
    timers" of its one timer."""
    vc.init(store)
    for actor_id in ("a", "b"):
        Alarm.get_or_create(actor_id).ring.options(at=time.time() + 3600, timer_key="k").run()
    vc.shutdown()
    result = vactor("--json", "timers", "repair", "--actor", "a", "--actor", "b", "--actor", "a")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"indexed": 2}


# -- 5. vactor call: the body's own library error is exit 1 ------------------------------------------
def _with_wraps(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    return wrapper


def _without_wraps(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    wrapper.__annotations__ = dict(method.__annotations__)
    return wrapper


def _looking_first(method: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator whose own code makes the nested call (before the method's body runs)."""

    @functools.wraps(method)
    def wrapper(self: Any, to: str) -> Any:
        vc.get_actor(to)
        return method(self, to)

    return wrapper


def _look_up(to: str) -> None:
    vc.get_actor(to)


class _Forwarder:
    """A callable object as a method (called without the actor's ``self``, as Python calls one;
    before h176 the library read its first parameter as ``self``, so this one takes none)."""

    def __call__(self) -> int:
        vc.get_actor("nobody-here")
        return 1


@vc.virtual_actor
class Courier:
    def __init__(self) -> None:
        self.sent = 0

    async def forward_async(self, to: str) -> int:
        vc.get_actor(to)
        self.sent += 1
        return self.sent

    async def forward_async_later(self, to: str) -> int:
        await asyncio.sleep(0)  # (raised once the coroutine has been suspended and resumed)
        vc.get_actor(to)
        self.sent += 1
        return self.sent

    @_with_wraps
    def forward_wrapped(self, to: str) -> int:
        vc.get_actor(to)
        self.sent += 1
        return self.sent

    @_without_wraps
    def forward_unwrapped(self, to: str) -> int:
        vc.get_actor(to)
        self.sent += 1
        return self.sent

    @_looking_first
    def forward_checked(self, to: str) -> int:
        self.sent += 1
        return self.sent

    def forward_by_helper(self, to: str) -> int:
        def nested() -> None:
            _look_up(to)

        nested()
        self.sent += 1
        return self.sent

    forward_callable = _Forwarder()

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.sent


@pytest.mark.parametrize(
    "method",
    [
        "forward_async",
        "forward_async_later",
        "forward_wrapped",
        "forward_unwrapped",
        "forward_checked",
        "forward_by_helper",
        "forward_callable",
    ],
)
def test_a_library_error_raised_by_a_method_however_written_is_exit_1(
    store: str, vactor: Vactor, method: str
) -> None:
    """Before: a method whose decorator made the failing call (``forward_checked``) or a
    callable object (``forward_callable``, no ``__code__``) was not recognised as the one that
    raised: ``ActorNotFoundError`` exited 3, "not found", as though ``courier`` were missing."""
    vc.init(store)
    Courier.get_or_create("courier")
    vc.shutdown()
    result = vactor("call", "courier", method, *(() if method == "forward_callable" else ('"nobody-here"',)))
    assert result.code == EXIT_ERROR, result.err
    assert f"{method}() raised ActorNotFoundError" in one_line_error(result)
    vc.init(store)
    assert vc.get_actor("courier").count.run() == 0


@pytest.mark.parametrize("method", ["forward_async", "forward_checked"])
def test_the_call_s_own_not_found_keeps_exit_3(store: str, vactor: Vactor, method: str) -> None:
    vc.init(store)
    Courier.get_or_create("courier")
    vc.shutdown()
    assert vactor("call", "ghost", method, '"courier"').code == EXIT_NOT_FOUND
    assert vactor("call", "courier", method, '"courier"').code == 0

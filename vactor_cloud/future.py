"""ActorFuture: the result of ``run_async``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar, overload

from vactor_cloud._sync import in_loop_thread

__all__ = ["ActorFuture", "get"]

T = TypeVar("T")


class ActorFuture(concurrent.futures.Future[T]):
    """A :class:`concurrent.futures.Future` that can also be awaited from any event loop.

    ``fut.result(timeout)`` blocks a thread; ``await fut`` suspends a coroutine.
    A thread that blocks on it does the call's work itself when nobody else
    is (caller runs), so waiting never depends on a free pool thread.
    """

    #: runs the call's pending work on the waiting thread: ``help(timeout)``
    _help: Callable[[float | None], None] | None = None

    def _wait_helping(self, timeout: float | None) -> None:
        helper = self._help
        if helper is not None and not self.done() and not in_loop_thread():
            helper(timeout)

    def result(self, timeout: float | None = None) -> T:
        started = time.monotonic()
        self._wait_helping(timeout)
        return super().result(_remaining(timeout, started))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        started = time.monotonic()
        self._wait_helping(timeout)
        return super().exception(_remaining(timeout, started))

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()


def _remaining(timeout: float | None, started: float) -> float | None:
    if timeout is None:
        return None
    return max(0.0, timeout - (time.monotonic() - started))


@overload
def get(futures: concurrent.futures.Future[T], *, timeout: float | None = None) -> T: ...


@overload
def get(futures: Iterable[concurrent.futures.Future[Any]], *, timeout: float | None = None) -> list[Any]: ...


def get(futures: Any, *, timeout: float | None = None) -> Any:
    """Wait for one future (its result) or a list of them (a list of results), like ``ray.get``.

    ``timeout`` bounds the whole wait; ``TimeoutError`` when it passes. The
    exception a call raised is re-raised here.
    """
    if isinstance(futures, concurrent.futures.Future):
        return futures.result(timeout)
    items = list(futures)
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    for future in items:
        # Waiting on each in turn lets this thread help with the work (see ActorFuture).
        left = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
        try:
            future.exception(left)
        except concurrent.futures.TimeoutError:
            not_done = sum(1 for f in items if not f.done())
            raise TimeoutError(
                f"{not_done} of {len(items)} calls did not finish within {timeout} s"
            ) from None
    return [f.result() for f in items]

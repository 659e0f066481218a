"""ActorFuture: the result of ``run_async``."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator, Iterable
from typing import Any, TypeVar, overload

__all__ = ["ActorFuture", "get"]

T = TypeVar("T")


class ActorFuture(concurrent.futures.Future[T]):
    """A :class:`concurrent.futures.Future` that can also be awaited from any event loop.

    ``fut.result(timeout)`` blocks a thread; ``await fut`` suspends a coroutine.
    """

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()


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
    _, not_done = concurrent.futures.wait(items, timeout=timeout)
    if not_done:
        raise TimeoutError(f"{len(not_done)} of {len(items)} calls did not finish within {timeout} s")
    return [f.result() for f in items]

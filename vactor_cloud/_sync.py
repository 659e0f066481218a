"""The sync bridge: one IO thread runs an event loop; sync APIs submit coroutines to it.

The loop starts lazily, is shared by everything in the process, and is
recreated in a child after ``fork`` (the parent's loop thread does not exist
there). Calling :func:`sync` from the loop's own thread would deadlock, so it
refuses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BridgeTimeout", "get_loop", "in_loop_thread", "submit", "sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _reset_after_fork() -> None:
    global _loop, _thread, _lock
    _loop = None
    _thread = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's IO loop, started on first use in a daemon thread."""
    global _loop, _thread
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            new_loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                ready.set()
                new_loop.run_forever()

            thread = threading.Thread(target=run, name="vactor-io", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = new_loop, thread
        return _loop


def in_loop_thread() -> bool:
    """True when called from the IO loop's own thread."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the IO loop and return a thread-safe future for its result."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


class BridgeTimeout(Exception):
    """``sync(..., timeout=)`` ran out of time; the coroutine was cancelled."""


def sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the IO loop and wait for its result from a plain thread.

    After ``timeout`` seconds the coroutine is cancelled and
    :class:`BridgeTimeout` raised (a ``TimeoutError`` the coroutine itself
    raised passes through as it is).
    """
    if in_loop_thread():
        coro.close()
        raise RuntimeError(
            "vactor_cloud: a blocking call was made on vactor_cloud's own IO loop; "
            "use the async API (await / run_async) there"
        )
    future = submit(coro)
    try:
        return future.result(timeout)
    except TimeoutError:
        if future.done():
            raise
        future.cancel()
        raise BridgeTimeout(f"no result within {timeout} s") from None

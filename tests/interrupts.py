"""What the ``ctrl_c`` fixture (tests/conftest.py) makes SIGINT raise in the main thread, and a
stand-in that raises it at one chosen call."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class Interrupted(BaseException):
    """Raised by the ``ctrl_c`` fixture's SIGINT handler (a KeyboardInterrupt would stop pytest)."""


class InterruptOnce:
    """Stands in for a function: its first call on the main thread raises :class:`Interrupted`
    instead of running it (where Ctrl-C would land); every other call runs it. With
    ``after=True`` that first call runs it, then raises (Ctrl-C handled just as it returned:
    CPython looks for signals when a C function such as ``deque.append`` returns). ``fired``:
    the interrupt was raised. Set it on a class, as a method, with ``monkeypatch.setattr``: it
    is a plain function there (``self`` arrives as the first argument)."""

    def __init__(self, real: Callable[..., Any], *, after: bool = False) -> None:
        self.real = real
        self.after = after
        self.fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired and threading.current_thread() is threading.main_thread():
            self.fired = True
            if self.after:
                self.real(*args, **kwargs)
            raise Interrupted
        return self.real(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Callable[..., Any]:
        return self if instance is None else functools.partial(self, instance)


class LoopInterruptedOnce:
    """Stands for the IO loop (as what ``_sync.get_loop`` returns): the first callback the main
    thread asks it to queue is not queued, :class:`Interrupted` raised instead (Ctrl-C landing
    as ``call_soon_threadsafe`` was entered); everything else reaches the loop. ``fired``: the
    interrupt was raised."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> Any:
        if not self.fired and threading.current_thread() is threading.main_thread():
            self.fired = True
            raise Interrupted
        return self.loop.call_soon_threadsafe(callback, *args)

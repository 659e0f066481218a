"""Ctrl-C twice: the first lets the work in flight finish, the second ends the process at once.

Shared by the commands whose work in flight is an actor's method body, which nothing can stop
(``vactor timers run`` and ``tick``, ``vactor events drain``): waiting for it is the safe
default, and a user who cannot wait presses Ctrl-C again. :class:`SettledInterrupts` does the
same for work that comes in short batches worth finishing (``vactor compact --all``). Each
command says, in its own words, what the first Ctrl-C waits for and what stopping at once
leaves. :func:`sigterm_as_interrupt` makes SIGTERM do, while any command runs, what Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from vactor_cloud.cli._options import EXIT_INTERRUPTED
from vactor_cloud.cli._output import note

__all__ = ["SettledInterrupts", "second_interrupt_stops_at_once", "sigterm_as_interrupt", "stop_at_once"]


def stop_at_once(left: str) -> None:
    """End the process now, ``left`` (what stopping leaves) its last line on stderr: the threads
    running method bodies are not waited for (a KeyboardInterrupt would leave the process
    waiting for them at exit, and its runtime's shutdown with it). Exit 130, also under a
    program that called ``main()``."""
    # (RuntimeError: the signal came while this thread wrote stderr; it ends all the same)
    with contextlib.suppress(Exception):
        note(left)
        sys.stdout.flush()
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def second_interrupt_stops_at_once(stopping: str, left: str) -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt after saying ``stopping`` (what it waits for, and that
    Ctrl-C again stops at once); a second Ctrl-C meanwhile ends the process at once
    (:func:`stop_at_once` with ``left``). The SIGINT handler found is restored on exit; off
    the main thread (where signals are not delivered) Ctrl-C is left as it is."""
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            stop_at_once(left)
        interrupted.set()
        with contextlib.suppress(RuntimeError):  # (stderr being written by this thread: unsaid)
            note(stopping)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    found = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if found is None else found)


class SettledInterrupts:
    """Ctrl-C (and SIGTERM: :func:`sigterm_as_interrupt`) for a command whose work comes in
    short batches that are worth finishing (``vactor compact --all``: up to 8 compactions):
    within :meth:`in_flight` the first signal says ``stopping`` and lets the batch finish (the
    command checks :attr:`requested` after it, and stops there); a second one ends the process
    at once (:func:`stop_at_once` with ``left``). Outside :meth:`in_flight` (listing, waiting,
    printing) a signal raises ``KeyboardInterrupt`` at once, as without it. ``left()`` says
    what stopping at once leaves, when it does (counts known then). The SIGINT handler
    found is restored on exit; off the main thread nothing is changed (:attr:`requested` stays
    false)."""

    def __init__(self, stopping: str, left: Callable[[], str]) -> None:
        self.stopping = stopping
        self.left = left
        self.requested = threading.Event()
        self._flying = False

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if not self._flying:
            self.requested.set()
            raise KeyboardInterrupt
        if self.requested.is_set():
            stop_at_once(self.left())
        self.requested.set()
        with contextlib.suppress(RuntimeError):  # (stderr being written by this thread: unsaid)
            note(self.stopping)

    @contextlib.contextmanager
    def installed(self) -> Iterator[SettledInterrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        found = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, signal.SIG_DFL if found is None else found)

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """A batch that the first signal lets finish."""
        self._flying = True
        try:
            yield
        finally:
            self._flying = False


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM, while the command runs, does what Ctrl-C does at that moment: it calls the
    SIGINT handler in place (a command's own: the first lets the work in flight finish, a second
    stops at once), else raises ``KeyboardInterrupt``; so ``kill``, a container's stop or a
    CI job's timeout ends a command as Ctrl-C does: saying what was done and what remains, exit
    130. Only where SIGTERM has its default action (a program that called ``main()`` and set its
    own handler keeps it) and on the main thread; the default is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
            return
        raise KeyboardInterrupt  # (SIGINT ignored, a job started with &, or not Python's: stop all the same)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

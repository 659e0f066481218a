"""Ctrl-C twice: the first lets the work in flight finish, the second ends the process at once.

Shared by the commands whose work in flight is an actor's method body, which nothing can stop
(``vactor timers run`` and ``tick``, ``vactor events drain``): waiting for it is the safe
default, and a user who cannot wait presses Ctrl-C again. Each command says, in its own words,
what the first Ctrl-C waits for and what stopping at once leaves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from vactor_cloud.cli._options import EXIT_INTERRUPTED
from vactor_cloud.cli._output import note

__all__ = ["second_interrupt_stops_at_once", "stop_at_once"]


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

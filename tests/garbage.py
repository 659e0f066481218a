"""Garbage collection for tests that assert on what a collection frees.

``gc.collect()`` does nothing, and returns 0, while another thread's collection runs: a runtime's
loop and pool threads collect automatically, and a collection runs Python code (weak reference
callbacks, finalizers) during which the interpreter may switch to the test's thread. Such a
collection may be of the young generations only, leaving the test's older garbage (a store, a
core, a runtime) alive. A test that asserted after one ``gc.collect()`` failed so, only under load.
``full_collection`` returns once a full collection started by the calling thread has run.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

HANG = 30.0


def full_collection(within: float = HANG) -> None:
    """Collect every generation from this thread, waiting out any other thread's collection."""
    me = threading.get_ident()
    ran: list[bool] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2 and threading.get_ident() == me:
            ran.append(True)

    deadline = time.monotonic() + within
    gc.callbacks.append(note)
    try:
        while True:
            gc.collect()
            if ran:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"hang: no full garbage collection could run in {within} s")
            time.sleep(0.01)
    finally:
        gc.callbacks.remove(note)

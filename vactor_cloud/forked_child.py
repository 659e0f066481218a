"""What a forked child starts afresh: a module's process-wide lock and the records it guards.

A child has one thread, the one that forked. A lock another thread of the parent held at the
fork stays held in the child for ever (its first use there would wait for ever), and records
of what the parent's other threads were doing (calls applying, re-runs under way, waits)
speak of threads the child does not have. :func:`renew_in_a_forked_child` registers, for a
module, its lock and those records: in a forked child the lock is a new one and the records
are empty.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

__all__ = ["renew_in_a_forked_child"]

_LOCK = type(threading.Lock())


class _Clearable(Protocol):
    def clear(self) -> None: ...


def renew_in_a_forked_child(namespace: dict[str, Any], lock: str, *records: _Clearable) -> None:
    """In every child forked from now on, ``namespace[lock]`` (a module's ``globals()``, or a
    process-wide object's ``vars()``, and the name of its lock) is a new lock and each of
    ``records`` is emptied.

    Raises ``TypeError`` when ``lock`` names no lock in ``namespace``."""
    if not isinstance(namespace.get(lock), _LOCK):
        raise TypeError(f"{lock!r} names no lock of {namespace.get('__name__', 'the object')!r}")

    def renew() -> None:
        for record in records:
            record.clear()
        namespace[lock] = threading.Lock()

    os.register_at_fork(after_in_child=renew)

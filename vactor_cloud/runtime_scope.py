"""Which runtime this context uses, when it is not the process's: ``runtime.own_runtime()``'s.

A context variable holds it (``runtime._OwnRuntime``); :func:`carry_runtime` hands it to
another thread. Its own module, below the runtime: the modules that start threads for a call
(``future``, ``subtask``, ``timer_runner``) carry it without importing the runtime.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["carry_runtime", "own"]

T = TypeVar("T")

#: the ``runtime._OwnRuntime`` this context uses in place of the process's runtime, if any
own: contextvars.ContextVar[Any] = contextvars.ContextVar("vactor_own_runtime", default=None)


def carry_runtime(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, to be run on another thread, using the runtime this thread uses: the one of its
    ``own_runtime()``, if any (else ``fn`` itself: the other thread uses the process's)."""
    scope = own.get()
    if scope is None:
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        token = own.set(scope)
        try:
            return fn(*args, **kwargs)
        finally:
            own.reset(token)

    return run

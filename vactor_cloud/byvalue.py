"""Arguments and results cross the call boundary by value (DESIGN.md §10).

A call's arguments are serialized when the call is made, and each attempt
to run the method gets its own fresh copy; a result is serialized when the
method returns, and its caller gets a copy (one that cannot be read back
fails that call alone, with ``TypeError``). So no object a caller holds is
ever shared with the actor's cached live instance: mutating a returned list,
or an argument after ``run_async``, cannot leak into a later commit.

Immutable scalars (and tuples of them) are passed as they are: copying them
would change nothing but the cost.
"""

from __future__ import annotations

import pickle
from typing import Any

from vactor_cloud import bytecode

__all__ = ["Frozen", "freeze", "freeze_arguments", "thaw", "thaw_arguments"]

_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), type(...), range})


def _atomic(value: Any) -> bool:
    # Iterative: a tuple nested deeper than the recursion limit is still a tuple of atoms (by
    # recursion its check raised RecursionError from the call site, not a copy nor TypeError).
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is tuple:
            pending.extend(item)
        elif kind not in _ATOMS:
            return False
    return True


class Frozen:
    """A value held by value: the object itself if immutable, else its pickle."""

    __slots__ = ("data", "value")

    def __init__(self, value: Any, data: bytes | None) -> None:
        self.value: Any = value
        self.data: bytes | None = data


def _dumps(value: Any, what: str, where: str | None = None) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    try:
        # Lambdas, local classes and the like: cloudpickle pickles them by value.
        return bytecode.dumps(value)
    except Exception as exc:
        raise TypeError(
            f"{_of(what, where)} cannot be passed by value: {exc}; actor calls copy their {what}s "
            "(as Ray did), so they must be picklable"
        ) from exc


def _of(what: str, where: str | None) -> str:
    return what if where is None else f"the {what} of {where}"


def freeze(value: Any, what: str = "result", where: str | None = None) -> Frozen:
    """``value`` held by value; ``TypeError`` if it cannot be copied.

    ``where`` names the call (``"m() of actor 'a'"``) for the error: a caller with many calls
    in flight cannot tell which one returned the culprit otherwise."""
    if _atomic(value):
        return Frozen(value, None)
    return Frozen(None, _dumps(value, what, where))


def thaw(frozen: Frozen, what: str = "result", where: str | None = None) -> Any:
    """A fresh, independent copy of the frozen value; ``TypeError`` if it cannot be read back."""
    if frozen.data is None:
        return frozen.value
    try:
        return bytecode.loads(frozen.data)
    except Exception as exc:
        raise TypeError(
            f"{_of(what, where)} cannot be passed by value: it pickles, but reading it back fails: {exc!r}"
        ) from exc


def freeze_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Frozen:
    if _atomic(args) and all(_atomic(v) for v in kwargs.values()):
        return Frozen((args, dict(kwargs)), None)
    return Frozen(None, _dumps((args, kwargs), "argument"))


def thaw_arguments(frozen: Frozen) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if frozen.data is None:
        args, kwargs = frozen.value
        return args, dict(kwargs)
    try:
        args, kwargs = bytecode.loads(frozen.data)
    except Exception as exc:
        # Else the body's run failed with the argument's own error (a ValueError ...), which
        # its caller took for the method's, and ``max_retries`` ran into again and again.
        raise TypeError(
            f"argument cannot be passed by value: it pickles, but reading it back fails: {exc!r}"
        ) from exc
    return args, kwargs

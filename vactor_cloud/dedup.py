"""The idempotency table carried inside every step object.

Each entry maps an idempotency key to the outcome of the first call that
used it (its result, or the exception it raised) and when it was recorded.
Because the table is part of the step written by the create-only put, a key
is recorded if and only if its call's effect is committed: deduplication is
atomic with the commit.

Retention window: an entry is kept while it is among the newest
``max_keys`` entries *or* younger than ``max_age`` seconds, whichever keeps
more. Past the window a repeated key runs the method again.

Recorded exceptions: with the ``"pickle"`` serializer the exception object
itself is stored and re-raised as it was. With ``"json"`` (which never runs
code on read) only its type name, arguments and repr are stored: a builtin
exception type (``ValueError``, ``KeyError``, ...) whose arguments are plain
data is rebuilt as the same type with the same arguments; any other
exception comes back as :class:`RecordedError`, whose ``type_name`` and
message say what was raised. Results under ``"json"`` come back as JSON
gives them (tuples as lists, dict keys as strings).
"""

from __future__ import annotations

import builtins
import json
import pickle
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import cloudpickle

from vactor_cloud.errors import StateSerializationError, VactorError

__all__ = ["DEFAULT_WINDOW", "DedupTable", "Outcome", "RecordedError"]

#: (max_keys, max_age_seconds)
DEFAULT_WINDOW = (10_000, 24 * 3600.0)


class RecordedError(VactorError, RuntimeError):
    """An exception recorded under the json serializer whose type cannot be rebuilt safely.

    ``type_name`` is ``module.qualname`` of the original exception; the
    message is its ``repr``.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, str(self)))


def _exception_to_json(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    row: dict[str, Any] = {"type": f"{cls.__module__}.{cls.__qualname__}", "repr": repr(exc)}
    try:
        json.dumps(exc.args, allow_nan=False)
        row["args"] = list(exc.args)
    except (TypeError, ValueError):
        pass
    return row


def _exception_from_json(value: Any) -> BaseException:
    if isinstance(value, str):  # written before exceptions were stored as objects
        return RuntimeError(value)
    type_name = str(value.get("type", ""))
    module, _, name = type_name.rpartition(".")
    cls = getattr(builtins, name, None) if module == "builtins" else None
    args = value.get("args")
    if isinstance(cls, type) and issubclass(cls, Exception) and isinstance(args, list):
        try:
            return cls(*args)
        except Exception:
            pass
    return RecordedError(type_name, str(value.get("repr", type_name)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """A call's result (``ok``) or the exception it raised."""

    ok: bool
    value: Any

    def unwrap(self) -> Any:
        if self.ok:
            return self.value
        raise self.value

    def settle(self, future: Future[Any]) -> None:
        """Complete ``future`` with this outcome, unless it is already done (e.g. cancelled)."""
        if future.done():
            return
        if self.ok:
            future.set_result(self.value)
        else:
            future.set_exception(self.value)


class DedupTable:
    """Idempotency key -> (time, Outcome), in insertion order."""

    def __init__(self, entries: dict[str, tuple[float, Outcome]] | None = None) -> None:
        self.entries: dict[str, tuple[float, Outcome]] = entries or {}
        self.changed = False

    @classmethod
    def load(cls, data: bytes, serializer: str) -> DedupTable:
        if not data:
            return cls()
        if serializer == "json":
            raw = json.loads(data.decode("utf-8"))
            return cls({k: (t, Outcome(ok, v if ok else _exception_from_json(v))) for k, t, ok, v in raw})
        loaded = pickle.loads(data)
        return cls({k: (t, Outcome(ok, v)) for k, t, ok, v in loaded})

    def get(self, key: str) -> Outcome | None:
        entry = self.entries.get(key)
        return None if entry is None else entry[1]

    def record(self, key: str, outcome: Outcome, when: float) -> None:
        self.entries[key] = (when, outcome)
        self.changed = True

    def dump(self, serializer: str, window: tuple[int, float], now: float) -> bytes:
        max_keys, max_age = window
        items = list(self.entries.items())
        keep_from = max(0, len(items) - max_keys)
        kept = [
            (k, t, o.ok, o.value)
            for i, (k, (t, o)) in enumerate(items)
            if i >= keep_from or now - t <= max_age
        ]
        try:
            if serializer == "json":
                rows = [(k, t, ok, v if ok else _exception_to_json(v)) for k, t, ok, v in kept]
                return json.dumps(rows, separators=(",", ":"), allow_nan=False).encode("utf-8")
            return bytes(cloudpickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL))
        except (TypeError, ValueError, pickle.PicklingError) as exc:
            raise StateSerializationError(
                f"cannot record the result of an idempotent call: {exc}; "
                "idempotent calls must return serializable results"
            ) from exc

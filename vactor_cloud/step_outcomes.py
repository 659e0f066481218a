"""The outcomes of a step's posted calls, encoded per call (:func:`encode_outcomes`,
:func:`decode_outcomes`).

Outcomes travel in the step that applied the calls (``StepRecord.posted``:
call id -> result or exception, each pickled on its own), never copied into
later steps (but the next one's ``carried``, when small). A poster
learns its outcome by reading that step; the cursor tells it whether (and
from which step on) to look.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

from vactor_cloud import bytecode
from vactor_cloud.dedup import Outcome, recorded_exception, safe_repr
from vactor_cloud.errors import IntegrityError
from vactor_cloud.log_records import OUTCOMES_MAGIC

__all__ = ["Outcomes", "decode_outcomes", "encode_outcomes", "legacy_outcomes"]


_COUNT = struct.Struct(">I")
_ID_LEN = struct.Struct(">I")
_VALUE_LEN = struct.Struct(">Q")


def encode_outcomes(outcomes: dict[str, Outcome]) -> bytes:
    """A step's outcomes, encoded per call: each pickled on its own, so that a result one process
    cannot load (its class is in a module only its caller's process has) fails the reads of
    that call's outcome alone. Layout: docs/protocol.md ("Step objects")."""
    out = bytearray(OUTCOMES_MAGIC)
    out += _COUNT.pack(len(outcomes))
    for call_id, o in outcomes.items():
        # An exception that would not load back (its __init__ does not take its args) is
        # recorded as a RecordedError naming it. (Results were read back already: they
        # travel by value.)
        ok, value = o.ok, o.value if o.ok else recorded_exception(o.value, "pickle")
        try:
            data = bytecode.dumps(value)
        except Exception:
            # One unpicklable result must not lose the others: record it as its repr.
            ok = False
            error = RuntimeError(f"the call's result could not be recorded: {safe_repr(value)}"[:500])
            data = bytecode.dumps(error)
        name = call_id.encode("utf-8", "surrogatepass")  # (ids vactor_cloud makes are hex)
        out += _ID_LEN.pack(len(name)) + name + bytes([ok]) + _VALUE_LEN.pack(len(data)) + data
    return bytes(out)


def legacy_outcomes(outcomes: dict[str, Outcome], limit: int) -> bytes:
    """``outcomes`` in the earlier encoding (one pickle of ``{call_id: (ok, value)}``), for a
    reader that knows only that (a process of an earlier release posting to the same actor):
    ``b""`` when it would be longer than ``limit`` bytes or a value does not pickle (such a
    reader then gets ``CommitOutcomeUnknownError``, as for a compacted step)."""
    rows = {
        call_id: (o.ok, o.value if o.ok else recorded_exception(o.value, "pickle"))
        for call_id, o in outcomes.items()
    }
    try:
        data = bytecode.dumps(rows)
    except Exception:
        return b""
    return data if len(data) <= limit else b""


class Outcomes(Mapping[str, Outcome]):
    """A step's outcomes (encoded per call) by call id, each unpickled when first read: a lookup of
    one call's outcome raises only if that outcome does not load here. ``in``, ``len`` and
    iteration load nothing."""

    __slots__ = ("_key", "_loaded", "_raw")

    def __init__(self, raw: dict[str, tuple[bool, bytes]], key: str = "outcomes") -> None:
        self._raw = raw
        self._key = key
        self._loaded: dict[str, Outcome] = {}

    def __getitem__(self, call_id: str) -> Outcome:
        found = self._loaded.get(call_id)
        if found is None:
            ok, data = self._raw[call_id]
            try:
                value = bytecode.loads(data)
            except (ImportError, AttributeError):
                raise  # its class is not here: that call's outcome alone does not load
            except Exception as exc:
                # Bytes that are no pickle (or that raise while loading; a KeyError would pass
                # for "no outcome for this call" with ``get``).
                raise IntegrityError(self._key, f"outcome of call {call_id!r}: {exc!r}") from exc
            found = self._loaded[call_id] = Outcome(ok, value)
        return found

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def decode_outcomes(data: bytes, key: str = "outcomes") -> Mapping[str, Outcome]:
    """A step's ``posted`` (or ``carried``) outcomes by call id. Encoded per call (:func:`encode_outcomes`):
    each outcome loads when it is read; as one pickle of ``{call_id: (ok, value)}``,
    written before) loads them all now, and fails whole. Malformed: ``IntegrityError`` (``key``:
    the step's)."""
    if not data:
        return {}
    if not data.startswith(OUTCOMES_MAGIC):
        try:
            rows = bytecode.loads(data)
        except (ImportError, AttributeError):
            raise  # a class not here: as before, the whole part does not load
        except Exception as exc:
            raise IntegrityError(key, f"malformed outcomes (one pickle): {exc!r}") from exc
        if not isinstance(rows, dict) or not all(
            isinstance(call_id, str) and isinstance(row, tuple) and len(row) == 2
            for call_id, row in rows.items()
        ):
            raise IntegrityError(key, "malformed outcomes (one pickle): not {call_id: (ok, value)}")
        return {call_id: Outcome(bool(ok), value) for call_id, (ok, value) in rows.items()}
    try:
        return Outcomes(_parse_outcomes(data), key)
    except (ValueError, struct.error) as exc:  # (UnicodeDecodeError is a ValueError)
        raise IntegrityError(key, f"malformed outcomes: {exc}") from None


def _parse_outcomes(data: bytes) -> dict[str, tuple[bool, bytes]]:
    """Outcomes encoded per call, by call id, their values still pickled. Every length is
    checked against what is left before anything is taken (no allocation beyond ``data``)."""
    pos = len(OUTCOMES_MAGIC)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ValueError("outcomes: truncated")
        pos += n
        return data[pos - n : pos]

    raw: dict[str, tuple[bool, bytes]] = {}
    (count,) = _COUNT.unpack(take(_COUNT.size))
    for _ in range(count):
        call_id = take(_ID_LEN.unpack(take(_ID_LEN.size))[0]).decode("utf-8", "surrogatepass")
        ok = take(1)[0]
        value = take(_VALUE_LEN.unpack(take(_VALUE_LEN.size))[0])
        if ok > 1 or call_id in raw:
            raise ValueError("outcomes: malformed")
        raw[call_id] = (bool(ok), value)
    if pos != len(data):
        raise ValueError("outcomes: trailing bytes")
    return raw

"""The idempotency table, reachable from every step object.

Each entry maps an idempotency key to the outcome of the first call that
used it (its result, or the exception it raised) and when it was recorded.
Because what a commit records is part of the step written by the create-only
put, a key is recorded if and only if its call's effect is committed:
deduplication is atomic with the commit.

Where the table lives (:class:`StepDedup`): a step carries the whole table
only while it is small (at most :data:`DELTA_MAX_BYTES` serialized, format
1, as every step did before). Past that, a step names a *checkpoint*, an
immutable object ``dedup/<step>-<token>`` holding the table as it was then,
and carries only the entries recorded since (the delta, format 2). When the
delta outgrows :data:`DELTA_MAX_BYTES`, the commit that grew it writes a new
checkpoint (the merged table, cut to the window) before its step and starts
an empty delta. So a step's size and an unkeyed commit's cost do not depend
on the window: an unkeyed commit carries the delta's bytes over without
reading them, and the checkpoint is read (once per process and checkpoint)
only when a call carries a key or an event is folded.

Large outcomes (:data:`OUTCOME_OBJECT_BYTES`): an outcome whose encoding is larger is
written once, by the commit whose checkpoint first holds it, as an immutable object
``dedup/outcomes/<step>-<sha256>`` (:func:`outcome_bytes`), and the checkpoint names it
(:class:`OutcomeRef`; such a checkpoint is format 3, which older readers refuse). So later
checkpoints carry its name, not its bytes. A later commit recording the same bytes names
the object its own base checkpoint names, else writes one of its own step. Such an outcome
is read (one GET) only when a call with its key comes again (:meth:`StepDedup.fetch`); the
decoded table a process keeps holds the name alone.

Retention window: an entry is kept while it is among the newest
``max_keys`` entries *or* younger than ``max_age`` seconds, whichever keeps
more. Past the window a repeated key runs the method again. An entry's age is
the committing process's clock minus the recording one's: it is kept
``min(max_age, CLOCK_SKEW)`` longer than ``max_age`` by that measure
(:func:`kept_for`), so that a committer whose clock runs ahead by up to that
does not forget a key still inside the window.

Recorded outcomes are held by value: what the table records is decoded
from its own encoding when the call is recorded (:func:`recorded_outcome`),
so it never is an object a caller holds, and each caller a recorded outcome
is delivered to gets its own copy (:func:`delivered`).

What is an outcome (:func:`is_outcome`): a result, or an exception the method raised as its
answer. A fault of the store, of the runtime or of the process, or an interrupt, that a body
raises (or lets through from a nested actor call) is no answer: its caller gets it, nothing
of the call commits, and a retry with the key runs the call (the key records nothing).

Recorded exceptions: with the ``"pickle"`` serializer the exception object
itself is stored and re-raised as it was, if it survives the trip
(``loads(dumps(exc))``); one that does not (an ``__init__`` whose arguments
are not ``args``, an unpicklable attribute) is recorded as a
:class:`RecordedError` naming its type and message, while its caller still
gets the original. With ``"json"`` (which never runs
code on read) only its type name, arguments and repr are stored: a builtin
exception type (``ValueError``, ``KeyError``, ...) whose arguments are plain
data is rebuilt as the same type with the same arguments; any other
exception comes back as :class:`RecordedError`, whose ``type_name`` and
message say what was raised. Results under ``"json"`` come back as JSON
gives them (tuples as lists, dict keys as strings).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import pickle
import sys
import uuid
from collections.abc import Iterable
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle

from vactor_cloud import bytecode
from vactor_cloud.byvalue import freeze, thaw
from vactor_cloud.errors import (
    ActorBusyError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    IntegrityError,
    NestedCallPendingError,
    NotFoundError,
    RuntimeShutdownError,
    StateSerializationError,
    StorageError,
    StorageNotChosenError,
    VactorError,
    VirtualActorNotInitializedError,
)
from vactor_cloud.lease import CLOCK_SKEW
from vactor_cloud.state import expect_serializer

if TYPE_CHECKING:
    from vactor_cloud.log import ActorLog
    from vactor_cloud.log_records import StepRecord

__all__ = [
    "DEFAULT_WINDOW",
    "DELTA_MAX_BYTES",
    "NOT_OUTCOMES",
    "OUTCOME_OBJECT_BYTES",
    "DedupFields",
    "DedupTable",
    "Outcome",
    "OutcomeRef",
    "RecordedError",
    "StepDedup",
    "delivered",
    "is_outcome",
    "outcome_bytes",
    "recorded_exception",
    "recorded_outcome",
]

#: (max_keys, max_age_seconds)
DEFAULT_WINDOW = (10_000, 24 * 3600.0)


def kept_for(max_age: float) -> float:
    """How old (by the committer's clock, against the recorder's) an entry outside the newest
    ``max_keys`` may be and stay: ``max_age``, plus the skew between those clocks that
    ``max_age`` must survive, ``CLOCK_SKEW`` (a window shorter than that: ``max_age``, so 0
    stays 0). Aged by ``max_age`` alone, a retry a moment after the key was recorded, by a
    process whose clock runs a minute ahead, found a key recorded ``max_age`` minus 10 s ago
    forgotten, and its call applied twice inside the window."""
    return max_age + min(max_age, CLOCK_SKEW)


#: a table or delta a step may carry before the commit writes a checkpoint instead
DELTA_MAX_BYTES = 2048

#: errors about the machinery, not the call: the store failed or gave back damaged bytes, the
#: runtime shut down or was never given a store, a commit gave up or left its outcome unknown
#: (a nested call's too: ``NestedCallPendingError``), an actor stayed busy or was read before
#: its ``__init__`` committed (``VirtualActorNotInitializedError``: not yet), a sub-task's
#: executor lost its worker (a process pool's, killed), the process ran out of memory. A retry
#: may well succeed. (Not ``RecursionError``: nearly always the method's own unbounded
#: recursion, raised by every retry; recorded, it consumes its timer or event rather than have
#: them run for ever.) Dask's ``KilledWorker`` is one too (:func:`_dask_lost_its_workers`).
NOT_OUTCOMES: tuple[type[BaseException], ...] = (
    StorageError,
    IntegrityError,
    RuntimeShutdownError,
    StorageNotChosenError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    NestedCallPendingError,
    ActorBusyError,
    VirtualActorNotInitializedError,
    BrokenExecutor,
    MemoryError,
)


def _dask_lost_its_workers(exc: BaseException) -> bool:
    """Whether ``exc`` is Dask's ``distributed.scheduler.KilledWorker``: every worker that ran
    the sub-task died (out of memory, preempted, its node lost), as a process pool's
    ``BrokenExecutor``. Never imports Dask: a process holding one imported it already."""
    scheduler = sys.modules.get("distributed.scheduler")
    killed = getattr(scheduler, "KilledWorker", None)
    return isinstance(killed, type) and isinstance(exc, killed)


def _is_fault(exc: BaseException) -> bool:
    return isinstance(exc, NOT_OUTCOMES) or _dask_lost_its_workers(exc)


def is_outcome(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a writer call's body, is the call's outcome: recorded under
    its idempotency key (a retry re-raises it), and consuming the timer or event it ran for.

    Not an interrupt (a ``BaseException`` that is no ``Exception``: ``SystemExit``,
    ``KeyboardInterrupt``, ``CancelledError``), nor one of :data:`NOT_OUTCOMES` or Dask's
    ``KilledWorker``, nor an exception group holding any of those (beside errors of the
    method's own too: a retry may well go otherwise): such a call is excluded (nothing of it
    commits), its caller gets the error, and a retry runs it again.
    """
    if not isinstance(exc, Exception) or _is_fault(exc):
        return False
    if isinstance(exc, ExceptionGroup):
        return exc.subgroup(_is_fault) is None
    return True


class RecordedError(VactorError, RuntimeError):
    """A recorded exception that cannot be rebuilt as it was: its type is not safe to
    rebuild (json serializer), or it does not survive pickling (pickle serializer).

    ``type_name`` is ``module.qualname`` of the original exception; the
    message is its ``repr``.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, str(self)))


def _type_name(value: object) -> str:
    cls = value if isinstance(value, type) else type(value)
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a stand-in naming its type when its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{_type_name(value)} (repr failed)>"


def _stand_in(exc: BaseException) -> RecordedError:
    return RecordedError(_type_name(exc), safe_repr(exc))


def _exception_to_json(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, RecordedError):  # a stand-in stays one for the exception it names
        return {"type": exc.type_name, "repr": str(exc)}
    row: dict[str, Any] = {"type": _type_name(exc), "repr": safe_repr(exc)}
    try:
        json.dumps(exc.args, allow_nan=False)
        row["args"] = list(exc.args)
    except Exception:  # TypeError, ValueError, RecursionError, ...
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
        try:
            raise self.value
        finally:
            del self  # (no cycle: the traceback holds this frame, the outcome its exception)

    def settle(self, future: Future[Any]) -> None:
        """Complete ``future`` with this outcome, unless it is already done (e.g. cancelled)."""
        if future.done():
            return
        if self.ok:
            future.set_result(self.value)
        else:
            future.set_exception(self.value)


@dataclass(frozen=True, slots=True)
class OutcomeRef(Outcome):
    """An entry of a table whose outcome is the object ``dedup/outcomes/<name>`` (``value``
    is None): read with :meth:`StepDedup.fetch` before it is given to anyone."""

    name: str = ""

    @property
    def digest(self) -> str:
        """The SHA-256 (hex) of the object's part ``outcome``: the name's end."""
        return self.name.rpartition("-")[2]

    def unwrap(self) -> Any:
        raise RuntimeError(f"the outcome object {self.name} was not read (StepDedup.fetch)")

    def settle(self, future: Future[Any]) -> None:
        raise RuntimeError(f"the outcome object {self.name} was not read (StepDedup.fetch)")


class DedupTable:
    """Idempotency key -> (time, Outcome), in insertion order."""

    def __init__(self, entries: dict[str, tuple[float, Outcome]] | None = None) -> None:
        self.entries: dict[str, tuple[float, Outcome]] = entries or {}
        self.changed = False

    @classmethod
    def load(cls, data: bytes, serializer: str) -> DedupTable:
        if not data:
            return cls()
        rows = json.loads(data.decode("utf-8")) if serializer == "json" else bytecode.loads(data)
        return cls({row[0]: (row[1], _outcome_of_row(row, serializer)) for row in rows})

    def get(self, key: str) -> Outcome | None:
        entry = self.entries.get(key)
        return None if entry is None else entry[1]

    def record(self, key: str, outcome: Outcome, when: float) -> None:
        self.entries[key] = (when, outcome)
        self.changed = True

    def trimmed(self, window: tuple[int, float], now: float) -> dict[str, tuple[float, Outcome]]:
        """The entries inside the window: the newest ``max_keys``, and any younger than
        ``kept_for(max_age)``."""
        max_keys, max_age = window
        kept = kept_for(max_age)
        keep_from = max(0, len(self.entries) - max_keys)
        return {
            k: (t, o)
            for i, (k, (t, o)) in enumerate(self.entries.items())
            if i >= keep_from or now - t <= kept
        }

    def dump(self, serializer: str, window: tuple[int, float], now: float) -> bytes:
        return _serialize(self.trimmed(window, now).items(), serializer)


def _outcome_of_row(row: Any, serializer: str) -> Outcome:
    """A row ``[key, time, ok, value]``, or ``[key, time, ok, null, name]`` naming an outcome
    object (format 3 checkpoints only), as the table holds it."""
    ok = row[2]
    if len(row) == 5:
        return OutcomeRef(bool(ok), None, str(row[4]))
    value = row[3]
    return Outcome(ok, value if ok or serializer != "json" else _exception_from_json(value))


#: a row of a table: ``(key, time, ok, value)``, or ``(key, time, ok, None, name)``
_Row = tuple[Any, ...]


def _row(key: str, when: float, outcome: Outcome) -> _Row:
    if isinstance(outcome, OutcomeRef):
        return (key, when, outcome.ok, None, outcome.name)
    return (key, when, outcome.ok, outcome.value)


def _encode(rows: list[_Row], serializer: str) -> bytes:
    if serializer == "json":
        plain = [row if row[2] or len(row) == 5 else (*row[:3], _exception_to_json(row[3])) for row in rows]
        return json.dumps(plain, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return bytecode.dumps(rows)


def _serialize(entries: Iterable[tuple[str, tuple[float, Outcome]]], serializer: str) -> bytes:
    rows = [_row(k, t, o) for k, (t, o) in entries]
    try:
        return _encode(rows, serializer)
    except Exception:
        pass
    # Outcomes are checked when recorded (recorded_outcome), so this is a row from elsewhere
    # (an older table, an event): it alone is recorded as a stand-in, not the commit failed.
    safe: list[_Row] = []
    for row in rows:
        try:
            _encode([row], serializer)
            safe.append(row)
        except Exception as exc:
            k, t, _, v = row
            what = f"{_type_name(v)} (it cannot be recorded: {exc})"
            safe.append((k, t, False, RecordedError(_type_name(v), what)))
    return _encode(safe, serializer)


#: an outcome encoded larger than this is stored once, as an object the table names
#: (``dedup/outcomes/<step>-<sha256>``), rather than in every checkpoint while its key is
#: in the window. (Past the 2 KB of a delta, so such an outcome is only ever in a checkpoint.)
OUTCOME_OBJECT_BYTES = 64 * 1024


def outcome_bytes(outcome: Outcome, serializer: str) -> bytes:
    """What an outcome object holds (its part ``outcome``): a table of the one row
    ``("", 0.0, ok, value)``, encoded as a table is; its SHA-256 ends the object's name."""
    return _serialize([("", (0.0, outcome))], serializer)


def outcome_from_bytes(data: bytes, serializer: str, where: str) -> Outcome:
    """The outcome an object's part ``outcome`` holds (its digest checked by its reader);
    ``IntegrityError`` unless it is the one row :func:`outcome_bytes` writes."""
    try:
        entries = DedupTable.load(data, serializer).entries
    except Exception as exc:
        raise IntegrityError(where, f"not an outcome: {exc}") from None
    if list(entries) != [""] or isinstance(entries[""][1], OutcomeRef):
        raise IntegrityError(where, "not one outcome")
    return entries[""][1]


def _decode(data: bytes, serializer: str) -> list[Any]:
    """The rows of ``data``, strictly (no stand-ins)."""
    if serializer == "json":
        return list(json.loads(data.decode("utf-8")))
    return list(bytecode.loads(data))


def recorded_outcome(outcome: Outcome, serializer: str) -> Outcome:
    """``outcome`` as the table will give it back: encoded as the table encodes it, then
    decoded. So the table never holds an object a caller holds, and never a row that a
    later load of the table could not rebuild.

    A result that cannot make the trip raises ``StateSerializationError`` (while its call
    can still be excluded); an exception that cannot is recorded as a :class:`RecordedError`
    naming it (:func:`recorded_exception`).
    """
    if not outcome.ok:
        return Outcome(False, recorded_exception(outcome.value, serializer))
    try:
        encoded = _encode([("", 0.0, True, outcome.value)], serializer)
        value = _decode(encoded, serializer)[0][3]
    except Exception as exc:
        raise StateSerializationError(
            f"cannot record the result of an idempotent call: {exc}; "
            "idempotent calls must return results that can be serialized and read back"
        ) from exc
    return Outcome(True, value)


def recorded_exception(exc: BaseException, serializer: str) -> BaseException:
    """``exc`` as the table will give it back; never raises.

    ``"pickle"``: a copy of ``exc`` if it survives ``loads(dumps(exc))``, else a
    :class:`RecordedError` with its type name and repr. ``"json"``: what
    :func:`_exception_from_json` rebuilds.
    """
    try:
        if serializer == "json":
            row = json.loads(json.dumps(_exception_to_json(exc), allow_nan=False))
            return _exception_from_json(row)
        copy = pickle.loads(cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        if isinstance(copy, BaseException):
            return copy
    except Exception:
        pass
    return _stand_in(exc)


def delivered(outcome: Outcome) -> Outcome:
    """A recorded outcome for one caller: its own copy, so that no two callers (nor the
    table) share a result or an exception object. An atomic value is passed as it is."""
    try:
        return Outcome(outcome.ok, thaw(freeze(outcome.value)))
    except Exception:
        return outcome  # recorded values were read back once: this is not expected


@dataclass(frozen=True, slots=True)
class DedupFields:
    """What a new step carries of the table (see :class:`~vactor_cloud.log_records.StepRecord`)."""

    #: the whole table (``base`` None) or the delta on checkpoint ``base``
    data: bytes = b""
    base: str | None = None
    #: a checkpoint to write at ``base`` before the step (empty: ``base`` already exists)
    checkpoint: bytes = b""
    #: the outcome objects ``checkpoint`` names (its meta ``outcomes``: format 3 if any)
    named: tuple[str, ...] = ()
    #: no row ``checkpoint`` holds by value is encoded larger (its meta ``by_value_at_most``);
    #: None: its rows were not looked through (an older writer's table, carried unread)
    by_value_at_most: int | None = None
    #: of those, the ones to write before it: (name, part ``outcome``)
    outcomes: tuple[tuple[str, bytes], ...] = ()


#: what one decoded entry of a table costs beyond its encoded bytes, roughly (its key in two
#: dicts, a tuple, a float, an Outcome: about 330 bytes against 60 encoded, measured)
_ENTRY_BYTES = 256


class _Checkpoint:
    """A decoded checkpoint: entries in order and each key's position (shared, never mutated);
    ``size``: the bytes it holds, roughly (``encoded``: its length encoded). ``small``: known
    to hold no outcome by value that is over :data:`OUTCOME_OBJECT_BYTES` (one this process
    wrote; one read is looked through once, when a checkpoint is written on it)."""

    __slots__ = ("entries", "position", "size", "small")

    def __init__(
        self, entries: dict[str, tuple[float, Outcome]], encoded: int = 0, *, small: bool = False
    ) -> None:
        self.entries = entries
        self.position = {key: i for i, key in enumerate(entries)}
        self.size = encoded + _ENTRY_BYTES * len(entries)
        self.small = small or encoded <= OUTCOME_OBJECT_BYTES


def cached_bytes(log: ActorLog) -> int:
    """The bytes, roughly, of the checkpoint ``log`` keeps decoded (counted in the actor cache's
    ``max_cache_bytes``: up to the dedup window, with its results, it may outweigh the state)."""
    cache = log.dedup_cache
    return 0 if cache is None else int(cache[1].size)


_EMPTY = _Checkpoint({})


class StepDedup:
    """The idempotency table as of one step, read only when a call needs it.

    ``await load()`` (or ``prepare(calls)``, which loads only if a call
    carries a key) before :meth:`get`; :meth:`record` adds this commit's
    entries, :meth:`fields` says what the next step carries. An unkeyed
    commit never loads: it carries the base step's bytes over as they are.
    """

    def __init__(self, log: ActorLog | None, base: StepRecord, serializer: str | None = None) -> None:
        """``serializer`` is the actor class's: a table stored under another one is refused
        (``IntegrityError``) before a byte of it is decoded. None: trust the step (tests only)."""
        self._log = log
        self._serializer = (
            base.serializer
            if serializer is None
            else expect_serializer(base.serializer, serializer, f"step {base.step} (idempotency table)")
        )
        self._base_name = base.dedup_base
        self._base_data = base.dedup
        self._checkpoint: _Checkpoint | None = None
        self._delta: dict[str, tuple[float, Outcome]] = {}
        self._added: dict[str, tuple[float, Outcome]] = {}
        #: outcome objects read (:meth:`fetch`), by name
        self._fetched: dict[str, Outcome] = {}

    @property
    def loaded(self) -> bool:
        return self._checkpoint is not None

    @property
    def changed(self) -> bool:
        return bool(self._added)

    async def prepare(self, keys: Iterable[str | None]) -> StepDedup:
        """Load the table if any of ``keys`` (the calls' idempotency keys) is set, and read
        the outcome objects their entries name."""
        wanted = [key for key in keys if key is not None]
        if wanted:
            await self.load()
            await self.fetch(wanted)
        return self

    async def fetch(self, keys: Iterable[str]) -> StepDedup:
        """Read the outcome objects the entries of ``keys`` name (once each), so that
        :meth:`get` gives their outcomes. The table must be loaded."""
        checkpoint = self._need()
        for key in keys:
            entry = self._entry(key, checkpoint)
            ref = None if entry is None else entry[1]
            if isinstance(ref, OutcomeRef) and ref.name not in self._fetched:
                if self._log is None:
                    raise RuntimeError("a table naming outcome objects needs its ActorLog to read them")
                try:
                    data, stored = await self._log.read_dedup_outcome(ref.name)
                except NotFoundError as exc:
                    raise _outcome_object_gone(key, ref.name, exc) from exc
                where = f"outcome object {ref.name}"
                self._fetched[ref.name] = outcome_from_bytes(
                    data, expect_serializer(stored, self._serializer, where), where
                )
        return self

    async def load(self) -> StepDedup:
        """Read the table: the checkpoint the step names (once per process), then its delta."""
        if self.load_without_io():
            return self
        if self._log is None or self._base_name is None:
            raise RuntimeError("a step whose table is a delta needs its ActorLog to load the checkpoint")
        data, stored, at_most = await self._log.read_dedup_checkpoint_rows(self._base_name)
        serializer = expect_serializer(stored, self._serializer, f"idempotency checkpoint {self._base_name}")
        small = at_most is not None and at_most <= OUTCOME_OBJECT_BYTES
        checkpoint = _Checkpoint(DedupTable.load(data, serializer).entries, len(data), small=small)
        self._log.dedup_cache = (self._base_name, checkpoint)
        self._use(checkpoint)
        return self

    def load_without_io(self) -> bool:
        """Load if no request is needed (a format-1 step, or a checkpoint this process holds)."""
        if self._checkpoint is not None:
            return True
        if self._base_name is None:
            # Format 1: the step holds the whole table (small, or from an older writer).
            entries = DedupTable.load(self._base_data, self._serializer).entries
            self._checkpoint = _Checkpoint(entries, len(self._base_data))
            return True
        cached = None if self._log is None else self._log.dedup_cache
        if cached is not None and cached[0] == self._base_name:
            self._use(cached[1])
            return True
        return False

    def _use(self, checkpoint: _Checkpoint) -> None:
        self._delta = DedupTable.load(self._base_data, self._serializer).entries
        self._checkpoint = checkpoint

    def _need(self) -> _Checkpoint:
        if self._checkpoint is None:
            raise RuntimeError("StepDedup: await load() (or prepare()) before reading the table")
        return self._checkpoint

    def _newer_than(self, key: str, checkpoint: _Checkpoint) -> int | None:
        """How many entries were recorded after ``key``'s (``None``: no entry)."""
        if key in self._added:
            return len(self._added) - 1 - list(self._added).index(key)
        if key in self._delta:
            return len(self._added) + len(self._delta) - 1 - list(self._delta).index(key)
        index = checkpoint.position.get(key)
        if index is None:
            return None
        return len(self._added) + len(self._delta) + len(checkpoint.entries) - 1 - index

    def _entry(self, key: str, checkpoint: _Checkpoint) -> tuple[float, Outcome] | None:
        for entries in (self._added, self._delta, checkpoint.entries):
            found = entries.get(key)
            if found is not None:
                return found
        return None

    def get(self, key: str, *, window: tuple[int, float] | None = None, now: float = 0.0) -> Outcome | None:
        """The outcome recorded for ``key``; with ``window``, only if still inside it at ``now``.
        One held as an object must have been read (:meth:`fetch`, :meth:`prepare`)."""
        checkpoint = self._need()
        entry = self._entry(key, checkpoint)
        if entry is None:
            return None
        if window is not None:
            max_keys, max_age = window
            newer = self._newer_than(key, checkpoint)
            if newer is not None and newer >= max_keys and now - entry[0] > kept_for(max_age):
                return None
        outcome = entry[1]
        if isinstance(outcome, OutcomeRef):
            fetched = self._fetched.get(outcome.name)
            if fetched is None:
                raise RuntimeError(f"StepDedup: fetch([{key!r}]) before reading its outcome object")
            return fetched
        return outcome

    def holds(self, key: str) -> bool:
        """Whether ``key`` is recorded (its outcome unread)."""
        return self._entry(key, self._need()) is not None

    def newest_key(self, prefix: str) -> str | None:
        """The most recently recorded key starting with ``prefix``."""
        checkpoint = self._need()
        for entries in (self._added, self._delta, checkpoint.entries):
            for key in reversed(entries):
                if key.startswith(prefix):
                    return key
        return None

    def keys(self, prefix: str) -> set[str]:
        """The keys recorded that start with ``prefix``."""
        checkpoint = self._need()
        return {
            key
            for entries in (self._added, self._delta, checkpoint.entries)
            for key in entries
            if key.startswith(prefix)
        }

    def record(self, key: str, outcome: Outcome, when: float) -> None:
        self._need()
        self._added.pop(key, None)
        self._added[key] = (when, outcome)

    def fields(self, serializer: str, window: tuple[int, float], now: float, step: int) -> DedupFields:
        """What step ``step`` carries of the table, in ``serializer``; may start a checkpoint."""
        if not self._added:
            if self._base_name is None and len(self._base_data) > DELTA_MAX_BYTES:
                # A whole table from an older writer: it becomes the first checkpoint, unread.
                return DedupFields(b"", _checkpoint_name(step), self._base_data)
            if serializer == self._serializer:
                return DedupFields(self._base_data, self._base_name)
            self._need()  # the serializer changed: re-encode below, starting a checkpoint
        checkpoint = self._need()
        if self._base_name is None:
            merged = DedupTable(_merge(checkpoint.entries, self._added)).trimmed(window, now)
            data = _serialize(merged.items(), serializer)
            if len(data) <= DELTA_MAX_BYTES:
                return DedupFields(data, None)
        else:
            delta = _serialize(_merge(self._delta, self._added).items(), serializer)
            if len(delta) <= DELTA_MAX_BYTES and serializer == self._serializer:
                return DedupFields(delta, self._base_name)
            merged = DedupTable(_merge(checkpoint.entries, self._delta, self._added)).trimmed(window, now)
        name = _checkpoint_name(step)
        merged, writes = self._by_reference(merged, serializer, step)
        table = _serialize(merged.items(), serializer)
        named = sorted({o.name for _, o in merged.values() if isinstance(o, OutcomeRef)})
        if self._log is not None:
            # Unique to this commit: if the step loses, nobody ever names it.
            self._log.dedup_cache = (name, _Checkpoint(merged, len(table), small=True))
        return DedupFields(
            b"",
            name,
            table,
            named=tuple(named),
            outcomes=tuple(writes.items()),
            by_value_at_most=OUTCOME_OBJECT_BYTES,
        )

    def _by_reference(
        self, merged: dict[str, tuple[float, Outcome]], serializer: str, step: int
    ) -> tuple[dict[str, tuple[float, Outcome]], dict[str, bytes]]:
        """``merged`` with each outcome over :data:`OUTCOME_OBJECT_BYTES` held by value
        replaced by a reference, and the objects to write for them (name: part ``outcome``).

        The same bytes as an object the base checkpoint names: that object (kept while the
        base step is, and by compaction while any kept checkpoint names it). Else a new one of
        ``step``: a compaction deletes only objects of steps below its watermark, and a step
        at or above it that commits names only those or its base's."""
        checkpoint = self._need()
        refs = checkpoint.entries.values() if serializer == self._serializer else ()
        known = {o.digest: o.name for _, o in refs if isinstance(o, OutcomeRef)}
        writes: dict[str, bytes] = {}
        result: dict[str, tuple[float, Outcome]] = {}
        for key, (when, outcome) in merged.items():
            looked_through = key not in self._added and key not in self._delta and checkpoint.small
            result[key] = (when, outcome)
            if isinstance(outcome, OutcomeRef) or looked_through:
                continue
            data = outcome_bytes(outcome, serializer)
            if len(data) > OUTCOME_OBJECT_BYTES:
                digest = hashlib.sha256(data).hexdigest()
                name = known.get(digest)
                if name is None:
                    name = known[digest] = f"{step:020d}-{digest}"
                    writes[name] = data
                result[key] = (when, OutcomeRef(outcome.ok, None, name))
        return result, writes


def _merge(*layers: dict[str, tuple[float, Outcome]]) -> dict[str, tuple[float, Outcome]]:
    merged: dict[str, tuple[float, Outcome]] = {}
    for layer in layers:
        for key, entry in layer.items():
            merged.pop(key, None)
            merged[key] = entry
    return merged


def _checkpoint_name(step: int) -> str:
    return f"{step:020d}-{uuid.uuid4().hex[:16]}"


def _outcome_object_gone(key: str, name: str, missing: NotFoundError) -> NotFoundError:
    """What a retry of ``key`` hears when the outcome object ``name`` its row names is gone.
    Nothing of vactor_cloud deletes one a kept checkpoint names: it was deleted out of band."""
    return NotFoundError(
        f"the call with idempotency key {key!r} was applied once before, and its recorded outcome "
        f"is the outcome object {name} ({missing.key}), which is gone (deleted out of band: "
        "compaction deletes none that a kept checkpoint names): its result is lost. The call is "
        "not run again (a retry with this key fails so until the key leaves the idempotency "
        "window; a call with a new key runs it again)",
        missing.key,
    )

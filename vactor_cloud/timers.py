"""Durable timers: the table carried inside every step, and the due index on storage.

The truth: an actor's pending timers live in its step object
(``StepRecord.extra["timers"]``), carried from step to step like the
idempotency table. A timer is added or cancelled by the step that applies
the call doing it, so it exists if and only if that call committed: a call
that raised (excluded) or lost its commit race leaves no timer behind.

Firing: a runner applies an internal ``FIRE`` call to the actor. Applying
it looks the timer up in the base step's table; if the timer is still
pending and due (by the applying process's clock), the same step removes it
(or, for a recurring reminder, moves it to its next occurrence) and runs
the scheduled method. Because removal and effect are one create-only put,
a timer fires exactly once however many runners race or retry: the loser
of a race, or a retry after a lost response, finds the timer gone.

The due index, a hint like HEAD::

    timers/<due_ms:020d>-<gen>/<actor_id>/<key>     create-only, empty; sorted by due time

``gen`` is the number of the step that put this occurrence in the table
(scheduled it, or moved a recurring timer to it): each occurrence has an
entry of its own. Without it, a key re-armed at the due time of the
occurrence a runner had just fired found that one's entry (create-only:
"exists") and lost it to the runner's delete. Timers scheduled before
generations carry none; their entries keep the old name,
``timers/<due_ms:020d>/<actor_id>/<key>``, which runners still fire.

An entry is written *after* the commit that scheduled its timer, so a crash
in between leaves a pending timer without an entry. It is written again by
the next commit of that actor in any process that does not know the entry
exists (this process's memory of entries it wrote or listed), by the poster
of a call another process's fold applied (before its caller hears of it:
``armed_unindexed``), and by
``repair_index`` (``vactor timers repair``), which reads every actor's
newest step. An entry whose timer is gone (fired, cancelled, rescheduled)
is dropped when a runner meets it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import itertools
import json
import math
import pickle
import re
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Container, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from vactor_cloud import bytecode, keys
from vactor_cloud.errors import AlreadyExistsError, InvalidActorIdError, StateSerializationError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.ids import validate_actor_id, validate_timer_key
from vactor_cloud.storage import ObjectStore

if TYPE_CHECKING:
    from vactor_cloud.log_records import CallRecord

__all__ = [
    "CANCEL",
    "FIRE",
    "INDEX_PAGE",
    "MARKERS",
    "SCHEDULE",
    "TIMERS",
    "FireReport",
    "IndexEntry",
    "Timer",
    "TimerEdits",
    "TimerInfo",
    "TimerTable",
    "armed_unindexed",
    "describe_call",
    "drop_entries",
    "index_after_commit",
    "list_index",
    "pending_timers",
    "remember_listed",
    "timer_dedup_key",
    "validate_timer_key",
    "write_entries",
]

#: the key of the timer table in ``StepRecord.extra``
TIMERS = "timers"
#: internal calls (never real method names): fire a timer, schedule or cancel one from outside
FIRE = "__vactor_fire_timer__"
SCHEDULE = "__vactor_schedule_timer__"
CANCEL = "__vactor_cancel_timer__"
MARKERS = frozenset({FIRE, SCHEDULE, CANCEL})


#: parts of a SCHEDULE call's recorded arguments, ``'bump', args=(5,), kwargs={}, at=...,
#: key=..., every=...`` (a summary longer than its 200 characters is cut: the end may be gone)
_SCHEDULED_METHOD = re.compile(r"'(?P<method>[^']*)'")
_SCHEDULED_AT = re.compile(r".*\bat=(?P<at>[0-9.e+-]+), key=")
_SCHEDULED_EVERY = re.compile(r".*, every=(?P<every>[0-9.e+-]+)$")
#: the scheduled call's own arguments: the summaries of its ``args`` tuple and ``kwargs`` dict
_SCHEDULED_ARGUMENTS = re.compile(
    r"'[^']*', args=\((?P<args>.*)\), kwargs=\{(?P<kwargs>.*)\}, at=[0-9.e+-]+, key="
)
#: a keyword argument's name at the start of an item of the ``kwargs`` summary: ``'by': ``
_SCHEDULED_KWARG_NAME = re.compile(r"^'([A-Za-z_][A-Za-z0-9_]*)': ")


def _top_level_items(text: str) -> list[str]:
    """``text``, a summary's ``a, b, c``, split at its top-level ``, `` (not inside brackets
    nor a quoted string, whose escapes are skipped)."""
    items: list[str] = []
    depth, quote, start, i = 0, "", 0, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1  # (the escaped character)
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(", ", i):
            items.append(text[start:i])
            start = i + 2
            i += 1
        i += 1
    items.append(text[start:])
    return [item for item in items if item]


def _scheduled_arguments(summary: str) -> str:
    """The scheduled call's arguments as a call's are shown (``5, by=2``) from the SCHEDULE call's
    recorded ``summary``; ``…`` when the summary was cut before their end (it is at most 200
    characters)."""
    found = _SCHEDULED_ARGUMENTS.match(summary)
    if found is None:
        return "…"
    positional = found["args"].removesuffix(",")  # (a one-element tuple's comma)
    keywords = ", ".join(
        _SCHEDULED_KWARG_NAME.sub(r"\1=", item, count=1) for item in _top_level_items(found["kwargs"])
    )
    return ", ".join(part for part in (positional, keywords) if part)


def describe_call(call: CallRecord) -> str | None:
    """What a call recorded in a step means when it is a timer's (scheduled or cancelled from
    outside the actor, fired by a runner), in words, or None for any other call.

    Read from the recorded summaries (``args``, ``result``, ``key``), so it works on any
    stored step: ``timer scheduled: bump(5) key='renewal' due 2026-12-03T22:11:45Z``,
    ``timer cancelled: key='later'``, ``timer fired: key='renewal' due ...`` (a fired
    timer's call is the scheduled method's own record: this names the timer only)."""
    if call.key is not None and call.key.startswith(_TIMER_KEY_PREFIX):
        timer_key, _, due_ms = call.key[len(_TIMER_KEY_PREFIX) :].rpartition("\x00")
        due = _utc(int(due_ms) / 1000) if due_ms.isdigit() else "?"
        return f"timer fired: key={timer_key!r} due {due}"
    if call.method == SCHEDULE:
        method = _SCHEDULED_METHOD.match(call.args)
        text = "timer scheduled:" if call.ok else "timer not scheduled:"
        if method is not None:
            text += f" {method['method']}({_scheduled_arguments(call.args)})"
        if call.ok and call.result:
            text += f" key={call.result}"
        if (at := _SCHEDULED_AT.match(call.args)) is not None:
            text += f" due {_utc(float(at['at']))}"
        if (every := _SCHEDULED_EVERY.match(call.args)) is not None:
            text += f" every {every['every']}s"
        return text
    if call.method == CANCEL:
        if call.ok and call.result == "True":
            return f"timer cancelled: key={call.args}"
        return f"timer not cancelled: key={call.args}" + (" (none pending)" if call.ok else "")
    if call.method == FIRE:
        return f"timer not fired (gone, or not due yet): key={call.args}"
    return None


def _utc(seconds: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):  # past the year 9999 (LATEST_DUE is 1e17 s)
        return f"{seconds:.0f} s after the epoch"


def timer_dedup_key(key: str, due: float) -> str:
    """The key a fired timer's call is recorded under in history (its own namespace:
    NUL bytes never come from a caller's idempotency key)."""
    return f"{_TIMER_KEY_PREFIX}{key}\x00{_ms(due)}"


_TIMER_KEY_PREFIX = "\x00timer\x00"


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


#: the latest due time a timer may have (epoch seconds): its index key holds 20 digits of ms
#: (the float just below 1e17: (10**20 - 1) / 1000 rounds up to 1e17, whose ms have 21 digits)
LATEST_DUE = math.nextafter(1e17, 0.0)
#: the shortest period of a repeating timer (seconds)
SHORTEST_EVERY = 0.001


def checked_due(when: float, every: float | None = None) -> float:
    """A timer's due time as scheduled: finite, at most :data:`LATEST_DUE`; a time before
    the epoch is the epoch (in the past: due at once, as any past time). ``every``, if
    given, at least :data:`SHORTEST_EVERY` and at most :data:`LATEST_DUE`. ``ValueError`` otherwise."""
    if not math.isfinite(when):
        raise ValueError(f"the due time must be finite, got {when!r}")
    if when > LATEST_DUE:
        raise ValueError(f"the due time {when!r} is too far ahead: at most {LATEST_DUE:.0f} (epoch seconds)")
    if every is not None and (not math.isfinite(every) or not SHORTEST_EVERY <= every <= LATEST_DUE):
        raise ValueError(
            f"every= must be at least {SHORTEST_EVERY} and at most {LATEST_DUE:.0f} seconds, got {every!r}"
        )
    return max(0.0, when)


class TimerInfo(TypedDict):
    """A pending timer as ``handle.timers()`` lists it (a plain ``dict`` at runtime)."""

    key: str
    #: when it fires next, in epoch seconds
    due: float
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: its period in seconds if it repeats, else None
    every: float | None


@dataclass(frozen=True, slots=True)
class Timer:
    """One pending timer: call ``method(*args, **kwargs)`` at ``due`` (epoch seconds), then every
    ``every`` seconds if set."""

    key: str
    due: float
    method: str
    #: the arguments as stored: JSON ``[args, kwargs]`` (json actors) or base64 of their pickle
    payload: str
    every: float | None = None
    created: float = 0.0
    #: the step that put this occurrence in the table; None: written before generations
    gen: int | None = None

    @property
    def due_ms(self) -> int:
        return _ms(min(self.due, LATEST_DUE))  # (a row stored before every= was bounded)

    def index_key(self, actor_id: str) -> str:
        """The name of this occurrence's due-index entry."""
        return keys.timer_index_key(self.due_ms, actor_id, self.key, self.gen)

    def arguments(self, serializer: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if serializer == "json":
            args, kwargs = json.loads(self.payload)
        else:
            args, kwargs = bytecode.loads(base64.b64decode(self.payload))
        return tuple(args), dict(kwargs)

    def next_due(self, now: float) -> float:
        """The first occurrence after ``now`` (missed occurrences are skipped, not replayed), at
        most :data:`LATEST_DUE` (an index entry names no later time)."""
        assert self.every is not None
        skipped = math.floor(max(0.0, now - self.due) / self.every) + 1
        return min(self.due + skipped * self.every, LATEST_DUE)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"due": self.due, "method": self.method, "p": self.payload, "at": self.created}
        if self.every is not None:
            row["every"] = self.every
        if self.gen is not None:
            row["g"] = self.gen
        return row

    @classmethod
    def from_json(cls, key: str, row: dict[str, Any]) -> Timer:
        every = row.get("every")
        gen = row.get("g")
        return cls(
            key=key,
            due=float(row["due"]),
            method=str(row["method"]),
            payload=str(row["p"]),
            every=None if every is None else float(every),
            created=float(row.get("at", 0.0)),
            gen=None if gen is None else int(gen),
        )

    def describe(self, serializer: str) -> TimerInfo:
        """What ``handle.timers()`` shows."""
        try:
            args, kwargs = self.arguments(serializer)
        except Exception:  # a class body this process cannot unpickle: show the rest
            args, kwargs = (), {}
        return {
            "key": self.key,
            "due": self.due,
            "method": self.method,
            "args": args,
            "kwargs": kwargs,
            "every": self.every,
        }


def encode_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], serializer: str) -> str:
    """Timer arguments as stored, copied now (by value); ``StateSerializationError`` if they cannot be."""
    try:
        if serializer == "json":
            return json.dumps([list(args), kwargs], separators=(",", ":"), allow_nan=False)
        return base64.b64encode(bytecode.dumps((args, kwargs))).decode()
    except (TypeError, ValueError, pickle.PicklingError, AttributeError, RecursionError) as exc:
        raise StateSerializationError(f"cannot store the timer's arguments: {exc}") from exc


def pending_timers(extra: dict[str, Any]) -> dict[str, Timer]:
    """The timers pending after a step, by key (empty for an actor that never had one)."""
    raw = extra.get(TIMERS)
    if not raw:
        return {}
    return {key: Timer.from_json(key, row) for key, row in raw.items()}


@dataclass(frozen=True, slots=True)
class FireReport:
    """What a ``FIRE`` call found: ``fired`` (the method ran, its outcome committed) or not (the
    timer was gone: fired already, cancelled, rescheduled later). Not fired and not ``ok``: the
    method raised what is no outcome (``dedup.is_outcome``: ``SystemExit``, a ``StorageError``),
    which excludes its call like any other: the timer stays pending, and so must its index entry."""

    fired: bool
    ok: bool = True
    error: str | None = None
    #: not fired because the timer is pending but not due yet (by the applying process's clock):
    #: its due time. Informative only: a runner decides whether to keep the entry by the
    #: newest step's timers, never by this (kept: reports recorded in older steps carry it)
    pending_due_ms: int | None = None
    #: not fired (and not ``ok``) because the actor's class has no writer method of the name the
    #: timer calls (a later version renamed or removed it): the timer stays pending, as an event
    #: without a handler stays in the inbox
    missing_method: str | None = None


class TimerEdits:
    """The timer changes one call makes (``schedule`` / ``cancel_timer``), applied only if it commits."""

    __slots__ = ("_now", "_serializer", "_table", "ops")

    def __init__(self, table: TimerTable, serializer: str, now: float) -> None:
        self._table = table
        self._serializer = serializer
        self._now = now
        #: (key, Timer) to add or replace, (key, None) to cancel; in call order
        self.ops: list[tuple[str, Timer | None]] = []

    def view(self) -> dict[str, Timer]:
        current = dict(self._table.timers)
        for key, timer in self.ops:
            if timer is None:
                current.pop(key, None)
            else:
                current[key] = timer
        return current

    def schedule(
        self,
        method: str,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        after: float | None = None,
        at: float | None = None,
        key: str | None = None,
        every: float | None = None,
        known_methods: Container[str] | None = None,
    ) -> str:
        if (after is None) == (at is None):
            raise ValueError("schedule() takes exactly one of after= (seconds from now) or at= (epoch time)")
        when = self._now + float(after) if after is not None else float(at)  # type: ignore[arg-type]
        when = checked_due(when, None if every is None else float(every))
        if not isinstance(method, str) or method.startswith("_"):
            raise ValueError(f"a timer calls a public method by name, got {method!r}")
        writers = self._table.writers if known_methods is None else known_methods
        if writers is not None and method not in writers:
            raise ValueError(f"the actor has no writer method {method!r} to call from a timer")
        key = validate_timer_key(key) if key is not None else f"t-{uuid.uuid4().hex}"
        payload = encode_arguments(tuple(args), dict(kwargs or {}), self._serializer)
        timer = Timer(
            key, when, method, payload, None if every is None else float(every), self._now, self._table.step
        )
        self.ops.append((key, timer))
        return key

    def cancel(self, key: str) -> bool:
        """Cancel the pending timer ``key``; False if there was none."""
        existed = key in self.view()
        self.ops.append((key, None))
        return existed


class TimerTable:
    """The timers of one base step while a batch is applied; parsed only when a call touches them."""

    __slots__ = ("_extra", "_timers", "changed", "serializer", "step", "writers")

    def __init__(
        self, extra: dict[str, Any], serializer: str, writers: Container[str] | None, *, step: int
    ) -> None:
        self._extra = extra
        self._timers: dict[str, Timer] | None = None
        self.changed: bool = False
        self.serializer: str = serializer
        #: the names a timer may call (the actor's writer methods); None: not checked
        self.writers: Container[str] | None = writers
        #: the number of the step being applied: the generation of the occurrences it puts in
        self.step: int = step

    @property
    def timers(self) -> dict[str, Timer]:
        if self._timers is None:
            self._timers = pending_timers(self._extra)
        return self._timers

    def edits(self, now: float) -> TimerEdits:
        return TimerEdits(self, self.serializer, now)

    def apply(self, edits: TimerEdits) -> None:
        if not edits.ops:
            return
        table = self.timers
        for key, timer in edits.ops:
            if timer is None:
                table.pop(key, None)
            else:
                table[key] = timer
        self.changed = True

    def due(self, key: str, now: float) -> Timer | None:
        """The timer ``key`` if it is pending and due at ``now``."""
        timer = self.timers.get(key)
        return timer if timer is not None and timer.due <= now else None

    def pending(self, key: str) -> Timer | None:
        """The timer ``key`` if it is pending, due or not."""
        return self.timers.get(key)

    def consume(self, timer: Timer, edits: TimerEdits, now: float) -> None:
        """Record in ``edits`` that ``timer`` fired: gone, or moved to its next occurrence."""
        if timer.every is None:
            edits.ops.append((timer.key, None))
        else:  # a new occurrence, with an entry of its own
            edits.ops.append((timer.key, replace(timer, due=timer.next_due(now), gen=self.step)))

    def extra(self, base: dict[str, Any]) -> dict[str, Any]:
        """The ``extra`` of the step being committed: ``base``'s, with the table updated."""
        if not self.changed:
            return base
        out = {k: v for k, v in base.items() if k != TIMERS}
        if self.timers:
            out[TIMERS] = {key: t.to_json() for key, t in sorted(self.timers.items())}
        return out


# -- the due index --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One due-index object: timer ``key`` of ``actor_id`` is due at ``due_ms``, in the occurrence
    step ``gen`` scheduled (None: an entry named before generations, of any occurrence)."""

    due_ms: int
    actor_id: str
    key: str
    gen: int | None = None

    @property
    def object_key(self) -> str:
        return keys.timer_index_key(self.due_ms, self.actor_id, self.key, self.gen)


def parse_entry(object_key: str) -> IndexEntry | None:
    """The entry ``object_key`` names, or ``None`` for any other key (ignored, never deleted):
    one whose actor part is no actor id either (no writer writes it, and no actor could be
    loaded to fire or find it stale: every tick would report it again)."""
    parsed = keys.timer_index_entry(object_key)
    if parsed is None:
        return None
    try:
        validate_actor_id(parsed[1])
    except InvalidActorIdError:
        return None
    return IndexEntry(*parsed)


#: keys per LIST request when the index is read page by page (S3's largest page)
INDEX_PAGE = 1000


async def list_index(
    store: ObjectStore,
    *,
    due_by_ms: float | None = None,
    limit: int | None = None,
    page: int = INDEX_PAGE,
    start_after: str | None = None,
) -> list[IndexEntry]:
    """Due-index entries, earliest first (after the object key ``start_after``, if given).

    Without ``due_by_ms`` or ``limit``: every entry (one LIST of the whole
    prefix). With them: only the entries due by ``due_by_ms``, at most
    ``limit`` of them, read in pages of ``page`` keys until a page reaches
    past either; a runner then pays for what is due soon, not for every
    far-future timer (one request per page, at most one page past).
    """
    if due_by_ms is None and limit is None and start_after is None:
        found = [parse_entry(k) for k in await store.list(keys.TIMER_INDEX)]
        return [e for e in found if e is not None]
    out: list[IndexEntry] = []
    after = start_after
    while True:
        size = page if limit is None else max(1, min(page, limit - len(out)))
        batch = await store.list(keys.TIMER_INDEX, start_after=after, limit=size)
        for key in batch:
            entry = parse_entry(key)
            if entry is None:
                continue
            if due_by_ms is not None and entry.due_ms > due_by_ms:
                return out
            out.append(entry)
            if limit is not None and len(out) >= limit:
                return out
        if len(batch) < size:
            return out
        after = batch[-1]


#: what names an entry within its actor: (timer key, due_ms, generation)
_Named = tuple[str, int, int | None]


@dataclass
class _IndexMemory:
    """Index entries this process knows exist (it wrote or listed them), per store and actor.

    Bounded: forgetting only costs a redundant create-only PUT later (remembering an entry
    that is gone would cost a timer its entry, so only names seen or written are added). Per
    actor it holds the names of its pending occurrences (pruned at each commit, see
    :func:`index_after_commit`) and of the entries a complete listing showed (pruned at the
    next one); no more than ``limit`` actors.
    """

    limit: int = 4096
    #: by (the store's number, actor id); numbered, not by ``id(store)``: a store made where a
    #: dead one was took that one's names for entries it had, and did not write them
    actors: OrderedDict[tuple[int, str], set[_Named]] = field(default_factory=OrderedDict)
    numbers: weakref.WeakKeyDictionary[ObjectStore, int] = field(default_factory=weakref.WeakKeyDictionary)
    counter: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: per store: a runner listed the whole index up to this due time (ms), remembering every entry
    #: (weakly keyed: by ``id(store)`` it outlived its store, one entry per store a pass ran on,
    #: and a new store at a freed address inherited it)
    complete_until: weakref.WeakKeyDictionary[ObjectStore, float] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    def _slot(self, store: ObjectStore, actor_id: str) -> tuple[int, str]:
        """The key of the store's actor (under ``lock``): the store's number, never reused."""
        number = self.numbers.get(store)
        if number is None:
            number = self.numbers[store] = next(self.counter)
        return number, actor_id

    def known(self, store: ObjectStore, actor_id: str) -> set[_Named]:
        with self.lock:
            return set(self.actors.get(self._slot(store, actor_id), ()))

    def add(self, store: ObjectStore, actor_id: str, entries: set[_Named]) -> None:
        with self.lock:
            key = self._slot(store, actor_id)
            slot = self.actors.setdefault(key, set())
            slot |= entries
            self.actors.move_to_end(key)
            while len(self.actors) > self.limit:
                self.actors.popitem(last=False)

    def drop(self, store: ObjectStore, actor_id: str, entry: _Named) -> None:
        with self.lock:
            slot = self.actors.get(self._slot(store, actor_id))
            if slot is not None:
                slot.discard(entry)

    def keep_only(self, store: ObjectStore, actor_id: str, names: set[_Named]) -> None:
        """Forget the actor's names not in ``names`` (its pending occurrences after a commit)."""
        with self.lock:
            slot = self.actors.get(self._slot(store, actor_id))
            if slot is not None:
                slot &= names

    def listed(self, store: ObjectStore, actor_id: str, found: set[_Named], until_ms: float) -> None:
        """A complete listing up to ``until_ms`` found these of the actor's entries: forget its
        names due by then that it did not show (deleted meanwhile, by this process or another)."""
        with self.lock:
            slot = self.actors.get(self._slot(store, actor_id))
            if slot is not None:
                slot -= {n for n in slot if n[1] <= until_ms and n not in found}
        self.add(store, actor_id, found)


_memory = _IndexMemory()
renew_in_a_forked_child(vars(_memory), "lock")  # (what it knows of the index stays true in a child)


def remember_listed(
    store: ObjectStore, entries: list[IndexEntry], *, complete_until_ms: float | None = None
) -> None:
    """A runner listed these entries: the actors' next commits need not write them again.

    ``complete_until_ms``: the listing held every entry due by then (see
    :func:`index_after_commit`).
    """
    by_actor: dict[str, set[_Named]] = {}
    for e in entries:
        by_actor.setdefault(e.actor_id, set()).add((e.key, e.due_ms, e.gen))
    for actor_id, found in by_actor.items():
        if complete_until_ms is None:
            _memory.add(store, actor_id, found)
        else:
            _memory.listed(store, actor_id, found, complete_until_ms)
    if complete_until_ms is not None:
        with _memory.lock:
            _memory.complete_until[store] = complete_until_ms


def firing_only(calls: Any) -> bool:
    """Whether a step's call records are all fired timers (their keys are in the timer namespace)."""
    return bool(calls) and all(isinstance(c.key, str) and c.key.startswith(_TIMER_KEY_PREFIX) for c in calls)


def forget_entry(store: ObjectStore, entry: IndexEntry) -> None:
    _memory.drop(store, entry.actor_id, (entry.key, entry.due_ms, entry.gen))


async def write_entries(store: ObjectStore, actor_id: str, timers: list[Timer]) -> None:
    """Create the index entries of ``timers``. An entry that exists already is fine: its name
    holds the step that scheduled the occurrence, so it is this occurrence's own (a timer
    scheduled before generations has the old name, as it had then)."""

    async def one(timer: Timer) -> None:
        with contextlib.suppress(AlreadyExistsError):
            await store.put(timer.index_key(actor_id), b"", mode="create")

    failures = [e for e in await _each_to_its_end([one(t) for t in timers]) if e is not None]
    if failures:
        raise _first_to_raise(failures)
    _memory.add(store, actor_id, {(t.key, t.due_ms, t.gen) for t in timers})


async def _each_to_its_end(coroutines: list[Coroutine[Any, Any, None]]) -> list[BaseException | None]:
    """Run ``coroutines`` together until every one has ended; the exception of each, or None.

    (``gather`` raised the first failure at once and left the others running behind the
    caller, which had heard the failure: their requests went on, their errors unheard.)
    Cancelled, it cancels them all."""
    outcomes = await asyncio.gather(*coroutines, return_exceptions=True)
    return [o if isinstance(o, BaseException) else None for o in outcomes]


def _first_to_raise(failures: list[BaseException]) -> BaseException:
    """Of several failures, the one to raise: an interrupt or cancellation before any error."""
    return next((e for e in failures if not isinstance(e, Exception)), failures[0])


async def index_after_commit(
    store: ObjectStore,
    actor_id: str,
    base: dict[str, Any],
    committed: dict[str, Any],
    *,
    firing_only: bool = False,
) -> None:
    """After a commit: index its new timers, and any carried one this process does not know is indexed.

    A step that only fired timers (``firing_only``, a runner's) re-writes a
    carried entry it does not know of only if it is due within what this
    process's last complete listing covered (so it knows the entry is
    missing): a runner does not pay a PUT for every far-future timer of each
    actor it fires. Other commits and ``repair_index`` re-create the rest.

    Costs nothing for an actor without timers (the caller checks first). A
    failure is logged by the caller: the step is committed and stays the
    truth; a later commit or ``repair_index`` writes the entry.
    """
    after = pending_timers(committed)
    current = {(key, t.due_ms, t.gen) for key, t in after.items()}
    _memory.keep_only(store, actor_id, current)  # names of occurrences gone are of no use
    if not after:
        return
    before = pending_timers(base)
    known = _memory.known(store, actor_id)
    covered = math.inf
    if firing_only:
        with _memory.lock:
            covered = _memory.complete_until.get(store, -math.inf)
    todo = [
        t
        for key, t in after.items()
        if before.get(key) != t or ((key, t.due_ms, t.gen) not in known and t.due_ms <= covered)
    ]
    if todo:
        await write_entries(store, actor_id, todo)


async def drop_entries(store: ObjectStore, actor_id: str, extra: dict[str, Any]) -> int:
    """Delete the index entries of the pending timers in ``extra`` (the step a tombstone
    followed: its timers died with the actor); how many. Only those occurrences' own names
    (their generation is a step of the deleted actor: no later actor's entry has it). An
    entry left (a failed delete) is found stale by the next runner that meets it, once due."""
    timers = list(pending_timers(extra).values())
    for timer in timers:
        _memory.drop(store, actor_id, (timer.key, timer.due_ms, timer.gen))
    await store.delete_many([t.index_key(actor_id) for t in timers])
    return len(timers)


def armed_unindexed(store: ObjectStore, actor_id: str, extra: dict[str, Any], after_step: int) -> list[Timer]:
    """A poster's part, once another process's fold applied its calls: the pending timers of
    ``extra`` (a step at or after the one that applied them) that a step after ``after_step``
    (the newest the poster knew when it posted) put in the table, and whose entries this
    process does not know. The folder indexes them after its commit; a folder that dies
    between its commit and its index write leaves them to the poster (:func:`write_entries`:
    a create-only PUT each, which finds the folder's entry when it did not die). Empty,
    and no parsing, for an actor without timers."""
    if not extra.get(TIMERS):
        return []
    known = _memory.known(store, actor_id)
    return [
        t
        for t in pending_timers(extra).values()
        if t.gen is not None and t.gen > after_step and (t.key, t.due_ms, t.gen) not in known
    ]


async def repair_index(store: ObjectStore, actor_ids: list[str], read_extra: Any) -> int:
    """Write the index entries of every pending timer of ``actor_ids``; how many were written.

    ``read_extra(actor_id)`` returns the newest step's ``extra`` (awaitable). An actor whose
    repair fails does not stop the others': every one ends before this raises one of the
    failures, with a note naming each actor that failed (``_repair_failed``).
    """
    written = 0
    gate = asyncio.Semaphore(32)

    async def one(actor_id: str) -> None:
        nonlocal written
        async with gate:
            extra = await read_extra(actor_id)
            timers = list(pending_timers(extra).values())
            if timers:
                await write_entries(store, actor_id, timers)
                written += len(timers)

    outcomes = await _each_to_its_end([one(a) for a in actor_ids])
    failed = [(a, e) for a, e in zip(actor_ids, outcomes, strict=True) if e is not None]
    if failed:
        raise _repair_failed(failed, len(actor_ids), written)
    return written


#: actors a failed repair names at most (then how many more)
_NAMED = 10


def _repair_failed(failed: list[tuple[str, BaseException]], total: int, written: int) -> BaseException:
    """The error of a repair in which the actors ``failed`` failed, the others of ``total``
    repaired: one of theirs (its type kept: a caller tells a damaged actor from a storage
    error by it), with a note naming them all and saying what was done.

    The note goes on a copy (``_own_copy``): one failure can be raised to several callers (a
    core's failed load, to each caller that waited behind it), and two repairs of one actor
    at once each added theirs to it (two notes on each, one naming the other's actors)."""
    error = _own_copy(_first_to_raise([e for _, e in failed]))
    named = ", ".join(f"{a!r} ({type(e).__name__})" for a, e in failed[:_NAMED])
    more = f" and {len(failed) - _NAMED} more" if len(failed) > _NAMED else ""
    error.add_note(
        f"repairing the timer index failed for {len(failed)} of {total} actors: {named}{more}; "
        f"the other {total - len(failed)} of {total} actors were repaired ({written} timers "
        "indexed); repairing an actor again is harmless"
    )
    return error


def _own_copy(error: BaseException) -> BaseException:
    """A copy of ``error`` to add notes to: its type, arguments, attributes, notes so far, cause,
    context and traceback, made without calling its ``__init__`` (whose parameters its ``args``
    need not match). ``error`` itself if it cannot be copied so (a class of unusual ``__new__``
    or with slots): then the note goes on it, as before."""
    cls = type(error)
    try:
        copied = cls.__new__(cls, *error.args)
        copied.args = error.args
        copied.__dict__.update(vars(error))
        if isinstance(error, OSError) and isinstance(copied, OSError):  # (not in ``args`` alone)
            for name in ("errno", "strerror", "filename", "filename2"):
                if getattr(error, name) is not None:  # (one set to None shows in its message)
                    setattr(copied, name, getattr(error, name))
    except Exception:
        return error
    copied.__notes__ = list(getattr(error, "__notes__", ()))  # (its own list: not the one shared)
    copied.__cause__, copied.__context__ = error.__cause__, error.__context__
    copied.__suppress_context__ = error.__suppress_context__
    return copied.with_traceback(error.__traceback__)

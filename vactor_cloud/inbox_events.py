"""An actor's inbox objects: one external event each, waiting under ``actors/<id>/inbox/``;
how an event is encoded, sent (:func:`put_event`), listed, read, and put in inbox order
(:func:`fold_order`), and which class applies it (:func:`refusal`).
:class:`~vactor_cloud.inbox.ActorInbox` folds them into commits.

Object layout::

    actors/<id>/inbox/<event_id>    one event, create-only: sending an event id twice stores it once

The key is the event id alone, so the create-only put *is* the
deduplication of pending events. Order cannot come from the key (an event
id sent again later must land on the same key), so every event object
records where it stands: its sender's clock (wall time, made monotonic per
sending process), the sending process's random id, and a per-process
sequence number.

Inbox order: pending events are applied sorted by ``(time, sender, seq)``, where a
``time`` ahead of when this process first listed the event counts as that moment (a sender
whose clock ran an hour ahead otherwise waited behind everything others sent in that hour).
Events from one sending process are therefore applied in the order they
were sent, as long as each send returned before the next began (a send
that returned is visible to every later listing). A listing of several
requests (S3 and GCS past 1,000 keys; the local store's directory walk) is
no single moment: an event sent while it runs may land behind its cursor,
unseen, while the same sender's next one is seen. Events first seen by such
a listing are applied only once a later listing saw them too (the fold
lists twice; see ``ObjectStore.listed_at_one_moment``), and a sender's later
events wait behind them. Between different
senders the order follows their clocks; an event that becomes visible
after later-stamped ones were applied is applied at the next fold, after
them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import math
import os
import pickle
import sys
import threading
import time
import uuid
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vactor_cloud import bytecode, codec
from vactor_cloud.actor_objects import retry_pause
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    RetryableStorageError,
    StateSerializationError,
    StorageError,
)
from vactor_cloud.ids import event_dedup_key
from vactor_cloud.keys import actor_id_of, inbox_key, inbox_prefix
from vactor_cloud.storage import ObjectStore

__all__ = [
    "FETCH_CONCURRENCY",
    "MAX_EVENT_PAYLOAD_BYTES",
    "PAYLOAD_SERIALIZERS",
    "EventInDoubtError",
    "InboxEvent",
    "aside_floors",
    "decode_event",
    "encode_event",
    "event_handlers",
    "event_keys",
    "fold_order",
    "list_inbox",
    "put_event",
    "read_event",
    "read_events",
    "refusal",
    "serialize_payload",
]

logger = logging.getLogger("vactor_cloud")

#: attempts of one send's create (the same object each time) before EventInDoubtError
_SEND_ATTEMPTS = 5
PAYLOAD_SERIALIZERS = ("json", "pickle")
FETCH_CONCURRENCY = 32
#: largest serialized payload one event may carry: every process that lists the inbox reads an
#: event whole (its place in the order is inside it), so one without bound was read into the
#: memory of every writer of its actor; this is what one commit folds
MAX_EVENT_PAYLOAD_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One event as stored in an inbox object."""

    key: str
    event_id: str
    name: str
    payload: bytes
    serializer: str
    time: float
    sender: str
    seq: int
    #: held without its payload (past the first MAX_EVENTS_PER_COMMIT pending or _PAYLOAD_BYTES,
    #: or refused by the class that listed it): the fold reads it again when it is due
    stripped: bool = False
    #: the payload's length, also once stripped (what reading it again brings back)
    size: int = 0
    #: this process's clock (wall, made monotonic) when it first listed the event: see ``fold_order``
    seen: float = math.inf
    #: the version of the object it was read from: its delete is conditional on it (another
    #: event sent under the id once this one is gone is a new object, which stays)
    version: str = ""

    def without_payload(self) -> InboxEvent:
        """This event held for its place in the order only."""
        return dataclasses.replace(self, payload=b"", stripped=True, size=self.payload_size)

    @property
    def payload_size(self) -> int:
        return self.size if self.stripped else len(self.payload)

    @property
    def order(self) -> tuple[float, str, int, str]:
        """Inbox order: sender clock, then sender, then the sender's sequence number."""
        return (self.time, self.sender, self.seq, self.event_id)

    @property
    def dedup_key(self) -> str:
        return event_dedup_key(self.name, self.event_id)

    @property
    def call_id(self) -> str:
        """The id of the call applying this event: the same for every fold of this object (its
        handler's sub-tasks are checkpointed under it, and a drainer that died mid-handler is
        followed by one that finds them), another for another event under the same key (another
        name, or the id sent again after this one was applied and deleted)."""
        stamp = f"{self.key}\x00{self.name}\x00{self.time!r}\x00{self.sender}\x00{self.seq}"
        return uuid.uuid5(uuid.NAMESPACE_URL, stamp).hex

    def load_payload(self) -> Any:
        if self.serializer == "json":
            return json.loads(self.payload.decode("utf-8"))
        return bytecode.loads(self.payload)


def fold_order(events: Iterable[InboxEvent], floors: Mapping[str, float] | None = None) -> list[InboxEvent]:
    """``events`` in the order a fold applies them: inbox order (:attr:`InboxEvent.order`), but
    with a sender time ahead of when this process first listed the event (``seen``) taken as
    that moment. A sender whose clock ran an hour ahead otherwise had its events applied after
    every event others sent in that hour: never, under a backlog that does not drain.

    Each sender's events keep their order: the time an event counts with is at least the one
    its sender's previous event counts with (an earlier event may be listed after a later one,
    by a listing of several pages: it must still go first, or wait with it). ``floors`` (by
    key, from :func:`aside_floors`) stand for the events of the same senders left out of
    ``events``: the order is then that of them all, those left out taken away.
    """
    by_sender: dict[str, list[InboxEvent]] = {}
    for event in events:
        by_sender.setdefault(event.sender, []).append(event)
    ranked: list[tuple[float, str, int, str, InboxEvent]] = []
    for own in by_sender.values():
        counts = -math.inf
        for event in sorted(own, key=lambda e: e.order):
            counts = max(counts, min(event.time, event.seen))
            if floors is not None:
                counts = max(counts, floors.get(event.key, -math.inf))
            ranked.append((counts, event.sender, event.seq, event.event_id, event))
    ranked.sort(key=lambda row: row[:4])
    return [row[4] for row in ranked]


def aside_floors(events: Iterable[InboxEvent], aside: Container[str]) -> dict[str, float]:
    """For each event of ``events`` whose key is not in ``aside``: the least time it counts
    with in :func:`fold_order` for the events of its sender set aside before it (``-inf``:
    none). :func:`fold_order` of the others with these floors is the order of all of
    ``events``, those set aside left out."""
    by_sender: dict[str, list[InboxEvent]] = {}
    for event in events:
        by_sender.setdefault(event.sender, []).append(event)
    floors: dict[str, float] = {}
    for own in by_sender.values():
        floor = -math.inf
        for event in sorted(own, key=lambda e: e.order):
            if event.key in aside:
                floor = max(floor, min(event.time, event.seen))
            else:
                floors[event.key] = floor
    return floors


class _SenderClock:
    """This process's sender id, monotonic wall clock and sequence numbers (renewed after fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.sender = uuid.uuid4().hex
        self._seq = itertools.count()
        self._last = -math.inf
        self._lock = threading.Lock()

    def stamp(self) -> tuple[float, str, int]:
        with self._lock:
            self._last = max(time.time(), self._last)
            return self._last, self.sender, next(self._seq)


_clock = _SenderClock()
os.register_at_fork(after_in_child=_clock.reset)


def serialize_payload(payload: Any, serializer: str) -> bytes:
    """The payload's bytes; :class:`StateSerializationError` (or ``ValueError``: past
    ``MAX_EVENT_PAYLOAD_BYTES``) before anything is written."""
    if serializer not in PAYLOAD_SERIALIZERS:
        raise ValueError(f"unknown payload serializer {serializer!r}; choose one of {PAYLOAD_SERIALIZERS}")
    try:
        if serializer == "json":
            data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
        else:
            data = bytecode.dumps(payload)
    except (TypeError, ValueError, pickle.PicklingError, AttributeError, RecursionError) as exc:
        hint = (
            "json payloads take only dict, list, str, int, float, bool and None; "
            'pass serializer="pickle" for other Python objects'
            if serializer == "json"
            else "make it picklable"
        )
        raise StateSerializationError(f"cannot serialize the event payload: {exc}; {hint}") from exc
    if len(data) > MAX_EVENT_PAYLOAD_BYTES:
        raise ValueError(
            f"the event payload is {len(data):,} bytes serialized ({serializer}); at most "
            f"{MAX_EVENT_PAYLOAD_BYTES:,} bytes: store large data elsewhere (an object of its own) "
            "and send its name"
        )
    return data


def encode_event(
    actor_id: str, event_id: str, name: str, payload: bytes, serializer: str, signing_key: bytes | None
) -> tuple[str, bytes]:
    """The inbox key and object bytes of a new event, stamped with this process's sender clock."""
    sent, sender, seq = _clock.stamp()
    key = inbox_key(actor_id, event_id)
    meta = {
        "kind": "event",
        "event_id": event_id,
        "name": name,
        "serializer": serializer,
        "time": sent,
        "sender": sender,
        "seq": seq,
    }
    return key, codec.encode(key, meta, {"payload": payload}, signing_key=signing_key)


def decode_event(key: str, data: bytes, signing_key: bytes | None, version: str = "") -> InboxEvent:
    env = codec.decode(key, data, signing_key=signing_key)
    meta = env.meta
    try:
        if meta.get("kind") != "event":
            raise ValueError(f"expected an event object, found {meta.get('kind')!r}")
        event = InboxEvent(
            key=key,
            event_id=str(meta["event_id"]),
            # Shared by many events (a backlog is held as these: see ActorInbox._trim): interned.
            name=sys.intern(str(meta["name"])),
            payload=env.parts["payload"],
            serializer=sys.intern(str(meta["serializer"])),
            time=float(meta["time"]),
            sender=sys.intern(str(meta["sender"])),
            seq=int(meta["seq"]),
            version=version,
        )
    except (KeyError, ValueError, TypeError, OverflowError) as exc:  # (int() of Infinity)
        raise IntegrityError(key, f"malformed event object: {exc}") from None
    owner = actor_id_of(key)
    if owner is None or key != inbox_key(owner, event.event_id):
        # (not a suffix test: an object under inbox/<a>/<id> is no event's, whatever its id)
        raise IntegrityError(key, f"holds event {event.event_id!r}, not the one its key names")
    return event


class EventInDoubtError(RetryableStorageError):
    """``send_event`` could not tell whether its event was stored (every attempt failed, and
    the last may have landed). ``event_id`` is the id it chose: sending again with it stores
    and applies the event once either way; sending again without it may make a second one."""

    # (pickled, in a stored outcome, by the name users import it by: ``vactor_cloud.inbox``
    # holds it, and readers of every version find it there)
    __module__ = "vactor_cloud.inbox"

    def __init__(self, message: str, key: str, event_id: str) -> None:
        super().__init__(message, key)
        self.event_id = event_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key, self.event_id))


async def put_event(
    store: ObjectStore, key: str, data: bytes, *, name: str, signing_key: bytes | None
) -> None:
    """Store one send's event object (from :func:`encode_event`), exactly once.

    The object is created with the same bytes on every attempt: an attempt whose answer was
    lost, retried, meets its own object, reads it back and is done (a fresh object per
    attempt made the handler run twice). An object already there under the same name is
    this event, sent before (deduplicated: nothing new is stored); under another name it is
    another event holding the id while it waits: ``ValueError``, nothing stored (never dropped
    silently). Transient failures are retried a few times; then
    :class:`EventInDoubtError` names the event id to send again with.
    """
    event_id = key.rsplit("/", 1)[1]
    last: Exception | None = None
    for attempt in range(_SEND_ATTEMPTS):
        if attempt:
            await asyncio.sleep(retry_pause(attempt - 1))
        try:
            await store.put(key, data, mode="create")
            return
        except AlreadyExistsError:
            pass
        except PermissionDeniedError:
            raise  # refused, not in doubt: nothing was written
        except StorageError as exc:
            last = exc  # it may have landed: the read below tells
        try:
            there = await read_event(store, key, signing_key)
        except PermissionDeniedError:
            # A sender allowed to write the inbox but not to read it: the object there is taken
            # for this event (its name cannot be checked), as a create-only put alone would.
            logger.debug("%s: exists and cannot be read back here; taken for this event", key)
            return
        except (StorageError, IntegrityError) as exc:
            last = exc
            continue
        if there is None:
            # Not there: it never landed, or it was applied and deleted since (ours, or an
            # earlier send of this id). Create it again: an applied one is recognised by the
            # next fold (its key is in the dedup table) and deleted unapplied.
            continue
        if there.name != name:
            raise ValueError(
                f"{key}: event id {event_id!r} is already waiting in the inbox as a {there.name!r} "
                f"event, not {name!r}; nothing was stored. An event id names one event while it "
                "waits: send this one under another id (or again once the first has left the inbox)"
            )
        return
    raise EventInDoubtError(
        f"{key}: could not tell whether event {event_id!r} was stored after {_SEND_ATTEMPTS} "
        f"attempts (last: {last}); send it again with event_id={event_id!r}: it is stored and "
        "applied once either way (without that id, a second event may be made)",
        key,
        event_id,
    ) from last


async def list_inbox(store: ObjectStore, actor_id: str) -> list[str]:
    """Keys of the events waiting in ``actor_id``'s inbox (one LIST).

    Only keys an event can have: ``inbox/<event_id>``. Another key there (a folder marker an
    S3 console or a sync tool made, ``inbox/``; a key one level down) holds no event, whatever
    it holds: it is passed over, not read as a damaged event once a minute for ever. (Ids
    that today's rules refuse but an earlier version wrote are still read.)"""
    prefix = inbox_prefix(actor_id)
    return event_keys(prefix, await store.list(prefix))


def event_keys(prefix: str, listed: list[str]) -> list[str]:
    """The keys of a listing of ``prefix`` (an inbox) that an event can have (see ``list_inbox``)."""
    return [key for key in listed if (name := key[len(prefix) :]) and "/" not in name]


async def read_event(store: ObjectStore, key: str, signing_key: bytes | None) -> InboxEvent | None:
    """The event at ``key``, or ``None`` if it was deleted (applied) meanwhile."""
    try:
        blob = await store.get(key)
    except NotFoundError:
        return None
    return decode_event(key, blob.data, signing_key, blob.version)


async def read_events(
    store: ObjectStore,
    keys: list[str],
    signing_key: bytes | None,
    damaged: list[str] | None = None,
    failed: list[tuple[str, StorageError]] | None = None,
) -> list[InboxEvent]:
    """The events at ``keys`` still present, in inbox order; objects read damaged (or forged)
    are logged and left out, their keys added to ``damaged``. A read that fails raises its
    error, or, given ``failed``, is left out with its key and error added there (so that one
    failed read does not cost the others: the caller keeps what was read)."""
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(key: str) -> InboxEvent | None:
        async with gate:
            try:
                return await read_event(store, key, signing_key)
            except IntegrityError as exc:
                logger.error("inbox object %s read damaged: %s", key, exc)
                if damaged is not None:
                    damaged.append(key)
                return None
            except StorageError as exc:
                if failed is None:
                    raise
                failed.append((key, exc))
                return None

    found = await asyncio.gather(*(one(k) for k in keys))
    return sorted((e for e in found if e is not None), key=lambda e: e.order)


def event_handlers(definition: ActorDefinition) -> dict[str, str]:
    """Event name -> name of the method marked ``@virtual_actor.on_event(name)``."""
    return {info.event: name for name, info in definition.methods.items() if info.event is not None}


def refusal(event: InboxEvent, definition: ActorDefinition) -> str | None:
    """Why ``definition`` does not apply ``event`` (it stays in the inbox), or ``None``."""
    if event.name not in event_handlers(definition):
        return f"no handler: {definition.cls.__qualname__} has no method marked on_event({event.name!r})"
    if event.serializer not in PAYLOAD_SERIALIZERS:
        return f"unknown payload serializer {event.serializer!r}"
    if event.serializer == "pickle" and definition.serializer == "json":
        return "pickled payload refused: the actor uses the json serializer, which never unpickles"
    return None

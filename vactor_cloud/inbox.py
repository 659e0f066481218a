"""An actor's inbox: external events waiting under ``actors/<id>/inbox/``, folded into commits.

Exactly once: applying an event is an idempotent call whose key is
``event_dedup_key(name, event_id)``; its outcome (the handler's result or
exception) goes into the step's idempotency table in the same create-only
put that commits its effect. Inbox objects are deleted only after that
commit, and only while still at the version applied (``ObjectStore.delete_unchanged``:
the id may be sent again once the object is gone, and a late or retried delete must not
take the new event with it). A writer that dies between the commit and the deletes leaves
objects behind that the next fold finds in the table and deletes without
applying them again. Within the dedup window (see ``dedup.py``) an event id
is applied at most once even if it is sent again after its object was
deleted.

When a commit looks at the inbox: a LIST on every warm commit would double
the requests of the cheapest path, and loading an actor or reading it never
lists (a cold start stays a few GETs). A commit lists the inbox *before*
applying only when ``process_events()`` asked or this process sent the actor
an event since its last listing. Otherwise, when this process never listed
it or its last listing is older than ``Settings.inbox_interval`` (15 s), the
listing runs *beside* the commit, and a follow-up commit applies what it
found. Creating an actor lists its inbox once, beside the creation's own
requests (events sent with ``create=True`` wait there).

So a busy actor spends at most one LIST per ``inbox_interval`` on events from
other processes, and applies them within about that delay; an idle actor
applies them when someone calls ``process_events()`` (or ``vactor events drain``).

The event objects, their order and how they are sent: :mod:`vactor_cloud.inbox_events`; the
applied ones a deleted actor leaves: :mod:`vactor_cloud.inbox_leftovers`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from vactor_cloud import counters
from vactor_cloud.batch import PendingCall
from vactor_cloud.batch_apply import BatchResult
from vactor_cloud.dedup import Outcome, StepDedup, is_outcome
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.errors import StorageError
from vactor_cloud.ids import EVENT_KEY_PREFIX, event_dedup_key, validate_event_id
from vactor_cloud.inbox_events import (
    FETCH_CONCURRENCY,
    MAX_EVENT_PAYLOAD_BYTES,
    PAYLOAD_SERIALIZERS,
    EventInDoubtError,
    InboxEvent,
    aside_floors,
    encode_event,
    event_handlers,
    event_keys,
    fold_order,
    list_inbox,
    put_event,
    read_event,
    read_events,
    refusal,
)
from vactor_cloud.keys import inbox_key, inbox_prefix
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import StepRecord
from vactor_cloud.storage._base import Listing

# (with the event objects' public names, from inbox_events: docs/events.md names
# vactor_cloud.inbox.EventInDoubtError and MAX_EVENT_PAYLOAD_BYTES)
__all__ = [
    "MAX_EVENTS_PER_COMMIT",
    "MAX_EVENT_PAYLOAD_BYTES",
    "PAYLOAD_SERIALIZERS",
    "PROCESS_EVENTS",
    "PROCESS_MORE_EVENTS",
    "ActorInbox",
    "EventInDoubtError",
    "InboxEvent",
    "encode_event",
    "event_dedup_key",
    "fold_order",
    "inbox_key",
    "inbox_prefix",
    "list_inbox",
    "put_event",
    "read_event",
    "validate_event_id",
]

logger = logging.getLogger("vactor_cloud")

#: method name of the queued marker call behind ``process_events()``; never a real method
PROCESS_EVENTS = "__vactor_process_events__"
#: the marker of ``process_events()``'s later commits: they go on with the events its first one
#: listed (they list again only when a fold says so: ``_signalled``)
PROCESS_MORE_EVENTS = "__vactor_process_more_events__"
_PROCESSING = frozenset({PROCESS_EVENTS, PROCESS_MORE_EVENTS})
#: internal marker: a background listing found events; commit the ones already fetched
FOLD_KNOWN = "__vactor_fold_known__"
_MARKERS = frozenset({PROCESS_EVENTS, PROCESS_MORE_EVENTS, FOLD_KNOWN})
#: most events folded into one commit (the rest go into the next ones)
MAX_EVENTS_PER_COMMIT = 256
#: a listing reads new events this many at a time, trimming payloads after each slice
_READ_SLICE = 4 * FETCH_CONCURRENCY
#: the share of ``Settings.deadline`` a listing spends reading new events (at least one slice):
#: a commit's listing (a fold may make two, after waiting for another's turn) then ends well
#: within the commit's deadline, and the listings after it read on (see ``_unread``)
_READ_SHARE = 0.25
#: payload bytes held between commits, and folded into one commit (at least one event)
_PAYLOAD_BYTES = MAX_EVENT_PAYLOAD_BYTES
#: reads of an inbox object that arrive damaged, in a row, before the fold stops waiting for it
#: (its place in the order is inside it); then it is read again this often (seconds)
_DAMAGED_READS = 3
_DAMAGED_RECHECK = 60.0


class ActorInbox:
    """The inbox side of one actor in this process: which events to fold into a commit, and cleanup.

    A :class:`~vactor_cloud.core.CommitHook`. Its state lives on the IO loop:
    ``fold`` and ``settle`` run there; ``wants_fold`` only reads flags.
    """

    __slots__ = (
        "_background",
        "_damaged",
        "_deleting",
        "_doomed",
        "_excluded",
        "_filled",
        "_fold_base",
        "_fold_began",
        "_fresh",
        "_known",
        "_listed_at",
        "_listed_step",
        "_listing",
        "_listing_error",
        "_looked",
        "_looked_for",
        "_order",
        "_order_at",
        "_refold",
        "_seen_clock",
        "_sender",
        "_signalled",
        "_tasks",
        "_unconfirmed",
        "_unread",
        "actor_id",
        "known_step",
        "log",
        "request_commit",
        "settings",
        "store",
    )

    def __init__(
        self,
        log: ActorLog,
        settings: Any,
        request_commit: Callable[[PendingCall], None],
        known_step: Callable[[], int],
    ) -> None:
        self.actor_id = log.actor_id
        #: the actor's log: its store, and the idempotency checkpoints the fold reads
        self.log = log
        store = log.store
        #: the newest step this process knows of the actor (-1: none)
        self.known_step = known_step
        self.store = store
        self.settings = settings
        #: queues a write on the actor (a pool thread commits it)
        self.request_commit = request_commit
        #: pending events fetched from storage, by key (inbox objects are immutable)
        self._known: dict[str, InboxEvent] = {}
        self._listed_at = -math.inf
        #: the newest step this process knew when ``_known`` was last listed (see ``_cache_trusted``)
        self._listed_step = -1
        #: the base step of the fold in progress (settle moves ``_listed_step`` past our own commit)
        self._fold_base = -1
        #: when (monotonic) the fold in progress (or the last one) began
        self._fold_began = math.inf
        #: pending events read by a listing that began after ``_fold_began``: after the fold's
        #: base was read (the others may have been applied since, see ``fold``)
        self._fresh: set[str] = set()
        self._signalled = False
        self._listing_error: BaseException | None = None
        #: the last fold left known events for the next one (``more_to_do``): fold once more
        self._refold = False
        #: the last fold chose a commit's worth of events: more may be pending
        self._filled = False
        self._deleting: set[str] = set()
        #: applied events waiting for the delete request in flight (see ``_send_deletes``): each
        #: key with the version that was applied
        self._doomed: list[tuple[str, str]] = []
        self._sender: asyncio.Task[None] | None = None
        #: pending events whose handler raised what is no outcome (``dedup.is_outcome``:
        #: SystemExit, a StorageError): excluded, kept in the inbox, chosen after the others
        #: (see ``fold``)
        self._excluded: set[str] = set()
        #: the wall clock when a listing ended, made monotonic (``InboxEvent.seen``)
        self._seen_clock = -math.inf
        #: listed keys whose reads arrived damaged: how many in a row, and when last read (monotonic)
        self._damaged: dict[str, tuple[int, float]] = {}
        #: keys first seen by a listing of several pages (``ObjectStore.listed_at_one_moment``),
        #: and when (monotonic) it ended: an earlier event of the same sender may have landed
        #: behind its cursor, unseen. Applied (with their sender's later events) once a listing
        #: begun after that saw them too
        self._unconfirmed: dict[str, float] = {}
        #: held by the listing in progress: this process's listings of the inbox take turns
        self._listing = asyncio.Lock()
        #: the periodic listing, run beside commits rather than before them
        self._background: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] | None = None
        #: the known events a fold looks at, each with its floor in the order (``aside_floors``),
        #: kept from one fold to the next while ``_looked_for`` holds (see ``_to_look_at``);
        #: None: made again by the next fold
        self._looked: dict[str, float] | None = None
        #: what the events set aside were refused by: the event names the class handles, and
        #: its serializer
        self._looked_for: tuple[frozenset[str], str] = (frozenset(), "")
        #: the keys of ``_looked`` in fold order, made with it; the keys before ``_order_at``
        #: have left the cache (applied, found gone), and stay out of it until a listing, which
        #: makes the order again. So a fold goes through the order from ``_order_at`` to the
        #: last event it chooses, not through the backlog
        self._order: list[str] = []
        self._order_at = 0
        #: the last listing left listed events unread (its share of the deadline spent, or it
        #: failed part way): the place of each is inside it, and any may go before those read,
        #: so no event is applied until a listing has read them all
        self._unread = False

    def _forget_background(self, _: object) -> None:
        # A finished task still holds its coroutine frame and result: drop it.
        self._background = None

    async def _quiet_refresh(self) -> bool:
        """``_list_confirmed``; False if it failed."""
        # A failure leaves ``_listed_at`` unset, so a later commit lists again.
        try:
            await self._list_confirmed()
        except StorageError as exc:
            logger.debug("listing the inbox of %r failed: %s", self.actor_id, exc)
            return False
        return True

    async def prime(self) -> None:
        """Creation lists the inbox once (events sent with ``create=True`` wait there), beside
        its own requests: the first commit then need not list it."""
        await self._quiet_refresh()

    def signal(self) -> None:
        """This process sent the actor an event: the next commit lists the inbox."""
        self._signalled = True

    def more_to_do(self, applied: int) -> bool:
        """Whether ``process_events`` folds again after a commit that applied ``applied`` events:
        the last fold left events it knows of for the next one (``_refold``: one held back when
        read again, one forgotten as applied to be listed again, or a read that arrived damaged
        to be read again), or it chose a commit's worth and applied some (fewer than it chose
        when a handler raised SystemExit, or an event was gone when read again; a full fold
        that applied none would only repeat itself)."""
        return self._refold or (self._filled and applied > 0)

    def _stale(self) -> bool:
        return bool(time.monotonic() - self._listed_at > self.settings.inbox_interval)

    def wants_fold(self, batch: list[PendingCall]) -> bool:
        """Cheap, any thread: must the commit look at the inbox (a trip to the IO loop)?"""
        return (
            self._signalled or bool(self._known) or self._stale() or any(c.method in _MARKERS for c in batch)
        )

    def _list_in_background(self) -> None:
        """Look for events other processes sent, off the commit's critical path.

        A commit that finds the inbox listing stale (or never made, in this
        process) does not wait for a LIST (a warm commit stays one PUT, and
        loading an actor never lists): the listing runs beside it, and if it
        finds events, a follow-up commit applies them at once.
        """
        if self._background is not None and not self._background.done():
            return

        async def refresh_then_fold() -> None:
            # Listings one after another until one has read every event listed (each reads
            # for its share of the deadline, so a fold waits for no more than one of them).
            while await self._quiet_refresh() and self._unread:
                pass
            if self._known:
                self.request_commit(PendingCall(FOLD_KNOWN, (), {}, False, Future(), uuid.uuid4().hex))

        self._background = asyncio.get_running_loop().create_task(refresh_then_fold())
        self._background.add_done_callback(self._forget_background)

    async def _list_confirmed(self) -> None:
        """``_refresh``, and once more at once if that listing took several pages and found
        new events: the second one confirms them (see ``_unconfirmed``)."""
        await self._refresh()
        if self._unconfirmed and not self._unread:
            await self._refresh()

    async def _refresh(self) -> None:
        # One listing at a time (the periodic one and a fold's): a listing that began before
        # another ended may have missed, behind its cursor, an event that one found; ending
        # after it, it took that event for gone and dropped it, and the sender's later events
        # went first.
        async with self._listing:
            try:
                await self._refresh_now()
            finally:
                # What it changed in the cache (even a part, when it failed) is set aside anew
                # by the next fold: one made while it ran set aside what the cache held then.
                self._looked = None

    async def _refresh_now(self) -> None:
        started = time.monotonic()
        self._signalled = False
        prefix = inbox_prefix(self.actor_id)
        listed = await self.store.list(prefix)
        ended = time.monotonic()
        # every listed event was written by now: an honest sender's time is at most this
        self._seen_clock = seen = max(self._seen_clock, time.time())
        #: of one sender's events, it holds none without those sent before
        snapshot = self.store.listed_at_one_moment(prefix, listed)
        keys = event_keys(prefix, listed)
        present = set(keys)
        # Confirmed: seen by a listing that ended before this one began (every event its sender
        # sent before it had landed by then, so this listing saw them), or by this one if it
        # was one moment. (This process's listings take turns, see ``_refresh``: every earlier
        # one ended before this one began; ``first > started`` would hold for none.)
        self._unconfirmed = (
            {}
            if snapshot
            else {k: first for k, first in self._unconfirmed.items() if k in present and first > started}
        )
        for gone in [k for k in self._known if k not in present]:
            del self._known[gone]
        versions = listed.versions if isinstance(listed, Listing) else None
        if versions is not None:
            # An object at another version than the one read is another event under the key
            # (the one held was deleted unapplied, by hand, and the id sent again): read anew.
            # (The local store's listings name the versions of the objects it read: the held ones.)
            for replaced in [
                k for k, e in self._known.items() if e.version and versions.get(k, e.version) != e.version
            ]:
                del self._known[replaced]
                self._excluded.discard(replaced)
                self._unconfirmed.pop(replaced, None)
        for gone in [k for k in self._damaged if k not in present]:
            del self._damaged[gone]
        self._excluded &= present
        new = [
            k for k in keys if k not in self._known and k not in self._deleting and self._read_due(k, started)
        ]
        # Until every new event is read, none is applied (see ``_unread``; also when this
        # listing fails or is cancelled part way).
        self._unread = bool(new)
        reading_ends = started + self.settings.deadline * _READ_SHARE
        held = [e for e in self._known.values() if not e.stripped] if new else []
        # A slice at a time, each trimmed at once: a backlog's payloads are never all held.
        for at in range(0, len(new), _READ_SLICE):
            if at and time.monotonic() > reading_ends:
                break  # (the next listing reads on; ``_unread`` holds the events read back)
            damaged: list[str] = []
            failed: list[tuple[str, StorageError]] = []
            read: list[InboxEvent] = []
            for found in await read_events(
                self.store, new[at : at + _READ_SLICE], self.settings.signing_key, damaged, failed
            ):
                event = dataclasses.replace(found, seen=seen)
                self._known[event.key] = event
                read.append(event)
                if started >= self._fold_began:
                    self._fresh.add(event.key)
                self._damaged.pop(event.key, None)
                if not snapshot:
                    self._unconfirmed.setdefault(event.key, ended)
            for key in damaged:
                self._damaged[key] = (self._damaged.get(key, (0, 0.0))[0] + 1, started)
            held = self._trim(held + read)
            if failed:
                # The listing fails, keeping what its reads brought (the next one reads the
                # rest): one failed read of a slice does not cost the others
                raise failed[0][1]
        else:
            self._unread = False
        self._fresh.intersection_update(self._known)
        self._listed_at = started
        # Known *after* the listing: a step that applied a listed event is at or below
        # it, so its dedup entry is in that step's table (the fold checks it there).
        self._listed_step = self.known_step()

    def _read_due(self, key: str, now: float) -> bool:
        """Whether a listing reads ``key``: yes, unless its reads kept arriving damaged (then
        once every ``_DAMAGED_RECHECK`` seconds)."""
        failed = self._damaged.get(key)
        return failed is None or failed[0] < _DAMAGED_READS or now - failed[1] >= _DAMAGED_RECHECK

    def _waiting_on_damaged(self) -> bool:
        """An object read damaged fewer than ``_DAMAGED_READS`` times in a row: most likely cut
        in transit, and its place in the order is inside it, so no event is applied before it
        is read again (by the next listing, which the next commit makes)."""
        return any(failed < _DAMAGED_READS for failed, _ in self._damaged.values())

    def _trim(self, whole: list[InboxEvent]) -> list[InboxEvent]:
        """Of ``whole`` (events held with their payloads), hold payloads for the first in inbox
        order only, as many as one commit applies (``MAX_EVENTS_PER_COMMIT``, and
        ``_PAYLOAD_BYTES`` of payloads, at least one); the rest keep their place, and are read
        again when their turn comes (``_reread``). Memory per actor is then its backlog's keys
        and order, not its payloads. The events kept whole.

        Ordered among themselves, not with the backlog held without payloads (which would sort
        the backlog once per slice a listing reads): the order of these alone may differ where
        a sender's event held without its payload raises the place of its later ones, and then
        another event's payload is kept, to be read again when due; which events go first does
        not depend on it."""
        kept: list[InboxEvent] = []
        held = 0
        for event in fold_order(e for e in whole if self._known.get(e.key) is e):
            held += event.payload_size
            if len(kept) >= MAX_EVENTS_PER_COMMIT or (kept and held > _PAYLOAD_BYTES):
                self._known[event.key] = event.without_payload()
            else:
                kept.append(event)
        return kept

    async def _reread(self, chosen: list[InboxEvent]) -> tuple[list[InboxEvent], StorageError | None]:
        """``chosen`` (in inbox order) with the payloads of those held without them read again,
        and the error of a read that failed, if one did: then only the events before the first
        not read are given (the others wait, in order).

        One gone meanwhile was applied by another process (deleted only after its commit):
        dropped. One found with another place in the order (its object was deleted unapplied
        and its id sent again) is held anew and waits for the next fold, which the next commit
        makes: it became visible now, so it may come after events stamped later.
        """
        held = [e.key for e in chosen if e.stripped]
        if not held:
            return chosen, None
        failed: list[tuple[str, StorageError]] = []
        read = await read_events(self.store, held, self.settings.signing_key, failed=failed)
        fresh = {e.key: e for e in read}
        error = None
        if failed:
            error = failed[0][1]
            unread = {key for key, _ in failed}
            chosen = list(itertools.takewhile(lambda e: e.key not in unread, chosen))
        ready: list[InboxEvent] = []
        for event in chosen:
            if not event.stripped:
                ready.append(event)
                continue
            again = fresh.get(event.key)
            if again is None:
                self._known.pop(event.key, None)
                continue
            # (the same event keeps the time it was first listed at; another one under its key
            # is listed now)
            same = again.order == event.order
            again = dataclasses.replace(
                again, seen=event.seen if same else max(self._seen_clock, time.time())
            )
            self._known[event.key] = again
            if not same or again.dedup_key != event.dedup_key:
                self._looked = None  # (another event: its place, and whether it is refused)
                self._refold = True
                continue
            ready.append(again)
        return ready, error

    def _cache_trusted(self, base: StepRecord) -> bool:
        """Whether the cached pending events may be folded onto ``base`` without listing again.

        An inbox object is deleted only after the commit that applied it, so
        a cached event may have been applied by another process since it was
        listed; the fold catches that in the dedup table of ``base``, but only
        while the event is still within the dedup window. The cache is
        therefore trusted only when no other process committed since the
        listing: ``base`` is the step known right after it, or one this
        process committed on top of that (``settle`` keeps track).
        """
        return base.step == self._listed_step

    async def fold(
        self, batch: list[PendingCall], base: StepRecord, definition: ActorDefinition
    ) -> list[PendingCall]:
        """The calls to apply on ``base``: pending events (inbox order, at most
        ``MAX_EVENTS_PER_COMMIT`` and ``_PAYLOAD_BYTES`` of payloads, at least one) followed by
        ``batch`` without ``process_events`` markers.

        Never raises for the inbox's sake: a failed listing leaves events for
        a later commit (and fails the ``process_events`` markers, at settle).
        """
        calls = [c for c in batch if c.method not in _MARKERS]
        forced = any(c.method == PROCESS_EVENTS for c in batch)
        # What a listing that began before this fold read (this fold may wait for one in
        # flight: listings take turns) is not fresh: what is at such a key now may be another
        # event (see below).
        self._fold_began = time.monotonic()
        self._fresh = set()
        self._listing_error = None
        self._refold = False
        self._filled = False
        if forced or self._signalled:
            try:
                await self._list_confirmed()
            except StorageError as exc:
                self._signalled = True
                self._listing_error = exc
                logger.warning("could not list the inbox of %r: %s", self.actor_id, exc)
        elif self._stale() and not (self._known and not self._cache_trusted(base)):
            # (Not when this fold lists below: it would wait for that listing, then list again)
            self._list_in_background()
        if self._known and not self._cache_trusted(base):
            # Others committed since our listing (or it predates loading): what we
            # hold may be applied and out of the dedup window. List again first.
            try:
                await self._list_confirmed()
            except StorageError as exc:
                logger.warning("could not list the inbox of %r: %s", self.actor_id, exc)
                self._known.clear()
                self._signalled = True
        self._fold_base = base.step
        if self._waiting_on_damaged() or self._unread:
            # (the next commit lists again, and process_events folds again: that listing reads
            # the object again, or reads on)
            self._signalled = True
            self._refold = True
            return calls
        handlers = event_handlers(definition)
        refused_by = (frozenset(handlers), definition.serializer)
        if not self._known or (self._looked == {} and self._looked_still(refused_by, base)):
            return calls
        table = await StepDedup(self.log, base, definition.serializer).load()
        chosen: list[InboxEvent] = []
        #: a commit's worth chosen: MAX_EVENTS_PER_COMMIT, or _PAYLOAD_BYTES of payloads
        full = False
        weight = 0
        #: senders with an event not confirmed yet: it and their later events wait
        waiting: set[str] = set()
        #: events whose handler was excluded before (SystemExit): chosen after the others, so
        #: that a commit's worth of them never holds back the events behind them
        excluded: list[InboxEvent] = []
        for event in self._to_look_at(table, definition, refused_by, base):
            if full:
                # (the events after the last one chosen are looked at when their turn comes:
                # a commit's work is what it applies, not the backlog behind it)
                break
            if table.holds(event.dedup_key):
                if event.key not in self._fresh:
                    # Read by a listing that began before this fold (before it, or the periodic
                    # one it waited for), and applied since (by another process, or a writer
                    # that died before deleting it): what is at its key now may be another
                    # event (an id is remembered with its name, and its key is free again once
                    # the applied object is deleted). Forgotten, not deleted: the next listing
                    # (the next commit makes one) reads the key again if it is still there.
                    self._known.pop(event.key, None)
                    self._refold = True
                    self._signalled = True
                else:
                    # Read by this fold's listing: applied by an earlier commit whose writer
                    # did not get to delete it.
                    self._delete([event])
                continue
            if event.key in self._unconfirmed or event.sender in waiting:
                waiting.add(event.sender)
                continue
            if event.key in self._excluded:
                excluded.append(event)
                continue
            if chosen and weight + event.payload_size > _PAYLOAD_BYTES:
                full = True
                continue
            chosen.append(event)
            weight += event.payload_size
            full = len(chosen) >= MAX_EVENTS_PER_COMMIT
        for event in excluded:  # tried again (docs/events.md), with the room the others left
            if full or (chosen and weight + event.payload_size > _PAYLOAD_BYTES):
                full = True
                break
            chosen.append(event)
            weight += event.payload_size
            full = len(chosen) >= MAX_EVENTS_PER_COMMIT
        # Held without their payloads (past the first MAX_EVENTS_PER_COMMIT when listed, or
        # refused by the class that listed them): read again now that they are due.
        ready, error = await self._reread(chosen)
        if error is not None:
            # Like a failed listing: the calls commit; the events wait (in order: the ones
            # before the first not read go now) and process_events says it did not finish.
            logger.warning("could not read pending events of %r: %s", self.actor_id, error)
            self._listing_error = error
            self._signalled = True
        folded: list[PendingCall] = []
        for event in ready:
            try:
                payload = event.load_payload()
            except BaseException as exc:  # SystemExit from a payload's __setstate__ too: not the caller's
                logger.error("event %s: cannot read its payload (%r); it stays in the inbox", event.key, exc)
                continue
            folded.append(
                PendingCall(
                    method=handlers[event.name],
                    args=(payload,),
                    kwargs={},
                    readonly=False,
                    future=Future(),
                    call_id=event.call_id,
                    idempotency_key=event.dedup_key,
                )
            )
        if full:
            # More to do: the next commit goes on with the events known (``wants_fold``), without
            # listing again unless another process committed meanwhile (``_cache_trusted``)
            self._filled = True
        if waiting:
            # The next commit lists again (and process_events folds again): that listing
            # confirms them, or finds what an earlier one missed
            self._signalled = True
            self._refold = True
        return folded + calls

    def _looked_still(self, refused_by: tuple[frozenset[str], str], base: StepRecord) -> bool:
        """Whether the events the last fold set aside stay aside in a fold onto ``base`` (see
        ``_to_look_at``)."""
        return self._looked is not None and self._looked_for == refused_by and self._cache_trusted(base)

    def _to_look_at(
        self,
        table: StepDedup,
        definition: ActorDefinition,
        refused_by: tuple[frozenset[str], str],
        base: StepRecord,
    ) -> Iterator[InboxEvent]:
        """The known events the fold onto ``base`` looks at, in fold order; the others are set
        aside: each refused by the class (``refusal``), confirmed, and not applied at ``base``
        (its table does not hold it).

        An event set aside stays in the inbox, maybe for good: known (a listing does not read
        it again), but not with its payload (kept so, the cache held every refused event's
        bytes for as long as the actor stayed cached, uncounted). And it stays aside, not
        looked at again, while nothing can change that: until a listing ends (it may have found
        new events, or these applied by another process), another class (``refused_by``), or a
        fold onto a step another process made (the cache is no longer trusted: the fold lists
        first). The commits of this process in between do not apply it (the class refuses
        it), and the events that leave the cache meanwhile (applied, found gone) are ones
        looked at, which set no floor. So a warm commit of an actor with a backlog of events
        it does not apply does not go through the backlog: it sorts, and looks up in the
        table, the others only (none: it reads no table). The events set aside still count
        in the order (``aside_floors``).

        The events looked at are sorted once too, with the set aside (``_order``), and a fold
        goes through them from the first still known (those before it were applied or found
        gone): while it drains a backlog, a commit looks at the events it applies and the ones
        it passes over (an event waiting for its sender's, one applied by another process),
        not at the rest."""
        looked = self._looked if self._looked_still(refused_by, base) else None
        order = self._order
        if looked is None:
            aside: set[str] = set()
            for event in self._known.values():
                if (
                    table.holds(event.dedup_key)
                    or event.key in self._unconfirmed
                    or refusal(event, definition) is None
                ):
                    continue
                aside.add(event.key)
                if not event.stripped:
                    self._known[event.key] = event.without_payload()
            looked = aside_floors(self._known.values(), aside)
            order = [e.key for e in fold_order((self._known[k] for k in looked), looked)]
            # (kept only if made on a trusted base: otherwise this fold's only, and the next
            # one, onto a step another process made, lists first)
            trusted = self._cache_trusted(base)
            self._looked = looked if trusted else None
            self._order = order if trusted else []
            self._order_at = 0
            self._looked_for = refused_by
        known = self._known
        at = self._order_at if order is self._order else 0
        while at < len(order) and order[at] not in known:
            at += 1
        if order is self._order:
            self._order_at = at
        return (found for i in range(at, len(order)) if (found := known.get(order[i])) is not None)

    def _known_by_dedup(self, dedup_keys: Iterable[str | None]) -> dict[str, InboxEvent]:
        """The known events recorded under ``dedup_keys`` (``event_dedup_key``), each found at
        the key its event id names (neither its name nor its id holds a control character)."""
        found: dict[str, InboxEvent] = {}
        for dedup_key in dedup_keys:
            if dedup_key is None or not dedup_key.startswith(EVENT_KEY_PREFIX):
                continue
            event_id = dedup_key[len(EVENT_KEY_PREFIX) :].partition("\x00")[2]
            event = self._known.get(inbox_key(self.actor_id, event_id))
            if event is not None and event.dedup_key == dedup_key:
                found[dedup_key] = event
        return found

    async def settle(self, batch: list[PendingCall], calls: list[PendingCall], result: BatchResult) -> None:
        """After ``calls`` were applied (committed if ``result.state``): delete the events whose
        application was committed; ``process_events`` markers get how many this commit applied.
        """
        applied_keys = (
            {c.key for c in result.calls if c.key is not None} if result.state is not None else set()
        )
        if result.state is not None and self._listed_step == self._fold_base:
            # Our own commit on top of the listed step: the cache stays trusted.
            self._listed_step = self._fold_base + 1
        applied = list(self._known_by_dedup(applied_keys).values())
        counters.count("folded_events", len(applied))
        self._delete(applied)
        self._note_excluded(calls, result)
        for call in batch:
            if call.method == FOLD_KNOWN:
                Outcome(True, len(applied)).settle(call.future)
            if call.method not in _PROCESSING:
                continue
            if self._listing_error is not None:
                Outcome(False, self._listing_error).settle(call.future)
            else:
                Outcome(True, len(applied)).settle(call.future)

    def _note_excluded(self, calls: list[PendingCall], result: BatchResult) -> None:
        """Remember the events whose handler raised what is no outcome (``dedup.is_outcome``:
        SystemExit, a StorageError): they stay in the inbox, and the next folds choose them
        after the others. Newly excluded ones make ``process_events`` fold again (what they
        held back may be applied now)."""
        failed = [
            call.idempotency_key
            for call, outcome in zip(calls, result.outcomes, strict=True)
            if call.idempotency_key is not None and not outcome.ok and not is_outcome(outcome.value)
        ]
        for event in self._known_by_dedup(failed).values():
            if event.key not in self._excluded:
                self._excluded.add(event.key)
                self._refold = True

    def _delete(self, events: list[InboxEvent]) -> None:
        """Delete applied events in the background (a failure only leaves them for the next fold),
        each only while its object is still at the version read (``ObjectStore.delete_unchanged``:
        a delete landing late, or a retry of one that landed, must not delete another event sent
        under the id since)."""
        events = [e for e in events if e.key not in self._deleting]
        if not events:
            return
        for event in events:
            self._known.pop(event.key, None)
            self._excluded.discard(event.key)
            self._deleting.add(event.key)
        self._doomed.extend((e.key, e.version) for e in events)
        if self._sender is not None and not self._sender.done():
            return  # the sender in flight sends these next
        task = self._sender = asyncio.get_running_loop().create_task(self._send_deletes())
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _send_deletes(self) -> None:
        """Delete the applied events queued in ``_doomed``, one ``delete_many`` round in flight
        at a time: one request where a request deletes many (S3's DeleteObjects), else
        ``delete_parallel`` single-key ones. The events of commits that end meanwhile go in the
        next round. (A task per commit, each with its own bound, put no bound on the requests
        in flight while deletes stalled.)"""
        store = self.store
        try:
            while self._doomed:
                size = store.delete_batch if store.delete_batch > 1 else max(1, store.delete_parallel)
                doomed, self._doomed = self._doomed[:size], self._doomed[size:]
                keys = [key for key, _ in doomed]
                try:
                    await store.delete_unchanged(dict(doomed))
                except StorageError as exc:
                    # (left in the inbox: the next fold finds them applied and deletes them)
                    logger.warning(
                        "could not delete %d applied event(s) (%s, ...): %s", len(keys), keys[0], exc
                    )
                finally:
                    self._deleting.difference_update(keys)
        finally:
            # Cancelled (shutdown): what was not sent is listed again by whoever comes next.
            self._deleting.difference_update(key for key, _ in self._doomed)
            self._doomed = []

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None

    async def finish(self) -> None:
        """At shutdown: wait for the background work (the periodic listing, deletes of applied
        events) to end; nothing new starts from a runtime that shut down."""
        tasks = [t for t in (self._background, *(self._tasks or ())) if t is not None and not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_deleted(self) -> None:
        """Until the background deletes started so far are done (for tests and the CLI)."""
        while self._deleting:
            await asyncio.sleep(0.01)

    async def wait_some_deleted(self, keys: frozenset[str] | None = None) -> frozenset[str]:
        """Until some of ``keys`` (None: the events whose deletes are under way now) are no
        longer being deleted (deleted, or left for a later fold); those still being deleted.
        A caller waits for a backlog's deletes a round at a time, each bounded by the deadline,
        not all of them within it (a round deletes ``delete_parallel`` events, or a batch)."""
        if keys is None:
            keys = frozenset(self._deleting)
        while (left := keys & self._deleting) and len(left) == len(keys):
            await asyncio.sleep(0.01)
        return left

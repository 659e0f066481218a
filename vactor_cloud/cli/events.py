"""``vactor events``: look at and drain actors' inboxes.

::

    vactor events ls [--actor ID ...] [--json]      pending events and why each is waiting
    vactor events drain [--actor ID ...] [--json]   apply pending events now (e.g. from a cron job)

The store is ``--storage URL`` (else ``$VACTOR_STORAGE``), with ``-o KEY=VALUE``
options, as for every ``vactor`` command. Without ``--actor``
every actor is looked at, which lists all keys under ``actors/``: fine for a
scheduled job, costly on very large buckets, where ``--actor`` is better.

Exit status: 0 when everything asked for was done (events that wait for a
handler or for their actor to be created are reported, not errors), 1 when
an actor could not be read or drained, 2 on bad usage (an invalid ``--actor``
id included), 3 when an ``--actor`` (repeatable) names an actor that does not exist and
has no events waiting for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.cli._chunks import IdChunks
from vactor_cloud.cli._interrupts import second_interrupt_stops_at_once
from vactor_cloud.cli._options import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CliError,
    actor_error,
    actor_id_arg,
    common_parent,
    errors_error,
    init_runtime,
    memory_hint,
)
from vactor_cloud.cli._output import Advance, Output, printable, progress, when
from vactor_cloud.deletion import is_deleted
from vactor_cloud.errors import ActorDeletedError, ActorNotFoundError, VactorError
from vactor_cloud.events import _process, applied_event
from vactor_cloud.history import iter_actor_ids, newest_step_async
from vactor_cloud.inbox_events import InboxEvent, event_keys, list_inbox, read_events, refusal
from vactor_cloud.keys import inbox_prefix
from vactor_cloud.runtime import get_runtime, shutdown
from vactor_cloud.storage import ObjectStore

__all__ = ["add_commands", "run"]


def add_commands(sub: Any) -> None:
    """Register ``vactor events ls|drain`` on the ``vactor`` subparsers ``sub``."""
    parser = sub.add_parser(
        "events", parents=[common_parent()], help="inspect and drain actors' external event inboxes"
    )
    inner = parser.add_subparsers(dest="events_command", metavar="{ls,drain}")
    inner.required = True
    for name, text in (
        ("ls", "list pending events per actor and why each one waits"),
        ("drain", "apply every pending event now (each exactly once)"),
    ):
        cmd = inner.add_parser(name, help=text, description=text, parents=[common_parent()])
        cmd.add_argument(
            "--actor",
            action="append",
            type=actor_id_arg,
            metavar="ID",
            help="only this actor, repeatable (default: every actor)",
        )
    parser.set_defaults(func=run)


@dataclass
class EventRow:
    actor: str
    event_id: str
    name: str
    #: None: unknown (the object cannot be read)
    sent: float | None
    status: str

    def cells(self) -> tuple[str, str, str, str, str]:
        """The row of ``vactor events ls``; the time without spaces, one field for ``awk``."""
        sent = "-" if self.sent is None else when(self.sent, one_field=True)
        return (self.actor, self.event_id, self.name, sent, self.status)


async def _pages_with_events(
    actors: list[str] | None, looked_at: Callable[[], None] = lambda: None
) -> AsyncGenerator[list[str], None]:
    """The named actors (one page), or every actor whose inbox holds an event, a page at a time.

    Without a name this pages through the actor ids (one listing that skips
    each actor's steps) and asks each inbox for one key, those of up to
    ``_PROBE_CONCURRENCY`` actors at once: never a LIST of every object under ``actors/``.
    ``looked_at()`` for each actor asked.
    """
    store = get_runtime().store
    if actors is not None:
        named = list(dict.fromkeys(actors))
        for actor in named:
            async with contextlib.aclosing(_inbox_pages(store, actor)) as pages:
                has_events = await anext(pages, None) is not None  # (its first page, not all of it)
            if not has_events:
                # ActorNotFoundError (exit 3): neither the actor nor its events; read without the
                # class (which only events need), as a deleted actor says so
                record = await newest_step_async(actor)
                if is_deleted(record):
                    raise ActorDeletedError(actor, store.describe(), record.step)
        yield named
        return
    page: list[str] = []
    async for actor_id in iter_actor_ids(store):
        looked_at()
        page.append(actor_id)
        if len(page) == _PROBE_CONCURRENCY:
            yield await _with_events(store, page)
            page = []
    yield await _with_events(store, page)


async def _with_events(store: ObjectStore, actor_ids: list[str]) -> list[str]:
    """Those of ``actor_ids`` whose inbox holds an event, their inboxes asked at once."""

    async def has_events(actor_id: str) -> bool:
        return bool(await store.list(inbox_prefix(actor_id), limit=1))

    if not actor_ids:
        return []
    probes = [asyncio.ensure_future(has_events(actor_id)) for actor_id in actor_ids]
    try:
        await asyncio.wait(probes, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # One failed (or we were cancelled): the rest are stopped and waited for, no orphans left
        # running on the loop as the command reports the error.
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    for probe in probes:  # (of those that failed before the rest were stopped, the first listed)
        error = None if probe.cancelled() else probe.exception()
        if error is not None:
            raise error
    return [actor_id for actor_id, probe in zip(actor_ids, probes, strict=True) if probe.result()]


#: inboxes asked at once when every actor's is (one LIST each): a bucket of thousands of actors is
#: not a round trip per actor, one after another, before the first line
_PROBE_CONCURRENCY = 32


#: inbox keys listed and events read at a time by ``ls``: a page's ids, names and times are kept
_LS_SLICE = 128


async def _inbox_pages(store: ObjectStore, actor_id: str) -> AsyncGenerator[list[str], None]:
    """The keys of ``actor_id``'s events (:func:`~vactor_cloud.inbox_events.list_inbox`), in key order,
    a LIST of up to ``_LS_SLICE`` keys at a time; pages without an event key are passed over."""
    prefix = inbox_prefix(actor_id)
    after: str | None = None
    while True:
        listed = await store.list(prefix, start_after=after, limit=_LS_SLICE)
        keys = event_keys(prefix, listed)
        if keys:
            yield keys
        if len(listed) < _LS_SLICE:
            return
        after = listed[-1]


async def _read_without_payloads(
    store: ObjectStore, keys: list[str], signing_key: bytes | None, damaged: list[str]
) -> list[InboxEvent]:
    """The events at ``keys`` still present, without their payloads: a backlog's payloads are
    never all held, as in a process's inbox. Keys of objects read damaged go to ``damaged``."""
    return [event.without_payload() for event in await read_events(store, keys, signing_key, damaged)]


#: the status of an event of a deleted actor (``vactor_cloud.delete_actor``)
_DELETED = "waiting: actor deleted, for the next actor created under its id"
#: the status of an inbox object that cannot be read
_DAMAGED = "damaged: read failed its integrity check (cut short, altered, or not signed with this key); kept"


def _ls(actors: list[str] | None, out: Output) -> list[str]:
    """``vactor events ls``: the rows of each page of an inbox (up to 128 events, in key order),
    printed as it is read, the actors with events asked a page (up to 32) at a time: on a bucket
    of thousands, the first rows come after their inboxes, not everyone's; of an inbox of a
    million events, after its first page (and no more than a page is held). The actors that
    could not be read."""
    errors: list[str] = []
    listed = 0
    pages = _event_rows(actors)

    async def next_page() -> tuple[list[EventRow], list[str]] | None:
        return await anext(pages, None)

    columns = ("ACTOR", "EVENT", "NAME", "SENT", "STATUS")
    try:
        with out.rows_as_done(columns, EventRow.cells, lambda row: row.__dict__, held=False) as show:
            while (page := _sync.sync(next_page())) is not None:
                rows, page_errors = page
                show(rows)
                listed += len(rows)
                errors += page_errors
    finally:
        with contextlib.suppress(Exception):  # (the listing closed however the printing ended)
            _sync.sync(pages.aclose())
    if not listed and not errors and not out.json:  # (else an actor not read may have some: said)
        print(f"no pending events under {get_runtime().store.describe()}{memory_hint()}", file=sys.stderr)
    return errors


async def _event_rows(actors: list[str] | None) -> AsyncGenerator[tuple[list[EventRow], list[str]], None]:
    """The rows of ``vactor events ls``, a page of an inbox at a time, with the errors of the
    actors that could not be read (each an error of its own: the others are still listed)."""
    async with contextlib.aclosing(_pages_with_events(actors)) as pages:
        async for page in pages:
            for actor_id in page:
                try:
                    async with contextlib.aclosing(_actor_rows(actor_id)) as rows:
                        async for some in rows:
                            yield some, []
                except (VactorError, OSError) as exc:
                    yield [], [actor_error(actor_id, exc)]


async def _actor_rows(actor_id: str) -> AsyncGenerator[list[EventRow], None]:
    """The rows of ``actor_id``'s events, a page of its inbox at a time, in key (event id) order:
    the order they are applied in is in the objects (``InboxEvent.order``), which only reading
    the whole inbox would give. Whether the actor exists (or was deleted) is read once, at its
    first page holding an event."""
    runtime = get_runtime()
    state: str | None = None  # a status of every event: not created, deleted; "": asked of each
    core = record = None
    async with contextlib.aclosing(_inbox_pages(runtime.store, actor_id)) as pages:
        async for keys in pages:
            damaged: list[str] = []
            events = await _read_without_payloads(runtime.store, keys, runtime.settings.signing_key, damaged)
            rows = [EventRow(actor_id, key.rsplit("/", 1)[-1], "?", None, _DAMAGED) for key in damaged]
            if events and state is None:
                core = runtime.core(actor_id)
                try:
                    await core.ensure_loaded()
                    record = await core.revalidate()
                    # (a deleted actor applies none: they wait for a creation, as for none)
                    state = _DELETED if is_deleted(record) else ""
                except ActorNotFoundError:
                    state = "waiting: actor not created"
            for e in events:
                rows.append(
                    EventRow(actor_id, e.event_id, e.name, e.time, state or await _status(core, record, e))
                )
            yield sorted(rows, key=lambda row: row.event_id)


async def _status(core: Any, record: Any, event: InboxEvent) -> str:
    """An event's status in ``vactor events ls``, its actor loaded (``core``) at ``record``."""
    assert core.definition is not None
    applied = await applied_event(
        core.log, record, event.name, event.event_id, serializer=core.definition.serializer
    )
    if applied is not None:
        return "applied (inbox cleanup pending)"
    reason = refusal(event, core.definition)
    return "pending" if reason is None else f"kept: {reason}"


async def _drain_one(actor_id: str) -> dict[str, Any]:
    """Apply ``actor_id``'s pending events; its line of ``vactor events drain`` (the same keys
    for every actor: docs/cli.md, JSON documents)."""
    store = get_runtime().store
    try:
        applied = await _process(actor_id)
    except ActorNotFoundError as exc:
        left = len(await list_inbox(store, actor_id))
        waits = "event waits" if left == 1 else "events wait"
        if isinstance(exc, ActorDeletedError):
            text = f"{actor_id}: deleted, {left} {waits} for the next actor created under its id"
            return {
                "actor": actor_id,
                "created": False,
                "deleted": True,
                "applied": 0,
                "left": left,
                "text": text,
            }
        text = f"{actor_id}: not created yet, {left} {waits} for it"
        return {
            "actor": actor_id,
            "created": False,
            "deleted": False,
            "applied": 0,
            "left": left,
            "text": text,
        }
    left = len(await list_inbox(store, actor_id))
    text = f"{actor_id}: applied {applied}, {left} left in the inbox"
    return {
        "actor": actor_id,
        "created": True,
        "deleted": False,
        "applied": applied,
        "left": left,
        "text": text,
    }


#: what the first Ctrl-C of ``vactor events drain`` waits for
_STOPPING = "vactor: stopping: the event being applied finishes; Ctrl-C again stops at once"

#: what ``vactor events drain`` stopped at once (a second Ctrl-C) leaves: its last line on stderr
_STOPPED_AT_ONCE = (
    "vactor: error: stopped at once: the event being applied either committed or did not; one that "
    "did not waits in its inbox and is applied by the next drain (or the actor's next commit), once: "
    "its event id keeps it to once"
)


def _drain(actors: list[str] | None, out: Output) -> tuple[int, list[str]]:
    """Drain the actors one by one, with a progress bar on a terminal (one line per actor on
    stderr when piped) and each actor's line printed as it is done (``--json``: each element of
    the one array, left unterminated if it is stopped): without ``--actor`` this is one commit
    per actor, long on a large bucket. How many actors it drained, and the errors of the others."""
    bar = sys.stderr.isatty() and not out.json
    # A chunk of the actors with events at a time, each listed once the one before is drained:
    # ten million ids held at once are gigabytes (every actor's inbox asked, on a bucket of
    # thousands: on a terminal, counted meanwhile while the first chunk is listed)
    chunks = IdChunks(lambda looked_at: _pages_with_events(actors, looked_at))
    looking = f"looking for events under {get_runtime().store.describe()}: actors asked"
    try:
        ids = chunks.first(looking, counted=bar and actors is None, plain=actors is None)
        return _drain_chunks(ids, chunks, out, bar)
    finally:
        chunks.close()


def _drain_chunks(first: list[str], chunks: IdChunks, out: Output, bar: bool) -> tuple[int, list[str]]:
    """:func:`_drain` of ``first`` (the first chunk of ``chunks``) and the chunks after it."""
    drained = 0
    errors: list[str] = []
    # under a bar the lines wait for its end (printed while it is drawn, on the same terminal,
    # they would be written into it)
    waiting: list[str] = []
    try:
        with (
            out.reader_may_leave(),
            out.json_array() if out.json else contextlib.nullcontext() as array,
            progress(len(first), "draining", enabled=bar) as advance,
        ):
            for actor_id in _one_by_one(first, chunks, advance):
                try:
                    line = _sync.sync(_drain_one(actor_id))
                # ImportError, AttributeError: its state refers to a module (or a class of one)
                # this process cannot import; the other actors are still drained
                except (VactorError, OSError, ImportError, AttributeError) as exc:
                    errors.append(actor_error(actor_id, exc))
                else:
                    drained += 1
                    if array is not None:
                        array.add(line)
                        array.flush()
                    elif bar:
                        waiting.append(line["text"])
                    else:
                        out.print(line["text"])
                advance(actor_id)
    except KeyboardInterrupt:
        for text in waiting:
            out.print(text)
        raise CliError(
            f"interrupted after draining {chunks.of_listed(drained + len(errors))}; the events not "
            "yet applied wait in their inboxes (each is applied once, whoever applies it): run it again "
            "to finish",
            EXIT_INTERRUPTED,
        ) from None
    for text in waiting:
        out.print(text)
    return drained, errors


def _one_by_one(first: list[str], chunks: IdChunks, advance: Advance) -> Iterator[str]:
    """The ids of ``first``, then of the chunks after it (each listed once the one before is used
    up, the progress ``advance`` grown by as many)."""
    chunk = first
    while chunk:
        yield from chunk
        chunk = chunks.next()
        if chunk:
            advance.grow(len(chunk))


def run(args: argparse.Namespace) -> int:
    """Run ``vactor events ls|drain`` as parsed by the ``vactor`` parser."""
    out = Output.for_args(args)
    init_runtime(args)
    # drain's Ctrl-C waits for the event being applied (in shutdown); a second one stops at once
    draining = args.events_command == "drain"
    with (
        second_interrupt_stops_at_once(_STOPPING, _STOPPED_AT_ONCE) if draining else contextlib.nullcontext()
    ):
        errors = _run(args, out)
    if errors:
        if args.debug:
            for error in errors:
                print(printable(f"vactor: {error}"), file=sys.stderr)
        what = "actors could not be read" if args.events_command == "ls" else "actors could not be drained"
        raise errors_error(errors, what)
    return EXIT_OK


def _run(args: argparse.Namespace, out: Output) -> list[str]:
    """``vactor events ls|drain`` on the store ``init_runtime`` chose, shut down at the end; the
    actors that could not be read or drained."""
    try:
        if args.events_command == "ls":
            errors = _ls(args.actor, out)
        else:
            drained, errors = _drain(args.actor, out)
            if not drained and not errors and not out.json:
                where = get_runtime().store.describe()
                print(f"no pending events under {where}: nothing to drain{memory_hint()}", file=sys.stderr)
    finally:
        shutdown()
    return errors

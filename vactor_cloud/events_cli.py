"""``vactor events``: look at and drain actors' inboxes.

::

    vactor events ls URL [--actor ID] [--json]     pending events and why each is waiting
    vactor events drain URL [--actor ID]           apply pending events now (e.g. from a cron job)

Also runs standalone: ``python -m vactor_cloud.events_cli ls URL``. Storage
options (endpoint, credentials) go as ``-o KEY=VALUE``. Without ``--actor``
every actor is looked at, which lists all keys under ``actors/``: fine for a
scheduled job, costly on very large buckets, where ``--actor`` is better.

Exit status: 0 when everything asked for was done (events that wait for a
handler or for their actor to be created are reported, not errors), 1 when
an actor could not be read or drained, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.errors import ActorNotFoundError, VactorError
from vactor_cloud.events import _process
from vactor_cloud.history import iter_actor_ids
from vactor_cloud.inbox import inbox_prefix, list_inbox, read_events, refusal
from vactor_cloud.runtime import get_runtime, init, shutdown

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ls`` and ``drain`` subcommands to ``parser`` (the ``events`` command's parser)."""
    sub = parser.add_subparsers(dest="events_command", metavar="{ls,drain}")
    sub.required = True
    for name, text in (
        ("ls", "list pending events per actor and why each one waits"),
        ("drain", "apply every pending event now (each exactly once)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("url", help="storage URL: a path, file://, memory://, s3://bucket/prefix, gs://...")
        cmd.add_argument("--actor", metavar="ID", help="only this actor (default: every actor)")
        cmd.add_argument(
            "-o",
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="storage option for the filesystem (repeatable; a value starting with { or [ is JSON), "
            "e.g. -o endpoint_url=http://127.0.0.1:9000",
        )
        if name == "ls":
            cmd.add_argument("--json", action="store_true", help="one JSON object per event")


@dataclass
class EventRow:
    actor: str
    event_id: str
    name: str
    sent: float
    status: str

    def line(self) -> str:
        sent = datetime.datetime.fromtimestamp(self.sent, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{self.actor}\t{self.event_id}\t{self.name}\t{sent}\t{self.status}"


def _options(raw: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-o {item!r}: expected KEY=VALUE")
        if value[:1] in ("{", "["):  # structured options, e.g. client_kwargs={"region_name": "..."}
            try:
                options[key] = json.loads(value)
                continue
            except json.JSONDecodeError as exc:
                raise ValueError(f"-o {key}=...: not valid JSON: {exc}") from None
        options[key] = value
    return options


async def _actors_with_events(actor: str | None) -> list[str]:
    """The named actor, or every actor whose inbox holds an event.

    Without a name this pages through the actor ids (one listing that skips
    each actor's steps) and asks each inbox for one key: never a LIST of
    every object under ``actors/``.
    """
    if actor is not None:
        return [actor]
    store = get_runtime().store
    found: list[str] = []
    async for actor_id in iter_actor_ids(store):
        if await store.list(inbox_prefix(actor_id), limit=1):
            found.append(actor_id)
    return found


async def _ls(actor: str | None) -> tuple[list[EventRow], list[str]]:
    from vactor_cloud.events import applied_event

    runtime = get_runtime()
    rows: list[EventRow] = []
    errors: list[str] = []
    for actor_id in await _actors_with_events(actor):
        try:
            keys = await list_inbox(runtime.store, actor_id)
            events = await read_events(runtime.store, keys, runtime.settings.signing_key)
            if not events:
                continue
            core = runtime.core(actor_id)
            try:
                await core.ensure_loaded()
                record = await core.revalidate()
            except ActorNotFoundError:
                rows += [
                    EventRow(actor_id, e.event_id, e.name, e.time, "waiting: actor not created")
                    for e in events
                ]
                continue
            assert core.definition is not None
            for e in events:
                if await applied_event(core.log, record, e.name, e.event_id) is not None:
                    status = "applied (inbox cleanup pending)"
                else:
                    reason = refusal(e, core.definition)
                    status = "pending" if reason is None else f"kept: {reason}"
                rows.append(EventRow(actor_id, e.event_id, e.name, e.time, status))
        except (VactorError, OSError) as exc:
            errors.append(f"{actor_id}: {exc}")
    return rows, errors


async def _drain(actor: str | None) -> tuple[list[str], list[str]]:
    runtime = get_runtime()
    lines: list[str] = []
    errors: list[str] = []
    for actor_id in await _actors_with_events(actor):
        try:
            applied = await _process(actor_id)
            left = len(await list_inbox(runtime.store, actor_id))
            lines.append(f"{actor_id}: applied {applied}, {left} left in the inbox")
        except ActorNotFoundError:
            left = len(await list_inbox(runtime.store, actor_id))
            lines.append(f"{actor_id}: not created yet, {left} events wait for it")
        except (VactorError, OSError) as exc:
            errors.append(f"{actor_id}: {exc}")
    return lines, errors


def run(args: argparse.Namespace) -> int:
    """Run ``vactor events ls|drain`` as parsed by a parser set up with :func:`add_arguments`."""
    try:
        init(args.url, **_options(args.option))
    except (TypeError, ValueError) as exc:  # bad -o, options for a local path, unknown URL scheme
        print(f"vactor events: {exc}", file=sys.stderr)
        return 2
    try:
        if args.events_command == "ls":
            rows, errors = _sync.sync(_ls(args.actor))
            for row in rows:
                print(json.dumps(row.__dict__) if args.json else row.line())
            if not rows and not args.json:
                print("no pending events", file=sys.stderr)
        else:
            lines, errors = _sync.sync(_drain(args.actor))
            for line in lines:
                print(line)
    finally:
        shutdown()
    for error in errors:
        print(f"vactor events: {error}", file=sys.stderr)
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vactor events", description="Inspect and drain actors' inboxes.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

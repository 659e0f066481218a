"""``vactor timers``: fire, list and repair durable timers.

::

    vactor timers tick [--split S] [--lease S] [--shard I/N]   fire what is due now, then exit (cron)
    vactor timers run [--poll S] [--split S] [--lease S]       fire timers as they fall due until SIGTERM
    vactor timers ls [--json]                       index entries: due time, lateness, actor, key, gen
    vactor timers repair [--actor ID]               re-create index entries lost to a crash

``--split runners`` (the default) shares the actors among the live runners
through heartbeats; ``claims`` claims each actor; ``none`` fires everything
(``--no-claims`` is its older spelling). The store is ``--storage URL``
(else ``$VACTOR_STORAGE``) with ``-o KEY=VALUE`` options, as for every
``vactor`` command. Exit status: 0 ok, 1 when some timer could not be fired (it stays due and is
fired by the next tick) or ``repair`` could not read an actor (the others are repaired), 2 on bad
usage (a bad number, shard or actor id), 3 when ``repair --actor`` names an actor that does not
exist, 130 when tick or repair is interrupted, or run by a second SIGTERM/SIGINT while its fires in
flight finish (saying what it left).
Errors are one line, ``vactor: error: ...``, as everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import signal
import sys
import threading
import time
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.actor import get_actor
from vactor_cloud.cli._chunks import IdChunks, every_actor_id
from vactor_cloud.cli._interrupts import SettledInterrupts, stop_at_once
from vactor_cloud.cli._options import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    actor_error,
    actor_id_arg,
    common_parent,
    error_advice,
    errors_error,
    init_runtime,
    memory_hint,
    positive_float,
)
from vactor_cloud.cli._output import Output, note, printable, progress
from vactor_cloud.errors import ActorDefinitionError, IntegrityError
from vactor_cloud.runtime import get_runtime, shutdown
from vactor_cloud.timer_repair import repair_timer_index
from vactor_cloud.timer_report import TickReport
from vactor_cloud.timer_runner import DEFAULT_LEASE, SPLITS, fire_due_timers, run_timers
from vactor_cloud.timers import IndexEntry, list_index

__all__ = ["add_commands", "run"]


def add_commands(subparsers: Any) -> None:
    """Register ``vactor timers tick|run|ls|repair`` on the ``vactor`` subparsers."""
    parser = subparsers.add_parser(
        "timers", parents=[common_parent()], help="fire, list and repair durable timers"
    )
    parser.set_defaults(func=run)
    sub = parser.add_subparsers(dest="timers_command", metavar="{tick,run,ls,repair}")
    sub.required = True
    for name, text in (
        ("tick", "fire every timer due now (each exactly once), then exit"),
        ("run", "fire timers as they fall due (listing every --poll seconds) until SIGTERM/SIGINT"),
        ("ls", "list the due index: when each timer is due and how late it is"),
        ("repair", "re-create due-index entries from the actors' steps (after a crash)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text, parents=[common_parent()])
        if name in ("tick", "run"):
            cmd.add_argument(
                "--split",
                choices=SPLITS,
                help="how runners share the actors: runners (heartbeats, the default), claims, none",
            )
            cmd.add_argument(
                "--lease",
                type=positive_float,
                default=DEFAULT_LEASE,
                metavar="S",
                help=f"heartbeat (or claim) lease, seconds (default {DEFAULT_LEASE:g})",
            )
            cmd.add_argument("--shard", metavar="I/N", help="only actors hashing to shard I of N")
            cmd.add_argument("--no-claims", action="store_true", help="the same as --split none")
        if name == "run":
            cmd.add_argument(
                "--poll",
                type=positive_float,
                default=1.0,
                metavar="S",
                help="seconds between listings of the index (default 1)",
            )
        if name == "repair":
            cmd.add_argument(
                "--actor",
                action="append",
                type=actor_id_arg,
                metavar="ID",
                help="only this actor (repeatable)",
            )


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    i, sep, n = text.partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or not 0 <= int(i) < int(n):
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N")
    return int(i), int(n)


def _utc(timestamp: float) -> str:
    """One field (``awk``), to the millisecond the index holds."""
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    except (ValueError, OverflowError, OSError):  # after the year 9999 (timers go up to LATEST_DUE)
        return f"{timestamp:.3f}"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _summary(report: TickReport) -> dict[str, Any]:
    late = report.max_lateness
    return {
        "listed": report.listed,
        "due": report.due,
        "fired": report.fired,
        "stale": report.stale,
        "claimed_elsewhere": report.claimed_elsewhere,
        "assigned_elsewhere": report.assigned_elsewhere,
        "runners": report.runners,
        "errors": report.error_count,
        "max_lateness_s": None if late is None else round(late, 3),
    }


def _summary_line(summary: dict[str, Any]) -> str:
    """``key=value`` pairs; ``max_lateness_s`` only when something fired (JSON says ``null``)."""
    return " ".join(f"{k}={v}" for k, v in summary.items() if v is not None)


#: actors repaired at a time (the library reads 32 of them at once): the progress moves by this
_REPAIR_SLICE = 256


def _repair(actor_ids: list[str] | None, out: Output) -> tuple[int, list[str]]:
    """``repair_timer_index`` of ``actor_ids`` (default: every actor, paged through by id rather than
    by listing every object under ``actors/``, a chunk of ids at a time: see :class:`IdChunks`), a
    slice at a time, with a progress bar on a terminal (one line per actor on stderr when piped):
    how many timers were indexed, and an error line per actor that could not be read (damaged, or
    its class not loadable here).

    One such actor fails the read of its whole slice: that slice is repaired again an actor at a
    time, so that the others' entries are written (as ``compact --all`` goes on past an actor)."""

    def repair_alone(part: list[str]) -> int:
        count = 0
        for actor_id in part:
            try:
                count += repair_timer_index([actor_id])
            except _ACTOR_UNREADABLE as exc:
                failed.append(actor_error(actor_id, exc))
        return count

    chunks: IdChunks | None = None
    try:
        if actor_ids is not None:
            ids = actor_ids
        else:  # (a bucket of thousands takes a while to list: on a terminal, counted meanwhile)
            # A chunk of ids at a time, each listed once the one before is repaired: ten million
            # ids held at once are gigabytes (the first, counted on a terminal while it is listed)
            chunks = IdChunks(_every_actor_id)
            listing = f"listing the actors under {get_runtime().store.describe()}:"
            ids = chunks.first(listing, counted=sys.stderr.isatty() and not out.json)
    except KeyboardInterrupt:  # (a bucket of many actors takes a while to list)
        if chunks is not None:
            chunks.close()
        raise CliError(
            "interrupted while listing the actors: nothing was repaired", EXIT_INTERRUPTED
        ) from None
    failed: list[str] = []
    count = done = 0
    try:
        with progress(len(ids), "repairing", enabled=sys.stderr.isatty() and not out.json) as advance:
            chunk = ids
            while chunk:
                for at in range(0, len(chunk), _REPAIR_SLICE):
                    part = chunk[at : at + _REPAIR_SLICE]
                    try:
                        count += repair_timer_index(part)
                    except _ACTOR_UNREADABLE:
                        count += repair_alone(part)  # (writing an entry again is harmless)
                    done += len(part)
                    for actor_id in part:
                        advance(actor_id)
                chunk = [] if chunks is None else chunks.next()
                advance.grow(len(chunk))
    except KeyboardInterrupt:
        of = f"{done} of {len(ids)} actors" if chunks is None else chunks.of_listed(done)
        raise CliError(
            f"interrupted after repairing {of} ({count} timers indexed); "
            "repairing an actor again is harmless: run it again to finish",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        if chunks is not None:
            chunks.close()
    return count, failed


#: due-index entries ``vactor timers ls`` reads, and prints, at a time
_LS_PAGE = 256

#: the columns of ``vactor timers ls``: one field each (awk), headed as every other table
_LS_COLUMNS = ("DUE", "LATE", "ACTOR", "KEY", "GEN")


def _ls(out: Output) -> None:
    """``vactor timers ls``: the due index, earliest first, printed a page at a time as it is read
    (an index of a million entries is neither held nor waited for before the first row)."""
    store = get_runtime().store
    listed = 0
    after: str | None = None
    with out.rows_as_done(_LS_COLUMNS, _ls_cells, lambda row: row, held=False) as show:
        while True:
            entries = _sync.sync(list_index(store, limit=_LS_PAGE, start_after=after))
            now = time.time()  # (lateness as of the page's reading)
            show([_ls_row(entry, now) for entry in entries])
            listed += len(entries)
            if len(entries) < _LS_PAGE:
                break
            after = entries[-1].object_key
    if not listed and not out.json:  # as ls and events ls: no header over nothing, on stdout
        where = store.describe()
        print(f"no pending timers in the index under {where}{memory_hint()}", file=sys.stderr)


def _ls_row(entry: IndexEntry, now: float) -> dict[str, Any]:
    """An entry of ``vactor timers ls --json`` (docs/cli.md, JSON documents)."""
    return {
        "due": entry.due_ms / 1000,
        "late_s": round(now - entry.due_ms / 1000, 3),
        "actor": entry.actor_id,
        "key": entry.key,
        # the step that scheduled the occurrence; None: an entry named before generations
        "gen": entry.gen,
    }


def _ls_cells(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        _utc(row["due"]),
        _lateness(row["late_s"]),
        str(row["actor"]),
        str(row["key"]),
        "-" if row["gen"] is None else str(row["gen"]),
    )


def _lateness(seconds: float) -> str:
    """A LATE cell, one field: ``+0.160s`` under a minute, else the two largest units that
    fit (``-59m59s``, ``+3h07m``, ``-29d23h``); ``-``: not due yet."""
    sign = "-" if seconds < 0 else "+"
    left = abs(seconds)
    if left < 60:
        return f"{sign}{left:.3f}s"
    whole = int(left)
    if whole >= 86400:
        return f"{sign}{whole // 86400}d{whole % 86400 // 3600:02d}h"
    if whole >= 3600:
        return f"{sign}{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{sign}{whole // 60}m{whole % 60:02d}s"


#: (a name of its own here: tests stand another in for it)
_every_actor_id = every_actor_id


#: the errors of one actor that ``timers repair`` goes on past: a damaged object (a torn write, a
#: foreign file, another signing key), a class this process cannot load; not the store's
_ACTOR_UNREADABLE = (IntegrityError, ActorDefinitionError)


#: what ``vactor timers run`` or ``tick`` stopped at once leaves (its last line on stderr)
STOPPED_AT_ONCE = (
    "vactor: error: stopped at once: a fire in flight either committed or did not; one that did "
    "not stays due and is fired again by the next runner or tick (its timer's key keeps it to "
    "once); this runner's heartbeat (or claim) lapses after --lease seconds"
)


def _tick(
    args: argparse.Namespace, shard: tuple[int, int] | None, split: Any, out: Output
) -> tuple[TickReport, bool]:
    """``vactor timers tick``: one pass over the due timers, its progress on stderr (a bar on a
    terminal; piped, a line for the first and the last fire and at most one every 2 s between).
    The first Ctrl-C or SIGTERM starts no other fire: those in flight finish, then it prints its
    totals and says how many fired and how many stay due (exit 130); a second stops at once.
    Its report, and whether it was stopped so."""
    interrupts = SettledInterrupts(
        "vactor: stopping: the fires in flight finish, no other starts; Ctrl-C again stops at once",
        lambda: STOPPED_AT_ONCE,
    )
    try:
        with (
            interrupts.installed(),
            interrupts.in_flight(),
            progress(0, "firing", enabled=sys.stderr.isatty() and not out.json) as advance,
        ):

            def done(actor_id: str, entries: int) -> None:
                for _ in range(entries):
                    advance(actor_id)

            report = fire_due_timers(
                lease=args.lease,
                shard=shard,
                split=split,
                stop=interrupts.requested,
                on_due=advance.grow,
                on_done=done,
            )
    except KeyboardInterrupt:  # (off the main thread, where the signal is not this command's)
        raise CliError(
            "interrupted: the timers fired so far fired once; those not fired stay due "
            "(a fire in flight either committed or did not): run vactor timers tick again",
            EXIT_INTERRUPTED,
        ) from None
    return report, interrupts.requested.is_set()


def _tick_interrupted(report: TickReport) -> CliError:
    """The error line (exit 130) of a tick that a Ctrl-C or SIGTERM stopped."""
    left = f"the other {report.left} stay due" if report.left else "none was left unfired"
    failed = f"; {report.error_count} could not be fired (they stay due too)" if report.error_count else ""
    return CliError(
        f"interrupted after firing {report.fired} of the {report.due} due timers it listed: {left}"
        f"{failed} (each fire in flight finished; any due timers past those listed stay due too): "
        "run vactor timers tick again",
        EXIT_INTERRUPTED,
    )


def _run_until_stopped(args: argparse.Namespace, shard: tuple[int, int] | None, split: Any) -> TickReport:
    """``vactor timers run``: fire timers until SIGTERM or SIGINT, whose handlers it sets for that
    time only: those it found are restored when it returns (``main()`` called in a user's
    script, or a test, keeps its own Ctrl-C). The first signal lets the fires in flight finish
    (saying so); a second one ends the process at once (``stop_at_once``)."""
    stop = threading.Event()
    stopping = (signal.SIGTERM, signal.SIGINT)
    found: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            stop_at_once(STOPPED_AT_ONCE)
        stop.set()
        with contextlib.suppress(RuntimeError):  # (stderr being written by this thread: unsaid)
            note(
                "vactor: stopping: the fires in flight finish, then it prints its totals; "
                "Ctrl-C again (or SIGTERM) stops at once"
            )

    try:
        for sig in stopping:
            found[sig] = signal.signal(sig, on_signal)
        # it prints nothing else until stopped: say that it runs, where, and how it stops
        note(
            f"vactor: firing timers under {get_runtime().store.describe()} as they fall due "
            f"(listing every {args.poll:g} s); SIGTERM or Ctrl-C stops it (fires in flight "
            "finish; a second one stops at once), then it prints its totals"
        )
        return run_timers(poll=args.poll, stop=stop, lease=args.lease, shard=shard, split=split)
    finally:
        for sig, handler in found.items():
            # (None: a handler not set from Python, which cannot be put back; the default then)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def run(args: argparse.Namespace) -> int:
    """Run ``vactor timers tick|run|ls|repair`` as parsed by the ``vactor`` parser."""
    try:
        shard = _shard(getattr(args, "shard", None))
        split = getattr(args, "split", None)
        if getattr(args, "no_claims", False):
            if split not in (None, "none"):
                raise ValueError(f"--no-claims contradicts --split {split}")
            split = "none"
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    out = Output.for_args(args)
    init_runtime(args)
    errors: list[str] = []
    try:
        command = args.timers_command
        if command in ("tick", "run"):
            stopped = False
            if command == "tick":
                report, stopped = _tick(args, shard, split, out)
            else:
                report = _run_until_stopped(args, shard, split)
            # with what to do about each, as other commands say it (a damaged step, a class not loadable here)
            errors = [f"{error}{error_advice(getattr(error, 'cause', None))}" for error in report.errors]
            summary = _summary(report)
            if out.json:
                out.emit_json(summary)
            else:
                out.print(_summary_line(summary))
            if stopped:
                raise _tick_interrupted(report)
        elif command == "ls":
            _ls(out)
        else:
            # (an actor named twice is repaired once, in the order first named: twice, it was
            # counted twice)
            actors = None if args.actor is None else list(dict.fromkeys(args.actor))
            for actor_id in actors or ():
                get_actor(actor_id)  # ActorNotFoundError (exit 3) rather than "indexed 0"
            count, errors = _repair(actors, out)
            if out.json:
                out.emit_json({"indexed": count})
            else:
                out.print(f"indexed {count} pending timers")
    finally:
        shutdown()
    if errors:
        if args.debug:
            for error in errors:
                print(printable(f"vactor: {error}"), file=sys.stderr)
        what = (
            "actors could not be read (their timers are not repaired)"
            if args.timers_command == "repair"
            else "timers could not be fired (they stay due for the next tick)"
        )
        raise errors_error(errors, what)
    return EXIT_OK

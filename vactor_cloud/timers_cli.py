"""``vactor timers``: fire, list and repair durable timers.

::

    vactor timers tick URL [--lease S] [--shard I/N]    fire what is due now, then exit (cron, Lambda)
    vactor timers run URL [--poll S] [--lease S]        fire due timers every S seconds until SIGTERM
    vactor timers ls URL [--json]                       index entries: due time, lateness, actor, key
    vactor timers repair URL [--actor ID]               re-create index entries lost to a crash

Storage options (endpoint, credentials) go as ``-o KEY=VALUE``. Exit
status: 0 ok, 1 when some timer could not be fired (it stays due and is
fired by the next tick), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.events_cli import _options
from vactor_cloud.runtime import get_runtime, init, shutdown
from vactor_cloud.timer_runner import (
    DEFAULT_LEASE,
    TickReport,
    fire_due_timers,
    repair_timer_index,
    run_timers,
)
from vactor_cloud.timers import list_index

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``tick``, ``run``, ``ls`` and ``repair`` to ``parser`` (the ``timers`` command's parser)."""
    sub = parser.add_subparsers(dest="timers_command", metavar="{tick,run,ls,repair}")
    sub.required = True
    for name, text in (
        ("tick", "fire every timer due now (each exactly once), then exit"),
        ("run", "fire due timers every --poll seconds until SIGTERM/SIGINT"),
        ("ls", "list the due index: when each timer is due and how late it is"),
        ("repair", "re-create due-index entries from the actors' steps (after a crash)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("url", help="storage URL: a path, file://, memory://, s3://bucket/prefix, gs://...")
        cmd.add_argument(
            "-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="storage option"
        )
        if name in ("tick", "run"):
            cmd.add_argument("--lease", type=float, default=DEFAULT_LEASE, help="claim lease, seconds")
            cmd.add_argument("--shard", metavar="I/N", help="only actors hashing to shard I of N")
            cmd.add_argument(
                "--no-claims", action="store_true", help="skip claim objects (one runner per shard only)"
            )
            cmd.add_argument("--json", action="store_true", help="print the report as JSON")
        if name == "run":
            cmd.add_argument("--poll", type=float, default=1.0, help="seconds between ticks (default 1)")
        if name == "ls":
            cmd.add_argument("--json", action="store_true", help="one JSON object per entry")
        if name == "repair":
            cmd.add_argument("--actor", action="append", metavar="ID", help="only this actor (repeatable)")


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    i, sep, n = text.partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or not 0 <= int(i) < int(n):
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N")
    return int(i), int(n)


def _summary(report: TickReport) -> dict[str, Any]:
    late = sorted(report.lateness)
    return {
        "listed": report.listed,
        "due": report.due,
        "fired": report.fired,
        "stale": report.stale,
        "claimed_elsewhere": report.claimed_elsewhere,
        "errors": len(report.errors),
        "max_lateness_s": round(late[-1], 3) if late else None,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``vactor timers ...`` as parsed by a parser set up with :func:`add_arguments`."""
    try:
        shard = _shard(getattr(args, "shard", None))
        init(args.url, **_options(args.option))
    except (TypeError, ValueError) as exc:
        print(f"vactor timers: {exc}", file=sys.stderr)
        return 2
    errors: list[str] = []
    try:
        command = args.timers_command
        if command in ("tick", "run"):
            if command == "tick":
                report = fire_due_timers(lease=args.lease, shard=shard, claims=not args.no_claims)
            else:
                stop = threading.Event()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: stop.set())
                report = run_timers(
                    poll=args.poll, stop=stop, lease=args.lease, shard=shard, claims=not args.no_claims
                )
            errors = report.errors
            summary = _summary(report)
            print(json.dumps(summary) if args.json else " ".join(f"{k}={v}" for k, v in summary.items()))
        elif command == "ls":
            entries = _sync.sync(list_index(get_runtime().store))
            now = time.time()
            for e in entries:
                late_s = round(now - e.due_ms / 1000, 3)
                if args.json:
                    print(
                        json.dumps(
                            {"due": e.due_ms / 1000, "late_s": late_s, "actor": e.actor_id, "key": e.key}
                        )
                    )
                else:
                    due = datetime.datetime.fromtimestamp(e.due_ms / 1000, datetime.UTC)
                    late = f"late {late_s}s" if late_s > 0 else f"in {-late_s}s"
                    print(f"{due:%Y-%m-%dT%H:%M:%S.%fZ}\t{late}\t{e.actor_id}\t{e.key}")
            if not entries and not args.json:
                print("no pending timers in the index", file=sys.stderr)
        else:
            print(f"indexed {repair_timer_index(args.actor)} pending timers")
    finally:
        shutdown()
    for error in errors:
        print(f"vactor timers: {error}", file=sys.stderr)
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vactor timers", description="Fire, list and repair durable timers."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

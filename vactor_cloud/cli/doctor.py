"""``vactor doctor``: does a store (and any proxy in front of it) keep the promises the protocol needs?"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vactor_cloud.cli._options import (
    EXIT_DOCTOR,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    common_parent,
    local_path,
    store_choice,
    url_as_storage,
)
from vactor_cloud.cli._output import Output

if TYPE_CHECKING:
    from vactor_cloud.storage import ObjectStore

__all__ = ["Check", "add_commands", "cmd_doctor"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def _doctor_checks(url: str, options: dict[str, Any], done: Callable[[Check], None]) -> list[Check]:
    """Try every guarantee the commit protocol relies on, on a scratch key, and clean up;
    ``done(check)`` as each check is done (on the IO loop).

    On a local directory the checks run in a scratch directory of their own in it
    (``.vactor-doctor-*``, a name the store never lists), removed at the end: the lock file an
    if-match put leaves, the directories of the scratch key and the layout marker of a first
    write would otherwise stay (in an empty directory, the marker would make it a store)."""
    from vactor_cloud.settings import Settings
    from vactor_cloud.storage import open_store

    local = local_path(url)
    scratch = None if local is None else os.path.join(local, f".vactor-doctor-{uuid.uuid4().hex}")
    try:
        return await _checks_on(open_store(scratch or url, **options), Settings().timeout, done)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


async def _checks_on(store: ObjectStore, timeout: float, done: Callable[[Check], None]) -> list[Check]:
    """The checks of :func:`_doctor_checks` on ``store``, each request bounded by ``timeout``;
    ``done(check)`` as each is done (a stalled endpoint is 10 s a request: the rows before it
    are shown meanwhile)."""
    from vactor_cloud.errors import AlreadyExistsError, PreconditionFailedError
    from vactor_cloud.storage import IfMatch

    # Each request bounded as the runtime bounds them (Settings.timeout): without it a stalled
    # endpoint meets the client's own read timeouts and retries, minutes rather than seconds.
    store.request_timeout = timeout
    key = f"_vactor_doctor/{uuid.uuid4().hex}/probe"
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        done(check)

    def payload(n: int) -> bytes:
        # Unique bytes per write: ETag versions are content digests on S3.
        return f"vactor doctor {n} {uuid.uuid4().hex}".encode()

    first, second = payload(1), payload(2)
    try:
        v1 = await store.put(key, first, mode="create")
        record(Check("write", True, f"created a scratch object {key}"))
        try:
            await store.put(key, second, mode="create")
        except AlreadyExistsError:
            record(Check("atomic create", True, "a second create-only put was refused"))
        else:
            record(
                Check(
                    "atomic create",
                    False,
                    "a second create-only put OVERWROTE the object: the store, or a proxy in front of "
                    "it, ignores If-None-Match / ifGenerationMatch=0. Concurrent writers would "
                    "overwrite each other's commits; talk to the store directly or fix the proxy",
                )
            )
        blob = await store.get(key)
        record(
            Check(
                "read back",
                blob.data == first,
                "read the first write back"
                if blob.data == first
                else "read back other bytes than the first write",
            )
        )
        v_now = blob.version
        v2 = await store.put(key, payload(3), mode=IfMatch(v_now))
        record(
            Check(
                "if-match (current version)",
                v2 != v_now,
                "replaced the object and got a new version"
                if v2 != v_now
                else "the version did not change on a write: versions cannot detect concurrent writes",
            )
        )
        try:
            await store.put(key, payload(4), mode=IfMatch(v1 if v1 != v2 else v_now))
        except PreconditionFailedError:
            record(Check("if-match (stale version)", True, "a put with a stale version was refused"))
        else:
            record(
                Check(
                    "if-match (stale version)",
                    False,
                    "a put with a stale version SUCCEEDED: the store, or a proxy in front of it, ignores "
                    "If-Match / ifGenerationMatch. HEAD and retention watermarks could move backwards; "
                    "talk to the store directly or fix the proxy",
                )
            )
        listed = key in await store.list(key.rsplit("/", 1)[0] + "/")
        record(
            Check("list", listed, "a fresh write is listed" if listed else "a fresh write is not listed yet")
        )
    finally:
        with contextlib.suppress(Exception):
            await store.delete(key)
        with contextlib.suppress(Exception):
            await store.close()
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    from vactor_cloud import _sync, counters
    from vactor_cloud.storage import check_storage_options

    url_as_storage(args)
    choice = store_choice(args)  # a typo in a path is a usage error, not a new store that passes
    url, options = choice.url, choice.options
    out = Output.for_args(args)
    try:
        check_storage_options(url, options)
        # each check's row as it is done: a stalled endpoint is 10 s a request (the JSON at the end)
        checks = _sync.sync(_doctor_checks(url, options, (lambda c: None) if out.json else _row_printer(out)))
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    ok = all(c.ok for c in checks)
    # This process's counters (vactor_cloud.stats()): a timeout or retry met by the checks shows here.
    stats = counters.stats()
    if out.json:
        out.emit_json({"url": url, "ok": ok, "checks": [c.__dict__ for c in checks], "stats": stats})
    else:
        # Only the counters that moved: a block of zeros reads as something to look at.
        moved = {name: value for name, value in stats.items() if value}
        if not moved:
            out.print("counters (vactor_cloud.stats() of this run): all 0")
        else:
            out.print("counters (vactor_cloud.stats() of this run; the others 0):")
            for name, value in moved.items():
                out.print(f"      {name:<28} {value}")
        verdict = (
            f"{url}: every guarantee vactor_cloud needs holds"
            if ok
            else f"{url}: NOT SAFE for vactor_cloud: concurrent commits could be lost (see FAIL above)"
        )
        out.print(verdict)
    return EXIT_OK if ok else EXIT_DOCTOR


def _row_printer(out: Output) -> Callable[[Check], None]:
    """What prints a check's row (``ok    NAME    DETAIL``, ``FAIL`` in red on a terminal), flushed."""
    mark = {True: "ok  ", False: "FAIL"}

    def print_row(check: Check) -> None:
        if out.rich:
            from rich.markup import escape

            style = "green" if check.ok else "bold red"
            out.console().print(f"[{style}]{mark[check.ok]}[/]  {check.name:<28} {escape(check.detail)}")
        else:
            out.print(f"{mark[check.ok]}  {check.name:<28} {check.detail}")
        out.stream.flush()

    return print_row


def add_commands(sub: Any) -> None:
    """Register ``vactor doctor`` on the ``vactor`` subparsers ``sub``."""
    p = sub.add_parser(
        "doctor",
        parents=[common_parent()],
        help="check that a store supports atomic create and if-match",
        description="Try create-only and if-match puts on a scratch key and say plainly if the store "
        "(or a proxy in front of it) does not honour them. Exit 5 when it does not.",
    )
    p.add_argument("url", nargs="?", metavar="URL", help="store to check (same as --storage)")
    p.set_defaults(func=cmd_doctor)

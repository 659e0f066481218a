"""The ``vactor`` command: inspect and operate actors in a bucket, the way ``git`` inspects a repo.

Run ``vactor --help``. Every command takes the store from ``--storage URL``
(else ``$VACTOR_STORAGE``, else the embedded local store) and reads
``$VACTOR_SIGNING_KEY`` and the backends' usual environment (``AWS_*``,
``STORAGE_EMULATOR_HOST``, ...).

Output is a table with colours when stdout is a terminal, plain aligned
text when it is piped, and JSON with ``--json``. Errors are one line on
stderr saying what to do; ``--debug`` adds the traceback.

Exit codes (also in ``vactor --help``):

=====  =================================================================
0      success
1      error (the called method raised, a corrupt object, anything else)
2      usage: bad arguments, bad JSON, unknown method or command
3      not found: no such actor, or the step was compacted / not written
4      storage: unreachable, credentials refused, bucket missing
5      ``doctor``: the store lacks a guarantee vactor_cloud needs
130    interrupted (Ctrl-C)
=====  =================================================================

Other modules add commands: a module ``vactor_cloud.<name>`` listed in
``PLUGIN_COMMANDS`` that exposes ``add_arguments(parser)`` and
``run(args) -> int`` becomes ``vactor <command>`` when it is importable.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import json
import os
import pprint
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "EXIT_DOCTOR",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "PLUGIN_COMMANDS",
    "CliError",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_STORAGE = 4
EXIT_DOCTOR = 5
EXIT_INTERRUPTED = 130

#: command name -> module providing ``add_arguments(parser)`` and ``run(args) -> int``
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("vactor_cloud.bench", "measure commit and read latency on a store"),
    "events": ("vactor_cloud.events_cli", "inspect and drain actors' external event inboxes"),
}

_EPILOG = """\
storage:
  --storage URL or $VACTOR_STORAGE: a path, file://, memory://, s3://bucket/prefix,
  gs://bucket/prefix (default: the embedded store ~/.local/share/vactor_cloud).
  -o KEY=VALUE passes an fsspec option (VALUE parsed as JSON when it can be).

exit codes:
  0 ok   1 error   2 usage   3 actor/step not found   4 storage unreachable
  5 doctor found a missing guarantee   130 interrupted
"""


class CliError(Exception):
    """A failure the CLI reports as one line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- output ----------------------------------------------------------------------------------


@dataclass
class Output:
    """Where results go: rich on a terminal, plain text when piped, JSON on request."""

    json: bool
    rich: bool

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Output:
        as_json = bool(getattr(args, "json", False))
        return cls(json=as_json, rich=not as_json and sys.stdout.isatty())

    def console(self) -> Any:
        from rich.console import Console

        return Console(highlight=False)

    def emit_json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, default=_json_fallback, ensure_ascii=False) + "\n")

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if self.rich:
            from rich import box
            from rich.table import Table

            table = Table(title=title, box=box.ROUNDED, header_style="bold cyan", title_justify="left")
            styles = {"STEP": "bold magenta", "ACTOR": "bold", "WRITER": "dim", "TIME": "green"}
            for name in columns:
                table.add_column(name, style=styles.get(name), overflow="fold")
            for row in rows:
                table.add_row(*row)
            self.console().print(table)
            return
        print(_plain_table(columns, rows))


def _plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart; multi-line cells continue on indented lines."""
    split_rows = [[cell.split("\n") for cell in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in split_rows:
        for i, lines in enumerate(row[:-1]):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in split_rows:
        height = max(len(lines) for lines in row)
        for n in range(height):
            cells = [lines[n] if n < len(lines) else "" for lines in row]
            out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def _json_fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# -- storage and arguments -----------------------------------------------------------------


def _storage_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"-o {pair!r}: expected KEY=VALUE, e.g. -o endpoint_url=http://127.0.0.1:9000", 2)
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def _init_runtime(args: argparse.Namespace) -> None:
    import vactor_cloud as vc

    try:
        vc.init(args.storage, **_storage_options(args.storage_option))
    except ValueError as exc:
        raise CliError(f"{exc}", EXIT_USAGE) from exc
    except ImportError as exc:
        raise CliError(
            f"this storage needs an optional dependency ({exc.name or exc}): "
            "pip install 'vactor_cloud[s3]' or 'vactor_cloud[gcs]'",
            EXIT_ERROR,
        ) from exc


def _parse_json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise CliError(
            f"{what} {text!r} is not JSON; quote strings as JSON, e.g. '\"text\"', or pass numbers as 5",
            EXIT_USAGE,
        ) from None


# -- commands -------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    from vactor_cloud.history import list_actors

    _init_runtime(args)
    out = Output.for_args(args)
    infos = list_actors(args.prefix, limit=args.limit)
    if out.json:
        out.emit_json([i.to_json() for i in infos])
        return EXIT_OK
    if not infos:
        where = f" with prefix {args.prefix!r}" if args.prefix else ""
        print(f"no actors{where} under {_describe_storage()}", file=sys.stderr)
        return EXIT_OK
    rows = [(i.actor_id, i.class_name, str(i.step), _when(i.time)) for i in infos]
    out.table(None, ("ACTOR", "CLASS", "STEP", "CHANGED"), rows)
    return EXIT_OK


def _describe_storage() -> str:
    from vactor_cloud.runtime import get_runtime

    return get_runtime().store.describe()


def cmd_show(args: argparse.Namespace) -> int:
    from vactor_cloud.history import raw_state_at

    _init_runtime(args)
    out = Output.for_args(args)
    try:
        record, state = raw_state_at(args.actor_id, args.step)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise CliError(
            f"the state of {args.actor_id!r} refers to code this process cannot import ({exc}); "
            "run vactor with the actor's modules on PYTHONPATH",
            EXIT_ERROR,
        ) from exc
    summary = {
        "actor_id": args.actor_id,
        "class": record.class_ref.name,
        "step": record.step,
        "time": record.time,
        "when": datetime.datetime.fromtimestamp(record.time, tz=datetime.UTC).isoformat(),
        "writer": record.writer,
        "serializer": record.serializer,
    }
    if out.json:
        out.emit_json({**summary, "state": state})
        return EXIT_OK
    if out.rich:
        from rich.pretty import Pretty
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan")
        grid.add_column()
        for key in ("actor_id", "class", "step", "when", "writer", "serializer"):
            grid.add_row(key, str(summary[key]))
        grid.add_row("state", Pretty(state, expand_all=False))
        out.console().print(grid)
        return EXIT_OK
    for key in ("actor_id", "class", "step", "when", "writer", "serializer"):
        print(f"{key + ':':<12}{summary[key]}")
    print("state:")
    print(pprint.pformat(state, indent=2, width=100, sort_dicts=False))
    return EXIT_OK


def _call_lines(entry: Any) -> str:
    lines = []
    for call in entry.calls:
        text = f"{call.method}({call.args})"
        if call.ok:
            text += f" -> {call.result}" if call.result not in ("", "None") else ""
        else:
            text += f" !! {call.result}"
        if call.key:
            text += f"  [key {call.key}]"
        lines.append(text)
    return "\n".join(lines) or "-"


def cmd_history(args: argparse.Namespace) -> int:
    from vactor_cloud.history import history

    _init_runtime(args)
    out = Output.for_args(args)
    limit = None if args.limit == 0 else args.limit
    entries = history(args.actor_id, limit)
    if out.json:
        out.emit_json([e.to_json() for e in entries])
        return EXIT_OK
    rows = [(str(e.step), _when(e.time), e.writer[:8], _call_lines(e)) for e in entries]
    title = f"{args.actor_id}  ({entries[0].class_name})" if entries else args.actor_id
    out.table(title if out.rich else None, ("STEP", "TIME", "WRITER", "CALLS"), rows)
    oldest = entries[-1].step if entries else 0
    if oldest > 0 and limit is not None and len(entries) == limit:
        print(f"(newest {len(entries)}; --limit 0 shows all)", file=sys.stderr)
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    import vactor_cloud as vc

    _init_runtime(args)
    out = Output.for_args(args)
    positional = [_parse_json_arg(a, "argument") for a in args.args]
    kwargs = _parse_json_arg(args.kwargs, "--kwargs") if args.kwargs else {}
    if not isinstance(kwargs, dict):
        raise CliError("--kwargs takes a JSON object, e.g. --kwargs '{\"by\": 2}'", EXIT_USAGE)
    handle = vc.get_actor(args.actor_id)
    try:
        method = getattr(handle, args.method)
    except AttributeError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        method._info.check_arguments(tuple(positional), kwargs)
        if args.idempotency_key is not None or args.at_step is not None:
            method = method.options(idempotency_key=args.idempotency_key, at_step=args.at_step)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        result = method.run(*positional, **kwargs)
    except vc.VactorError:
        raise
    except Exception as exc:
        raise CliError(f"{args.method}() raised {type(exc).__name__}: {exc}", EXIT_ERROR) from exc
    if out.json:
        out.emit_json({"result": result})
    elif out.rich:
        from rich.pretty import Pretty

        out.console().print(Pretty(result))
    else:
        try:
            print(json.dumps(result, ensure_ascii=False))
        except (TypeError, ValueError):
            print(repr(result))
    return EXIT_OK


async def _all_actor_ids() -> list[str]:
    from vactor_cloud.history import iter_actor_ids
    from vactor_cloud.runtime import get_runtime

    return [actor_id async for actor_id in iter_actor_ids(get_runtime().store)]


def cmd_compact(args: argparse.Namespace) -> int:
    import vactor_cloud as vc
    from vactor_cloud import _sync
    from vactor_cloud.runtime import get_runtime

    if (args.actor_id is None) == (not args.all):
        raise CliError("name one actor, or pass --all (not both)", EXIT_USAGE)
    try:
        compaction = importlib.import_module("vactor_cloud.compaction")
    except ModuleNotFoundError:
        raise CliError("compaction is not available in this vactor_cloud version; upgrade it", 1) from None
    _init_runtime(args)
    out = Output.for_args(args)
    ids = _sync.sync(_all_actor_ids()) if args.all else [args.actor_id]
    if args.actor_id is not None:
        vc.get_actor(args.actor_id)  # ActorNotFoundError before any work
    runtime = get_runtime()
    options: dict[str, Any] = {} if args.min_age is None else {"min_age": args.min_age}
    reports: list[Any] = []

    def compact_one(actor_id: str) -> Any:
        return _sync.sync(compaction.compact(runtime.log(actor_id), args.keep_last, **options))

    with _progress(len(ids), "compacting", enabled=sys.stderr.isatty() and not out.json) as advance:
        for actor_id in ids:
            reports.append(compact_one(actor_id))
            advance(actor_id)
    if out.json:
        out.emit_json([_report_json(r) for r in reports])
        return EXIT_OK
    rows = [
        (
            str(getattr(r, "actor_id", "?")),
            str(getattr(r, "deleted_steps", "?")),
            f"{getattr(r, 'watermark', '?')}..{getattr(r, 'newest', '?')}",
            str(getattr(r, "held_by_min_age", 0)),
        )
        for r in reports
    ]
    out.table(None, ("ACTOR", "DELETED", "KEPT", "HELD BY MIN-AGE"), rows)
    return EXIT_OK


def _report_json(report: Any) -> Any:
    fields = getattr(report, "__dataclass_fields__", None)
    if fields is None:
        return repr(report)
    return {name: getattr(report, name) for name in fields}


@contextlib.contextmanager
def _progress(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr (when it is a terminal), else one line per item done."""
    if enabled:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[item]}"),
            console=Console(stderr=True),
        ) as progress:
            task = progress.add_task(label, total=total, item="")

            def advance(item: str) -> None:
                progress.update(task, advance=1, item=item)

            yield advance
        return
    done = 0

    def advance_plain(item: str) -> None:
        nonlocal done
        done += 1
        print(f"{label} {done}/{total} {item}", file=sys.stderr)

    yield advance_plain


# -- doctor ------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def _doctor_checks(url: str, options: dict[str, Any]) -> list[Check]:
    """Try every guarantee the commit protocol relies on, on a scratch key, and clean up."""
    from vactor_cloud.errors import AlreadyExistsError, PreconditionFailedError
    from vactor_cloud.storage import IfMatch, open_store

    store = open_store(url, **options)
    key = f"_vactor_doctor/{uuid.uuid4().hex}/probe"
    checks: list[Check] = []

    def payload(n: int) -> bytes:
        # Unique bytes per write: ETag versions are content digests on S3.
        return f"vactor doctor {n} {uuid.uuid4().hex}".encode()

    first, second = payload(1), payload(2)
    try:
        v1 = await store.put(key, first, mode="create")
        checks.append(Check("write", True, f"created a scratch object {key}"))
        try:
            await store.put(key, second, mode="create")
        except AlreadyExistsError:
            checks.append(Check("atomic create", True, "a second create-only put was refused"))
        else:
            checks.append(
                Check(
                    "atomic create",
                    False,
                    "a second create-only put OVERWROTE the object: the store, or a proxy in front of "
                    "it, ignores If-None-Match / ifGenerationMatch=0. Concurrent writers would "
                    "overwrite each other's commits; talk to the store directly or fix the proxy",
                )
            )
        blob = await store.get(key)
        checks.append(
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
        checks.append(
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
            checks.append(Check("if-match (stale version)", True, "a put with a stale version was refused"))
        else:
            checks.append(
                Check(
                    "if-match (stale version)",
                    False,
                    "a put with a stale version SUCCEEDED: the store, or a proxy in front of it, ignores "
                    "If-Match / ifGenerationMatch. HEAD and retention watermarks could move backwards; "
                    "talk to the store directly or fix the proxy",
                )
            )
        listed = key in await store.list(key.rsplit("/", 1)[0] + "/")
        checks.append(
            Check("list", listed, "a fresh write is listed" if listed else "a fresh write is not listed yet")
        )
    finally:
        with contextlib.suppress(Exception):
            await store.delete(key)
        with contextlib.suppress(Exception):
            await store.close()
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    from vactor_cloud import _sync
    from vactor_cloud.runtime import default_storage

    url = args.url or args.storage or default_storage()
    out = Output.for_args(args)
    options = _storage_options(args.storage_option)
    try:
        checks = _sync.sync(_doctor_checks(url, options))
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    ok = all(c.ok for c in checks)
    if out.json:
        out.emit_json({"url": url, "ok": ok, "checks": [c.__dict__ for c in checks]})
    else:
        mark = {True: "ok  ", False: "FAIL"}
        if out.rich:
            console = out.console()
            for c in checks:
                style = "green" if c.ok else "bold red"
                console.print(f"[{style}]{mark[c.ok]}[/]  {c.name:<28} {c.detail}")
        else:
            for c in checks:
                print(f"{mark[c.ok]}  {c.name:<28} {c.detail}")
        verdict = (
            f"{url}: every guarantee vactor_cloud needs holds"
            if ok
            else f"{url}: NOT SAFE for vactor_cloud: concurrent commits could be lost (see FAIL above)"
        )
        print(verdict)
    return EXIT_OK if ok else EXIT_DOCTOR


# -- parser -------------------------------------------------------------------------------------


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--storage",
        metavar="URL",
        default=default(None),
        help="storage URL (default: $VACTOR_STORAGE, else the embedded local store)",
    )
    parser.add_argument(
        "-o",
        "--storage-option",
        metavar="KEY=VALUE",
        action="append",
        default=default(None),
        help="fsspec option for the store, repeatable (VALUE parsed as JSON when it can be)",
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON")
    parser.add_argument(
        "--debug", action="store_true", default=default(False), help="show tracebacks on errors"
    )


def _common_parent() -> argparse.ArgumentParser:
    # A fresh parent per subcommand: argparse shares parents' actions, and a
    # plugin resolving a conflict on one would edit every other subcommand.
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, suppress=True)
    return common


def build_parser() -> argparse.ArgumentParser:
    from vactor_cloud import __version__

    parser = argparse.ArgumentParser(
        prog="vactor",
        description="Inspect and operate durable virtual actors stored in a bucket.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vactor_cloud {__version__}")
    _common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "ls", parents=[_common_parent()], help="list actors: id, class, newest step, last change"
    )
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX", help="only ids starting with PREFIX")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="list at most N actors")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[_common_parent()], help="class, step and state of an actor")
    p.add_argument("actor_id", metavar="ID")
    p.add_argument("--step", type=int, default=None, metavar="N", help="as it was after step N")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "history", parents=[_common_parent()], help="committed steps, newest first, with their calls"
    )
    p.add_argument("actor_id", metavar="ID")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest N steps (default 20; 0: all)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "call",
        parents=[_common_parent()],
        help="call a method: vactor call ID METHOD [ARG ...], each ARG JSON",
        description="Call METHOD of actor ID. Each ARG is one JSON value (5, '\"text\"', '[1, 2]').",
    )
    p.add_argument("actor_id", metavar="ID")
    p.add_argument("method", metavar="METHOD")
    p.add_argument("args", nargs="*", metavar="ARG", help="positional argument, as JSON")
    p.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    p.add_argument("--idempotency-key", metavar="KEY", help="exactly-once key for a writer method")
    p.add_argument("--at-step", type=int, metavar="N", help="run a read-only method on step N's state")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("compact", parents=[_common_parent()], help="delete old steps, keeping the newest K")
    p.add_argument("actor_id", nargs="?", metavar="ID", help="the actor (or --all)")
    p.add_argument("--all", action="store_true", help="every actor under the storage root")
    p.add_argument("--keep-last", type=int, required=True, metavar="K", help="steps to keep (>= 1)")
    p.add_argument(
        "--min-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="never delete a step whose successor is younger (default 600; keep it above the "
        "writers' fresh_window, 5 s by default, while writers run)",
    )
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser(
        "doctor",
        parents=[_common_parent()],
        help="check that a store supports atomic create and if-match",
        description="Try create-only and if-match puts on a scratch key and say plainly if the store "
        "(or a proxy in front of it) does not honour them. Exit 5 when it does not.",
    )
    p.add_argument("url", nargs="?", metavar="URL", help="store to check (default: --storage)")
    p.set_defaults(func=cmd_doctor)

    for name, (module_name, help_text) in PLUGIN_COMMANDS.items():
        module = _plugin(module_name)
        if module is None:
            continue
        # A plugin may define options of its own with the same names (--json): its own win.
        p = sub.add_parser(name, parents=[_common_parent()], help=help_text, conflict_handler="resolve")
        module.add_arguments(p)
        p.set_defaults(func=module.run, plugin=True)
    return parser


def _plugin(module_name: str) -> Any:
    """The plugin module, or ``None`` when it is not part of this installation."""
    try:
        if importlib.util.find_spec(module_name) is None:
            return None
    except ModuleNotFoundError:
        return None
    module = importlib.import_module(module_name)
    if not (hasattr(module, "add_arguments") and hasattr(module, "run")):
        return None
    return module


# -- main ---------------------------------------------------------------------------------------


def _fail(message: str, code: int, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    print(f"vactor: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _hint(debug: bool) -> str:
    return "" if debug else " (run with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vactor`` console script; returns the exit code."""
    from vactor_cloud.errors import (
        ActorNotFoundError,
        InvalidActorIdError,
        StepNotFoundError,
        StorageError,
        VactorError,
    )

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = bool(args.debug)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        if getattr(args, "storage", None) is None and os.environ.get("VACTOR_STORAGE"):
            args.storage = os.environ["VACTOR_STORAGE"]
        return int(args.func(args) or 0)
    except CliError as exc:
        _fail(str(exc), exc.code, debug)
    except (ActorNotFoundError, StepNotFoundError) as exc:
        _fail(str(exc), EXIT_NOT_FOUND, debug)
    except InvalidActorIdError as exc:
        _fail(str(exc), EXIT_USAGE, debug)
    except StorageError as exc:
        _fail(
            f"{exc}; check --storage / $VACTOR_STORAGE, the credentials and the network", EXIT_STORAGE, debug
        )
    except VactorError as exc:
        _fail(str(exc), EXIT_ERROR, debug)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED, debug)
    except BrokenPipeError:
        # `vactor ls | head`: the reader left; nothing more to say.
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the flush at exit
        return EXIT_OK
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc}{_hint(debug)}", EXIT_ERROR, debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

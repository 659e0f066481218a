"""``vactor ls``, ``show``, ``history``, ``call``, ``compact``, ``delete``: reading and operating actors.

``history`` runs in :mod:`vactor_cloud.cli.history` and ``compact`` in
:mod:`vactor_cloud.cli.compact`; the others here. :func:`add_commands` registers all six, in
this order.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import inspect
import pprint
import signal
import sys
import types
from collections.abc import Iterator
from typing import Any

from vactor_cloud.cli._options import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    actor_error,
    actor_id_arg,
    common_parent,
    describe_storage,
    errors_error,
    init_runtime,
    limit_arg,
    memory_hint,
    non_negative_float,
    non_negative_int,
    parse_json_arg,
    positive_int,
    stores_below_hint,
)
from vactor_cloud.cli._output import Output, printable, when
from vactor_cloud.cli.compact import cmd_compact
from vactor_cloud.cli.history import cmd_history

__all__ = ["add_commands", "cmd_call", "cmd_compact", "cmd_delete", "cmd_history", "cmd_ls", "cmd_show"]


def cmd_ls(args: argparse.Namespace) -> int:
    from vactor_cloud.history import iter_actors

    init_runtime(args)
    out = Output.for_args(args)
    if args.limit == 0:  # list_actors(limit=0) refuses; say so as a usage error
        raise CliError("--limit must be >= 1 (or omitted: all actors)", EXIT_USAGE)
    # One damaged actor is named (exit 1), not a failure of the whole listing. Only the first
    # is kept (a bucket of damaged actors does not fill memory); --debug names each as it is met.
    damaged: list[str] = []
    count = 0

    def on_damaged(actor_id: str, exc: Exception) -> None:
        nonlocal count
        count += 1
        error = actor_error(actor_id, exc)
        if not damaged:
            damaged.append(error)
        if args.debug:
            print(printable(f"vactor: {error}"), file=sys.stderr)

    # Printed as listed: a page (up to 32 actors, described concurrently) at a time, and only
    # that page held; the listing is closed however the printing ends (| head, Ctrl-C).
    listing = iter_actors(args.prefix, start_after=args.start_after, limit=args.limit, on_damaged=on_damaged)
    with contextlib.closing(listing) as pages:
        if out.json:
            listed = 0
            with out.json_array() as array:
                for page in pages:
                    for info in page:
                        array.add(info.to_json())
                    listed += len(page)
                    array.flush()
            below = "" if listed or count or args.prefix or args.start_after else _stores_below_hint()
            if below:  # (stdout stays the JSON list; the hint alone, no "no actors", on stderr)
                print(f"no actors under {describe_storage()}{below}", file=sys.stderr)
        else:
            table = out.table_stream(("ACTOR", "CLASS", "STEP", "CHANGED"))
            for page in pages:
                table.page([(i.actor_id, i.class_name, str(i.step), when(i.time)) for i in page])
            if not table.rows and not count:
                where = f" with prefix {args.prefix!r}" if args.prefix else ""
                where += f" after {args.start_after!r}" if args.start_after else ""
                below = "" if args.prefix or args.start_after else _stores_below_hint()
                print(f"no actors{where} under {describe_storage()}{memory_hint()}{below}", file=sys.stderr)
    if count:
        raise errors_error(damaged, "actors could not be read", count=count)
    return EXIT_OK


def _stores_below_hint() -> str:
    """Where ``ls`` found no actor at all: the stores under the URL it was given
    (``--storage s3://bucket`` for ``s3://bucket/app``), found with one listing; only on this
    empty path, so a listing that finds actors pays nothing for it."""
    from vactor_cloud.runtime import get_runtime

    runtime = get_runtime()
    try:
        found = runtime.run(runtime.store.stores_below())
    except Exception:  # (a hint: the listing itself said what it found)
        return ""
    return stores_below_hint(found)


def cmd_show(args: argparse.Namespace) -> int:
    from vactor_cloud.errors import ActorDeletedError
    from vactor_cloud.history import raw_state_at

    init_runtime(args)
    out = Output.for_args(args)
    try:
        record, state = raw_state_at(args.actor_id, args.step)
    except ActorDeletedError as exc:  # (its message says how to create a new one, in Python)
        before = (
            f"vactor show {args.actor_id} --step {exc.step - 1} shows its state before the delete, "
            if exc.step > 0
            else ""
        )
        raise CliError(
            f"actor {args.actor_id!r} was deleted (its step {exc.step} is a tombstone): {before}"
            f"vactor history {args.actor_id} its steps",
            EXIT_NOT_FOUND,
        ) from exc
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise _state_not_importable(args.actor_id, exc) from exc
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
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan")
        grid.add_column(overflow="fold")  # a long id or class wraps: cut with "…", it could not be copied
        for key in ("actor_id", "class", "step", "when", "writer", "serializer"):
            grid.add_row(key, Text(printable(str(summary[key]))))  # Text: brackets are not markup
        grid.add_row("state", Pretty(state, expand_all=False))
        out.console().print(grid)
        return EXIT_OK
    for key in ("actor_id", "class", "step", "when", "writer", "serializer"):
        out.print(f"{key + ':':<12}{summary[key]}")
    out.print("state:")
    # compact: a list of 500 numbers fills a few lines, not 500
    out.print(pprint.pformat(state, indent=2, width=100, sort_dicts=False, compact=True))
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    import vactor_cloud as vc

    init_runtime(args)
    out = Output.for_args(args)
    positional = [parse_json_arg(a, "argument") for a in args.args]
    kwargs = parse_json_arg(args.kwargs, "--kwargs") if args.kwargs else {}
    if not isinstance(kwargs, dict):
        raise CliError("--kwargs takes a JSON object, e.g. --kwargs '{\"by\": 2}'", EXIT_USAGE)
    # --at-step reads a past step: a deleted actor's steps before its tombstone are history
    # (``vc.get_actor`` refuses a deleted actor; the handle's call says so for the rest)
    handle = vc.ActorHandle(args.actor_id) if args.at_step is not None else vc.get_actor(args.actor_id)
    method = _actor_method(handle, args.method)
    if args.at_step is not None and not method._info.readonly:
        raise CliError(
            f"{args.method}() is a writer method; --at-step runs read-only methods on a past state. "
            f"To see the state itself: vactor show {args.actor_id} --step {args.at_step}",
            EXIT_USAGE,
        )
    try:
        method._info.check_arguments(tuple(positional), kwargs)
    except TypeError as exc:  # say what the method takes, and how to pass it
        signature = method._info.signature
        how = (
            "ARG ... (each ARG JSON) or --kwargs JSON" if len(signature.parameters) > 1 else "(no arguments)"
        )
        raise CliError(
            f"{exc}; it takes {args.method}{_parameters(signature)}: "
            f"vactor call {args.actor_id} {args.method} {how}",
            EXIT_USAGE,
        ) from None
    try:
        if args.idempotency_key is not None or args.at_step is not None:
            method = method.options(idempotency_key=args.idempotency_key, at_step=args.at_step)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        with _sigint_noted() as interrupted:
            result = method.run(*positional, **kwargs)
    except vc.VactorError as exc:
        if not _raised_in(exc, method._info.function):
            raise  # the call's own: its kind's exit code (not found, usage, storage ...)
        # The body's (a nested call's error it let through): the method raised, exit 1; its
        # kind's code would say the called actor, or the command, was wrong.
        raise CliError(f"{args.method}() raised {type(exc).__name__}: {exc}", EXIT_ERROR) from exc
    except KeyboardInterrupt as exc:
        if not interrupted:  # the method raised it: a raising call is not applied
            raise CliError(
                f"{args.method}() raised KeyboardInterrupt: {exc}; it was not applied", EXIT_ERROR
            ) from exc
        if method._info.readonly:
            raise
        # The commit may have been sent before the interrupt: say so, and how to find out.
        retry = (
            f"; a retry with --idempotency-key {args.idempotency_key} applies it at most once"
            if args.idempotency_key
            else ""
        )
        raise CliError(
            f"interrupted: {args.method}() on {args.actor_id!r} may or may not have been applied; "
            f"vactor history {args.actor_id} shows whether it was{retry}",
            EXIT_INTERRUPTED,
        ) from None
    except BaseException as exc:  # SystemExit too: the method's, not this command's exit status
        if _loading_the_state_raised(exc) and not _raised_in(exc, method._info.function):
            raise _state_not_importable(args.actor_id, exc) from exc  # the method never ran
        raise CliError(f"{args.method}() raised {type(exc).__name__}: {exc}", EXIT_ERROR) from exc
    if out.json:
        out.emit_json({"result": result})
    elif result is None:  # as the Python REPL: nothing (`null` or `None` would read as a value)
        pass
    elif out.rich:
        from rich.pretty import Pretty

        out.console().print(Pretty(result))
    else:
        try:  # (NaN is not JSON: json.dumps would write it bare)
            out.print(out.json_text(result, allow_nan=False))
        except (TypeError, ValueError):
            out.print(repr(result))
    return EXIT_OK


def _state_not_importable(actor_id: str, exc: BaseException) -> CliError:
    """What ``show`` and ``call`` say of a state that refers to code this process cannot import
    (a class of the program's own module, not on ``PYTHONPATH`` here)."""
    return CliError(
        f"the state of {actor_id!r} refers to code this process cannot import ({exc}); "
        "run vactor with the actor's modules on PYTHONPATH",
        EXIT_ERROR,
    )


def _loading_the_state_raised(exc: BaseException) -> bool:
    """Whether ``exc`` is an import or attribute lookup that failed while the actor's pickled
    state was being loaded (a frame of ``loads_state`` is in its traceback): not the method's."""
    from vactor_cloud.state import loads_state

    if not isinstance(exc, ImportError | AttributeError):
        return False
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code is loads_state.__code__:
            return True
        frame = frame.tb_next
    return False


def _raised_in(exc: BaseException, function: Any) -> bool:
    """Whether ``exc`` came out of ``function``'s body: a frame of its code is in the traceback
    (the runtime hands the body's own exception object to the caller, traceback and all)."""
    codes = _codes_of(function)
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code in codes:
            return True
        frame = frame.tb_next
    return False


def _codes_of(function: Any) -> set[types.CodeType]:
    """The code a method runs as its own: each function of its chain of decorators
    (``__wrapped__``: a decorator's code that raises is the method's too), and a callable
    object's ``__call__``."""
    codes: set[types.CodeType] = set()
    seen: set[int] = set()
    todo = [function]
    while todo and len(seen) < 64:  # (a bound on odd chains of callables)
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        item = _looked_up(item, "__func__") or item  # (a bound method)
        code = _looked_up(item, "__code__")
        if isinstance(code, types.CodeType):
            codes.add(code)
        elif isinstance(item, functools.partial):  # (the function it calls: no code of its own)
            todo.append(item.func)
        elif not isinstance(item, type) and callable(item):
            todo.append(type(item).__call__)
        todo.append(_looked_up(item, "__wrapped__"))
    return codes


def _looked_up(item: Any, name: str) -> Any:
    """``item.name``, or None: a user's object whose ``__getattr__`` raises another error than
    ``AttributeError`` (``KeyError``, ``LookupError``) made the command report that error, its
    own lookup's, as the method's, in place of what the method raised."""
    try:
        return getattr(item, name, None)
    except Exception:
        return None


@contextlib.contextmanager
def _sigint_noted() -> Iterator[list[int]]:
    """Note whether SIGINT arrives meanwhile (the list gets the signal), so that a
    ``KeyboardInterrupt`` a method raised is told from Ctrl-C. Where this cannot be known (not
    the main thread, or SIGINT has another handler) the list holds 0: taken as an interrupt.
    Where SIGINT is ignored (a job a shell started in the background: ``vactor call ... &``) no
    Ctrl-C reaches the process, and the list stays empty."""
    received: list[int] = []
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield received
        return

    def note(signum: int, frame: Any) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    try:
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            raise ValueError("SIGINT has a handler of its own")
        signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread, or not ours to change
        received.append(0)
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _AsWritten(str):
    """An annotation kept as text (``from __future__ import annotations``), shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _parameters(signature: inspect.Signature) -> str:
    """``signature`` without ``self``, as written: ``(amount: int) -> int``."""

    def written(annotation: Any) -> Any:
        return _AsWritten(annotation) if isinstance(annotation, str) else annotation

    parameters = list(signature.parameters.values())[1:]
    return str(
        signature.replace(
            parameters=[p.replace(annotation=written(p.annotation)) for p in parameters],
            return_annotation=written(signature.return_annotation),
        )
    )


def _actor_method(handle: Any, name: str) -> Any:
    """The actor's method ``name``; a usage error naming its methods if it has none of that name.

    ``getattr(handle, name)`` alone would also find the handle's own attributes (``history``,
    ``compact``, ``actor_id``, dunders), which are not methods of the actor.
    """
    from vactor_cloud.handle import ActorMethod
    from vactor_cloud.runtime import get_runtime

    if not name.startswith("_"):
        with contextlib.suppress(AttributeError):
            method = type(handle).__getattr__(handle, name)
            if isinstance(method, ActorMethod):
                return method
    definition = get_runtime().load(handle.actor_id).definition
    assert definition is not None  # load() raises for an actor that does not exist
    methods = ", ".join(sorted(definition.methods)) or "none"
    raise CliError(
        f"{definition.cls.__qualname__} (actor {handle.actor_id!r}) has no method {name!r}; "
        f"its methods: {methods}",
        EXIT_USAGE,
    )


def cmd_delete(args: argparse.Namespace) -> int:
    import vactor_cloud as vc
    from vactor_cloud.deletion import deleted_by, is_deleted
    from vactor_cloud.history import newest_step

    init_runtime(args)
    out = Output.for_args(args)
    actor_id = args.actor_id
    # (read without the class: deleting needs none, and an actor whose code is gone is one to delete)
    record = newest_step(actor_id)  # ActorNotFoundError (exit 3) for an id never used
    if is_deleted(record):
        if out.json:
            out.emit_json({"actor_id": actor_id, "deleted": False, "already_deleted": True})
        else:
            out.print(f"actor {actor_id!r} was deleted already; nothing to do")
        return EXIT_OK
    what = f"actor {actor_id!r} ({record.class_ref.name}, newest step {record.step})"
    # A retry of a delete that committed (its key in the newest step: the actor there was
    # created since) deletes nothing, and asks nothing: it only finishes that delete's clean-up.
    retry = args.idempotency_key is not None and deleted_by(record, args.idempotency_key)
    if not args.yes and not retry:
        if not sys.stdin.isatty():
            raise CliError(
                f"not deleting {what} without a confirmation: pass --yes (stdin is not a terminal)",
                EXIT_USAGE,
            )
        try:
            answer = input(
                f"Delete {what}? Its calls will fail with ActorDeletedError until it is created again.\n"
                f"Type the id to confirm: "
            )
        except EOFError:  # Ctrl-D: no answer (the prompt's line ended first)
            print(flush=True)
            raise CliError(
                f"not deleted: no answer; type the id {actor_id!r} to confirm", EXIT_ERROR
            ) from None
        except KeyboardInterrupt:  # Ctrl-C at the question: end the prompt's line, say what happened
            print(flush=True)
            raise CliError(
                f"interrupted: nothing deleted; actor {actor_id!r} is as it was", EXIT_INTERRUPTED
            ) from None
        # as typed, or stripped (a stray space): an id with spaces around it is confirmed as typed
        if actor_id not in (answer, answer.strip()):
            raise CliError(
                f"not deleted: the answer {answer.strip()!r} is not the id {actor_id!r}", EXIT_ERROR
            )
    deleted = vc.delete_actor(actor_id, idempotency_key=args.idempotency_key)
    if out.json:
        out.emit_json({"actor_id": actor_id, "deleted": deleted, "already_deleted": not deleted})
    elif deleted:
        out.print(
            f"deleted {what}; its old steps stay until a compaction deletes them: "
            f"vactor compact {actor_id} --keep-last 1"
        )
    elif args.idempotency_key is not None:
        out.print(
            f"actor {actor_id!r} was deleted already by the delete with this key (the actor now "
            "under the id was created since: left as it is), or by another process just now"
        )
    else:
        out.print(f"actor {actor_id!r} was deleted already (by another process, just now)")
    return EXIT_OK


def _delete_key_arg(text: str) -> str:
    """``--idempotency-key`` of ``vactor delete``: a key as ``delete_actor`` takes it."""
    from vactor_cloud.ids import validate_idempotency_key

    try:
        return validate_idempotency_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the ``vactor`` subparsers ``sub``."""
    p = sub.add_parser(
        "ls", parents=[common_parent()], help="list actors: id, class, newest step, last change"
    )
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX", help="only ids starting with PREFIX")
    p.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="list at most N actors (N >= 1)"
    )
    p.add_argument(
        "--start-after",
        type=actor_id_arg,
        default=None,
        metavar="ID",
        help="only ids after ID, in key order: the next page after a --limit listing's last id",
    )
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[common_parent()], help="class, step and state of an actor")
    p.add_argument("actor_id", type=actor_id_arg, metavar="ID", help="the actor's id")
    p.add_argument("--step", type=non_negative_int, default=None, metavar="N", help="as it was after step N")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "history", parents=[common_parent()], help="committed steps, newest first, with their calls"
    )
    p.add_argument("actor_id", type=actor_id_arg, metavar="ID", help="the actor's id")
    p.add_argument(
        "--limit",
        type=limit_arg,
        default=20,
        metavar="N",
        help="newest N steps (default 20; 'all': every step; 0: none, as history(limit=0))",
    )
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "call",
        parents=[common_parent()],
        help="call a method: vactor call ID METHOD [ARG ...], each ARG JSON",
        description="Call METHOD of actor ID. Each ARG is one JSON value (5, '\"text\"', '[1, 2]').",
    )
    p.add_argument("actor_id", type=actor_id_arg, metavar="ID", help="the actor's id")
    p.add_argument("method", metavar="METHOD", help="the name of one of its methods")
    # default=[]: without it argparse counts ARG among the required arguments in its error
    p.add_argument("args", nargs="*", default=[], metavar="ARG", help="positional argument, as JSON")
    p.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    p.add_argument("--idempotency-key", metavar="KEY", help="exactly-once key for a writer method")
    p.add_argument(
        "--at-step", type=non_negative_int, metavar="N", help="run a read-only method on step N's state"
    )
    p.intermixed = True  # options between the ARGs: `vactor call ID METHOD --json 2`
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("compact", parents=[common_parent()], help="delete old steps, keeping the newest K")
    p.add_argument("actor_id", nargs="?", type=actor_id_arg, metavar="ID", help="the actor (or --all)")
    p.add_argument("--all", action="store_true", help="every actor under the storage root")
    p.add_argument("--keep-last", type=positive_int, required=True, metavar="K", help="steps to keep (>= 1)")
    p.add_argument(
        "--min-age",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="never delete a step whose successor is younger (default 86400, one day; below 3600 "
        "or below the writers' fresh_window refused unless --force; below one day, needs "
        "--fresh-window)",
    )
    p.add_argument(
        "--fresh-window",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="the writers' Settings.fresh_window (5 s unless they changed it), which --min-age "
        "must exceed; required with a --min-age below one day (this command cannot know it)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="accept a --min-age below the 3600 s floor and below the writers' fresh_window "
        "(maintenance only: a writer running or stalled meanwhile may lose its commit)",
    )
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser(
        "delete",
        parents=[common_parent()],
        help="delete an actor: its calls fail from now on; get_or_create makes a new one",
        description="Delete actor ID: commit a tombstone after its newest step (safe while other "
        "processes call it). Asks for the id to confirm unless --yes.",
    )
    p.add_argument("actor_id", type=actor_id_arg, metavar="ID", help="the actor's id")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for a confirmation")
    p.add_argument(
        "--idempotency-key",
        type=_delete_key_arg,
        metavar="KEY",
        help="this delete's key: a retry with the key of a delete that committed (a delete left in "
        "doubt names it) says deleted already, and leaves an actor created since",
    )
    p.set_defaults(func=cmd_delete)

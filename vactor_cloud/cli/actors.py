"""``vactor ls``, ``show``, ``history``, ``call``, ``compact``, ``delete``: reading and operating actors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import functools
import importlib
import inspect
import pprint
import signal
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vactor_cloud.cli._chunks import IdChunks, every_actor_id
from vactor_cloud.cli._interrupts import SettledInterrupts
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
from vactor_cloud.cli._output import Advance, Output, listing_count, note, printable, progress, when
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
                print(f"no actors under {_describe_storage()}{below}", file=sys.stderr)
        else:
            table = out.table_stream(("ACTOR", "CLASS", "STEP", "CHANGED"))
            for page in pages:
                table.page([(i.actor_id, i.class_name, str(i.step), when(i.time)) for i in page])
            if not table.rows and not count:
                where = f" with prefix {args.prefix!r}" if args.prefix else ""
                where += f" after {args.start_after!r}" if args.start_after else ""
                below = "" if args.prefix or args.start_after else _stores_below_hint()
                print(f"no actors{where} under {_describe_storage()}{memory_hint()}{below}", file=sys.stderr)
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


def _describe_storage() -> str:
    from vactor_cloud.runtime import get_runtime

    return get_runtime().store.describe()


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


#: (a name of its own here: tests stand another in for it)
_all_actor_ids = every_actor_id


def cmd_compact(args: argparse.Namespace) -> int:
    from vactor_cloud import _sync
    from vactor_cloud.history import newest_step
    from vactor_cloud.runtime import get_runtime

    if (args.actor_id is None) == (not args.all):
        raise CliError("name one actor, or pass --all (not both)", EXIT_USAGE)
    try:
        compaction = importlib.import_module("vactor_cloud.compaction")
    except ModuleNotFoundError:
        raise CliError("compaction is not available in this vactor_cloud version; upgrade it") from None
    min_age = compaction.DEFAULT_MIN_AGE if args.min_age is None else args.min_age
    try:  # --keep-last and --min-age are checked by argparse; the library checks again
        compaction.validate_compaction_args(args.keep_last, min_age)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    floor = compaction.MIN_AGE_FLOOR
    if not args.force and min_age < floor:
        raise CliError(
            f"--min-age {min_age:g} is below the floor of {floor:g} s: a writer stalled longer than that "
            "(a paused VM, SIGSTOP, a long GC) may find its commit compacted and unresolvable; "
            "pass --force if no writer can be running",
            EXIT_USAGE,
        )
    if not args.force and args.fresh_window is None and min_age < compaction.DEFAULT_MIN_AGE:
        raise CliError(
            f"--min-age {min_age:g} is below the default of {compaction.DEFAULT_MIN_AGE:g} s: it must "
            "exceed the writers' fresh_window (plus your machines' clock skew), a setting of theirs "
            "stored nowhere, which this command cannot know; pass it: --fresh-window SECONDS (5 for "
            "writers with the default Settings), or --force if no writer can be running",
            EXIT_USAGE,
        )
    init_runtime(args)
    out = Output.for_args(args)
    chunks: IdChunks | None = None
    try:
        if args.all:  # (a bucket of thousands takes a while to list: on a terminal, counted meanwhile)
            # A chunk of ids at a time, each listed once the one before is compacted: ten million
            # ids held at once are gigabytes (the first, counted on a terminal while it is listed)
            listing = f"listing the actors under {_describe_storage()}:"
            chunks = IdChunks(_all_actor_ids)
            with listing_count(listing, enabled=sys.stderr.isatty() and not out.json, plain=True) as found:
                chunks.found = found
                ids = chunks.next()
            chunks.found = lambda: None
        else:
            ids = [args.actor_id]
    except KeyboardInterrupt:  # (a bucket of many actors takes a while to list)
        if chunks is not None:
            chunks.close()
        raise CliError(
            "interrupted while listing the actors: nothing was compacted", EXIT_INTERRUPTED
        ) from None
    if args.actor_id is not None:
        # ActorNotFoundError before any work; not loading the class, which compaction does not need
        # (a deleted actor's old steps are what a compaction removes)
        newest_step(args.actor_id)
    runtime = get_runtime()
    fresh_window = runtime.settings.fresh_window if args.fresh_window is None else args.fresh_window
    if not args.force and min_age < fresh_window:
        raise CliError(
            f"--min-age {min_age:g} is below the writers' fresh_window of {fresh_window:g} s: a writer "
            "trusting a cache that fresh could re-create a deleted step unnoticed; pass a --min-age of "
            "at least fresh_window plus your machines' clock skew, or --force if no writer can be running",
            EXIT_USAGE,
        )
    # --force (no writer running: no cache to outlive) passes the guard ``compact`` keeps
    options: dict[str, Any] = {"min_age": min_age, "fresh_window": min(fresh_window, min_age)}

    def compact_one(
        actor_id: str,
        on_deleted: Callable[[int, int], None] | None = None,
        on_listed: Callable[[str, int, int], None] | None = None,
    ) -> Any:
        log = runtime.log(actor_id)
        return _sync.sync(
            compaction.compact(log, args.keep_last, **options, on_deleted=on_deleted, on_listed=on_listed)
        )

    def compact_some(part: list[str]) -> list[Any]:
        """The reports of ``part``'s actors, compacted at once (an exception for those that failed)."""
        return _sync.sync(
            _gathered([compaction.compact(runtime.log(a), args.keep_last, **options) for a in part])
        )

    totals = _Compacted()
    failed: list[tuple[str, Exception]] = []
    if chunks is not None:
        try:
            failed = _compact_all(ids, chunks, compact_one, compact_some, fresh_window, out, totals)
        finally:
            chunks.close()
    else:
        totals.add([_compact_the_actor(args.actor_id, compact_one, fresh_window, out)])
    for actor_id, error in failed:
        print(printable(f"vactor: error: {actor_error(actor_id, error)}"), file=sys.stderr)
    if failed:
        print(
            f"vactor: error: {len(failed)} of {len(failed) + totals.actors} actors could not be "
            "compacted (above); the others were",
            file=sys.stderr,
        )
    code = EXIT_ERROR if failed else EXIT_OK
    # (the library's warning on them is a log record, which the command does not print)
    for actor_id, call_id in totals.unresumable:
        print(
            printable(
                f"vactor: warning: actor {actor_id!r}: the failure record of call {call_id} "
                "was older than --min-age and compaction removed it: workflow.resume can no longer "
                "run that call (but for a resume that listed it before: look for the call in "
                "`vactor history`); run it again as a new call if it is still wanted and not there"
            ),
            file=sys.stderr,
        )
    if not totals.actors and not failed and not out.json:
        where = f"{_describe_storage()}: nothing to compact{memory_hint()}"
        print(f"no actors under {where}", file=sys.stderr)
    held = totals.held
    if held and not out.json:  # else a first compaction of young actors deletes nothing, unexplained
        print(
            f"{held} {'step' if held == 1 else 'steps'} younger than --min-age {min_age:g} s "
            f"(HELD) kept; a later run deletes {'it' if held == 1 else 'them'}, or pass a smaller "
            f"--min-age (at least {compaction.MIN_AGE_FLOOR:g} s and the writers' fresh_window, "
            "given with --fresh-window, unless --force with no writer running)",
            file=sys.stderr,
        )
    return code


@dataclasses.dataclass
class _Compacted:
    """What ``vactor compact`` says at its end, summed as the actors are compacted: not their
    reports, which ``--all`` over a million actors held every one of until then."""

    actors: int = 0
    #: steps kept only because of --min-age (the HELD column's sum)
    held: int = 0
    #: (actor id, call id) of the calls no longer resumable: each is named at the end
    unresumable: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def add(self, reports: Sequence[Any]) -> None:
        for report in reports:
            self.actors += 1
            self.held += getattr(report, "held_by_min_age", 0)
            self.unresumable += [(report.actor_id, c) for c in getattr(report, "unresumable", ())]


def _compact_the_actor(
    actor_id: str, compact_one: Callable[..., Any], fresh_window: float, out: Output
) -> Any:
    """``vactor compact ID``: its report, printed; meanwhile the steps deleted so far (a bar on
    a terminal, shown once there are steps to delete; piped, a line on stderr for the first batch
    deleted, the last, and at most one every ``PLAIN_PROGRESS_EVERY`` between). Ctrl-C or SIGTERM
    stops it at once, saying how far it got: a compaction is safe to stop anywhere (the steps it
    leaves below the raised watermark are deleted by the next one), and an actor of a million
    steps is minutes of deletes, which the first Ctrl-C of ``--all`` would wait for."""
    bar = sys.stderr.isatty() and not out.json
    deleted = [0, 0]  # the steps deleted so far, of how many (0: not known yet)
    report = None
    with out.rows_as_done(
        _COMPACT_COLUMNS, _report_cells, _report_json, held=bar and out.rich, work_goes_on=True
    ) as show:
        try:
            with progress(0, "deleting steps", enabled=bar) as advance:
                shown: list[Any] = ["", 0]  # the phase shown, and its items counted so far

                def tell(phase: str, done: int, total: int | None) -> None:  # (on the IO loop)
                    if shown[0] != phase:
                        advance.phase(phase, total)
                        shown[:] = [phase, 0]
                    advance.many(done - shown[1], actor_id)
                    shown[1] = done

                def on_listed(phase: str, done: int, total: int) -> None:
                    tell(phase, done, total or None)  # (listing: 0, a total not known yet)

                def on_deleted(done: int, total: int) -> None:  # (as each batch lands)
                    tell("deleting steps", done, total)
                    deleted[:] = [done, total]

                report = compact_one(actor_id, on_deleted, on_listed)
            if getattr(report, "held_unproven", 0):
                report = _compact_unproven_again([report], compact_one, fresh_window)[0]
        except KeyboardInterrupt:
            if report is not None:
                show([report])  # (as the first pass left it: its last steps held)
                raise CliError(
                    f"interrupted in the second pass, after compacting actor {actor_id!r} once; the "
                    "last steps held for want of the writers' evidence may stay until the next "
                    "compaction: run it again to delete them",
                    EXIT_INTERRUPTED,
                ) from None
            so_far = (
                f"after deleting {deleted[0]} of the {deleted[1]} old steps"
                if deleted[1]
                else "before deleting any step"
            )
            raise CliError(
                f"interrupted {so_far} of actor {actor_id!r}; a compaction is safe to stop anywhere "
                "(nothing a writer acknowledged is lost): the old steps left below its watermark are "
                "deleted by the next compaction: run it again to finish",
                EXIT_INTERRUPTED,
            ) from None
        show([report])
    return report


def _compact_all(
    first: list[str],
    chunks: IdChunks,
    compact_one: Callable[[str], Any],
    compact_some: Callable[[list[str]], list[Any]],
    fresh_window: float,
    out: Output,
    totals: _Compacted,
) -> list[tuple[str, Exception]]:
    """``vactor compact --all`` of ``first`` (the first chunk of ``chunks``) and of the chunks
    after it, each listed once the one before is compacted: up to ``_COMPACT_CONCURRENCY`` actors
    at once, each batch's rows printed as it is done and added to ``totals``; the actors that
    could not be compacted, each with its error (one damaged actor does not stop the others)."""
    from vactor_cloud.errors import ActorNotFoundError, StorageError, VactorError

    failed: list[tuple[str, Exception]] = []
    done = 0
    second_pass = False
    bar = sys.stderr.isatty() and not out.json
    # The first Ctrl-C (or SIGTERM) lets the compactions in flight finish, then stops; a second
    # one stops at once. Their rows are printed as each batch is done (under a progress bar on the
    # terminal that shows them, at its end); an actor a second pass may compact again waits for it.
    interrupts = SettledInterrupts(
        f"vactor: stopping: the compactions in flight (up to {_COMPACT_CONCURRENCY}) finish, then "
        "it says what it did; Ctrl-C again stops at once",
        lambda: _compact_stopped_at_once(chunks.of_listed(done), shown=not (bar and out.rich)),
    )
    settled = False
    compacting = False  # whether a batch was handed out and not finished (else: between two)
    unproven: list[Any] = []  # first-pass reports whose actors the second pass compacts again
    with (
        out.rows_as_done(
            _COMPACT_COLUMNS, _report_cells, _report_json, held=bar and out.rich, work_goes_on=True
        ) as show,
        interrupts.installed(),
    ):
        try:
            with progress(len(first), "compacting", enabled=bar) as advance:
                for part in _batches(first, chunks, advance, _COMPACT_CONCURRENCY):
                    compacting = True
                    with interrupts.in_flight():  # (a batch: compacted, counted and printed)
                        finished: list[Any] = []
                        for actor_id, outcome in zip(part, compact_some(part), strict=True):
                            if isinstance(outcome, ActorNotFoundError):
                                pass  # objects, no step (a creation never committed): `ls` skips it too
                            elif isinstance(outcome, VactorError | StorageError):
                                failed.append((actor_id, outcome))
                            elif isinstance(outcome, BaseException):
                                raise outcome
                            elif getattr(outcome, "held_unproven", 0):
                                unproven.append(outcome)
                            else:
                                finished.append(outcome)
                            done += 1
                            advance(actor_id)
                        totals.add(finished)
                        show(finished)
                    compacting = False
                    # (also after the last batch: a Ctrl-C is answered, not taken for none)
                    if interrupts.requested.is_set():
                        settled = True
                        raise KeyboardInterrupt
            second_pass = True
            if interrupts.requested.is_set() and unproven:  # (not its wait: stopping was asked)
                raise KeyboardInterrupt

            def compact_again(actor_id: str) -> Any:
                if interrupts.requested.is_set():  # (stopping after the one in flight)
                    raise KeyboardInterrupt
                with interrupts.in_flight():
                    return compact_one(actor_id)

            unproven = _compact_unproven_again(unproven, compact_again, fresh_window)
            totals.add(unproven)
            show(unproven)
            unproven = []
        except KeyboardInterrupt:
            # Safe to stop anywhere (docs/retention.md): an actor interrupted half-way keeps some steps
            # below its watermark, which the next compaction deletes.
            show(unproven)  # (as the first pass left them: their last steps held)
            if second_pass:
                raise CliError(
                    f"interrupted in the second pass, after compacting all {chunks.listed} actors once; the "
                    "last steps held for want of the writers' evidence (the rows printed last) may stay "
                    "until the next compaction: run it again to delete them",
                    EXIT_INTERRUPTED,
                ) from None
            left = chunks.listed - done
            if chunks.complete and not left:  # (after the last batch: there is no "other")
                raise CliError(
                    _interrupted_after_the_last_batch(chunks.listed, len(failed), held=bool(unproven)),
                    EXIT_INTERRUPTED,
                ) from None
            if chunks.complete:
                others = f"the other {left}"
            elif left:
                others = f"the other {left} listed so far, and those after them,"
            else:  # ("the other 0 listed so far, and those after them")
                others = "those not listed yet"
            if settled:
                raise CliError(
                    f"interrupted after compacting {chunks.of_listed(done)} (the compactions in "
                    f"flight finished; their rows are printed); {others} were not "
                    "touched: run it again to finish",
                    EXIT_INTERRUPTED,
                ) from None
            if not compacting:  # (listing the next chunk, or handing out the next batch)
                raise CliError(
                    f"interrupted after compacting {chunks.of_listed(done)}, between two batches "
                    f"(none was being compacted); {others} were not touched: run it again to finish",
                    EXIT_INTERRUPTED,
                ) from None
            raise CliError(
                f"interrupted after compacting {chunks.of_listed(done)}; the actors being compacted "
                f"at the time (up to {_COMPACT_CONCURRENCY}) may keep some old steps until their next "
                "compaction: run it again to finish",
                EXIT_INTERRUPTED,
            ) from None
    return failed


#: the columns of ``vactor compact``'s table, one word each (piped output is read by awk); HELD: the
#: steps kept only because of --min-age
_COMPACT_COLUMNS = ("ACTOR", "DELETED", "KEPT", "HELD")


def _report_cells(report: Any) -> tuple[str, str, str, str]:
    """A compaction report's row of the table (``_COMPACT_COLUMNS``)."""
    return (
        str(getattr(report, "actor_id", "?")),
        str(getattr(report, "deleted_steps", "?")),
        f"{getattr(report, 'watermark', '?')}..{getattr(report, 'newest', '?')}",
        str(getattr(report, "held_by_min_age", 0)),
    )


def _compact_stopped_at_once(done_of: str, *, shown: bool) -> str:
    """What ``vactor compact`` stopped at once (a second Ctrl-C or SIGTERM) leaves: its last line
    (``done_of``: ``"96 of 200 actors"``; ``shown``: the rows of those compacted were printed, not held
    for the end of a progress bar)."""
    rows = "their rows are printed" if shown else "vactor ls and history show them"
    return (
        f"vactor: error: stopped at once after compacting {done_of} ({rows}); "
        f"the compactions cut short (up to {_COMPACT_CONCURRENCY}) may keep some old steps "
        "below their watermark, which the next compaction deletes (nothing a writer acknowledged is "
        "lost): run it again to finish"
    )


def _interrupted_after_the_last_batch(listed: int, failed: int, *, held: bool) -> str:
    """What ``vactor compact --all`` did, interrupted once every actor listed was compacted
    (the listing had ended): the first pass is done, but for the ``failed`` actors; ``held``: it
    held some last steps for want of the writers' evidence, and the second pass, for those,
    did not run. (There is no "other" left untouched to speak of.)"""
    done = f"interrupted after compacting all {listed} actors"
    if failed:
        done = f"interrupted after trying all {listed} actors ({failed} could not be compacted)"
    if held:
        return (
            f"{done} once, before the second pass: the last steps held for want of the writers' "
            "evidence (the rows printed last) may stay until the next compaction: run it again "
            "to delete them"
        )
    if failed:
        return f"{done}: none was left to try; run it again for those that failed"
    return f"{done}: none was left to compact"


def _batches(first: list[str], chunks: IdChunks, advance: Advance, size: int) -> Iterator[list[str]]:
    """``first``, then the chunks after it (each listed once the one before is used up, the
    progress ``advance`` grown by as many), in batches of ``size`` ids."""
    chunk = first
    while chunk:
        for at in range(0, len(chunk), size):
            yield chunk[at : at + size]
        chunk = chunks.next()
        if chunk:
            advance.grow(len(chunk))


#: actors ``vactor compact --all`` compacts at once: each is a few round trips to the store, spent
#: waiting; one after another, a bucket of thousands on S3 took hours
_COMPACT_CONCURRENCY = 8


async def _gathered(coroutines: list[Any]) -> list[Any]:
    """The results of ``coroutines`` run at once, in their order; an exception as its result."""
    return await asyncio.gather(*coroutines, return_exceptions=True)


#: the longest ``fresh_window`` ``vactor compact`` waits for its second pass (seconds)
_LONGEST_SECOND_PASS_WAIT = 60.0


def _compact_unproven_again(
    reports: list[Any], compact_one: Callable[[str], Any], fresh_window: float
) -> list[Any]:
    """Compact once more, ``fresh_window`` after the first pass, the actors whose last steps
    the first held for want of the writers' evidence (``CompactionReport.held_unproven``: an
    actor idle since a burst): this process has then seen them exist that long, which is
    proof enough (``compaction._seen_long_enough``). One wait for all; the reports merged."""
    from vactor_cloud import _sync
    from vactor_cloud.errors import StorageError, VactorError

    again = [i for i, r in enumerate(reports) if getattr(r, "held_unproven", 0)]
    if not again:
        return reports
    actors = "1 actor" if len(again) == 1 else f"{len(again)} actors"
    if fresh_window > _LONGEST_SECOND_PASS_WAIT:
        note(
            f"vactor: {actors} kept last steps that no writer has shown old yet; run vactor compact "
            f"again in {fresh_window:g} s (the writers' fresh_window) to delete them"
        )
        return reports
    note(  # (said: after a progress bar at its end, a silent wait looks like a hang)
        f"vactor: waiting {fresh_window:g} s (the writers' fresh_window) to compact again {actors} "
        "whose last steps no writer has shown old yet"
    )
    _sync.sleep(fresh_window)  # (in slices on the main thread: Ctrl-C stops the command meanwhile)
    merged = list(reports)
    for i in again:
        first = reports[i]
        try:
            second = compact_one(first.actor_id)
        except (VactorError, StorageError):
            continue  # the first pass's report stands; the next compaction deletes them
        merged[i] = dataclasses.replace(
            second,
            deleted_steps=first.deleted_steps + second.deleted_steps,
            deleted_tasks=first.deleted_tasks + second.deleted_tasks,
            unresumable=first.unresumable + second.unresumable,
        )
    return merged


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


def _report_json(report: Any) -> Any:
    fields = getattr(report, "__dataclass_fields__", None)
    if fields is None:
        return repr(report)
    return {name: getattr(report, name) for name in fields}


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

"""``vactor compact``: one actor's old steps deleted, or every actor's (``--all``, a chunk of ids
at a time, several actors at once, a second pass for those a writer may still have been
committing to), with progress, a table or JSON of what was deleted and kept, and a word on how
far it got when interrupted.

Registered by :mod:`vactor_cloud.cli.actors` (``add_commands``), beside the other commands that
read and operate actors.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vactor_cloud.cli._chunks import IdChunks, every_actor_id
from vactor_cloud.cli._interrupts import SettledInterrupts
from vactor_cloud.cli._options import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    actor_error,
    describe_storage,
    init_runtime,
    memory_hint,
)
from vactor_cloud.cli._output import Advance, Output, note, printable, progress

__all__ = ["cmd_compact"]


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
            chunks = IdChunks(_all_actor_ids)
            listing = f"listing the actors under {describe_storage()}:"
            ids = chunks.first(listing, counted=sys.stderr.isatty() and not out.json)
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
        where = f"{describe_storage()}: nothing to compact{memory_hint()}"
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


def _report_json(report: Any) -> Any:
    fields = getattr(report, "__dataclass_fields__", None)
    if fields is None:
        return repr(report)
    return {name: getattr(report, name) for name in fields}

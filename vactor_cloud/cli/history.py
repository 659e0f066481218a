"""``vactor history``: an actor's committed steps, newest first, printed a page at a time as read.

``--limit all`` on an actor of tens of thousands of steps shows its first rows at once and holds
one page (64 steps) at a time: the table's columns widen as later pages need (piped), ``--json``
writes its one array an element at a time (left unterminated if stopped half-way, as ``ls``'s).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vactor_cloud.cli._options import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CliError,
    init_runtime,
    integrity_advice,
)
from vactor_cloud.cli._output import Output, listing_count, printable, when

__all__ = ["RICH_CALLS_PER_STEP", "cmd_history"]

#: calls shown per step on a terminal (a group commit may hold hundreds); piped output shows all
RICH_CALLS_PER_STEP = 10

_COLUMNS = ("STEP", "TIME", "WRITER", "CALLS")


def cmd_history(args: argparse.Namespace) -> int:
    from vactor_cloud import history

    init_runtime(args)
    out = Output.for_args(args)
    limit: int | None = args.limit
    shown = _Shown(limit)
    # one step more than shown: whether older steps exist (compaction may have left none)
    pages = history.iter_history(args.actor_id, limit + 1 if limit else limit, on_damaged=shown.on_damaged)
    # (piped or redirected to a file: a count on stderr when it is a terminal; on a terminal
    # the rows themselves show the progress)
    counting = sys.stderr.isatty() and not out.rich and not out.json
    label = f"reading the steps of {printable(args.actor_id)}:"
    try:
        with contextlib.closing(pages), listing_count(label, enabled=counting) as counted:
            _print_pages(args.actor_id, out, shown.pages(pages, counted))
    except KeyboardInterrupt:
        unterminated = " (its JSON array left unterminated)" if out.json and shown.printed else ""
        raise CliError(
            f"interrupted after printing {shown.printed} steps of {args.actor_id!r}, the newest"
            f"{unterminated}",
            EXIT_INTERRUPTED,
        ) from None
    if limit == 0 and not out.json:  # as ls on an empty store: no header over nothing, on stdout
        text = f"no steps shown (--limit 0); vactor history {args.actor_id} shows the newest 20"
        print(printable(text), file=sys.stderr)
    if shown.more:
        print(f"(newest {shown.printed}; --limit all shows all)", file=sys.stderr)
    oldest = shown.oldest
    if (
        not shown.more
        and oldest is not None
        and oldest > 0
        and not out.json
        and not shown.damaged_below(oldest)
    ):
        # every step left is shown, and the first is not the creation: retention deleted the rest
        print(f"(steps before {oldest} were compacted: deleted by retention)", file=sys.stderr)
    if shown.damaged:
        step, exc = shown.damaged[0]
        others = f" (as are {shown.damaged_count - 1} more)" if shown.damaged_count > 1 else ""
        raise CliError(
            f"step {step} of {args.actor_id!r} cannot be read and is left out{others}: {exc}"
            f"{integrity_advice(exc)}",
            EXIT_ERROR,
        )
    return EXIT_OK


class _Shown:
    """What ``history`` printed: the pages it takes from the reading, cut to ``--limit``, the
    steps that could not be read among them (the first kept, the others counted: a page's worth
    held at most), and whether older steps exist."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.printed = 0
        #: the oldest step printed (None: none yet)
        self.oldest: int | None = None
        #: older steps exist than those shown (``--limit``)
        self.more = False
        #: the first step that could not be read (and its error), among those shown
        self.damaged: list[tuple[int, Exception]] = []
        self.damaged_count = 0
        self._lowest_damaged: int | None = None
        #: damaged steps below the oldest printed: shown only if the steps end there
        self._below: list[tuple[int, Exception]] = []

    def on_damaged(self, step: int, exc: Exception) -> None:
        self._below.append((step, exc))

    def pages(self, pages: Iterable[list[Any]], counted: Callable[[], None]) -> Iterator[list[Any]]:
        for read in pages:
            page = read
            if self.limit is not None and len(page) > self.limit - self.printed:
                self.more = True  # (the step read past those shown: not among them)
                page = page[: self.limit - self.printed]
            if page:
                self.oldest = page[-1].step
            self._count_damaged()
            if page:
                for _ in page:
                    counted()
                yield page
                self.printed += len(page)
            if self.more:
                break
        if not self.more:
            self._count_damaged(every=True)

    def _count_damaged(self, *, every: bool = False) -> None:
        """Count the damaged steps above the oldest printed (``every``: all of them), keeping
        those below for the next page: past the last step shown, they are not counted."""
        below = []
        for step, exc in self._below:
            if every or (self.oldest is not None and step > self.oldest):
                if not self.damaged:
                    self.damaged.append((step, exc))
                self.damaged_count += 1
                lowest = self._lowest_damaged
                self._lowest_damaged = step if lowest is None else min(lowest, step)
            elif not self.more:
                below.append((step, exc))
        self._below = below

    def damaged_below(self, step: int) -> bool:
        return self._lowest_damaged is not None and self._lowest_damaged < step


def _call_text(call: Any) -> str:
    from vactor_cloud.history import HistoryEntry

    text = HistoryEntry.call_text(call)
    # One line per call (a summary is the repr a caller's object chose; a cell's own lines are
    # the calls of its step); the other control characters are escaped where it is printed.
    return text.replace("\n", "\\n")


def _call_lines(entry: Any, cap: int | None = None) -> list[str]:
    """One text per call of ``entry`` (``["-"]`` for none); past ``cap``, one ``… N more`` line."""
    lines = [_call_text(call) for call in entry.calls] or ["-"]
    if cap is not None and len(lines) > cap:
        lines = [*lines[:cap], f"… {len(lines) - cap} more (--json shows all)"]
    return lines


def _print_pages(actor_id: str, out: Output, pages: Iterator[list[Any]]) -> None:
    """Each page as it comes: elements of the one JSON array, or rows of one table."""
    if out.json:
        with out.json_array() as array:
            for page in pages:
                for entry in page:
                    array.add(entry.to_json())
                array.flush()
        return
    if out.rich:
        _print_rich(actor_id, out, pages)
        return
    table = out.table_stream(_COLUMNS)
    for page in pages:  # piped: one line per call, a group commit's step, time and writer on each
        table.page(
            [
                (str(e.step), when(e.time, one_field=True), e.writer[:8], line)
                for e in page
                for line in _call_lines(e)
            ]
        )


def _print_rich(actor_id: str, out: Output, pages: Iterator[list[Any]]) -> None:
    """On a terminal: one row per step, its calls stacked in the cell (at most
    RICH_CALLS_PER_STEP); a history of one page (``--limit`` 20, the default) in one boxed table
    under its title, a longer one page after page."""

    def rows(page: list[Any]) -> list[tuple[str, str, str, str]]:
        return [
            (str(e.step), when(e.time), e.writer[:8], "\n".join(_call_lines(e, RICH_CALLS_PER_STEP)))
            for e in page
        ]

    first = next(pages, None)
    if first is None:
        return
    title = f"{actor_id}  ({first[0].class_name})"
    second = next(pages, None)
    if second is None:
        out.table(title, _COLUMNS, rows(first))
        return
    from rich.text import Text

    out.console().print(Text(printable(title), style="table.title"))
    table = out.table_stream(_COLUMNS)
    for page in itertools.chain((first, second), pages):
        table.page(rows(page))

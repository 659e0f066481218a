"""How the ``vactor`` command prints: rich on a terminal, plain aligned text when piped, JSON on request.

Under ``--json`` stdout carries the JSON document and nothing else: for the
whole command, ``sys.stdout`` points at stderr (so an actor method's
``print`` cannot corrupt the document) and :meth:`Output.emit_json` writes to
the real stdout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "Advance",
    "JsonArray",
    "Output",
    "TableStream",
    "json_fallback",
    "listing_count",
    "note",
    "plain_table",
    "printable",
    "progress",
    "streams_kept",
    "streams_watched",
    "when",
]

#: seconds between two plain progress lines (stderr not a terminal): besides the first and last
PLAIN_PROGRESS_EVERY = 2.0


def printable(text: str) -> str:
    """``text`` with every character that ``repr`` would escape (``str.isprintable`` is false)
    escaped as ``repr`` escapes it (``\\x1b``, ``\\u202e``, ``\\u200b``); newlines are kept.

    What a terminal takes for a command rather than text: C0 controls (ESC starts sequences
    that set the title, clear the screen or, OSC 52, write the clipboard), DEL, C1 controls
    (U+009B is an 8-bit CSI), the bidi embeddings, overrides and isolates (which reorder what
    is shown: "Trojan Source"); and what a terminal shows as nothing, or as another character:
    zero-width and other format characters, invisible tag characters, line and paragraph
    separators, spaces other than ' ' (an id ``e\\u200bf`` would show as the id ``ef``). Ids,
    idempotency keys, call summaries (the repr a caller's object chose) and class names come
    from storage, written by anyone who can write it.
    """
    if text.isprintable():
        return text
    # (line by line: a long text, a state shown, has its printable lines checked in C)
    return "\n".join(
        line if line.isprintable() else "".join(c if c.isprintable() else _escaped(c) for c in line)
        for line in text.split("\n")
    )


def _escaped(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass
class Output:
    """Where results go: rich on a terminal, plain text when piped, JSON on request."""

    json: bool
    rich: bool
    #: the real stdout (under --json, ``sys.stdout`` is stderr while the command runs)
    stream: IO[str] = field(default_factory=lambda: sys.stdout)

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Output:
        out: Output | None = getattr(args, "output", None)
        if out is not None:
            return out
        as_json = bool(getattr(args, "json", False))
        return cls(json=as_json, rich=not as_json and sys.stdout.isatty())

    def console(self) -> Any:
        from rich.console import Console

        return Console(highlight=False, file=self.stream)

    def print(self, text: str) -> None:
        self.stream.write(printable(text) + "\n")

    def emit_json(self, value: Any) -> None:
        self.stream.write(self.json_text(_finite(value), indent=2, default=json_fallback) + "\n")
        self.stream.flush()

    def json_text(self, value: Any, **dumps: Any) -> str:
        """``json.dumps(value)``, non-ASCII as itself when the stream can encode it, else escaped.

        A str may hold what its encoding cannot write: a lone surrogate (``bytes.decode(...,
        "surrogateescape")``), or any non-Latin text on a Latin-1 terminal. Written as is, it
        fails (UnicodeEncodeError) or writes bytes that are not UTF-8 (not JSON); as
        ``\\udce9`` escapes it is valid JSON that every parser reads. So is a control or bidi
        character JSON allows raw (C1, U+202E): a terminal would obey it (see ``printable``).
        """
        text = json.dumps(value, ensure_ascii=False, **dumps)
        if printable(text) != text:  # a C1 control or a bidi override, which JSON allows raw
            return json.dumps(value, ensure_ascii=True, **dumps)
        try:
            text.encode(getattr(self.stream, "encoding", None) or "utf-8")
        except (UnicodeEncodeError, LookupError):
            return json.dumps(value, ensure_ascii=True, **dumps)
        return text

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if self.rich:
            from rich import box
            from rich.table import Table
            from rich.text import Text

            # Text, not str: rich reads "[bold]" in a str as markup (an id or argument holding
            # brackets would be shown altered, and "[/]" fails with MarkupError)
            table = Table(
                title=None if title is None else Text(printable(title), style="table.title"),
                box=box.ROUNDED,
                header_style="bold cyan",
                title_justify="left",
            )
            for name in columns:
                table.add_column(Text(name), style=_RICH_STYLES.get(name), overflow="fold")
            for row in rows:
                table.add_row(*(Text(printable(cell)) for cell in row))
            self.console().print(table)
            return
        if title:
            self.print(title)
        self.print(plain_table(columns, [[printable(cell) for cell in row] for row in rows]))

    def table_stream(self, columns: Sequence[str]) -> TableStream:
        """A table printed a page at a time (``vactor ls`` of a bucket of any size)."""
        return TableStream(self, columns)

    @contextlib.contextmanager
    def rows_as_done(
        self,
        columns: Sequence[str],
        cells: Callable[[Any], Sequence[str]],
        to_json: Callable[[Any], Any],
        *,
        held: bool,
        work_goes_on: bool = False,
    ) -> Iterator[Callable[[Sequence[Any]], None]]:
        """A function printing results as they are done: rows of one table (:meth:`table_stream`,
        ``cells`` of each) or, under ``--json``, elements of the one array (:meth:`json_array`,
        ``to_json`` of each; unterminated if the block raises, as ``ls``'s).

        ``held``: the rows wait for the end of the block (a progress bar drawn on the same
        terminal would be written into); then also when it raises, so that what was done is
        shown above the error.

        ``work_goes_on``: the results are of work the command was asked to do, not of a reading
        (:meth:`reader_may_leave`)."""
        with (
            self.reader_may_leave() if work_goes_on else contextlib.nullcontext(),
            self._rows_as_done(columns, cells, to_json, held=held) as show,
        ):
            yield show

    @contextlib.contextmanager
    def reader_may_leave(self) -> Iterator[None]:
        """For the block, what is printed is of work the command was asked to do (``compact
        --all``, ``events drain``): when its reader leaves (``| head``), the rest goes nowhere and
        the work goes on, where a listing stops (its ``BrokenPipeError`` reaches ``main``)."""
        found = self.stream
        self.stream = _ReaderMayLeave(found)  # type: ignore[assignment]  # (write, flush; the rest its own)
        try:
            yield
        finally:
            self.stream = found

    @contextlib.contextmanager
    def _rows_as_done(
        self,
        columns: Sequence[str],
        cells: Callable[[Any], Sequence[str]],
        to_json: Callable[[Any], Any],
        *,
        held: bool,
    ) -> Iterator[Callable[[Sequence[Any]], None]]:
        if self.json:
            with self.json_array() as array:

                def add_elements(results: Sequence[Any]) -> None:
                    for result in results:
                        array.add(to_json(result))
                    array.flush()

                yield add_elements
            return
        table = self.table_stream(columns)
        if not held:
            yield lambda results: table.page([cells(result) for result in results])
            return
        waiting: list[Sequence[str]] = []
        try:
            yield lambda results: waiting.extend(cells(result) for result in results)
        finally:
            table.page(waiting)

    @contextlib.contextmanager
    def json_array(self) -> Iterator[JsonArray]:
        """A JSON array written an element at a time, closed (``]``) when the block ends. Not
        when it raises: a listing that failed half-way leaves an unterminated array, which no
        JSON parser takes for a whole list (before the first element, nothing, as before)."""
        array = JsonArray(self)
        yield array
        array.close()

    @contextlib.contextmanager
    def stdout_for_json(self) -> Iterator[None]:
        """Under ``--json``, send everything else printed to stdout (a method's ``print``) to stderr."""
        if not self.json:
            yield
            return
        with contextlib.redirect_stdout(sys.stderr):
            yield


class _ReaderMayLeave:
    """A stream whose reader may leave (``| head``): from the first write it refuses
    (``BrokenPipeError``) on, what is written goes nowhere, and nothing fails."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.left = False

    def write(self, text: str) -> int:
        if not self.left:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.left = True
        return len(text)

    def flush(self) -> None:
        if not self.left:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.left = True

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, ...: the stream's
        return getattr(self._stream, name)


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart; multi-line cells continue on indented lines."""
    split_rows = [[cell.split("\n") for cell in row] for row in rows]
    widths = _widths([shown_width(c) for c in columns], split_rows)
    return "\n".join(_aligned(columns, split_rows, widths, header=True))


def _widths(
    widths: list[int], split_rows: Sequence[Sequence[Sequence[str]]], *, last: bool = False
) -> list[int]:
    """``widths`` grown to fit every column of ``split_rows`` but the last (never padded in
    plain text; ``last``: that one too, for a rich table's columns of fixed widths)."""
    widths = list(widths)
    for row in split_rows:
        for i, lines in enumerate(row if last else row[:-1]):
            widths[i] = max(widths[i], *(shown_width(line) for line in lines))
    return widths


def shown_width(text: str) -> int:
    """The columns a terminal gives ``text``: two for a CJK character or an emoji, none for a
    combining accent (``len`` counts one for each, and columns padded by it go out of line)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _padded(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns as a terminal shows them."""
    return text + " " * (width - shown_width(text))


def _aligned(
    columns: Sequence[str],
    split_rows: Sequence[Sequence[Sequence[str]]],
    widths: Sequence[int],
    *,
    header: bool,
) -> list[str]:
    out = ["  ".join(_padded(c, w) for c, w in zip(columns, widths, strict=True)).rstrip()] if header else []
    for row in split_rows:
        height = max(len(lines) for lines in row)
        for n in range(height):
            cells = [lines[n] if n < len(lines) else "" for lines in row]
            out.append("  ".join(_padded(c, w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return out


class TableStream:
    """A table printed a page of rows at a time, as they come (:meth:`Output.table_stream`).

    Piped: the header once, then each page's rows aligned as :func:`plain_table` aligns them;
    a column only widens (to fit a later page's longer id), so every row before stays aligned
    with the header. On a terminal: one rich table whose pages follow on, its header once and
    its columns as wide as the widest cell so far."""

    def __init__(self, out: Output, columns: Sequence[str]) -> None:
        self.out = out
        self.columns = tuple(columns)
        self.widths = [shown_width(c) for c in columns]
        self.rows = 0

    def page(self, rows: Sequence[Sequence[str]]) -> None:
        """Print ``rows`` (one page) now, and flush them to the reader."""
        if not rows:
            return
        cells = [[printable(cell) for cell in row] for row in rows]
        split_rows = [[cell.split("\n") for cell in row] for row in cells]
        self.widths = _widths(self.widths, split_rows, last=self.out.rich)
        if self.out.rich:
            self._rich_page(cells)
        else:
            lines = _aligned(self.columns, split_rows, self.widths, header=self.rows == 0)
            self.out.stream.write("\n".join(lines) + "\n")
        self.rows += len(rows)
        self.out.stream.flush()

    def _rich_page(self, cells: Sequence[Sequence[str]]) -> None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(
            box=box.SIMPLE_HEAD,
            show_header=self.rows == 0,
            show_edge=False,
            header_style="bold cyan",
            pad_edge=False,
        )
        console = self.out.console()
        # (a column and the next are 3 apart: padding, divider, padding)
        room = console.width - 3 * (len(self.columns) - 1)
        for name, width in zip(self.columns, _fitted(self.widths, room), strict=True):
            table.add_column(Text(name), style=_RICH_STYLES.get(name), overflow="fold", width=width)
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))  # Text: brackets are not markup
        console.print(table)


def _fitted(widths: Sequence[int], room: int) -> list[int]:
    """``widths`` with the widest shrunk, a column at a time, until they fit in ``room`` columns.

    They are the columns' minimum widths, which rich honours first: a minimum wider than the
    terminal (an id longer than it is wide) left room for no other column, and rich dropped
    them all. Shrunk, a cell longer than its column wraps in it (``overflow="fold"``)."""
    fitted = list(widths)
    while sum(fitted) > room and max(fitted) > 1:
        fitted[fitted.index(max(fitted))] -= 1
    return fitted


#: the style of a rich table's column, by its name
_RICH_STYLES = {"STEP": "bold magenta", "ACTOR": "bold", "WRITER": "dim", "TIME": "green"}


class JsonArray:
    """A JSON array written an element at a time (:meth:`Output.json_array`): the text
    :meth:`Output.emit_json` writes for the whole list, element by element (``[]`` for none)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.count = 0

    def add(self, value: Any) -> None:
        text = self.out.json_text(_finite(value), indent=2, default=json_fallback)
        self.out.stream.write(("[\n" if self.count == 0 else ",\n") + textwrap.indent(text, "  "))
        self.count += 1

    def flush(self) -> None:
        self.out.stream.flush()

    def close(self) -> None:
        self.out.stream.write("\n]\n" if self.count else "[]\n")
        self.out.stream.flush()


def json_fallback(value: Any) -> Any:
    """What ``--json`` writes for a value ``json.dumps`` cannot: a set or tuple as a list, any
    other object as its repr (bytes and non-finite floats are tagged before: :func:`_finite`)."""
    if isinstance(value, set | frozenset | tuple):
        return _finite(list(value))
    return repr(value)


#: the dict keys ``json.dumps`` accepts (it writes them as strings)
_JSON_KEYS = (str, int, float, bool, type(None))

#: how ``--json`` writes a float JSON has no number for: a string ``float()`` reads back
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _finite(value: Any) -> Any:
    """``value`` made JSON without passing one kind of value for another (docs/cli.md, Output):
    bytes (and bytearray, memoryview) become ``{"bytes_base64": ...}`` (as text they read as a
    str); a NaN or infinite float ``{"float": "NaN" | "Infinity" | "-Infinity"}``
    (``json.dumps`` would write ``NaN``, which is not JSON: ``jq`` and most parsers refuse the
    document; as a string it reads as one). Dict keys that JSON cannot hold become their repr."""
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": _NON_FINITE.get(value, "NaN")}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes_base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        # a key JSON cannot hold (a tuple, a frozenset) as its repr: json.dumps raises TypeError
        return {
            key if isinstance(key, _JSON_KEYS) else repr(key): _finite(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def note(text: str) -> None:
    """Print one line on stderr (a progress line); if its reader left, go on without it.

    ``vactor compact --all 2>&1 | head -1`` or a ``less`` quit early: the work is not
    stopped half-done by a BrokenPipeError (which ``main`` takes for ``| head`` on stdout
    and exits 0). stderr becomes ``/dev/null``, so that nothing fails again, until ``main``
    returns (:func:`streams_kept` gives the program its own stream back).
    """
    try:
        print(printable(text), file=sys.stderr, flush=True)
    except BrokenPipeError:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the rest of the process's stderr


@contextlib.contextmanager
def streams_kept() -> Iterator[None]:
    """Give ``sys.stdout`` and ``sys.stderr`` back as they were when the block ends.

    A command whose reader left (``vactor ls | head``) points the stream it wrote at
    ``/dev/null`` (``main``'s BrokenPipeError, :func:`note`), so that nothing fails again. A
    program that called ``main()`` gets its own streams back after. (A flush that failed left
    nothing in the buffer: the console script's flush at exit finds nothing to write.)
    """
    saved = {"stdout": sys.stdout, "stderr": sys.stderr}
    try:
        yield
    finally:
        for name, stream in saved.items():
            current = getattr(sys, name)
            if current is stream:
                continue
            if getattr(current, "name", None) == os.devnull:
                with contextlib.suppress(Exception):
                    current.close()
            setattr(sys, name, stream)


class _Watched:
    """``sys.stdout`` or ``sys.stderr`` while a command runs: the stream itself, which notes each
    write it refused because its reader left (``BrokenPipeError``)."""

    def __init__(self, stream: IO[str], refused: list[BrokenPipeError]) -> None:
        self._stream = stream
        self._refused = refused

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError as exc:
            self._refused.append(exc)
            raise

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError as exc:
            self._refused.append(exc)
            raise

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def streams_watched() -> Iterator[list[BrokenPipeError]]:
    """Run a command with ``sys.stdout`` and ``sys.stderr`` noting the writes they refuse, and
    yield that list: a ``BrokenPipeError`` reaching ``main`` is the reader of the command's own
    output that left (``| head``) only if one of them refused a write; any other (a socket's, a
    method's) is an error like another. The streams are given back by :func:`streams_kept`."""
    refused: list[BrokenPipeError] = []
    sys.stdout = _Watched(sys.stdout, refused)
    sys.stderr = _Watched(sys.stderr, refused)
    yield refused


def when(timestamp: float, *, one_field: bool = False) -> str:
    """A step's time: ``2026-12-03 21:25:49 UTC``; ``one_field``: ``2026-12-03T21:25:49Z``, for
    a column of piped output that others follow (``awk`` splits on spaces)."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if one_field else "%Y-%m-%d %H:%M:%S UTC")


@contextlib.contextmanager
def listing_count(
    label: str, *, enabled: bool, plain: bool = False, every: float | None = None
) -> Iterator[Callable[[], None]]:
    """While the actors are listed before long work (``compact --all``: thousands of them, seconds
    or minutes): ``label`` and how many so far, on stderr when it is a terminal (cleared when the
    block ends); else, with ``plain``, a line ``LABEL N so far`` on stderr at most each ``every``
    seconds (default :data:`PLAIN_PROGRESS_EVERY`; none for a listing shorter than that: a cron
    job's log of a small bucket is not told of it); nothing otherwise. The function yielded
    counts one; one thread at a time may call it."""
    if not enabled:
        if not plain:
            yield lambda: None
            return
        interval = PLAIN_PROGRESS_EVERY if every is None else every
        count = 0
        said = time.monotonic()

        def found_plain() -> None:
            nonlocal count, said
            count += 1
            now = time.monotonic()
            if now - said >= interval:
                said = now
                note(f"{label} {count} so far")

        yield found_plain
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn(label, markup=False),  # (a store's URL: not rich markup)
        TextColumn("{task.completed} so far"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda: bar.advance(task)


class Advance:
    """What :func:`progress` yields: ``advance(item)`` counts one item done (``item`` names it);
    ``advance.many(count, item)`` counts ``count`` of them (``compact ID``: a batch of steps
    deleted); ``advance.grow(count)`` adds ``count`` items to the total (``timers tick`` lists
    the index a slice at a time: the total grows as it is listed); ``advance.phase(label,
    total)`` starts counting afresh, under ``label``, of ``total`` items (``None``: not known;
    ``compact ID`` lists and reads old steps before it deletes them)."""

    def __init__(
        self,
        done: Callable[[int, str], None],
        grown: Callable[[int], None],
        phase: Callable[[str, int | None], None],
    ) -> None:
        self.many = done
        self.grow = grown
        self.phase = phase

    def __call__(self, item: str) -> None:
        self.many(1, item)


@contextlib.contextmanager
def progress(total: int, label: str, *, enabled: bool, every: float | None = None) -> Iterator[Advance]:
    """A rich progress bar on stderr (when it is a terminal), else a line ``LABEL DONE/TOTAL
    ITEM`` for the first items done, the last, and between them at most one each ``every``
    seconds (default :data:`PLAIN_PROGRESS_EVERY`: a cron job's log of 10,000 actors holds a few
    lines a minute, not 10,000). The bar is shown only while its total is above 0: a total
    that is only known as the work goes (``timers tick``, ``compact ID``) and stays 0 (nothing
    due, nothing to delete) leaves no "0/0" bar on the terminal. A phase of unknown total shows
    ``N/?`` on the bar; piped, a line ``LABEL N so far ITEM`` at most each ``every`` seconds, none
    before the first interval has passed (as :func:`listing_count`)."""
    interval = PLAIN_PROGRESS_EVERY if every is None else every
    if enabled:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[item]}", markup=False),  # an actor id, not rich markup
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(label, total=total, item="", visible=total > 0)
            grown = total

            def advance(count: int, item: str) -> None:
                bar.update(task, advance=count, item=printable(item))

            def grow(count: int) -> None:
                nonlocal grown
                grown += count
                bar.update(task, total=grown, visible=grown > 0)

            def phase(label: str, total: int | None) -> None:
                nonlocal grown
                grown = total or 0
                bar.update(task, description=label, completed=0, total=total, visible=total != 0)

            yield Advance(advance, grow, phase)
        return
    done = 0
    said = -math.inf
    counting = False  # a phase of unknown total

    def advance_plain(count: int, item: str) -> None:
        nonlocal done, said
        first = done == 0
        done += count
        now = time.monotonic()
        if counting:
            if now - said >= interval:
                said = now
                note(f"{label} {done} so far {item}")
        elif first or done >= total or now - said >= interval:
            said = now
            note(f"{label} {done}/{total} {item}")

    def grow_plain(count: int) -> None:
        nonlocal total
        total += count

    def phase_plain(new_label: str, new_total: int | None) -> None:
        nonlocal label, total, done, said, counting
        label, total, done, counting = new_label, new_total or 0, 0, new_total is None
        said = time.monotonic() if counting else -math.inf

    yield Advance(advance_plain, grow_plain, phase_plain)

"""``vactor bench [URL]``: how close the runtime comes to the storage floor, measured on your store.

The store is ``URL``, else ``--storage``, else ``$VACTOR_STORAGE``, with
``-o KEY=VALUE`` options, as for every ``vactor`` command. ``--json`` prints
the rows as JSON on stdout instead of the table. The harness (what each row
measures) is :mod:`vactor_cloud.cli.bench_harness`.

A new option of this command is one ``parser.add_argument`` in
:func:`add_arguments` and one field read in :func:`run`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from vactor_cloud.cli._options import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    common_parent,
    store_choice,
    url_as_storage,
)
from vactor_cloud.cli._output import Output, note, plain_table

__all__ = ["PROFILE_NAMES", "add_arguments", "add_commands", "main", "render", "run"]

#: the harness's profiles (``bench_harness.PROFILES``), named here so that building the parser stays cheap
PROFILE_NAMES = ("full", "quick", "tiny")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``vactor bench`` besides the shared ``--storage``, ``-o``, ``--json``."""
    parser.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="the store to measure (same as --storage): a path, file://, memory://, s3://bucket/p, gs://bucket/p",
    )
    parser.add_argument("--quick", action="store_true", help="smaller samples (a few minutes per store)")
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="explicit profile (overrides --quick)")
    parser.add_argument("--keep", action="store_true", help="leave the objects the benchmark wrote")
    parser.add_argument(
        "--latency",
        metavar="MS[,JITTER]",
        help="delay every request by MS milliseconds (+- JITTER), as a remote bucket would",
    )
    parser.add_argument(
        "--rows",
        metavar="GROUP,...",
        help="row groups to run (default: all but timers): warm,cold,one_actor,fan_out,processes,long,"
        "store_cpu,cpu,rss,cold_start; timers (runner processes firing timers due together; a minute or "
        "more) only when named",
    )


def add_commands(sub: Any) -> None:
    """Register ``vactor bench`` on the ``vactor`` subparsers ``sub``."""
    parser = sub.add_parser(
        "bench", parents=[common_parent()], help="measure commit and read latency on a store"
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def render(rows: list[Any], title: str, *, rich: bool) -> Any:
    """The result table: a rich table for a terminal, else plain aligned text."""
    columns = ("row", "target", "measured", "", "note")
    cells = [
        (row.name, row.target, row.value, "n/a" if row.ok is None else ("ok" if row.ok else "MISS"), row.note)
        for row in rows
    ]
    if not rich:
        return f"{title}\n{plain_table(columns, cells)}"
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title))  # Text: brackets in the URL or a note are not markup
    table.add_column("row")
    table.add_column("target", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("", justify="center")
    table.add_column("note")
    for cell in cells:
        table.add_row(*(Text(str(text)) for text in cell))
    return table


def run(args: argparse.Namespace) -> int:
    """Run the benchmark as ``vactor bench`` does; 0 when it ran (misses are reported, not errors)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vactor_cloud.cli.bench_harness import (
        OPTIONAL_ROW_GROUPS,
        PROFILES,
        ROW_GROUPS,
        Target,
        _steps_for,
        run_bench,
    )
    from vactor_cloud.testing.latency import Latency

    url_as_storage(args)
    choice = store_choice(args, must_exist=False)
    out = Output.for_args(args)
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    if args.latency is not None:
        _check_latency(args.latency)
    try:
        latency = Latency.parse(args.latency) if args.latency else None
    except ValueError as exc:
        raise CliError(f"--latency {args.latency!r}: {exc}", EXIT_USAGE) from None
    groups = tuple(g.strip() for g in (args.rows or ",".join(ROW_GROUPS)).split(",") if g.strip())
    unknown = sorted(set(groups) - set(ROW_GROUPS) - set(OPTIONAL_ROW_GROUPS))
    if unknown or not groups:
        raise CliError(
            f"--rows: unknown row groups {unknown}; choose from {','.join(ROW_GROUPS + OPTIONAL_ROW_GROUPS)}",
            EXIT_USAGE,
        )
    target = Target(choice.url, choice.options, dict(getattr(args, "storage_env", None) or {}), latency)
    total = _steps_for(profile, groups, target.multiprocess)
    interactive = sys.stderr.isatty()
    with (
        Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not interactive,
        ) as bar,
        _sigterm_interrupts(),
    ):
        task = bar.add_task("bench", total=total)
        plain = PlainProgress(total)

        def advance(label: str) -> None:
            if interactive:
                bar.update(task, advance=1, description=f"bench: {label}")
            else:
                plain.advance(label)

        # SIGINT/SIGTERM: run_bench's finally deletes the vactor-bench-* prefix (unless --keep)
        rows = run_bench(
            target,
            profile,
            progress=advance,
            keep=args.keep,
            groups=groups,
            kept=lambda url: note(f"bench: kept the objects it wrote under {url} (--keep)"),
            not_deleted=lambda url, exc: note(
                f"bench: could not delete the objects it wrote under {url}: {exc}"
            ),
        )
        if not interactive:
            plain.finish()
    if out.json:
        out.emit_json(
            {
                "url": target.url,
                "profile": profile.name,
                "latency_ms": None if latency is None else latency.seconds * 1e3,
                "rows": [
                    {"name": r.name, "target": r.target, "value": r.value, "ok": r.ok, "note": r.note}
                    for r in rows
                ],
            }
        )
        return EXIT_OK
    how = f"{profile.name} profile, " + (
        f"medians of {profile.repeats} runs" if profile.repeats != 1 else "one run a row"
    )
    if latency is not None:
        how += f", +{latency.describe()} per request"
    title = f"vactor bench {target.url} ({how})"
    table = render(rows, title, rich=out.rich)
    if out.rich:
        out.console().print(table)
    else:
        out.print(table)
    return EXIT_OK


def _check_latency(text: str) -> None:
    """``--latency MS[,JITTER]``: one or two finite numbers of milliseconds >= 0, said in milliseconds."""
    parts = text.split(",")
    if len(parts) > 2:
        raise CliError(f"--latency {text!r}: expected MS or MS,JITTER (milliseconds)", EXIT_USAGE)
    for name, part in zip(("MS", "JITTER"), parts, strict=False):
        try:
            value = float(part)
        except ValueError:
            raise CliError(
                f"--latency {text!r}: {name} must be a number of milliseconds, got {part!r}", EXIT_USAGE
            ) from None
        if not math.isfinite(value) or value < 0:
            raise CliError(
                f"--latency {text!r}: {name} must be a finite number of milliseconds >= 0, "
                f"got {part.strip()}",
                EXIT_USAGE,
            )


class PlainProgress:
    """Progress when stderr is not a terminal: one line per row group, when its last repeat is done.

    The harness reports each repeat of a row group under the group's label; a
    group is done when the label changes (or at the end).
    """

    def __init__(self, total: int, write: Callable[[str], None] | None = None) -> None:
        self.total = total
        self.done = 0
        self.current: str | None = None
        self.started = time.monotonic()
        self.write = write or note

    def advance(self, label: str) -> None:
        if self.current is not None and label != self.current:
            self._emit(self.current)
        self.current = label
        self.done += 1

    def finish(self) -> None:
        if self.current is not None:
            self._emit(self.current)
            self.current = None

    def _emit(self, label: str) -> None:
        elapsed = time.monotonic() - self.started
        self.write(f"bench: {label} done ({self.done}/{self.total} steps, {elapsed:.0f} s)")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` as SIGINT does, so that the benchmark cleans up and exits 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """``python -m vactor_cloud.cli.bench ...``: the same as ``vactor bench ...``."""
    from vactor_cloud.cli import main as vactor

    return vactor(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

"""The suite's longest tests first, one share to each pytest-xdist worker (``--dist worksteal``).

``worksteal`` hands each of the N workers one contiguous slice of the collected tests, then
moves the unstarted tail of the busiest worker's queue to a worker that runs out. A long test
anywhere in a slice may start late: a 40 s test begun in the last 40 s of the run holds the
run's end while the other workers are idle (on this project's two-core machines: the CPU half
idle). :func:`slow_first` puts the tests known to be long at the heads of the slices, spread so
that each worker's share of them takes about as long (a module's long tests kept together, the
longest modules first, each to the least loaded worker), and leaves every other test in
collection order: the short tests then fill the end of the run, where stealing evens them out.

The known durations are ``slow_tests.txt`` beside this file: lines of pytest's ``--durations``
report (``12.34s call     tests/...``), setup, call and teardown summed per test. Any line of a
``--durations=N`` report can be pasted in; a test renamed or removed since is passed over, and
a test not listed keeps its place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

#: where the known durations are kept
DURATIONS_FILE = Path(__file__).with_name("slow_tests.txt")

_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s+(?:setup|call|teardown)\s+(\S.*?)\s*$")

T = TypeVar("T")


def known_durations(text: str) -> dict[str, float]:
    """Seconds per test id from lines of a ``--durations`` report (phases summed); other lines,
    comments among them, are passed over."""
    seconds: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            seconds[match[2]] = seconds.get(match[2], 0.0) + float(match[1])
    return seconds


def worksteal_slices(count: int, workers: int) -> list[int]:
    """The sizes of the slices ``--dist worksteal`` first hands its workers, in order (each
    worker in turn takes the pending tests divided by the workers still to serve, rounded down)."""
    sizes: list[int] = []
    left = count
    for served in range(workers):
        size = left // (workers - served)
        sizes.append(size)
        left -= size
    return sizes


def slow_first(items: Sequence[T], ids: Sequence[str], seconds: Mapping[str, float], workers: int) -> list[T]:
    """``items`` (whose test ids are ``ids``) reordered for ``workers`` worksteal workers: the
    tests in ``seconds`` at the heads of the slices, each module's together and in their order
    (a module's fixtures are then made on one worker, not on each; a module with more than a
    ``2 * workers``-th part of the known seconds in pieces of at most that), the modules with
    the most seconds first, each given to the slice whose known tests add up to the least; every
    other test in its order after them. The same items, each once."""
    if workers < 2 or not items:
        return list(items)
    modules: dict[str, list[int]] = {}
    for index, test_id in enumerate(ids):
        if test_id in seconds:
            modules.setdefault(test_id.partition("::")[0], []).append(index)
    # A module with more than a 2 * workers-th part of the known seconds goes in pieces (all of a
    # run's long tests in one module, as with `-k` or one file named, would run on one worker).
    most = sum(seconds[ids[i]] for unit in modules.values() for i in unit) / (2 * workers)
    units: list[list[int]] = []
    for module in modules.values():
        units.append([])
        for index in module:
            if units[-1] and sum(seconds[ids[i]] for i in units[-1]) + seconds[ids[index]] > most:
                units.append([])
            units[-1].append(index)
    units.sort(key=lambda unit: (-sum(seconds[ids[i]] for i in unit), unit[0]))
    sizes = worksteal_slices(len(items), workers)
    heads: list[list[int]] = [[] for _ in sizes]
    loads = [0.0] * len(sizes)

    def least_loaded() -> int:
        return min((w for w in range(len(sizes)) if len(heads[w]) < sizes[w]), key=lambda w: (loads[w], w))

    for unit in units:
        worker = least_loaded()
        for index in unit:
            if len(heads[worker]) == sizes[worker]:  # (full, as a slice of a few tests soon is)
                worker = least_loaded()
            heads[worker].append(index)
            loads[worker] += seconds[ids[index]]
    placed = {index for head in heads for index in head}
    rest = iter(index for index in range(len(items)) if index not in placed)
    order: list[int] = []
    for head, size in zip(heads, sizes, strict=True):
        order += head
        order += (next(rest) for _ in range(size - len(head)))
    return [items[index] for index in order]


def load_known_durations(path: Path = DURATIONS_FILE) -> dict[str, float]:
    """:func:`known_durations` of ``path``; none when it is missing."""
    try:
        return known_durations(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}

"""``vactor`` on an actor whose state holds instances of a class from a module this process
cannot import (the program's module, not on ``PYTHONPATH`` where ``vactor`` runs).

The actor's class body is stored, so ``vactor`` loads the class; its pickled state refers to
``h202_shelf.Book``, which only the program can import. ``vactor show`` says so and what to do
(``run vactor with the actor's modules on PYTHONPATH``); the other commands that load that state
say the same.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from child_processes import run_python
from cli_harness import Result, Vactor, one_line_error

from vactor_cloud.cli import EXIT_ERROR

ROOT = Path(__file__).resolve().parent.parent

MODULE = """
import dataclasses
import vactor_cloud as vc

@dataclasses.dataclass
class Book:
    title: str

@vc.virtual_actor
class Shelf:
    def __init__(self):
        self.books = []

    def add(self, title):
        self.books.append(Book(title))
        return len(self.books)

    @vc.virtual_actor.readonly
    def count(self):
        return len(self.books)

    @vc.virtual_actor.readonly
    def needs_a_module(self):
        import h202_no_such_module  # noqa: F401 - the method's own import, which fails

    @vc.virtual_actor.on_event("book.added")
    def on_book(self, payload):
        return self.add(payload["title"])

@vc.virtual_actor
class Tally:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1

    @vc.virtual_actor.on_event("bump")
    def on_bump(self, payload):
        self.n += 1

    @vc.virtual_actor.readonly
    def books_on(self, shelf_id):
        return vc.get_actor(shelf_id).count.run()
"""

PROGRAM = """
import sys
import vactor_cloud as vc
from h202_shelf import Shelf, Tally

vc.init(sys.argv[1])
shelf = Shelf.get_or_create("shelf")          # step 0: no Book in the state yet
shelf.add.run("Dune")                         # step 1: a Book
shelf.add.options(delay=0.001).run("Emma")    # a timer, due at once
vc.send_event("shelf", "book.added", {"title": "Kim"})
for tally in ("a-tally", "z-tally"):              # listed before and after the shelf
    Tally.get_or_create(tally).bump.options(delay=0.001).run()
    vc.send_event(tally, "bump")
"""


@pytest.fixture
def shelf(store: str, tmp_path: Path) -> str:
    """The actor ``shelf``, made by a program that imports ``h202_shelf`` (this process cannot)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "h202_shelf.py").write_text(textwrap.dedent(MODULE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    run_python(["-c", PROGRAM, store], env=env, cwd=tmp_path)
    assert "h202_shelf" not in sys.modules
    return store


def _says_to_put_the_module_on_pythonpath(line: str) -> None:
    assert "No module named 'h202_shelf'" in line, line
    assert "PYTHONPATH" in line, line


@pytest.mark.parametrize(
    "argv",
    [("count",), ("add", '"Ulysses"'), ("count", "--at-step", "1")],
    ids=["read-only", "writer", "at-step"],
)
def test_call_says_the_state_needs_a_module_not_that_the_method_raised(
    shelf: str, vactor: Vactor, argv: tuple[str, ...]
) -> None:
    """Before, ``vactor call shelf count`` said ``count() raised ModuleNotFoundError: No module
    named 'h202_shelf'``: the method never ran (loading the state failed), and nothing said what
    to do. It now says what ``show`` says: the state refers to code this process cannot import,
    and to run vactor with the actor's modules on PYTHONPATH."""
    result = vactor("call", "shelf", *argv)
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "raised" not in line, line
    assert "the state of 'shelf' refers to code this process cannot import" in line, line
    _says_to_put_the_module_on_pythonpath(line)
    shown = vactor("show", "shelf")  # (what show says: the same words)
    assert shown.code == EXIT_ERROR and "cannot import" in one_line_error(shown), shown


def test_call_still_says_a_method_raised_what_it_raised(shelf: str, vactor: Vactor) -> None:
    """The method's own ``ModuleNotFoundError`` (step 0's state holds no Book: it loads) is the
    method's: ``needs_a_module() raised ...``."""
    result = vactor("call", "shelf", "needs_a_module", "--at-step", "0")
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "needs_a_module() raised ModuleNotFoundError: No module named 'h202_no_such_module'" in line


def test_call_says_a_method_raised_what_a_call_it_made_raised(shelf: str, vactor: Vactor) -> None:
    """``a-tally``'s state loads; the shelf's, which its method asks for, does not: the error
    is the method's (naming the tally's state would send the user to the wrong actor)."""
    result = vactor("call", "a-tally", "books_on", '"shelf"')
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "books_on() raised ModuleNotFoundError: No module named 'h202_shelf'" in line, line


def test_timers_tick_and_events_drain_name_the_actor_with_what_to_do_and_go_on(
    shelf: str, vactor: Vactor
) -> None:
    """Before, ``vactor events drain`` stopped at the shelf (``vactor: error:
    ModuleNotFoundError: ...``): the actors after it were not drained; and ``vactor timers
    tick`` named the shelf with ``No module named 'h202_shelf'`` alone, where a class that
    cannot be loaded here gets the PYTHONPATH advice. Both now name the shelf with the advice
    and go on past it (exit 1); the shelf's timer and event stay pending."""
    drained = vactor("events", "drain")  # (first: a tally's fired timer would apply its event)
    assert drained.code == EXIT_ERROR, drained
    line = one_line_error_of(drained)
    assert line.startswith("vactor: error: shelf: "), line
    _says_to_put_the_module_on_pythonpath(line)
    assert [row.split(":")[0] for row in drained.out.splitlines()] == ["a-tally", "z-tally"], drained
    ticked = vactor("timers", "tick")
    assert ticked.code == EXIT_ERROR, ticked
    assert "fired=2" in ticked.out, ticked
    _says_to_put_the_module_on_pythonpath(one_line_error_of(ticked))
    assert [row.split()[2] for row in vactor("timers", "ls").out.splitlines()[1:]] == ["shelf"]
    assert [row.split()[0] for row in vactor("events", "ls").out.splitlines()[1:]] == ["shelf"]


def one_line_error_of(result: Result) -> str:
    """The ``vactor: error:`` line among a command's stderr lines (progress lines aside)."""
    lines = [line for line in result.err.splitlines() if line.startswith("vactor: error: ")]
    assert len(lines) == 1, result
    return lines[0]

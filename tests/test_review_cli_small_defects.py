"""Small defects of the ``vactor`` command a user meets (review h101): an option given twice
that silently kept its last value (``events ls --actor A --actor B`` showed B only; ``vactor
-o A ls -o B`` dropped A), a ``doctor`` or ``timers tick`` that left folders in a directory
that was no store, and ``timers tick`` errors for a damaged actor without the advice the other
commands give.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR, EXIT_USAGE, build_parser
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import ActorDefinitionError


@vc.virtual_actor
class Bell:
    def __init__(self) -> None:
        self.rung = 0

    def ring(self) -> None:
        self.rung += 1


# -- an option given twice ------------------------------------------------------------------------


def test_events_ls_and_drain_take_several_actors(store: str, vactor: Vactor) -> None:
    """Before, ``vactor events ls --actor A --actor B`` listed B's events only (argparse kept the
    last ``--actor``), though ``timers repair`` takes several. Both ``ls`` and ``drain`` now
    take the option repeated, and look at every actor named."""
    vc.init(store)
    try:
        for actor_id in ("a", "b", "c"):
            Bell.get_or_create(actor_id)
            vc.send_event(actor_id, "ping", 1, event_id=f"{actor_id}-1")
    finally:
        vc.shutdown()
    result = vactor("events", "ls", "--actor", "a", "--actor", "b", "--json")
    assert result.code == 0, result
    assert sorted(row["actor"] for row in result.json()) == ["a", "b"]  # type: ignore[index,union-attr]
    drained = vactor("events", "drain", "--actor", "b", "--actor", "c", "--json")
    assert drained.code == 0, drained
    assert sorted(line["actor"] for line in drained.json()) == ["b", "c"]  # type: ignore[index,union-attr]


@pytest.mark.parametrize(
    "argv",
    [
        ("--storage", "{a}", "ls", "--storage", "{b}"),
        ("ls", "--storage", "{a}", "--storage", "{b}"),
        ("events", "--storage", "{a}", "ls", "--storage", "{b}"),
        ("ls", "--limit", "1", "--limit", "2"),
        ("history", "x", "--limit", "1", "--limit", "2"),
        ("show", "x", "--step", "1", "--step", "2"),
        ("call", "x", "ring", "--kwargs", "{{}}", "--kwargs", "{{}}"),
        ("compact", "--all", "--keep-last", "1", "--keep-last", "2"),
        ("timers", "tick", "--lease", "5", "--lease", "6"),
        ("timers", "tick", "--split", "none", "--split", "claims"),
        ("bench", "--rows", "warm", "--rows", "cold"),
        ("doctor", "{a}", "--storage", "{b}"),
        ("bench", "{a}", "--storage", "{b}"),
    ],
)
def test_an_option_given_twice_is_refused(tmp_path: Path, vactor: Vactor, argv: tuple[str, ...]) -> None:
    """Before, an option given twice silently kept its last value (``--storage A ls --storage
    B`` worked on B). Every option that takes one value now refuses a second, one usage line,
    exit 2, before anything is done."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    result = vactor(*(arg.format(a=a, b=b) for arg in argv))
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert "given twice" in line, line
    assert sorted(os.listdir(a)) == sorted(os.listdir(b)) == []


def test_storage_options_before_and_after_the_command_add_up() -> None:
    """Before, ``vactor -o A=1 ls -o B=2`` passed ``B`` only: the command's ``-o`` list replaced
    the one given before its name. ``-o`` is repeatable wherever it is given."""
    args = build_parser().parse_args(["-o", "a=1", "events", "-o", "b=2", "ls", "-o", "c=3"])
    assert args.storage_option == ["a=1", "b=2", "c=3"]
    assert build_parser().parse_args(["--json", "ls", "--json"]).json is True  # a flag twice: the same


# -- a directory that is no store ----------------------------------------------------------------


def _not_a_store(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    return folder


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "argv",
    [
        ("ls",),
        ("show", "x"),
        ("history", "x"),
        ("events", "ls"),
        ("timers", "ls"),
        ("doctor",),
        ("timers", "tick"),
        ("timers", "repair"),
        ("events", "drain"),
        ("compact", "--all", "--keep-last", "1"),
    ],
)
def test_a_directory_that_holds_no_store_is_refused_and_left_as_it_was(
    tmp_path: Path, vactor: Vactor, argv: tuple[str, ...]
) -> None:
    """Before, a directory holding files but no store (``--storage ~/documents`` for
    ``~/documents/store``) was taken for an empty store: ``ls`` said ``no actors`` (exit 0),
    ``doctor`` passed and left ``_vactor_doctor/<id>/`` and ``.vactor-locks/`` behind, and
    ``timers tick`` left ``timer-runners/``. Every command now refuses it (one line, exit 2)
    and creates nothing there."""
    folder = _not_a_store(tmp_path)
    result = vactor(*argv, "--storage", str(folder))
    assert result.code == EXIT_USAGE, result
    assert "holds no vactor_cloud store" in one_line_error(result), result
    assert _tree(folder) == ["notes.txt"]


@pytest.mark.parametrize(
    "argv", [("ls",), ("show", "x"), ("history", "x"), ("events", "ls"), ("timers", "ls"), ("doctor",)]
)
def test_a_path_that_does_not_exist_is_refused_and_not_created(
    tmp_path: Path, vactor: Vactor, argv: tuple[str, ...]
) -> None:
    """(Pin, as the review checked) A read-only command (and ``doctor``) given a path that does
    not exist says so in one line, exit 2, and creates nothing."""
    missing = tmp_path / "no" / "store"
    result = vactor(*argv, "--storage", str(missing))
    assert result.code == EXIT_USAGE, result
    assert "no such directory" in one_line_error(result), result
    assert not (tmp_path / "no").exists()


def test_doctor_leaves_an_empty_directory_and_a_store_as_it_found_them(
    tmp_path: Path, vactor: Vactor
) -> None:
    """Before, ``vactor doctor DIR`` left its scratch object's lock file in ``.vactor-locks/``
    (one more a run, in a store), and the layout marker in an empty directory, which it made a
    store. It now checks the filesystem in a scratch directory of its own, removed at the end."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = vactor("doctor", str(empty))
    assert result.code == 0, result
    assert _tree(empty) == []
    vc.init(str(tmp_path / "store"))
    try:
        Bell.get_or_create("b1").ring.run()
    finally:
        vc.shutdown()
    before = _tree(tmp_path / "store")
    assert vactor("doctor", str(tmp_path / "store")).code == 0
    assert _tree(tmp_path / "store") == before


# -- timers tick: a damaged actor's error says what to do ---------------------------------------------


def _damage_newest_step(url: str, actor_id: str) -> None:
    vc.init(url)
    try:
        runtime = vc.get_runtime()
        newest = vc.get_actor(actor_id).history(limit=1)[0].step
        path = runtime.store._path(runtime.log(actor_id).step_key(newest))  # type: ignore[attr-defined]
    finally:
        vc.shutdown()
    path.write_bytes(b"\x00" * 64)


def test_timers_tick_says_what_to_do_about_a_damaged_or_unloadable_actor(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``vactor timers tick`` named an actor whose newest step does not decode with the
    decoder's words alone (``... not a vactor_cloud object (bad magic)``), and one whose class
    cannot be loaded here without the PYTHONPATH hint; ``history``, ``show``, ``repair`` and
    the others add what to do. Tick now adds the same advice."""
    vc.init(store)
    try:
        for actor_id in ("t1", "t2"):
            Bell.get_or_create(actor_id).ring.options(delay=0.001).run()
    finally:
        vc.shutdown()
    _damage_newest_step(store, "t1")
    ensure_loaded = ActorCore.ensure_loaded

    async def t2_not_loadable(self: ActorCore) -> None:
        if self.actor_id == "t2":
            raise ActorDefinitionError("t2's class cannot be loaded here (as a missing module)")
        await ensure_loaded(self)

    monkeypatch.setattr(ActorCore, "ensure_loaded", t2_not_loadable)
    result = vactor("timers", "tick", "--debug")
    assert result.code == EXIT_ERROR, result
    said = {
        actor: next(line for line in result.err.splitlines() if line.startswith(f"vactor: {actor}"))
        for actor in ("t1", "t2")
    }
    assert "bad magic" in said["t1"] and "restore it from a backup" in said["t1"], result.err
    assert "PYTHONPATH" in said["t2"], result.err

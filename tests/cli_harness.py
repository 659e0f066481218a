"""Shared by the CLI test files: run ``vactor ARGV...`` in this process on an empty local store.

Its fixtures (``store``, ``vactor``) are registered by ``tests/conftest.py`` (``pytest_plugins``);
a test file that defines its own (``test_cli.py``'s ``store``) keeps it.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from silent_listener import SilentListener

import vactor_cloud as vc
from vactor_cloud import history
from vactor_cloud.cli import EXIT_OK, _chunks, main

__all__ = [
    "BrokenStream",
    "Result",
    "SilentListener",
    "Vactor",
    "copy_long_actor",
    "interrupt_the_second_chunk_listing",
    "made_once_per_run",
    "offline_aws_env",
    "one_line_error",
    "seed_long_actor",
    "store",
    "timers_ls_cells",
    "vactor",
]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


Vactor = Callable[..., Result]


class BrokenStream(io.StringIO):
    """A stream whose reader left (``| head -1``)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty local store, named by $VACTOR_STORAGE for the commands run in this process."""
    url = str(tmp_path / "store")
    os.makedirs(url)
    monkeypatch.setenv("VACTOR_STORAGE", url)
    try:
        yield url
    finally:
        vc.shutdown()


@pytest.fixture
def vactor(capsys: pytest.CaptureFixture[str]) -> Vactor:
    """Run ``vactor ARGV...`` in this process (stdout is not a terminal: plain output)."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            vc.shutdown()
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def timers_ls_cells(vactor: Vactor) -> list[list[str]]:
    """``vactor timers ls``, piped: the fields of each row, five (one a column, for ``awk``),
    under the headers every table has."""
    result = vactor("timers", "ls")
    assert result.code == EXIT_OK, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["DUE", "LATE", "ACTOR", "KEY", "GEN"], result.out
    cells = [row.split() for row in rows]
    assert all(len(fields) == 5 for fields in cells), result.out
    return cells


def one_line_error(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith("vactor: error: "), result.err
    return lines[0]


def offline_aws_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child ``vactor`` on S3 with test credentials and no
    AWS configuration of the machine's (no $VACTOR_STORAGE, no config files, no metadata)."""
    env = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE" and not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    env.update(extra)
    return env


def argparse_spelling(help_text: str) -> str:
    """``--help`` as Python 3.13's argparse spells an option with a short and a long name
    (``-o, --storage-option KEY=VALUE``; 3.11 and 3.12 give the short one its metavar too:
    ``-o KEY=VALUE, --storage-option KEY=VALUE``): the page shows one of them."""
    return re.sub(r"(?m)^(\s+-\w) (\S+), (--[\w-]+) \2$", r"\1, \3 \2", help_text)


def made_once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """``<dir>/name``, made by ``make(<dir>/name)`` once per test run: under pytest-xdist, by the
    first worker that asks (under a lock; the others wait, then use it), not once per worker that
    runs one of the module's tests. What is made must not change after: tests copy it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's: each worker's basetemp is a directory of it
    made, done = base / "made-once" / name, base / "made-once" / f"{name}.done"
    made.parent.mkdir(parents=True, exist_ok=True)
    with open(base / "made-once" / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # (released when the file closes)
        if not done.exists():
            shutil.rmtree(made, ignore_errors=True)  # (what a failed make left)
            make(made)
            done.touch()
    return made


def seed_long_actor(root: Path, steps: int) -> Path:
    """``root`` made a local store holding one actor, ``long`` (``actors.Tally``), of ``steps``
    steps: made once per module, copied for each test (``copy_long_actor``)."""
    from actors import Tally

    vc.init(str(root))
    try:
        tally = Tally.get_or_create("long")
        for _ in range(steps - 1):
            tally.incr.run()
    finally:
        vc.shutdown()
    return root


def copy_long_actor(seeded: Path, store: str) -> str:
    """The actor ``long`` of ``seeded`` (``seed_long_actor``), copied into the store at ``store``."""
    shutil.copytree(seeded, store, dirs_exist_ok=True)
    return "long"


def interrupt_the_second_chunk_listing(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Make the commands that list every actor ``chunk`` ids at a time (``timers repair``,
    ``compact --all``, ``events drain``) see Ctrl-C while they list their second chunk: the
    first listing completes, the second is cut short."""
    monkeypatch.setattr(_chunks, "CHUNK", chunk)
    monkeypatch.setattr(history, "_ID_PAGE", chunk)
    real = _chunks.IdChunks.next
    calls: list[int] = []

    def next_then_interrupt(self: _chunks.IdChunks) -> list[str]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(_chunks.IdChunks, "next", next_then_interrupt)

"""Review h164: a mutation sweep of the ``vactor`` command (``vactor_cloud/cli``: the option
parser, the output, the chunked listings, the interrupts, and every command but ``bench``).

Each test here holds a guarantee that a small, plausible change to the CLI broke while the
CLI tests (``tests/test_cli*.py``, ``tests/test_review_cli*.py`` and the h142-h153 CLI
modules) still passed; the mutation is named in its docstring. One is a defect found on the
way, fixed: ``-o KEY=A ... -o KEY=B`` silently kept B (an option given twice, which every
other option refuses).

TABLE
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_NOT_FOUND, EXIT_USAGE

pytestmark = pytest.mark.vactor_lanes("local")


@pytest.mark.parametrize(
    "argv",
    [
        ("-o", "endpoint_url=http://127.0.0.1:1", "ls", "-o", "endpoint_url=http://127.0.0.1:2"),
        ("ls", "-o", "anon=true", "--storage-option", "anon=false"),
    ],
)
def test_a_storage_option_key_given_twice_is_refused(
    tmp_path: Path, vactor: Vactor, argv: tuple[str, ...]
) -> None:
    """Before, ``vactor -o endpoint_url=A ls -o endpoint_url=B`` worked on B, silently, where
    ``--storage A ls --storage B`` is refused as an option given twice. The same ``-o`` KEY
    twice is now a usage error naming it, before any request."""
    store = tmp_path / "store"
    store.mkdir()
    result = vactor("--storage", str(store), *argv)
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert "given twice" in line and "-o" in line, line
    assert os.listdir(store) == []


@vc.virtual_actor
class Lantern:
    def __init__(self) -> None:
        self.lit = 0

    def light(self, times: int = 1) -> int:
        self.lit += times
        return self.lit

    @vc.virtual_actor.readonly
    def level(self) -> int:
        return self.lit


def _seed(store: str, *ids: str, calls: int = 1) -> None:
    vc.init(store)
    try:
        for actor_id in ids:
            for _ in range(calls):
                Lantern.get_or_create(actor_id).light.run()
    finally:
        vc.shutdown()


def _answer_with(monkeypatch: pytest.MonkeyPatch, typed: str) -> None:
    """``vactor delete`` asks on a terminal; the user types ``typed``."""
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: typed)


def test_an_id_with_spaces_around_it_can_be_confirmed(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor delete 'lamp '`` (an id is one word of the command line as it is, a trailing
    space included) asked for the id and compared the answer stripped: typed back exactly,
    ``'lamp '`` became ``'lamp'``, "not the id 'lamp '", and the actor could not be deleted
    but with ``--yes``. The answer is now taken as typed, or stripped."""
    _seed(store, " lamp ")
    _answer_with(monkeypatch, " lamp ")
    done = vactor("delete", " lamp ")
    assert done.code == 0, done
    assert vactor("show", " lamp ").code == EXIT_NOT_FOUND

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

from vactor_cloud.cli import EXIT_USAGE

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

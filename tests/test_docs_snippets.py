"""Every ```python block of README.md and docs/*.md runs as written, or says why not.

Each page's blocks run in order in one fresh interpreter (``tests/doc_snippet_runner.py``),
in a temporary directory, with ``$VACTOR_STORAGE`` and the embedded store there too; a
placeholder bucket (``s3://my-bucket/...``) given to ``vc.init`` opens a local directory
instead (see the runner). Results a block states (``# -> 6``, ``# AttributeError``) are
checked.

A block that cannot run as written (it needs a bucket, a cluster, a web framework, or it
is a fragment) is marked in the page, on the line before its fence::

    <!-- not run: needs an S3 bucket -->

so that skipping it is a decision a reader of the source can see. A fragment that runs
once a few names exist may instead be preceded by hidden set-up code, run first::

    <!-- setup:
    handle = Account.get_or_create("acct-42", "Ann")
    -->

An unmarked block that fails fails its page's test.

Console blocks are checked where that is cheap and local: ``vactor --help`` in cli.md,
``vactor ls`` after getting-started's blocks, and every ``$ python examples/...`` shown with
its output (tests/test_examples.py checks what the examples do; this, what the pages show).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_harness import argparse_spelling

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "doc_snippet_runner.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$")
_SETUP_START = re.compile(r"^\s*<!--\s*setup:\s*$")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the first code line, 1-based
    code: str
    not_run: str | None  # the reason, when marked
    setup: bool = False  # hidden set-up code from a <!-- setup: --> comment


def python_blocks(page: Path) -> list[Block]:
    """The page's python blocks, and the set-up comments before them, in page order."""
    name = str(page.relative_to(ROOT))
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence or not fence.group("lang"):
            i += 1
            continue
        indent = fence.group("indent")
        end = i + 1
        while end < len(lines) and not re.match(rf"^{re.escape(indent)}```[ \t]*$", lines[end]):
            end += 1
        if fence.group("lang") == "python":
            code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            before = lines[i - 1] if i > 0 else ""
            marked = _NOT_RUN.match(before)
            if before.strip() == "-->":
                start = i - 2
                while start >= 0 and not _SETUP_START.match(lines[start]):
                    start -= 1
                assert start >= 0, f"{name}:{i}: a '-->' before a python block without its '<!-- setup:'"
                setup = textwrap.dedent("\n".join(lines[start + 1 : i - 1])) + "\n"
                blocks.append(Block(name, start + 2, setup, None, setup=True))
            blocks.append(Block(name, i + 2, code, marked.group("reason") if marked else None))
        i = end + 1
    return blocks


def _pages_with_blocks() -> list[Path]:
    return [page for page in PAGES if python_blocks(page)]


def test_every_not_run_mark_gives_a_reason_and_sits_on_a_python_block() -> None:
    for page in PAGES:
        lines = page.read_text().splitlines()
        for n, line in enumerate(lines):
            if "not run" in line and "<!--" in line:
                mark = _NOT_RUN.match(line)
                assert mark, f"{page.name}:{n + 1}: write '<!-- not run: REASON -->'"
                assert mark.group("reason"), f"{page.name}:{n + 1}: give the reason"
                nxt = lines[n + 1] if n + 1 < len(lines) else ""
                assert re.match(r"^\s*```python\s*$", nxt), (
                    f"{page.name}:{n + 1}: a 'not run' mark must be the line before a ```python fence"
                )


_EXCERPT = re.compile(r"^an excerpt of (?P<file>examples/[\w./-]+\.py)\b")


def _statements(code: str) -> list[str]:
    """The lines of ``code`` as an excerpt is compared: comments, blank lines and the ``...``
    that stands for what it leaves out aside; spacing and indentation ignored."""
    kept = []
    for line in code.splitlines():
        text = " ".join(re.sub(r"\s+#.*$", "", line).split())
        if text and text != "..." and not text.startswith("#"):
            kept.append(text)
    return kept


def test_every_excerpt_of_an_example_is_made_of_its_lines() -> None:
    """A block marked ``<!-- not run: an excerpt of examples/X.py ... -->`` is not run (its
    page's test skips it; batch.md's, all excerpts, skipped whole): each of its lines must be a
    line of X (``...`` for what it leaves out). Before (h91) nothing compared them, and
    batch.md's excerpts had drifted from their examples (signatures, a LocalCluster call, a
    sum over ``client.gather``)."""
    checked = 0
    for page in PAGES:
        for block in python_blocks(page):
            excerpt = _EXCERPT.match(block.not_run or "")
            if excerpt is None:
                continue
            source = set(_statements((ROOT / excerpt["file"]).read_text()))
            missing = [line for line in _statements(block.code) if line not in source]
            assert not missing, f"{block.page}:{block.line}: not lines of {excerpt['file']}: {missing}"
            checked += 1
    assert checked >= 2, "fewer excerpts than batch.md's two: is the mark still spelt so?"


def run_page(page: Path, tmp_path: Path) -> dict[str, str]:
    """Run the page's unmarked python blocks in a fresh interpreter; return the environment it had."""
    runnable = [b for b in python_blocks(page) if b.not_run is None]
    blocks_file = tmp_path / "blocks.json"
    blocks_file.write_text(json.dumps([{"page": b.page, "line": b.line, "code": b.code} for b in runnable]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VACTOR_", "AWS_"))}
    env.update(
        VACTOR_STORAGE=str(tmp_path / "store"),
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(blocks_file), str(tmp_path / "placeholders")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "DOC BLOCKS OK" in done.stdout, done.stdout
    return env


@pytest.mark.parametrize("page", _pages_with_blocks(), ids=lambda p: p.name)
def test_the_python_blocks_of_the_page_run_as_written(page: Path, tmp_path: Path) -> None:
    if all(b.not_run is not None for b in python_blocks(page)):
        pytest.skip(f"every python block of {page.name} is marked 'not run'")
    run_page(page, tmp_path)


def test_vactor_ls_after_getting_started_prints_what_the_page_shows(tmp_path: Path) -> None:
    page = ROOT / "docs" / "getting-started.md"
    env = run_page(page, tmp_path)
    shown = re.search(r"\$ vactor ls\n(.*?)\n\$", page.read_text(), re.S)
    assert shown, "getting-started.md shows `vactor ls` and its output"
    done = subprocess.run(
        [sys.executable, "-m", "vactor_cloud", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # The same columns and rows; the time of the change is today's, not the page's.
    def shape(text: str) -> list[list[str]]:
        return [line.split()[:3] for line in text.strip().splitlines()]

    assert shape(done.stdout) == shape(shown.group(1)), done.stdout


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_fences_open_with_a_language_and_close_bare(page: Path) -> None:
    """A closing fence with text after it does not close (the rest of the page renders as code)."""
    inside: str | None = None  # the open fence's indentation
    for n, line in enumerate(page.read_text().splitlines(), 1):
        stripped = line.lstrip()
        if not stripped.startswith("```"):
            continue
        indent = line[: len(line) - len(stripped)]
        if inside is None:
            assert _FENCE.match(line), f"{page.name}:{n}: an opening fence is ``` and a language only"
            inside = indent
        else:
            assert stripped.rstrip() == "```", f"{page.name}:{n}: a closing fence is ``` alone: {line!r}"
            inside = None
    assert inside is None, f"{page.name}: a code block is never closed"


def test_vactor_help_is_what_cli_md_shows() -> None:
    shown = re.search(r"```console\n\$ vactor --help\n(.*?)```", (ROOT / "docs" / "cli.md").read_text(), re.S)
    assert shown, "docs/cli.md shows `vactor --help`"
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "vactor_cloud", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert argparse_spelling(done.stdout) == argparse_spelling(shown.group(1))


def _example_runs() -> list[tuple[str, list[str], list[str]]]:
    """(page, example arguments, lines shown) for each ``$ python examples/...`` shown with its output."""
    runs = []
    for page in PAGES:
        for block in re.findall(r"```console\n(.*?)```", page.read_text(), re.S):
            for command, output in re.findall(
                r"^\$ python (examples/\S+\.py[^\n#]*)[^\n]*\n((?:[^$\n][^\n]*\n)*)", block, re.M
            ):
                if output.strip():
                    runs.append((page.name, command.split(), output.rstrip("\n").splitlines()))
    return runs


def _masked(line: str) -> str:
    """A line without what changes from run to run: ids (8 hex digits) and numbers."""
    return re.sub(r"\d+", "N", re.sub(r"\b[0-9a-f]{8}\b", "H", line))


@pytest.mark.parametrize(
    ("page", "command", "shown"), _example_runs(), ids=lambda v: v if isinstance(v, str) else None
)
def test_an_example_prints_the_lines_its_page_shows(
    page: str, command: list[str], shown: list[str], tmp_path: Path
) -> None:
    """Line by line: the same first word (numbers and ids aside), and a `vactor` command to paste, whole.

    Only the first word: how many transfers bank_transfer's crash caught differs from run to run.
    """
    if "dask" in command[0]:
        pytest.importorskip("distributed")
    placeholders = {arg: str(tmp_path / f"store{i}") for i, arg in enumerate(command) if "://" in arg}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VACTOR_", "AWS_"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, *(placeholders.get(arg, arg) for arg in command)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    for url, path in placeholders.items():
        printed = printed.replace(path, url)
    lines = printed.rstrip("\n").splitlines()
    assert len(lines) == len(shown), (
        f"{page} shows {len(shown)} lines of {command[0]}, it printed:\n{printed}"
    )
    for got, doc in zip(lines, shown, strict=True):
        assert _masked(got).split()[:1] == _masked(doc).split()[:1], f"{page}: {doc!r}, printed {got!r}"
        if "vactor " in doc:
            assert _masked(got) == _masked(doc), f"{page}: {doc!r}, printed {got!r}"

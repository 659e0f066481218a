"""``main()`` called by a program: a reader that left (broken pipe) must not take the program's
stdout or stderr away for the rest of its life; the console script still exits quietly."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_harness import BrokenStream

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_OK, main


def _seed(url: str) -> None:
    vc.init(url)
    vc.send_event("m1", "ping", {"n": 1}, event_id="e1", create=True)
    vc.shutdown()


def test_main_gives_the_program_its_stdout_back_after_a_broken_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``main()`` pointed ``sys.stdout`` at /dev/null after ``| head`` left, for good:
    the program's every later print vanished."""
    url = str(tmp_path / "store")
    _seed(url)
    broken = BrokenStream()
    monkeypatch.setattr(sys, "stdout", broken)
    try:
        assert main(["events", "ls", "--storage", url]) == EXIT_OK
    finally:
        vc.shutdown()
    assert sys.stdout is broken


def test_main_gives_the_program_its_stderr_back_after_a_progress_reader_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``note()`` pointed ``sys.stderr`` at /dev/null for the rest of the program."""
    url = str(tmp_path / "store")
    _seed(url)
    broken = BrokenStream()
    monkeypatch.setattr(sys, "stderr", broken)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    try:
        code = main(["compact", "--all", "--keep-last", "1", "--min-age", "0", "--force", "--storage", url])
    finally:
        vc.shutdown()
    assert code == EXIT_OK
    assert sys.stderr is broken


def test_the_command_whose_reader_left_exits_0_without_a_word_at_exit(tmp_path: Path) -> None:
    """The console script (``vactor events ls | head -0``): the restored stdout, still holding
    what the pipe refused, must not make Python print 'Exception ignored ... BrokenPipeError'
    (nor exit 120) when it flushes it at exit."""
    url = str(tmp_path / "store")
    _seed(url)
    child = textwrap.dedent(
        f"""
        import os, sys
        r, w = os.pipe()
        os.close(r)          # the reader left before a byte was written
        os.dup2(w, 1)
        from vactor_cloud.cli import main
        sys.exit(main(["events", "ls", "--storage", {url!r}]))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", child], check=False, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "Exception ignored" not in done.stderr and "Broken" not in done.stderr, done.stderr

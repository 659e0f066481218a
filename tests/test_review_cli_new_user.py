"""What a new user of the ``vactor`` command met (review h94): a library warning printed raw as
the command's runtime shut down, a ``timers repair`` that one damaged actor stopped for every
other, and a ``history`` that one damaged step emptied, with errors that did not say what to do.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path``.
"""

from __future__ import annotations

import logging

import pytest
from cli_harness import Vactor

from vactor_cloud import runtime as runtime_module


def test_a_log_record_of_the_commands_runtime_closing_is_not_printed(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/cli.md: the library's log records are not printed unless ``--debug``. The command's
    runtime was shut down after its logging was restored: a record written meanwhile (a HEAD that
    could not be read, seen by the HEAD advance run at shutdown) reached Python's last-resort
    handler, printed bare on stderr after the command's output (`actor 'x': ignoring an
    unreadable HEAD ...`), and ``--debug`` did not show it as the command's log."""
    close = runtime_module._OwnRuntime.close

    def close_with_a_record(self: runtime_module._OwnRuntime) -> None:
        logging.getLogger("vactor_cloud.log").warning("a record as the runtime closes")
        close(self)

    monkeypatch.setattr(runtime_module._OwnRuntime, "close", close_with_a_record)
    with caplog.at_level(logging.WARNING):
        quiet = vactor("ls")
    assert quiet.code == 0, quiet
    # (under pytest a record that escapes the command's handler reaches caplog's, on the root
    # logger; from the console script it is Python's last resort, which prints it on stderr)
    assert "a record as the runtime closes" not in caplog.text + quiet.err
    debug = vactor("ls", "--debug")
    assert debug.code == 0, debug
    assert "vactor: WARNING vactor_cloud.log: a record as the runtime closes" in debug.err, debug.err

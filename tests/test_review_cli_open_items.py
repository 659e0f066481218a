"""The ``vactor`` command's items a review left open (review h81): ``main()`` called by a program
(the program's runtime and calls stay its own; a broken pipe is the reader leaving only on the
command's own streams), ``history --limit 0``, and what ``--json`` makes of values JSON lacks.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
import threading
from pathlib import Path
from queue import Queue

import pytest
from cli_harness import BrokenStream, Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR, EXIT_OK, main


@vc.virtual_actor
class Meter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


#: (test_main_leaves_the_programs_runtime_running) the program's thread, asked by ``Relay.ask``
#: to call the program's actor, answers here with the result (or the exception)
_asks: Queue[str] = Queue()
_answers: Queue[object] = Queue()


@vc.virtual_actor
class Forwarder:
    """Its method calls another actor: through ``get_runtime()`` on the thread it runs on."""

    def forward(self) -> int:
        return Meter.get_or_create("forwarded").bump.run()


@vc.virtual_actor
class Odd:
    """Returns what JSON has no value for."""

    @vc.virtual_actor.readonly
    def values(self) -> dict[str, object]:
        return {
            "blob": b"\xff\x00ab",
            "buffer": bytearray(b"hi"),
            "text": "\xff\x00ab",
            "nan": math.nan,
            "floats": [math.inf, -math.inf, 0.5],
        }


@vc.virtual_actor
class Relay:
    """An actor of the command's store whose method, run by ``vactor call``, has the program's
    other thread call the program's actor meanwhile, and returns what that call gave."""

    def ask(self) -> str:
        _asks.put("bump")
        return repr(_answers.get(timeout=60))


def test_main_leaves_the_programs_runtime_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``main([... --storage B])`` in a program working on store A replaced the program's runtime
    with its own for as long as it ran (``init()``), then shut it down: a call the program's other
    thread made meanwhile went to B (``ActorNotFoundError`` for A's actor) and the program's
    runtime was closed under it. main() runs the command on a runtime of its own now: the program's
    call reaches A, and its runtime is the one it had, still running, when main() returns."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    vc.init(str(b))
    Relay.get_or_create("relay")
    vc.init(str(a))
    try:
        meter = Meter.get_or_create("meter")
        assert meter.bump.run() == 1
        programs = vc.runtime.current_runtime()

        def program_thread() -> None:
            _asks.get(timeout=60)
            try:
                _answers.put(meter.bump.run())
            except Exception as exc:
                _answers.put(exc)

        worker = threading.Thread(target=program_thread, daemon=True)
        worker.start()
        assert main(["call", "relay", "ask", "--storage", str(b)]) == 0
        worker.join(60)
        assert capsys.readouterr().out.strip() == '"2"'  # the program's call, made on A meanwhile
        assert vc.runtime.current_runtime() is programs
        assert programs is not None and not programs.closed
        assert meter.bump.run() == 3
    finally:
        vc.shutdown()


def test_a_broken_pipe_not_on_the_commands_streams_is_an_error(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() took every BrokenPipeError for its stdout's reader leaving (``| head``): one raised
    elsewhere (here by the listing, as a socket to the store would) was swallowed, exit 0 and not
    a word. Only a write refused by the command's own stdout or stderr is taken so now; this one
    is an error (exit 1, one line)."""

    def listing_fails(*args: object, **kwargs: object) -> object:
        raise BrokenPipeError(32, "Broken pipe (a socket)")

    monkeypatch.setattr("vactor_cloud.history.iter_actors", listing_fails)
    done = vactor("ls")
    assert done.code == EXIT_ERROR, done
    assert "BrokenPipeError" in one_line_error(done)


def test_a_reader_that_left_is_still_exit_0(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """(The other side of the test above, which passed before too.) ``vactor ls | head -0``:
    the command's stdout refuses the write; exit 0, and nothing said."""
    vc.init(store)
    try:
        Meter.get_or_create("meter")
    finally:
        vc.shutdown()
    monkeypatch.setattr(sys, "stdout", BrokenStream())
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stderr", errors)
    try:
        assert main(["ls"]) == EXIT_OK
    finally:
        vc.shutdown()
    assert errors.getvalue() == ""


def test_history_limit_0_prints_no_header_over_no_rows(store: str, vactor: Vactor) -> None:
    """``vactor history meter --limit 0`` printed the table's header over no rows on stdout, where
    ``ls`` on an empty store prints nothing there and says so on stderr. Now the same: stdout
    empty (``--json``: ``[]``), one line on stderr saying why no step is shown."""
    vc.init(store)
    try:
        Meter.get_or_create("meter").bump.run()
    finally:
        vc.shutdown()
    done = vactor("history", "meter", "--limit", "0")
    assert done.code == EXIT_OK, done
    assert done.out == "", done.out
    assert done.err.count("\n") == 1 and "--limit 0" in done.err, done.err
    assert vactor("history", "meter", "--limit", "0", "--json").json() == []
    assert vactor("history", "nobody", "--limit", "0").code == 3  # (as without --limit)


def _refuse(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


def test_call_json_keeps_bytes_and_non_finite_floats_apart_from_text(store: str, vactor: Vactor) -> None:
    """``vactor call --json`` wrote bytes as their text (``b"\\xff\\x00ab"`` and the str
    ``"\\\\xff\\x00ab"`` both came out as text) and NaN as the string ``"nan"``: a reader could
    not tell them from strings. Now bytes are ``{"bytes_base64": ...}`` and a NaN or infinite
    float ``{"float": "NaN" | "Infinity" | "-Infinity"}`` (what ``float()`` reads back); the
    document stays JSON (no bare NaN). Without --json the result is its repr (not JSON)."""
    vc.init(store)
    try:
        Odd.get_or_create("odd")
    finally:
        vc.shutdown()
    done = vactor("call", "odd", "values", "--json")
    assert done.code == EXIT_OK, done
    assert json.loads(done.out, parse_constant=_refuse) == {
        "result": {
            "blob": {"bytes_base64": base64.b64encode(b"\xff\x00ab").decode()},
            "buffer": {"bytes_base64": base64.b64encode(b"hi").decode()},
            "text": "\xff\x00ab",
            "nan": {"float": "NaN"},
            "floats": [{"float": "Infinity"}, {"float": "-Infinity"}, 0.5],
        }
    }
    plain = vactor("call", "odd", "values")
    assert plain.code == EXIT_OK, plain
    assert "'nan': nan" in plain.out and "b'\\xff\\x00ab'" in plain.out, plain.out


def test_own_runtime_reaches_the_threads_vactor_starts_for_it(tmp_path: Path) -> None:
    """Under ``own_runtime()`` (main()'s), a ``run_async`` call runs on the runtime's pool: the
    method body there, calling another actor, must find the command's runtime, not the
    program's (without ``carry_runtime`` it made the actor in the program's store A)."""
    from vactor_cloud.runtime import own_runtime

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    vc.init(str(a))
    try:
        with own_runtime():
            vc.init(str(b))
            assert Forwarder.get_or_create("f").forward.run_async().result(timeout=60) == 1
            assert vc.get_actor("forwarded").history()[0].step >= 0  # in B
        with pytest.raises(vc.ActorNotFoundError):
            vc.get_actor("forwarded")  # not in A
    finally:
        vc.shutdown()

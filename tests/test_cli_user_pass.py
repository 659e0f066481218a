"""A new user's pass over the `vactor` command (review h75): what it printed, and what it left behind.

Each test failed before the fix its docstring names. The commands run in this process
(``vactor_cloud.cli.main``) on a local store in ``tmp_path``; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Vactor

import vactor_cloud as vc


@vc.virtual_actor
class Lamp:
    def __init__(self) -> None:
        self.on = False
        self.level = 0

    def switch(self) -> None:
        self.on = not self.on

    def dim(self, level: int, *, fade: float = 0.0, label: str = "") -> int:
        self.level = level
        return level

    def many(self, *values: Any, **named: Any) -> int:
        return len(values) + len(named)


def _seed(store: str) -> None:
    vc.init(store)
    try:
        Lamp.get_or_create("lamp").switch.run()
    finally:
        vc.shutdown()


def test_call_of_a_method_returning_none_prints_nothing_and_json_stays_parseable(
    store: str, vactor: Vactor
) -> None:
    """``vactor call lamp switch`` printed ``null`` (the JSON of None) on stdout, which a user
    reads as a value; like the Python REPL it prints nothing (exit 0). ``--json`` keeps
    ``{"result": null}``, and a method returning a value still prints it."""
    _seed(store)
    done = vactor("call", "lamp", "switch")
    assert done.code == 0, done.err
    assert done.out == "", done.out
    assert vactor("call", "lamp", "switch", "--json").json() == {"result": None}
    assert vactor("call", "lamp", "dim", "3").out == "3\n"


def test_history_shows_a_scheduled_timers_arguments_as_other_calls_show_theirs(
    store: str, vactor: Vactor
) -> None:
    """``timer scheduled: dim()`` hid the arguments the step records (``args=(5,), kwargs={...}``);
    they are shown as a call's are: ``dim(5, fade=0.5, label='hall')``."""
    vc.init(store)
    try:
        lamp = Lamp.get_or_create("lamp")
        lamp.dim.options(at=4102444800.0, timer_key="evening").run(5, fade=0.5, label="hall")
        lamp.dim.options(at=4102444801.0, timer_key="night").run(1)
        lamp.switch.options(at=4102444802.0, timer_key="off").run()
        lamp.dim.run(7, label="now")
    finally:
        vc.shutdown()
    lines = vactor("history", "lamp").out.splitlines()
    assert "dim(7, label='now') -> 7" in lines[1], lines
    assert "timer scheduled: switch() key='off' due " in lines[2], lines
    assert "timer scheduled: dim(1) key='night' due " in lines[3], lines
    assert "timer scheduled: dim(5, fade=0.5, label='hall') key='evening' due " in lines[4], lines
    entries: Any = vactor("history", "lamp", "--json").json()
    meanings = [e["calls"][0].get("meaning") for e in entries]
    assert meanings[3].startswith("timer scheduled: dim(5, fade=0.5, label='hall') key='evening'")


def test_a_scheduled_call_whose_summary_was_cut_says_its_arguments_are_not_all_shown() -> None:
    """A summary cut at 200 characters has lost the end of the arguments: ``dim(…)``, not ``dim()``."""
    from vactor_cloud.log import CallRecord
    from vactor_cloud.timers import SCHEDULE, describe_call

    cut = CallRecord(SCHEDULE, "c", True, 0.0, "'dim', args=(" + "1, " * 80, "'k'")
    assert describe_call(cut) == "timer scheduled: dim(…) key='k'"
    none = CallRecord(
        SCHEDULE, "c", True, 0.0, "'dim', args=(), kwargs={}, at=1.0, key=None, every=None", "'k'"
    )
    assert str(describe_call(none)).startswith("timer scheduled: dim() key='k' due ")


def test_timers_run_called_in_a_process_restores_its_signal_handlers(store: str, vactor: Vactor) -> None:
    """``main(["timers", "run"])`` set SIGINT and SIGTERM to its own stop handlers and left them:
    in a user's script (or a test) Ctrl-C afterwards set a dead Event instead of interrupting.
    The handlers found are restored when it returns."""
    _seed(store)

    def mine(signum: int, frame: Any) -> None:  # pragma: no cover - never delivered
        raise AssertionError("the script's own handler")

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, mine)
    stopper_done = threading.Event()

    def stop_when_running() -> None:
        # wait (bounded) until the runner's handler replaced ours, then stop it as a user would
        try:
            for _ in range(6000):
                if signal.getsignal(signal.SIGTERM) is not mine:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                time.sleep(0.01)
        finally:
            stopper_done.set()

    stopper = threading.Thread(target=stop_when_running, daemon=True)
    stopper.start()
    try:
        done = vactor("timers", "run", "--poll", "0.05", "--split", "none")
        stopper_done.wait(70)
        assert done.code == 0, done.err
        assert "listed=" in done.out, done.out
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize(
    ("key", "code", "error"),
    [
        (KeyboardInterrupt, 130, "vactor: error: interrupted: nothing deleted"),
        (EOFError, 1, "vactor: error: not deleted: no answer"),
    ],
    ids=["ctrl-c", "ctrl-d"],
)
def test_ctrl_c_or_d_at_the_delete_question_says_nothing_was_deleted_on_a_line_of_its_own(
    store: str,
    vactor: Vactor,
    monkeypatch: pytest.MonkeyPatch,
    key: type[BaseException],
    code: int,
    error: str,
) -> None:
    """Ctrl-C at ``Type the id to confirm:`` printed ``vactor: error: interrupted`` after the
    prompt, on its line, without saying whether the actor was deleted (Ctrl-D's error came on the
    prompt's line too). The prompt's line is ended, the error says nothing was deleted, and the
    actor is there."""
    _seed(store)

    def answer(prompt: str) -> str:
        print(prompt, end="")  # (as input() does, without the newline the answer would add)
        raise key

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", answer)
    done = vactor("delete", "lamp")
    assert done.code == code, done.err
    assert done.out.endswith("Type the id to confirm: \n"), done.out  # (the prompt's line ended)
    assert done.err.startswith(error), done.err
    assert vactor("show", "lamp").code == 0


def test_main_called_in_a_program_leaves_the_programs_store_chosen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main(["ls", "--storage", B])`` in a program that had chosen store A (``vc.init(A)``)
    left B chosen: the program's next call, meant for A, created a new actor in B, silently.
    The CLI's own store is shut down when main() returns and the program's choice restored."""
    from vactor_cloud.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    vc.init(str(a))
    try:
        Lamp.get_or_create("in-a").dim.run(4)
        assert main(["ls", "--storage", str(b)]) == 0
        capsys.readouterr()
        assert vc.runtime.store_in_use() == f"file://{a}"  # (what a pickled handle carries)
        assert Lamp.get_or_create("in-a").dim.run(5) == 5
        assert Lamp.get_or_create("in-a").history()[0].step == 2  # (the actor of A: its third step)
    finally:
        vc.shutdown()
    assert not any(b.iterdir()), list(b.iterdir())  # nothing was written to B


def test_a_scheduled_calls_arguments_are_cut_by_the_rules_of_a_calls(store: str, vactor: Vactor) -> None:
    """The scheduled call's arguments were recorded as one tuple and one dict (reprlib: 6
    elements, 4 keys, a level less), so ``timer scheduled: many(1, 2, 3, 4, 5, 6, ...)`` showed
    less than the same call made at once. Both read alike now."""
    values = (1, 2, 3, 4, 5, 6, 7)
    named = {"a": [1, [2, [3]]], "b": 1, "c": 2, "d": 3, "e": 4}
    vc.init(store)
    try:
        lamp = Lamp.get_or_create("lamp")
        lamp.many.options(at=4102444800.0, timer_key="k").run(*values, **named)
        lamp.many.run(*values, **named)
    finally:
        vc.shutdown()
    called, scheduled = vactor("history", "lamp").out.splitlines()[1:3]
    arguments = called.split("  ")[-1].removesuffix(" -> 12")
    assert arguments.startswith("many(1, 2, 3, 4, 5, 6, 7, a=[1, [2, [...]]], b=1"), called
    assert f"timer scheduled: {arguments} key='k'" in scheduled, (called, scheduled)


def test_a_scheduled_calls_dict_argument_is_shown_as_written() -> None:
    """A keyword argument holding a dict was shown with the dict's own keys turned into keywords:
    ``many(opts={'a': 1, b=2})``. Only the call's own keywords are (the summary is read at its
    top level, strings and brackets skipped)."""
    from vactor_cloud.log import CallRecord
    from vactor_cloud.timers import SCHEDULE, describe_call

    summary = (
        "'many', args=('x, \\'y\\': z', {'k': 1}), kwargs={'opts': {'a': 1, 'b': [2, ')']}, "
        "'n': 'it\\'s, \\'m\\': 3'}, at=1.0, key='k', every=None"
    )
    text = str(describe_call(CallRecord(SCHEDULE, "c", True, 0.0, summary, "'k'")))
    assert text.startswith(
        "timer scheduled: many('x, \\'y\\': z', {'k': 1}, opts={'a': 1, 'b': [2, ')']}, "
        "n='it\\'s, \\'m\\': 3') key='k' due "
    ), text


@pytest.mark.parametrize("argv", [[], ["--json"]], ids=["bare", "json"])
def test_vactor_with_no_command_prints_its_help_on_stderr(argv: list[str], vactor: Vactor) -> None:
    """``vactor --json`` (no command) printed the help on stdout, where --json promises one JSON
    document and nothing else; no command is a usage error (exit 2), said on stderr as the others."""
    done = vactor(*argv)
    assert done.code == 2
    assert done.out == "", done.out
    assert done.err.startswith("usage: vactor"), done.err

"""A hostile review of a new user's first hour: README, docs, examples and the `vactor` command.

Each test failed before its fix. The commands run in this process (``vactor_cloud.cli.main``,
output captured by capsys, stdout not a terminal: plain output) against a local store in
``tmp_path`` (``tests/cli_harness.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from child_processes import vactor_child
from cli_harness import Vactor, timers_ls_cells
from example_commands import check_printed_inspect_command

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK

ROOT = Path(__file__).resolve().parent.parent


@vc.virtual_actor
class Tab:
    def __init__(self) -> None:
        self.paid = 0

    @vc.virtual_actor.on_event("pay")
    def on_pay(self, amount: int) -> int:
        self.paid += amount
        return self.paid

    def remind(self) -> None:
        pass


def _with_events(url: str, *actor_ids: str) -> None:
    """Create ``actor_ids``, then send each one ``pay`` event, left pending."""
    vc.init(url)
    try:
        for actor_id in actor_ids:
            Tab.get_or_create(actor_id)
            vc.send_event(actor_id, "pay", 5, event_id=f"ev-{actor_id}")
    finally:
        vc.shutdown()


# -- vactor events drain: a long operation shows progress, and says how far an interrupt got ------


def test_events_drain_prints_its_progress_when_piped(vactor: Vactor, store: str) -> None:
    """``events drain`` without ``--actor`` walks every actor, one commit each (on S3, a fraction of
    a second an actor: an hour for ten thousand). Before, it printed nothing until it was done;
    it now shows its progress as ``compact --all`` does (a bar on a terminal, lines when piped)."""
    _with_events(store, "t1", "t2", "t3")
    result = vactor("events", "drain")
    assert result.code == EXIT_OK, result.err
    # the first actor and the last, and between them at most a line every 2 s
    said = [line.split()[:2] for line in result.err.splitlines()]
    assert said[0] == ["draining", "1/3"] and said[-1] == ["draining", "3/3"], result.err
    assert said in ([said[0], said[-1]], [said[0], ["draining", "2/3"], said[-1]]), result.err
    assert result.out.splitlines() == [f"{a}: applied 1, 0 left in the inbox" for a in ("t1", "t2", "t3")]


def test_an_interrupted_events_drain_says_how_far_it_got(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, Ctrl-C said ``interrupted`` only: not how many actors were drained, nor that the
    events not yet applied wait in their inboxes for the next drain (or any writer call)."""
    from vactor_cloud.cli import events

    _with_events(store, "t1", "t2", "t3", "t4")
    real_progress = events.progress

    @contextlib.contextmanager
    def interrupted_after_two(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[str], None]]:
        with real_progress(total, label, enabled=enabled) as advance:

            def advance_then_interrupt(item: str) -> None:
                advance(item)
                if item == "t2":
                    raise KeyboardInterrupt  # Ctrl-C as the third actor starts

            yield advance_then_interrupt

    monkeypatch.setattr(events, "progress", interrupted_after_two)
    result = vactor("events", "drain")
    assert result.code == EXIT_INTERRUPTED, result
    line = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    assert len(line) == 1 and "Traceback" not in result.err, result.err
    assert "interrupted after draining 2 of 4 actors" in line[0], line
    assert "run it again" in line[0], line
    # what was drained is said on stdout, as it went
    assert result.out.splitlines() == [f"{a}: applied 1, 0 left in the inbox" for a in ("t1", "t2")]


# -- vactor timers run: a long-running process says it is running -------------------------------


def test_timers_run_says_at_once_what_it_runs_on_and_how_to_stop_it(store: str) -> None:
    """Before, ``vactor timers run`` printed nothing until it was stopped: started by hand on a
    terminal it looked hung (which store? is it firing? how does it stop?). It now says on
    stderr, at once, the store, the poll period and that SIGTERM or Ctrl-C stops it."""
    import signal
    import threading

    proc = vactor_child(
        store, "timers", "run", "--poll", "0.2", pythonpath=[str(Path(__file__).resolve().parent.parent)]
    )
    try:
        stderr = proc.stderr
        assert stderr is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(stderr.readline()), daemon=True)
        reader.start()
        reader.join(30)  # the line comes at once; without it, the wait runs out
        said = lines[0] if lines else ""
        assert proc.poll() is None, said
        first = said.splitlines()[0] if said else ""
        assert first.startswith("vactor: firing timers"), said
        assert Path(store).name in first and "SIGTERM" in first and "Ctrl-C" in first, first
        proc.send_signal(signal.SIGTERM)
        out, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    assert proc.returncode == EXIT_OK, rest
    assert out.startswith("listed="), out


# -- vactor timers repair: it walks every actor, so it shows its progress -------------------------


def test_timers_repair_prints_its_progress_when_piped(vactor: Vactor, store: str) -> None:
    """``timers repair`` without ``--actor`` reads the newest step of every actor. Before, it
    printed nothing until the end (and listed every object under ``actors/``, steps included,
    before the first read); it now pages through the ids and shows its progress as
    ``compact --all`` does."""
    vc.init(store)
    try:
        for actor_id in ("t1", "t2", "t3"):
            Tab.get_or_create(actor_id).remind.options(delay=3600).run()
    finally:
        vc.shutdown()
    result = vactor("timers", "repair")
    assert result.code == EXIT_OK, result.err
    assert result.out.strip() == "indexed 3 pending timers"
    # the first actor and the last, and between them at most a line every 2 s
    said = [line.split()[:2] for line in result.err.splitlines()]
    assert said[0] == ["repairing", "1/3"] and said[-1] == ["repairing", "3/3"], result.err
    assert said in ([said[0], said[-1]], [said[0], ["repairing", "2/3"], said[-1]]), result.err


# -- vactor timers ls: one field per column when piped, headers as every other table's --------------


def test_timers_ls_piped_has_one_field_per_column_under_the_headers_of_other_tables(
    vactor: Vactor, store: str
) -> None:
    """docs/cli.md: piped tables are stable for ``awk``. Before, ``timers ls`` alone had lower-case
    headers, one of two words (``due (UTC)``), and a lateness of two (``in 3599.9s``): the
    header had six fields over rows of six others, and no column was ``$N`` in both."""
    vc.init(store)
    try:
        Tab.get_or_create("t1").remind.options(delay=3600).run()
        Tab.get_or_create("t2").remind.options(at=1.0).run()  # long due: late
    finally:
        vc.shutdown()
    cells = sorted(timers_ls_cells(vactor), key=lambda c: c[2])
    assert [c[2] for c in cells] == ["t1", "t2"], cells
    assert cells[0][1].startswith("-") and cells[1][1].startswith("+"), cells  # due in an hour; late
    assert cells[0][0].endswith("Z") and "T" in cells[0][0], cells


# -- the examples a page points to say how to look at what they did ---------------------------------


@pytest.mark.parametrize("example", ["session_timeout.py", "webhook_handler.py"])
def test_the_timer_and_webhook_examples_print_a_history_command_that_names_their_store(
    tmp_path: Path, example: str
) -> None:
    """bank_transfer.py and serverless_handler.py end with the ``vactor`` command that shows what
    they did; before, session_timeout.py (the timer that fired) and webhook_handler.py (the event
    applied once across three deliveries) ended without one: a new user who ran them on a
    temporary store had no way to look."""
    env = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the default store: not the one the example used
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example), str(tmp_path / "given")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_printed_inspect_command(done.stdout, env)


# -- vactor call with arguments the method does not take: say what it takes -------------------------


def test_a_call_with_arguments_the_method_does_not_take_shows_its_parameters(
    vactor: Vactor, store: str
) -> None:
    """Before: ``vactor: error: on_pay(): too many positional arguments`` (or ``missing a required
    argument: 'amount'``), nothing saying what the method takes. The error now shows its
    parameters and how to pass them."""
    _with_events(store, "t1")
    for argv in (("t1", "on_pay", "1", "2"), ("t1", "on_pay"), ("t1", "on_pay", "--kwargs", '{"n": 1}')):
        result = vactor("call", *argv)
        assert result.code == 2, result
        line = result.err.strip()
        assert line.count("\n") == 0 and "Traceback" not in line, result.err
        assert "on_pay(amount: int) -> int" in line, line
        assert "vactor call t1 on_pay ARG" in line, line


# -- vactor COMMAND --help: says what the command does and what each argument is ---------------------


@pytest.mark.parametrize(
    ("command", "summary"),
    [
        ("ls", "list actors"),
        ("show", "class, step and state of an actor"),
        ("history", "committed steps, newest first"),
        ("compact", "delete old steps"),
        ("bench", "measure commit and read latency"),
    ],
)
def test_the_help_of_a_command_says_what_it_does_and_names_every_argument(
    vactor: Vactor, command: str, summary: str
) -> None:
    """Before, ``vactor show --help`` (and ``ls``, ``history``, ``compact``, ``bench``) had no
    description, only the usage line, and its ``ID`` no text: what ``vactor --help`` says of the
    command was not said in the command's own help."""
    result = vactor(command, "--help")
    assert result.code == EXIT_OK
    _, _, rest = result.out.partition("\n\n")
    assert summary in rest.split("\n\n")[0], result.out  # the paragraph after the usage
    positional = rest.split("positional arguments:\n", 1)
    if len(positional) == 2:
        for line in positional[1].split("\n\n")[0].splitlines():
            assert len(line.split()) > 1 or line.startswith("                "), (line, result.out)


# -- vactor show on a terminal: a long id or class is wrapped, never cut ----------------------------


def test_show_on_a_narrow_terminal_wraps_a_long_id_instead_of_cutting_it(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``show`` on a terminal cut a value longer than the line with ``…``: an actor id of
    200 characters (ids may have 255 bytes) was shown as its first 67, and a writer id on a narrow
    terminal likewise; what was shown could not be copied back into a command."""
    long_id = "acct-" + "0123456789" * 19
    vc.init(store)
    try:
        Tab.get_or_create(long_id)
    finally:
        vc.shutdown()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    shown = vactor("show", long_id)
    assert shown.code == EXIT_OK, shown
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown.out)  # bold stays under NO_COLOR
    assert "…" not in plain, plain
    assert long_id in "".join(line[12:].rstrip() for line in plain.splitlines()[:4]), plain


# -- vactor compact that deleted nothing because of --min-age says so --------------------------------


def test_compact_that_min_age_held_back_says_why_and_what_to_pass(vactor: Vactor, store: str) -> None:
    """A first ``vactor compact ID --keep-last 1`` on a young actor deletes nothing (``--min-age``
    defaults to a day). Before, it printed ``DELETED 0`` under a header of three words for one
    column (``HELD BY MIN-AGE``: piped, the header had six fields over rows of four) and nothing
    saying why no step went, nor what to pass."""
    _with_events(store, "t1")
    vc.init(store)
    try:
        vc.get_actor("t1").process_events()  # steps 0 and 1
    finally:
        vc.shutdown()
    result = vactor("compact", "t1", "--keep-last", "1")
    assert result.code == EXIT_OK, result.err
    header, row = result.out.splitlines()
    assert header.split() == ["ACTOR", "DELETED", "KEPT", "HELD"], result.out
    assert row.split() == ["t1", "0", "0..1", "1"], result.out
    said = [line for line in result.err.splitlines() if not line.startswith("compacting ")]
    assert len(said) == 1, result.err
    assert "1 step younger than --min-age 86400 s" in said[0], said
    assert "--min-age" in said[0].split("kept", 1)[1], said  # what to pass


# -- piped vactor history: the time is one field, so awk's $3 is the writer -------------------------


def test_piped_history_has_the_time_in_one_field(vactor: Vactor, store: str) -> None:
    """docs/cli.md: piped output is stable for ``awk``. Before, piped ``history`` wrote its TIME
    column as three words (``2026-12-03 21:25:49 UTC``) between STEP and WRITER: under the header
    ``STEP TIME WRITER CALLS``, ``awk '{print $3}'`` printed ``21:25:49``, not the writer.
    (``events ls`` already wrote its time as one field.)"""
    _with_events(store, "t1")
    result = vactor("history", "t1")
    assert result.code == EXIT_OK, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["STEP", "TIME", "WRITER", "CALLS"], result.out
    for row in rows:
        _step, time, writer = row.split()[:3]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", time), row
        assert re.fullmatch(r"[0-9a-f]{8}", writer), row

"""A hostile review of the `vactor` command: what a new user meets, each case failing before its fix.

The commands run in this process (``vactor_cloud.cli.main(argv)``, output captured by
capsys, stdout not a terminal: plain output) against a local store in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_harness import Result, SilentListener, Vactor, offline_aws_env, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_OK, EXIT_STORAGE, EXIT_USAGE


@vc.virtual_actor
class Gauge:
    def __init__(self) -> None:
        self.n = 0
        # tuple keys: ordinary Python, not JSON
        self.by_pair: dict[tuple[int, int], str] = {(1, 2): "a"}

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def note(self, text: str) -> str:
        if not text:
            raise ValueError("2 validation errors\n  text: empty\n  text: too short")  # as pydantic's
        return text

    def pairs(self) -> dict[tuple[int, int], str]:
        self.by_pair[(3, 4)] = "b"
        return dict(self.by_pair)

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


def _seed(url: str, *actor_ids: str) -> None:
    vc.init(url)
    try:
        for actor_id in actor_ids:
            Gauge.get_or_create(actor_id).incr.run()
    finally:
        vc.shutdown()


# -- vactor call METHOD: only the actor's methods ----------------------------------------------------


@pytest.mark.parametrize("name", ["history", "compact", "ready", "actor_id", "__init__", "__class__", "_x"])
def test_call_of_a_name_that_is_no_method_of_the_actor_is_a_usage_error_listing_its_methods(
    vactor: Vactor, store: str, name: str
) -> None:
    """The handle's own attributes (``history``, ``compact``, ...) and private names are not methods
    of the actor: before, ``vactor call m1 history`` said ``AttributeError: 'function' object has
    no attribute '_info'`` (exit 1) and ``vactor call m1 _x`` said only ``_x``."""
    _seed(store, "m1")
    result = vactor("call", "m1", name)
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert f"has no method {name!r}" in line and "incr, note, pairs, value" in line, line


# -- vactor call: options anywhere, as the docs say --------------------------------------------------


def test_call_takes_its_options_between_and_after_its_arguments(vactor: Vactor, store: str) -> None:
    """Before, an option after METHOD ended ARG: ``vactor call m1 incr --json 2`` was
    ``unrecognized arguments: 2``, though docs/cli.md says ``--json`` goes anywhere."""
    _seed(store, "m1")  # n == 1
    assert vactor("call", "m1", "incr", "--json", "2").json() == {"result": 3}
    keyed = vactor("call", "m1", "incr", "--idempotency-key", "k1", "5")
    assert (keyed.code, keyed.out.strip()) == (EXIT_OK, "8"), keyed
    again = vactor("call", "m1", "incr", "--idempotency-key", "k1", "5")  # applied once
    assert (again.code, again.out.strip()) == (EXIT_OK, "8"), again
    assert vactor("call", "m1", "incr", "--json", "-3").json() == {"result": 5}
    assert vactor("call", "m1", "incr", "--json", "--", "-1").json() == {"result": 4}
    assert vactor("call", "m1", "incr", "1", "--json").json() == {"result": 5}
    assert vactor("call", "--json", "m1", "incr", "1").json() == {"result": 6}
    stray = vactor("call", "m1", "incr", "--nope", "1")
    assert stray.code == EXIT_USAGE, stray
    assert "--nope" in one_line_error(stray)


# -- --json: every state and result, as docs/cli.md promises ------------------------------------------


def test_json_renders_a_state_and_a_result_whose_dicts_have_non_string_keys(
    vactor: Vactor, store: str
) -> None:
    """Before, a tuple key made ``show --json`` and ``call --json`` fail with ``TypeError: keys must
    be str, ...`` (exit 1): for ``call``, after the call had been committed."""
    _seed(store, "m1")
    shown = vactor("show", "m1", "--json")
    assert shown.code == EXIT_OK, shown
    assert shown.json()["state"]["by_pair"] == {"(1, 2)": "a"}  # type: ignore[index]
    called = vactor("call", "m1", "pairs", "--json")
    assert called.code == EXIT_OK, called
    assert called.json() == {"result": {"(1, 2)": "a", "(3, 4)": "b"}}
    # keys JSON can hold stay as json.dumps writes them
    from vactor_cloud.cli._output import Output

    stream = io.StringIO()
    Output(json=True, rich=False, stream=stream).emit_json(
        {1: "int", None: "none", "s": {2.5: [float("nan")]}}
    )
    assert json.loads(stream.getvalue()) == {"1": "int", "null": "none", "s": {"2.5": [{"float": "NaN"}]}}


# -- Ctrl-C during vactor call: say what may have happened ------------------------------------------


def test_an_interrupted_writer_call_says_it_may_have_been_applied_and_how_to_see(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, Ctrl-C during ``vactor call`` printed ``interrupted`` only: the call could have been
    committed (its PUT sent) or not, and nothing said so."""
    from vactor_cloud.handle import ActorMethod

    _seed(store, "m1")

    def interrupted(self: object, *args: object, **kwargs: object) -> object:
        # Ctrl-C itself: a KeyboardInterrupt the method raises is its outcome, not an interrupt
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("SIGINT did not interrupt the call")

    monkeypatch.setattr(ActorMethod, "run", interrupted)
    writer = vactor("call", "m1", "incr", "2")
    assert writer.code == EXIT_INTERRUPTED, writer
    line = one_line_error(writer)
    assert "may or may not have been applied" in line and "vactor history m1" in line, line
    keyed = vactor("call", "m1", "incr", "2", "--idempotency-key", "k7")
    assert "a retry with --idempotency-key k7 applies it at most once" in one_line_error(keyed)
    reader = vactor("call", "m1", "value")
    assert reader.code == EXIT_INTERRUPTED, reader
    assert one_line_error(reader) == "vactor: error: interrupted"  # a read-only call changes nothing


# -- vactor doctor PATH: a typo is not a new store ------------------------------------------------


def test_doctor_of_a_local_directory_that_does_not_exist_is_a_usage_error_and_creates_nothing(
    vactor: Vactor, tmp_path: Path
) -> None:
    """docs/cli.md: a local directory that does not exist is a usage error, for every command.
    Before, ``vactor doctor /typo`` created the directory, checked the new empty store and said
    "every guarantee vactor_cloud needs holds" (exit 0)."""
    typo = tmp_path / "no" / "such"
    for argv in (("doctor", str(typo)), ("doctor", "--storage", f"file://{typo}")):
        result = vactor(*argv)
        assert result.code == EXIT_USAGE, (argv, result)
        assert f"no such directory; fix the path, or create it first (mkdir -p {typo})" in one_line_error(
            result
        )
        assert not (tmp_path / "no").exists()


# -- a stray argument: the hint names the command's own --help ---------------------------------------


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (("ls", "a", "b"), "vactor ls --help"),
        (("doctor", "a", "b"), "vactor doctor --help"),
        (("timers", "ls", "--actor", "x"), "vactor timers ls --help"),
        (("events", "ls", "extra"), "vactor events ls --help"),
        (("--json", "history", "m1", "--bogus"), "vactor history --help"),
        (("--bogus",), "vactor --help"),
    ],
)
def test_an_unrecognized_argument_points_at_the_help_of_its_command(
    vactor: Vactor, store: str, argv: tuple[str, ...], hint: str
) -> None:
    """Before, every unrecognized argument said ``(see vactor --help)``, the top-level help, which
    does not list the options of ``timers ls`` or ``history``."""
    result = vactor(*argv)
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert "unrecognized arguments" in line and line.endswith(f"(see {hint})"), line


# -- vactor events ls: a table like every other listing ----------------------------------------------


def test_events_ls_prints_an_aligned_table_with_a_header_when_piped(vactor: Vactor, store: str) -> None:
    """docs/cli.md: piped output is plain aligned text, header first (a table on a terminal).
    Before, ``events ls`` printed headerless tab-separated lines, on a terminal too."""
    _seed(store, "m1")
    vc.init(store)
    vc.send_event("m1", "ping", {"n": 1}, event_id="e1")
    vc.send_event("a-much-longer-actor-id", "ping", None, event_id="e2", create=True)
    vc.shutdown()
    result = vactor("events", "ls")
    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["ACTOR", "EVENT", "NAME", "SENT", "STATUS"], result.out
    assert "\t" not in result.out
    rows = sorted(lines[1:])
    assert [row.split()[:3] for row in rows] == [
        ["a-much-longer-actor-id", "e2", "ping"],
        ["m1", "e1", "ping"],
    ]
    for column in ("EVENT", "NAME", "SENT", "STATUS"):  # aligned: each column starts where its header does
        start = lines[0].index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows), (column, result.out)


# -- a reader of stderr that leaves does not stop the work --------------------------------------------


class BrokenStream(io.StringIO):
    """A stream whose reader left (``vactor ... 2>&1 | head -1``, ``| less`` quit early)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_compact_all_finishes_when_the_reader_of_its_progress_lines_leaves(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the first progress line written to a closed stderr raised BrokenPipeError, which the
    CLI takes for ``| head`` on stdout: the compaction stopped after one actor, exit 0, unsaid."""
    _seed(store, "m1", "m2", "m3")  # steps 0 and 1 each
    monkeypatch.setattr(sys, "stderr", BrokenStream())
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force", "--json")
    assert result.code == EXIT_OK
    reports = result.json()
    assert isinstance(reports, list)
    assert [(r["actor_id"], r["deleted_steps"]) for r in reports] == [("m1", 1), ("m2", 1), ("m3", 1)]


def test_bench_finishes_when_the_reader_of_its_progress_lines_leaves(
    vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", BrokenStream())
    result = vactor(
        "bench", f"memory://review-{os.getpid()}", "--profile", "tiny", "--rows", "warm,cpu", "--json"
    )
    assert result.code == EXIT_OK
    rows = result.json()["rows"]  # type: ignore[index]
    assert len(rows) >= 2, rows


# -- Ctrl-C during vactor compact --all: say how far it got ------------------------------------------


def test_an_interrupted_compact_all_says_how_far_it_got(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, Ctrl-C said ``interrupted`` only: which actors were compacted, and that the
    interrupted one may keep steps below its watermark until the next run, went unsaid."""
    from vactor_cloud.cli import compact

    _seed(store, "m1", "m2", "m3", "m4")
    real_progress = compact.progress

    @contextlib.contextmanager
    def interrupted_after_two(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[str], None]]:
        with real_progress(total, label, enabled=enabled) as advance:

            def advance_then_interrupt(item: str) -> None:
                advance(item)
                if item == "m2":
                    raise KeyboardInterrupt  # Ctrl-C as the third actor starts

            yield advance_then_interrupt

    monkeypatch.setattr(compact, "progress", interrupted_after_two)
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == EXIT_INTERRUPTED, result
    line = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    assert len(line) == 1 and "Traceback" not in result.err, result.err
    assert "interrupted after compacting 2 of 4 actors" in line[0], line
    assert "run it again to finish" in line[0], line
    assert "the actors being compacted at the time (up to 8)" in line[0], line  # 8 at once


# -- vactor doctor on a stalled endpoint: bounded as every other command ------------------------------


def test_doctor_of_a_stalled_endpoint_fails_within_the_request_timeout() -> None:
    """Every request of the runtime is bounded by ``Settings.timeout`` (10 s); ``doctor`` opened
    its store without that bound and waited for botocore's own read timeouts and retries:
    163 s against an endpoint that accepts connections and never answers, where ``vactor ls``
    took 10 s. Now its requests are bounded alike (a put, then the cleanup's delete).

    The child's ``Settings()`` has ``timeout=2`` (doctor reads it when it runs): the bound is
    the setting's, and the test waits 4 s rather than 20 for it. Without the bound, doctor
    waits out botocore's 60 s read timeouts and retries, far past the hang guard."""
    pytest.importorskip("boto3")
    env = offline_aws_env()
    listener = SilentListener()
    try:
        endpoint = f"endpoint_url=http://127.0.0.1:{listener.port}"
        done = subprocess.run(
            [sys.executable, "-c", _DOCTOR_WITH_A_SHORT_TIMEOUT, "doctor", "s3://bucket/p", "-o", endpoint],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,  # a hang guard: 2 requests of 2 s each, on a busy machine
            check=False,
        )
    finally:
        listener.close()
    result = Result(done.returncode, done.stdout, done.stderr)
    assert result.code == EXIT_STORAGE, result
    assert "got no answer within 2 s" in one_line_error(result)


#: ``python -m vactor_cloud`` whose ``Settings()`` default to ``timeout=2`` (a subclass, in the
#: module ``doctor`` imports the class from when it runs; every other module keeps the class itself)
_DOCTOR_WITH_A_SHORT_TIMEOUT = """
import dataclasses, sys
import vactor_cloud.settings

@dataclasses.dataclass(frozen=True)
class ShortTimeout(vactor_cloud.settings.Settings):
    timeout: float = 2.0

vactor_cloud.settings.Settings = ShortTimeout
from vactor_cloud.cli import main
sys.argv[0] = "vactor"
raise SystemExit(main())
"""


# -- -o SETTING=...: the error speaks of the command, not of init() -----------------------------------


def test_a_runtime_setting_given_as_a_storage_option_is_explained_in_the_commands_terms(
    vactor: Vactor, store: str
) -> None:
    """Before: ``pass init(..., settings=vactor_cloud.Settings(timeout=...))``, a Python call the
    user of ``vactor`` cannot make."""
    result = vactor("-o", "timeout=2", "ls")
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert "init(" not in line, line
    assert "-o timeout=...: 'timeout' is a setting of the runtime, not an option of the store" in line, line


# -- a terminal shows ids and arguments as they are, not as rich markup --------------------------------


def test_a_terminal_shows_brackets_in_ids_and_arguments_as_they_are(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rich reads ``[bold]`` in a str cell as markup: before, ``vactor ls`` on a terminal showed the
    actor ``g[bold]1`` as ``g1`` (an id that does not exist), ``history`` dropped ``[red]`` from an
    argument, and an argument ``'[/]'`` failed the command: ``MarkupError`` (exit 1)."""
    vc.init(store)
    gauge = Gauge.get_or_create("g[bold]1")
    gauge.note.run("[red]alert[/red]")
    gauge.note.run("[/]")
    vc.shutdown()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    listed = vactor("ls")
    assert listed.code == EXIT_OK, listed
    assert "g[bold]1" in listed.out, listed.out
    history = vactor("history", "g[bold]1")
    assert history.code == EXIT_OK, history
    assert "g[bold]1" in history.out and "note('[red]alert[/red]')" in history.out, history.out
    assert "note('[/]')" in history.out, history.out
    shown = vactor("show", "g[bold]1")
    assert shown.code == EXIT_OK, shown
    assert "g[bold]1" in shown.out, shown.out


def test_the_progress_bar_of_compact_shows_the_actor_id_as_it_is(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar's item column read the id as markup: ``p[bold]1`` was shown as ``p1``."""
    _seed(store, "p[bold]1")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == EXIT_OK, result
    assert "p[bold]1" in result.err, result.err


# -- errors are one line, a multi-line exception message included ----------------------------------


def test_a_method_error_with_a_multi_line_message_is_one_error_line(vactor: Vactor, store: str) -> None:
    """docs/cli.md: errors are one line on stderr. Before, a method's multi-line message (pydantic's
    validation errors are) printed its lines after ``vactor: error:``, each a line of its own."""
    _seed(store, "m1")
    result = vactor("call", "m1", "note", '""')
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "raised ValueError: 2 validation errors | text: empty | text: too short" in line, line


# -- a string that is not valid Unicode (a lone surrogate) --------------------------------------------


def test_a_result_holding_a_lone_surrogate_is_printed_as_json_escapes(vactor: Vactor, store: str) -> None:
    """``b"caf\\xe9".decode("utf-8", "surrogateescape")`` is an ordinary Python str that UTF-8 cannot
    encode: on a UTF-8 terminal (stdout strict) ``call --json`` and plain ``call`` failed with
    ``UnicodeEncodeError`` (exit 1), the call committed. Now the JSON escapes it (``\\udce9``)."""
    _seed(store, "m1")
    as_json = vactor("call", "m1", "note", '"caf\\udce9"', "--json")
    assert as_json.code == EXIT_OK, as_json
    assert as_json.json() == {"result": "caf\udce9"}
    assert "\\udce9" in as_json.out
    plain = vactor("call", "m1", "note", '"caf\\udce9 \u00e9t\u00e9"')
    assert plain.code == EXIT_OK, plain
    assert json.loads(plain.out) == "caf\udce9 \u00e9t\u00e9"


# -- a damaged object: exit 1 (docs/cli.md), not "storage unreachable" -------------------------------


def test_a_torn_object_is_exit_1_without_the_network_hint(vactor: Vactor, store: str) -> None:
    """docs/cli.md: 1 is "a corrupt or foreign object", 4 "storage unreachable, credentials refused,
    bucket missing". A file shorter than the local store's write token (a write torn by a crash) is a
    ``TruncatedObjectError``, also a ``StorageError``: before, exit 4 and "check --storage /
    $VACTOR_STORAGE, the credentials and the network", which would not help."""
    _seed(store, "m1")
    vc.init(store)
    try:
        runtime = vc.get_runtime()
        path = runtime.store._path(runtime.log("m1").step_key(1))  # type: ignore[attr-defined]
    finally:
        vc.shutdown()
    path.write_bytes(b"torn")
    for argv in (("show", "m1"), ("history", "m1"), ("ls",)):
        result = vactor(*argv)
        assert result.code == EXIT_ERROR, (argv, result)
        line = one_line_error(result)
        assert "shorter than" in line and "the network" not in line, line


def test_ls_lists_the_other_actors_when_one_is_damaged(vactor: Vactor, store: str) -> None:
    """Before, one damaged actor failed ``vactor ls`` for the whole bucket (nothing listed, exit 1):
    the command that would find the damaged actor could not list any."""
    _seed(store, "m1", "m2", "m3")
    vc.init(store)
    try:
        runtime = vc.get_runtime()
        path = runtime.store._path(runtime.log("m2").step_key(1))  # type: ignore[attr-defined]
    finally:
        vc.shutdown()
    path.write_bytes(b"\x00" * 64)  # not a vactor_cloud object
    result = vactor("ls")
    assert result.code == EXIT_ERROR, result
    assert [line.split()[0] for line in result.out.splitlines()] == ["ACTOR", "m1", "m3"], result.out
    line = one_line_error(result)
    assert "m2: " in line and "bad magic" in line, line
    as_json = vactor("ls", "--json")
    assert as_json.code == EXIT_ERROR, as_json
    assert [a["actor_id"] for a in as_json.json()] == ["m1", "m3"]  # type: ignore[index]


# -- history's "--limit all shows all" hint only when there is more -----------------------------------


def test_history_says_more_steps_exist_only_when_they_do(vactor: Vactor, store: str) -> None:
    """Before, after ``compact --keep-last 2``, ``history --limit 2`` said ``(newest 2; --limit all
    shows all)`` though those were all the steps left (the oldest shown was not step 0)."""
    _seed(store, "m1")
    vc.init(store)
    try:
        for _ in range(3):
            Gauge.get_or_create("m1").incr.run()  # steps 0..4
    finally:
        vc.shutdown()
    assert vactor("compact", "m1", "--keep-last", "2", "--min-age", "0", "--force").code == EXIT_OK
    left = vactor("history", "m1", "--limit", "2")
    assert left.code == EXIT_OK, left
    assert [line.split()[0] for line in left.out.splitlines()[1:]] == ["4", "3"]
    assert "--limit all" not in left.err, left.err
    more = vactor("history", "m1", "--limit", "1")
    assert [line.split()[0] for line in more.out.splitlines()[1:]] == ["4"]
    assert "(newest 1; --limit all shows all)" in more.err, more.err


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["show", "abc"],
        ["events", "ls"],
        ["events", "drain"],
        ["timers", "ls"],
        ["compact", "--all", "--keep-last", "1"],
    ],
    ids=" ".join,
)
def test_a_memory_store_that_shows_nothing_says_it_lives_in_one_process(
    vactor: Vactor, command: list[str]
) -> None:
    # `vactor --storage memory://x ls` is a process of its own: it can never see what another
    # process wrote there, and "no actors under memory://x" alone read as an empty store.
    result = vactor("--storage", f"memory://review-{os.getpid()}-empty", *command)
    assert result.code in (EXIT_OK, EXIT_NOT_FOUND), result
    assert "lives in the memory of one process" in result.err, result.err
    assert result.out == ""  # nothing on stdout, not even a header over nothing


def test_a_memory_store_of_this_process_lists_what_it_holds_without_the_hint(vactor: Vactor) -> None:
    url = f"memory://review-{os.getpid()}-full"
    vc.init(url)
    Gauge.get_or_create("g").incr.run()
    vc.shutdown()
    result = vactor("--storage", url, "ls")  # in-process (a notebook, a test): the same memory
    assert result.code == EXIT_OK and "g" in result.out and "Gauge" in result.out, result
    assert "lives in the memory" not in result.err


def test_an_empty_local_store_gets_no_memory_hint(vactor: Vactor, store: str) -> None:
    for command in (["ls"], ["timers", "ls"], ["events", "ls"]):
        result = vactor(*command)
        assert result.code == EXIT_OK and result.out == "" and result.err.startswith("no "), result
        assert "memory" not in result.err


def test_a_storage_option_that_json_made_a_number_says_how_to_pass_a_string(vactor: Vactor) -> None:
    result = vactor("--storage", "s3://bucket/prefix", "-o", "key=123", "ls")
    assert result.code == EXIT_USAGE, result
    assert "'key'" in result.err and "must be str, got int" in result.err
    assert "-o 'key=\"...\"'" in result.err
    result = vactor("--storage", "s3://bucket/prefix", "-o", "config_kwargs=5", "ls")
    assert result.code == EXIT_USAGE and "must be a mapping, got int" in result.err, result
    assert "quote a string" not in result.err


def test_an_interrupted_second_pass_of_compact_says_every_actor_was_compacted_once(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the second pass (the wait of the writers' ``fresh_window``) said "interrupted
    after compacting 3 of 3 actors; the actors being compacted at the time may keep some old
    steps": none was being compacted. It says the second pass was cut and what stays."""
    from vactor_cloud.cli import compact

    _seed(store, "m1", "m2", "m3")

    def interrupted(*_args: object, **_kwargs: object) -> list[object]:
        raise KeyboardInterrupt  # Ctrl-C during the second pass's wait

    monkeypatch.setattr(compact, "_compact_unproven_again", interrupted)
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == EXIT_INTERRUPTED, result
    line = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    assert len(line) == 1 and "Traceback" not in result.err, result.err
    assert "interrupted in the second pass, after compacting all 3 actors once" in line[0], line
    assert "being compacted at the time" not in line[0], line


def test_ls_start_after_lists_the_page_after_an_id(vactor: Vactor, store: str) -> None:
    """An operator paging through a store of thousands of actors had ``--limit`` and no way to
    ask for the next page (the library's ``list_actors(start_after=...)`` had it; the command
    refused the option). ``--start-after ID`` lists the actors after ID, in key order."""
    _seed(store, "p1", "p2", "p3", "p4", "q1")
    first = vactor("ls", "p", "--limit", "2", "--json")
    assert first.code == 0, first
    page = [a["actor_id"] for a in json.loads(first.out)]
    assert page == ["p1", "p2"], page
    after = vactor("ls", "p", "--limit", "2", "--start-after", page[-1], "--json")
    assert after.code == 0, after
    assert [a["actor_id"] for a in json.loads(after.out)] == ["p3", "p4"], after.out
    last = vactor("ls", "--start-after", "p4", "--json")
    assert [a["actor_id"] for a in json.loads(last.out)] == ["q1"], last.out
    table = vactor("ls", "--start-after", "p3")
    assert table.code == 0 and "p4" in table.out and "p3" not in table.out, table

"""Review h164: a mutation sweep of the ``vactor`` command (``vactor_cloud/cli``: the option
parser, the output, the chunked listings, the interrupts, and every command but ``bench``).

Each test here holds a guarantee that a small, plausible change to the CLI broke while the
CLI tests (``tests/test_cli*.py``, ``tests/test_review_cli*.py`` and the h142-h153 CLI
modules) still passed; the mutation is named in its docstring. Three are defects found on the
way, fixed: ``-o KEY=A ... -o KEY=B`` silently kept B (an option given twice, which every other
option refuses); ``vactor delete ' lamp '`` could not be confirmed (the answer was stripped);
``compact --all`` interrupted during its last batch said "stopping: ... then it says what it
did", then nothing, exit 0 (it now says every actor was compacted, exit 130).

The sweep (56 mutations, one at a time; "killed" names the first test that failed, "here" a
test of this module; the first 12 ran against every CLI test module named above, the others,
for time, against those of their module's commands: three of their survivors were killed by
files outside those, named below):

* ``__init__``: multi-line error not joined (killed: test_review_cli); no command exit 2 -> 1
  (test_cli's help); help on stdout (test_cli_user_pass); InvalidActorIdError exit 2 -> 1
  (survived, equivalent: every id the command line gives is refused at parse, exit 2; only a
  method's own raise reaches ``main``); ``is_class_key`` negated (here; its one failure in
  the sweep was a bench timing test under load); Ctrl-C exit 130 -> 1 (test_cli_edges); a
  broken pipe not on our streams taken for ``| head`` (test_review_cli_open_items); a
  traceback without --debug (test_cli).
* ``_options``: an option twice accepted; a directory holding no store accepted; URL and
  --storage both accepted (test_review_cli_small_defects); unrecognized args dropped, ``-o``
  not JSON-parsed, settings as ``-o`` accepted (test_review_cli); words after ``--`` given the
  dash hint (survived: here); ``--limit 0`` refused, ``--step 0`` refused (test_cli);
  ``errors_error`` ignoring its count (survived: here).
* ``_output``: ``\\xNN`` for ASCII only, C1/bidi raw in JSON (survived: here); non-JSON dict
  keys kept, a header on every page, columns shrinking back (test_review_cli); no ``[]`` for
  none (test_cli); an array closed after an error (test_review_cli_history_stream); a reader
  that left failing the work (test_review_cli_long_work); a refused write not noted
  (test_review_cli_streams); --json not redirecting prints (test_cli).
* ``_chunks``: ``listed`` not summed (h142). ``_interrupts``: a second Ctrl-C not stopping
  at once (survived: here); a program's SIGTERM handler replaced (test_cli_user_pass; here
  also while the command runs).
* ``actors``: a first keyed delete not asking, an empty answer confirming (survived: here);
  a batch slice losing actors (long_work); compact ID --all accepted (not run: no test named
  it; here); failed actors exit 0 (here; also test_review_cli_new_user, outside its module's
  files); the second pass's count alone (survived: here); the after-the-last-batch check
  (survived: the defect above); ls of a damaged actor exit 0, a method's KeyboardInterrupt
  taken for Ctrl-C (test_review_cli); ``None`` printed (test_cli_user_pass).
* ``history``: no look-ahead step, ``>=`` for ``>`` in the page cut (test_review_cli); a count
  under --json (survived: here); a damaged step 0 called compacted (survived: here).
* ``events``: names not deduplicated (survived: here); the last page of actors dropped
  (test_review_cli); a deleted ``--actor`` not exit 3 (test_delete_surfaces, outside its
  module's files); an OSError ending the drain (survived: here).
* ``timers``: ``--shard 2/2`` accepted (survived: here); a slice's other actors unrepaired
  (test_review_cli_new_user, outside its module's files); ``repair --actor`` of no actor
  exit 0 (test_cli_edges); the tick's stop event ignored (test_review_cli_tick_progress).
* ``doctor``: the scratch directory left (small_defects); the probe object left on a bucket
  (survived: here); rows mixed into --json (test_cli).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Vactor, one_line_error
from test_review_cli_new_user import _damage_newest_step, _damage_step

import vactor_cloud as vc
from vactor_cloud import history as history_module
from vactor_cloud.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_STORAGE, EXIT_USAGE
from vactor_cloud.cli import _interrupts as interrupts_cli
from vactor_cloud.cli import actors as actors_cli
from vactor_cloud.cli import compact as compact_cli
from vactor_cloud.cli import events as events_cli
from vactor_cloud.cli._output import Output, printable
from vactor_cloud.errors import NotFoundError
from vactor_cloud.keys import class_key
from vactor_cloud.storage import MemoryStore

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


def test_a_first_delete_with_an_idempotency_key_still_asks(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the retry of a delete that committed skips the question (it deletes nothing). A
    first ``vactor delete ID --idempotency-key KEY`` deletes: it asks, and without a terminal
    needs ``--yes``. (Mutation: ``retry = key is not None``, any key skipping the question:
    deleted unasked.)"""
    _seed(store, "lamp")
    refused = vactor("delete", "lamp", "--idempotency-key", "k-1")  # (stdin is not a terminal)
    assert refused.code == EXIT_USAGE, refused
    assert "--yes" in one_line_error(refused)
    _answer_with(monkeypatch, "not-lamp")
    declined = vactor("delete", "lamp", "--idempotency-key", "k-1")
    assert declined.code == EXIT_ERROR, declined
    assert "not deleted" in one_line_error(declined)
    assert vactor("show", "lamp").code == 0


@pytest.mark.parametrize("typed", ["", "   "])
def test_no_answer_at_the_question_deletes_nothing(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    """Enter alone (or spaces) at ``Type the id to confirm:`` is no answer: nothing is deleted,
    exit 1. (Mutation: an empty answer let through as a confirmation: deleted.)"""
    _seed(store, "lamp")
    _answer_with(monkeypatch, typed)
    declined = vactor("delete", "lamp")
    assert declined.code == EXIT_ERROR, declined
    assert "not deleted" in one_line_error(declined)
    assert vactor("show", "lamp").code == 0


def test_an_actor_named_twice_is_listed_and_drained_once(store: str, vactor: Vactor) -> None:
    """``vactor events ls --actor a --actor a`` (a script building its list) shows a's events
    once, and ``drain`` reports a once. (Mutation: the names not deduplicated: each event row,
    and the drain's line, twice.)"""
    vc.init(store)
    try:
        Lantern.get_or_create("a")
        vc.send_event("a", "ping", 1, event_id="a-1")
    finally:
        vc.shutdown()
    listed = vactor("events", "ls", "--actor", "a", "--actor", "a", "--json")
    assert listed.code == 0, listed
    assert [row["event_id"] for row in listed.json()] == ["a-1"]  # type: ignore[index,union-attr]
    drained = vactor("events", "drain", "--actor", "a", "--actor", "a", "--json")
    assert drained.code == 0, drained
    assert [line["actor"] for line in drained.json()] == ["a"]  # type: ignore[index,union-attr]


def test_ls_counts_every_damaged_actor_in_its_error_line(store: str, vactor: Vactor) -> None:
    """``vactor ls`` keeps only the first damaged actor's error, and counts the others: its line
    says how many could not be read, and the readable ones are listed. (Mutation: ``errors_error``
    ignoring the count it is given: "the first" alone, as if one actor were damaged.)"""
    _seed(store, "ok", "torn-1", "torn-2")
    for actor_id in ("torn-1", "torn-2"):
        _damage_newest_step(store, actor_id)
    result = vactor("ls")
    assert result.code == EXIT_ERROR, result
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["ok"], result.out
    line = one_line_error(result)
    assert "2 actors could not be read; the first: torn-1: " in line, line


@pytest.mark.parametrize("character", ["\x85", "\x9b", "\xa0", "\xad", "\u202e", "\u200b", "\U000e0041"])
def test_printable_escapes_as_repr_does(character: str) -> None:
    """docs/cli.md: text from storage is printed "with every character Python's repr escapes
    escaped as it escapes them": ``\\x9b`` (an 8-bit CSI), not ``\\u009b``. (Mutation: the
    ``\\xNN`` form kept for ASCII only: a Latin-1 control or space came out as ``\\u00NN``.)"""
    text = f"id{character}x"
    assert printable(text) == repr(text)[1:-1]


def test_doctor_leaves_no_scratch_object_behind_on_a_bucket(vactor: Vactor) -> None:
    """docs/cli.md: ``doctor`` "leaves nothing behind". On a bucket (here ``memory://``, which
    this process shares with the command) its probe object is deleted at the end. (Mutation: the
    probe's delete dropped: on a local directory the scratch directory's removal hid it.)"""
    name = f"h164-doctor-{uuid.uuid4().hex}"
    result = vactor("doctor", f"memory://{name}")
    assert result.code == 0, result
    assert "every guarantee vactor_cloud needs holds" in result.out, result.out
    assert MemoryStore(name)._objects == {}


@pytest.mark.parametrize("shard", ["2/2", "3/2", "0/0", "1", "a/2"])
def test_a_shard_out_of_range_is_a_usage_error(store: str, vactor: Vactor, shard: str) -> None:
    """``--shard I/N`` needs 0 <= I < N: ``2/2`` is a usage error naming the option (exit 2),
    before any timer is listed. (Mutation: ``I <= N`` accepted: the library's ValueError reached
    ``main`` as an unexpected error, exit 1, "run with --debug for the traceback".)"""
    result = vactor("timers", "tick", "--shard", shard)
    assert result.code == EXIT_USAGE, result
    assert f"--shard {shard!r}" in one_line_error(result)


def test_compact_of_an_actor_and_all_is_refused_and_compacts_nothing(store: str, vactor: Vactor) -> None:
    """``vactor compact ID --all`` names one actor and every actor: a usage error, nothing
    compacted. (Mutation: only "neither" refused: ``--all`` won and every actor was compacted,
    not the one named.)"""
    _seed(store, "one", "other", calls=3)
    argv = ("compact", "one", "--all", "--keep-last", "1", "--min-age", "0", "--force")
    result = vactor(*argv)
    assert result.code == EXIT_USAGE, result
    assert "not both" in one_line_error(result)
    steps = vactor("history", "other", "--json").json()
    assert [entry["step"] for entry in steps] == [3, 2, 1, 0]  # type: ignore[index,union-attr]


def test_a_programs_own_sigterm_handler_is_kept_through_main(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/cli.md: "A program that called ``main()`` and set its own SIGTERM handler keeps it":
    while the command runs and after. (Mutation: the check for a handler of the program's
    dropped: the command's replaced it, and SIG_DFL was left after.)"""
    seen: list[object] = []
    real = actors_cli.init_runtime

    def noting_the_handler(args: Any, **kwargs: Any) -> Any:
        seen.append(signal.getsignal(signal.SIGTERM))
        return real(args, **kwargs)

    def programs_own(signum: int, frame: object) -> None:
        pass

    monkeypatch.setattr(actors_cli, "init_runtime", noting_the_handler)
    found = signal.signal(signal.SIGTERM, programs_own)
    try:
        result = vactor("ls")
        seen.append(signal.getsignal(signal.SIGTERM))
    finally:
        signal.signal(signal.SIGTERM, found)
    assert result.code == 0, result
    assert seen == [programs_own, programs_own]


def test_a_second_ctrl_c_while_the_first_is_honoured_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``events drain``'s Ctrl-C: the first says what it waits for and raises KeyboardInterrupt
    (the event being applied finishes in the shutdown); a second one meanwhile stops at once,
    saying what that leaves. (Mutation: the second taken as the first: another
    KeyboardInterrupt, and the wait goes on.)"""
    stopped: list[str] = []

    def recorded(left: str) -> None:
        stopped.append(left)
        raise SystemExit(EXIT_INTERRUPTED)

    monkeypatch.setattr(interrupts_cli, "stop_at_once", recorded)
    with interrupts_cli.second_interrupt_stops_at_once("stopping", "what is left"):
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        second: BaseException | None = None
        try:  # (a KeyboardInterrupt left to pytest would end the session)
            signal.raise_signal(signal.SIGINT)
        except BaseException as exc:  # (which one is what this test asks)
            second = exc
    assert isinstance(second, SystemExit), repr(second)
    assert stopped == ["what is left"]


def test_compact_all_interrupted_in_its_last_batch_says_so_and_exits_130(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM) while ``compact --all`` compacts its last batch (a store of 8 actors
    or fewer: its only one) said ``vactor: stopping: ... then it says what it did`` and then
    nothing: the command went on as if not interrupted, exit 0. It now says, as interrupted after
    the last batch, that every actor was compacted, exit 130, the rows printed."""
    _seed(store, "c1", "c2", "c3", calls=2)
    real = compact_cli._gathered

    async def interrupted_meanwhile(coroutines: list[Any]) -> list[Any]:
        os.kill(os.getpid(), signal.SIGINT)  # (the main thread's handler: the batch finishes)
        return await real(coroutines)

    monkeypatch.setattr(compact_cli, "_gathered", interrupted_meanwhile)
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == EXIT_INTERRUPTED, result
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["c1", "c2", "c3"], result.out
    lines = [line for line in result.err.splitlines() if line.startswith("vactor: error: ")]
    assert lines == ["vactor: error: interrupted after compacting all 3 actors: none was left to compact"]


def test_compact_all_exits_1_when_an_actor_could_not_be_compacted(store: str, vactor: Vactor) -> None:
    """``compact --all`` goes on past an actor it cannot compact (a damaged object), names it,
    compacts the others, and exits 1. (Mutation: the exit code 0 whatever failed: a cron job's
    compaction failing every night unseen.)"""
    _seed(store, "fine", "torn", calls=3)
    _damage_newest_step(store, "torn")
    result = vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == EXIT_ERROR, result
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["fine"], result.out
    assert "vactor: error: 1 of 2 actors could not be compacted" in result.err, result.err


def test_history_json_shows_no_count_on_a_terminals_stderr(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``history`` counts the steps it reads on stderr when that is a terminal and stdout is not
    (its rows are the progress otherwise); under ``--json`` it draws nothing, as the other
    commands' counts: a script's stderr is the user's terminal, its stdout the document.
    (Mutation: ``--json`` left out of the condition: a spinner on stderr under ``--json``.)"""
    _seed(store, "lamp", calls=3)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    result = vactor("history", "lamp", "--json")
    assert result.code == 0, result
    assert [entry["step"] for entry in result.json()] == [3, 2, 1, 0]  # type: ignore[index,union-attr]
    assert result.err == "", result.err


def test_history_does_not_call_a_damaged_first_step_compacted(store: str, vactor: Vactor) -> None:
    """A damaged step 0 is named, and the oldest step shown (1) is not said to follow compacted
    steps: step 0 is there, unreadable. (Mutation: the check for a damaged step below the oldest
    shown dropped: "(steps before 1 were compacted: deleted by retention)" under the error.)"""
    _seed(store, "lamp", calls=3)
    _damage_step(store, "lamp", 0)
    result = vactor("history", "lamp")
    assert result.code == EXIT_ERROR, result
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["3", "2", "1"], result.out
    assert "compacted" not in result.err, result.err
    assert "step 0 of 'lamp' cannot be read" in one_line_error(result)


def test_the_second_pass_adds_its_deletes_to_the_first_ones(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor whose last steps the first pass held for want of the writers' evidence is
    compacted again; its row counts the steps both passes deleted. (Mutation: the second pass's
    count alone: the first pass's deletes vanished from the table and the JSON.)"""
    _seed(store, "lamp", calls=4)
    real = compact_cli._gathered

    async def first_pass_held(coroutines: list[Any]) -> list[Any]:
        return [dataclasses.replace(report, held_unproven=1) for report in await real(coroutines)]

    monkeypatch.setattr(compact_cli, "_gathered", first_pass_held)
    argv = ("compact", "--all", "--keep-last", "1", "--min-age", "0", "--fresh-window", "0", "--force")
    result = vactor(*argv, "--json")
    assert result.code == 0, result
    assert [(r["actor_id"], r["deleted_steps"]) for r in result.json()] == [("lamp", 4)]  # type: ignore[index,union-attr]


def test_events_drain_goes_on_past_an_actor_whose_drain_failed_with_an_os_error(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain that fails for one actor (an ``OSError``: a connection reset) is named, and the
    other actors are drained, exit 1. (Mutation: only ``VactorError`` caught: the OSError ended
    the command, the actors after it left undrained.)"""
    vc.init(store)
    try:
        for actor_id in ("a", "b"):
            Lantern.get_or_create(actor_id)
            vc.send_event(actor_id, "ping", 1, event_id=f"{actor_id}-1")
    finally:
        vc.shutdown()
    real = events_cli._process

    async def reset_for_a(actor_id: str) -> Any:
        if actor_id == "a":
            raise ConnectionResetError(104, "Connection reset by peer")
        return await real(actor_id)

    monkeypatch.setattr(events_cli, "_process", reset_for_a)
    result = vactor("events", "drain")
    assert result.code == EXIT_ERROR, result
    assert result.out.startswith("b: "), result.out
    errors = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    assert errors == ["vactor: error: a: [Errno 104] Connection reset by peer"], result.err


@pytest.mark.parametrize(
    ("key", "code", "advice"),
    [
        ("actors/lamp/HEAD", EXIT_STORAGE, "check --storage"),
        (class_key("lamp", "ab12"), EXIT_ERROR, "PYTHONPATH"),
    ],
)
def test_an_object_missing_is_the_stores_error_but_a_class_body_missing_is_the_classs(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch, key: str, code: int, advice: str
) -> None:
    """A ``NotFoundError`` reaching ``main`` is the store's (exit 4, check the storage URL, the
    credentials), but for a stored class body: the store answered, the class is what is missing
    (exit 1, put its module on PYTHONPATH). (Mutation: the class-key test negated: each said
    the other's advice.)"""
    _seed(store, "lamp")

    def missing(actor_id: str) -> Any:
        raise NotFoundError(f"{key}: no such object", key)

    monkeypatch.setattr(history_module, "newest_step", missing)
    result = vactor("delete", "lamp", "--yes")
    assert result.code == code, result
    assert advice in one_line_error(result)


@pytest.mark.parametrize("character", ["\x9b", "\u202e", "\u200b"])
def test_json_escapes_what_a_terminal_would_obey(character: str) -> None:
    """JSON allows a C1 control or a bidi override raw in a string; ``--json`` read on a
    terminal would have it obeyed. Such a document is written escaped (``\\u202e``; its other
    non-ASCII too, as ``json.dumps`` does). (Mutation: the check dropped: written raw.)"""
    out = Output(json=True, rich=False, stream=io.StringIO())
    text = out.json_text({"id": f"é{character}"})
    assert text == json.dumps({"id": f"é{character}"}), text
    assert character not in text


def test_the_dash_hint_is_not_given_for_an_id_already_after_the_double_dash(vactor: Vactor) -> None:
    """A usage error's hint "if -x is an actor id, give it after '--'" is for a dashed word
    argparse took for an option; one after ``--`` already is an id, and the hint would tell the
    user to do what they did. (Mutation: the words after ``--`` looked at too.)"""
    result = vactor("history", "--limit", "1", "--limit", "2", "--", "-x")
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert "given twice" in line and "after '--'" not in line, line
    dashed = vactor("history", "-x")
    assert "give it after '--': vactor history -- -x" in one_line_error(dashed)

"""What a new user of the ``vactor`` command met (review h94): a library warning printed raw as
the command's runtime shut down, a ``timers repair`` that one damaged actor stopped for every
other, and a ``history`` that one damaged step emptied, with errors that did not say what to do.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.cli import EXIT_ERROR, EXIT_NOT_FOUND
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import ActorDefinitionError
from vactor_cloud.log import StepRecord


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


# -- vactor timers repair: one damaged actor does not stop the repair of the others -----------------


@vc.virtual_actor
class Reminder:
    def __init__(self) -> None:
        self.reminded = 0

    def remind(self) -> None:
        self.reminded += 1


def _damage_newest_step(url: str, actor_id: str) -> None:
    """Overwrite ``actor_id``'s newest step's file with bytes that are no vactor_cloud object."""
    vc.init(url)
    try:
        runtime = vc.get_runtime()
        newest = vc.get_actor(actor_id).history(limit=1)[0].step
        path = runtime.store._path(runtime.log(actor_id).step_key(newest))  # type: ignore[attr-defined]
    finally:
        vc.shutdown()
    path.write_bytes(b"\x00" * 64)


def test_timers_repair_repairs_the_other_actors_and_names_a_damaged_one(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``vactor timers repair`` stopped at the first actor whose newest step could not be
    read, or whose class this process could not load (run without the program's PYTHONPATH):
    exit 1, ``indexed`` never printed, and the actors read with it (a slice of 256) or after it
    kept their lost index entries, so their timers never fired; the repair meant to run hourly
    failed every hour. As ``compact --all`` and ``events drain``, it now goes on past such an
    actor, names it (exit 1) and says how many timers it indexed."""
    vc.init(store)
    try:
        for actor_id in ("r1", "r2", "r3", "r4"):
            Reminder.get_or_create(actor_id).remind.options(delay=3600).run()
    finally:
        vc.shutdown()
    _damage_newest_step(store, "r2")
    revalidate = ActorCore.revalidate

    async def r3_not_loadable(self: ActorCore) -> StepRecord:
        if self.actor_id == "r3":
            raise ActorDefinitionError("r3's class cannot be loaded here (as a missing module)")
        return await revalidate(self)

    monkeypatch.setattr(ActorCore, "revalidate", r3_not_loadable)
    result = vactor("timers", "repair", "--debug")
    assert result.code == EXIT_ERROR, result
    assert result.out.strip() == "indexed 2 pending timers", result
    named = [line for line in result.err.splitlines() if line.startswith(("vactor: r2: ", "vactor: r3: "))]
    assert len(named) == 2 and "bad magic" in named[0] and "PYTHONPATH" in named[1], result.err
    assert result.err.splitlines()[-1].startswith("vactor: error: 2 actors could not be read"), result.err
    as_json = vactor("timers", "repair", "--json")
    assert as_json.code == EXIT_ERROR, as_json
    assert as_json.json() == {"indexed": 2}


# -- vactor history: one damaged step does not hide the others -------------------------------------


def _damage_step(url: str, actor_id: str, step: int) -> None:
    """Overwrite step ``step``'s file of ``actor_id`` with bytes that are no vactor_cloud object."""
    vc.init(url)
    try:
        runtime = vc.get_runtime()
        path = runtime.store._path(runtime.log(actor_id).step_key(step))  # type: ignore[attr-defined]
    finally:
        vc.shutdown()
    path.write_bytes(b"\x00" * 64)


def test_history_shows_the_steps_around_a_damaged_one_and_names_it(store: str, vactor: Vactor) -> None:
    """Before, one step that could not be read (a torn write, a foreign file) failed ``vactor
    history`` as a whole: exit 1 and nothing shown, though that is the command a user runs to see
    what happened to the actor, and every other step was readable. It now shows the others (text
    and ``--json``), names the damaged step in its one error line, with what to do, and exits 1."""
    vc.init(store)
    try:
        for _ in range(3):
            Reminder.get_or_create("h1").remind.run()  # steps 0..3
    finally:
        vc.shutdown()
    _damage_step(store, "h1", 1)
    result = vactor("history", "h1")
    assert result.code == EXIT_ERROR, result
    assert [line.split()[0] for line in result.out.splitlines()] == ["STEP", "3", "2", "0"], result.out
    line = one_line_error(result)
    assert "step 1 of 'h1'" in line and "bad magic" in line and "backup" in line, line
    as_json = vactor("history", "h1", "--json")
    assert as_json.code == EXIT_ERROR, as_json
    assert [entry["step"] for entry in as_json.json()] == [3, 2, 0]  # type: ignore[index,union-attr]
    # --limit counts the steps shown: the damaged one is named, not counted
    newest = vactor("history", "h1", "--limit", "2")
    assert [line.split()[0] for line in newest.out.splitlines()] == ["STEP", "3", "2"], newest
    assert newest.code == 0, newest
    _damage_step(store, "h1", 2)
    two = vactor("history", "h1")
    assert [line.split()[0] for line in two.out.splitlines()] == ["STEP", "3", "0"], two.out
    assert "step 2 of 'h1' cannot be read and is left out (as are 1 more)" in one_line_error(two)


# -- an object that does not decode: the error says what to do ----------------------------------------


def test_a_damaged_object_says_what_to_do_in_every_command_that_meets_it(store: str, vactor: Vactor) -> None:
    """Before, ``show``, ``call``, ``ls`` and ``compact --all`` met a damaged step with its key and
    the decoder's words alone (``...: not a vactor_cloud object (bad magic)``), nothing on what to
    do; each now adds it (restore it from a backup or an earlier version of the object)."""
    vc.init(store)
    try:
        Reminder.get_or_create("d1").remind.run()  # steps 0, 1
    finally:
        vc.shutdown()
    _damage_step(store, "d1", 1)
    for argv in (
        ("show", "d1"),
        ("call", "d1", "remind"),
        ("ls",),
        ("compact", "--all", "--keep-last", "1"),
    ):
        result = vactor(*argv)
        assert result.code == EXIT_ERROR, (argv, result)
        errors = [line for line in result.err.splitlines() if line.startswith("vactor: error: ")]
        assert "bad magic" in errors[0] and "restore it from a backup" in errors[0], (argv, result.err)


def test_a_signature_that_does_not_match_says_to_check_the_signing_key(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, reading a signed store with another ``$VACTOR_SIGNING_KEY`` said ``signature
    mismatch: the object is corrupt, was altered, or uses another key``: nothing said which key
    the command used nor what to check. It now names ``$VACTOR_SIGNING_KEY``."""
    vc.init(store, signing_key=b"the writers' key")
    try:
        Reminder.get_or_create("k1").remind.run()
    finally:
        vc.shutdown()
    monkeypatch.setenv("VACTOR_SIGNING_KEY", "another key")
    result = vactor("show", "k1")
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "signature mismatch" in line and "$VACTOR_SIGNING_KEY is not the key" in line, line


# -- vactor bench memory:// -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "memory://named", "memory://named/"])
def test_bench_runs_on_the_bare_memory_url_its_help_names(url: str, vactor: Vactor) -> None:
    """``vactor --help`` names ``memory://`` for bench. Before, ``vactor bench memory://`` failed at
    once (exit 1): the run's sub-store was spelled ``memory:-vactor-bench-<id>`` (the URL with its
    slashes stripped, then a dash), a URL the store refuses as missing a slash."""
    from vactor_cloud.cli.bench_harness import Target

    scoped = Target(url).sub("vactor-bench-1")
    assert scoped.url.startswith("memory://") and scoped.url.endswith("vactor-bench-1"), scoped
    vc.init(scoped.url)  # a URL the store takes
    vc.shutdown()
    result = vactor("bench", url, "--profile", "tiny", "--rows", "warm", "--json")
    assert result.code == 0, result
    assert result.json()["url"] == url  # type: ignore[index,call-overload]


# -- maintenance without the actor's code: delete and compact need no class ------------------------------


def test_delete_and_compact_of_an_actor_whose_class_cannot_be_loaded_here(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vc.delete_actor`` and ``vactor compact --all`` work on an actor whose class this process
    cannot load (run from a maintenance box, or after the class was removed from the code: the
    commonest reason to delete its actors). Before, ``vactor delete ID`` and ``vactor compact ID``
    refused it (exit 1, "put the module's directory on PYTHONPATH"): each first loaded the actor,
    class and all, only to name it or to check that it exists."""
    vc.init(store)
    try:
        for actor_id in ("u1", "u2"):
            Reminder.get_or_create(actor_id).remind.run()
    finally:
        vc.shutdown()
    definition_for = ActorCore.definition_for

    async def not_loadable(self: ActorCore, class_ref: Any) -> Any:
        if self.actor_id in ("u1", "u2"):
            raise ActorDefinitionError("the class cannot be loaded here (as a missing module)")
        return await definition_for(self, class_ref)

    monkeypatch.setattr(ActorCore, "definition_for", not_loadable)
    assert vactor("show", "u1").code == EXIT_ERROR  # (the state needs the class: refused, rightly)
    compacted = vactor("compact", "u1", "--keep-last", "1", "--min-age", "0", "--force")
    assert compacted.code == 0, compacted
    assert compacted.out.splitlines()[1].split()[:3] == ["u1", "1", "1..1"], compacted.out
    deleted = vactor("delete", "u2", "--yes")
    assert deleted.code == 0, deleted
    assert deleted.out.startswith("deleted actor 'u2' (test_review_cli_new_user:Reminder, newest step 1)")
    assert vactor("history", "u2").out.splitlines()[1].split()[-2:] == ["actor", "deleted"]
    again = vactor("delete", "u2", "--yes")
    assert (again.code, again.out.strip()) == (0, "actor 'u2' was deleted already; nothing to do"), again
    missing = vactor("delete", "u3", "--yes")
    assert missing.code == EXIT_NOT_FOUND, missing


# -- "nothing here" names where it looked --------------------------------------------------------------


@pytest.mark.parametrize("argv", [("events", "ls"), ("events", "drain"), ("timers", "ls"), ("ls",)])
def test_an_empty_answer_names_the_store_it_looked_in(
    store: str, vactor: Vactor, argv: tuple[str, ...]
) -> None:
    """A new user whose actors are elsewhere (another --storage, $VACTOR_STORAGE unset: the embedded
    store) is told where the command looked. ``vactor ls`` and ``compact`` said so; before, ``events
    ls``, ``events drain`` and ``timers ls`` said only ``no pending events`` / ``no pending timers in
    the index``, with no store named."""
    result = vactor(*argv)
    assert result.code == 0, result
    assert result.out == "" and f"under file://{store}" in result.err, result


# -- compact's wait before its second pass is said, not silent ----------------------------------------


def test_compact_says_why_it_waits_before_compacting_idle_actors_again(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commonest maintenance run, ``vactor compact`` of actors idle since a burst, holds their
    last steps on its first pass and compacts them again after waiting the writers'
    ``fresh_window`` (5 s by default). Before, that wait came after the progress had reached its
    end, with nothing said: the command looked hung. It now says what it waits for, and how long,
    before it waits."""
    from test_review_retention import _age_all_steps

    from vactor_cloud import _sync

    vc.init(store)
    try:
        for _ in range(3):
            Reminder.get_or_create("idle").remind.run()
        _age_all_steps(vc.get_runtime().core("idle").log, 7200.0)
    finally:
        vc.shutdown()
    waits: list[float] = []

    def sleep_noted(seconds: float) -> None:  # (no wait: the second pass then holds them again)
        waits.append(seconds)
        print("<the wait>", file=sys.stderr)

    monkeypatch.setattr(_sync, "sleep", sleep_noted)
    result = vactor("compact", "idle", "--keep-last", "1", "--min-age", "3600", "--fresh-window", "5")
    assert result.code == 0, result
    assert waits == [5.0], waits
    said, waited = result.err.index("vactor: waiting 5 s"), result.err.index("<the wait>")
    assert said < waited, result.err
    assert "1 actor" in result.err[said:waited], result.err


def test_events_ls_of_an_actor_without_events_needs_no_class(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor events ls --actor ID`` of an actor whose inbox is empty answers ``no pending
    events`` where its class cannot be loaded. Before, it loaded the actor, class and all, only to
    check that it exists, and failed (exit 1, "put the module's directory on PYTHONPATH"). An id
    that never held an actor, or a deleted actor, is still exit 3."""
    vc.init(store)
    try:
        Reminder.get_or_create("e1").remind.run()
        Reminder.get_or_create("e2").remind.run()
        vc.delete_actor("e2")
    finally:
        vc.shutdown()
    definition_for = ActorCore.definition_for

    async def not_loadable(self: ActorCore, class_ref: Any) -> Any:
        if self.actor_id == "e1":
            raise ActorDefinitionError("the class cannot be loaded here (as a missing module)")
        return await definition_for(self, class_ref)

    monkeypatch.setattr(ActorCore, "definition_for", not_loadable)
    result = vactor("events", "ls", "--actor", "e1")
    assert (result.code, result.out) == (0, ""), result
    assert result.err.startswith("no pending events under"), result.err
    deleted = vactor("events", "ls", "--actor", "e2")
    assert deleted.code == EXIT_NOT_FOUND and "was deleted" in one_line_error(deleted), deleted
    assert vactor("events", "ls", "--actor", "e3").code == EXIT_NOT_FOUND

"""A hostile review of a new user's first hour (h73): README, docs, examples and ``vactor``.

Each test failed before its fix. ``vactor`` runs in this process (``tests/cli_harness.py``)
on a local store in ``tmp_path``; actors whose modules this process must not import are
made in a child process.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Vactor, one_line_error
from example_commands import check_printed_inspect_command

import vactor_cloud as vc
from vactor_cloud import _sync, workflow
from vactor_cloud.cli import EXIT_ERROR, EXIT_INTERRUPTED

ROOT = Path(__file__).resolve().parent.parent


def _make_actor_elsewhere(tmp_path: Path, store: str, module: str) -> None:
    """Create actor ``d1`` of ``<module>:Doubler`` in a child process that can import ``module``
    (and ``<module>_helper``, which the class's methods use by reference): this process cannot."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{module}_helper.py").write_text("def double(x):\n    return 2 * x\n")
    (modules / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            import {module}_helper
            import vactor_cloud as vc

            @vc.virtual_actor
            class Doubler:
                def __init__(self):
                    self.v = 1

                def go(self):
                    self.v = {module}_helper.double(self.v)
                    return self.v
            """
        )
    )
    script = (
        f"import vactor_cloud as vc\nfrom {module} import Doubler\n"
        f"vc.init({store!r})\nDoubler.get_or_create('d1').go.run()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(modules), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_show_of_an_actor_whose_class_cannot_be_loaded_says_so_not_that_its_step_is_forged(
    vactor: Vactor, store: str, tmp_path: Path
) -> None:
    """``vactor show`` run where the class's module cannot be imported (the class body stored by
    value refers to a module by reference). Before, it said the step was 'stored with serializer
    'pickle', but the actor's class uses 'json'; refused without decoding (a forged or foreign
    object ...)': the class it could not load was taken for a json class, and a sound store for a
    tampered one. It now says the class cannot be loaded here and how to make it importable, as
    ``vactor call`` does."""
    _make_actor_elsewhere(tmp_path, store, "h73_unimportable")
    result = vactor("show", "d1")
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "forged" not in line and "serializer" not in line, line
    assert "h73_unimportable_helper" in line and "PYTHONPATH" in line, line
    assert vactor("call", "d1", "go").code == EXIT_ERROR  # (the same reason, the same words)
    assert "PYTHONPATH" in one_line_error(vactor("call", "d1", "go"))


def test_an_actor_whose_class_body_is_missing_is_not_called_a_storage_outage(
    vactor: Vactor, store: str, tmp_path: Path
) -> None:
    """The class cannot be imported here and its stored body is gone (a lifecycle rule, a
    partial copy of the bucket). The library says whose body is missing and to import the
    class's module; ``vactor`` added "check --storage, the credentials and the network" and
    exit 4 (storage unreachable), though the store had answered. It is exit 1, with how to
    make the module importable for vactor."""
    _make_actor_elsewhere(tmp_path, store, "h73_bodiless")
    vc.init(store)
    try:
        local = vc.get_runtime().store
        (body,) = _sync.sync(local.list("actors/d1/class/"))
        _sync.sync(local.delete(body))
    finally:
        vc.shutdown()
    result = vactor("show", "d1")
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "class body" in line and "PYTHONPATH" in line, line
    assert "network" not in line, line


@pytest.mark.parametrize("example", ["session_timeout.py"])
def test_an_example_run_on_vactor_storage_prints_a_history_command_that_names_that_store(
    tmp_path: Path, example: str
) -> None:
    """The README's way to run an example afresh is ``VACTOR_STORAGE=$(mktemp -d) python
    examples/...``: the store is in the example's environment only, not in the shell that runs
    the ``vactor history ...`` it prints. Before, session_timeout.py ignored $VACTOR_STORAGE when
    it printed that command (no ``--storage``), so the command looked in the embedded store and
    said 'no actor'; it now names the store it used, as serverless_handler.py did already."""
    shell = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE"}
    shell["XDG_DATA_HOME"] = str(tmp_path / "data")  # the default store: not the one the example used
    shell["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        env={**shell, "VACTOR_STORAGE": str(tmp_path / "given")},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_printed_inspect_command(done.stdout, shell)


@pytest.mark.parametrize(
    ("example", "args"),
    [("batch_dask.py", ()), ("train_in_parallel.py", ("--dask",))],
    ids=["batch", "train"],
)
def test_a_dask_example_without_dask_says_which_extra_to_install(
    tmp_path: Path, example: str, args: tuple[str, ...]
) -> None:
    """The README installs ``.[s3,gcs]``, then lists the Dask examples. Before, without Dask they
    ended in a traceback (``ModuleNotFoundError: No module named 'distributed'``); they now say
    in one line what to install. (Dask is hidden by a module that fails to import as a missing
    one does.)"""
    hidden = tmp_path / "hidden"
    for name in ("distributed", "dask"):
        (hidden / name).mkdir(parents=True)
        (hidden / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {name!r}'!r}, name={name!r})\n"
        )
    env = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE"}
    env["PYTHONPATH"] = os.pathsep.join([str(hidden), str(ROOT)])
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example), str(tmp_path / "store"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "pip install 'vactor_cloud[dask]'" in done.stderr, done.stderr


@vc.virtual_actor
class Invoice:
    def __init__(self, due: int) -> None:
        self.due, self.paid = due, 0

    @vc.virtual_actor.on_event("payment.succeeded")
    def on_payment(self, payload: dict[str, int]) -> int:
        self.paid += payload["amount"]
        return self.due - self.paid


def test_history_shows_an_applied_event_in_words_not_its_internal_key(vactor: Vactor, store: str) -> None:
    """webhook_handler.py ends with 'the event, applied in one step: vactor history ...'. Before,
    that history showed the event's call as ``on_payment({...}) -> 70  [key
    \\x00event\\x00payment.succeeded\\x00wh_8f2c]``: the dedup table's internal key, NULs
    escaped. A timer's calls were already in words; an event's now are too (``event
    'payment.succeeded' id='wh_8f2c': on_payment(...) -> 70``), and --json adds that as
    ``meaning``."""
    vc.init(store)
    try:
        Invoice.get_or_create("inv-1", 100)
        vc.send_event("inv-1", "payment.succeeded", {"amount": 30}, event_id="wh_8f2c")
        vc.get_actor("inv-1").process_events()
    finally:
        vc.shutdown()
    result = vactor("history", "inv-1")
    assert result.code == 0, result
    event_line = result.out.splitlines()[1]
    assert "x00" not in event_line, event_line
    assert event_line.split(None, 3)[3] == (
        "event 'payment.succeeded' id='wh_8f2c': on_payment({'amount': 30}) -> 70"
    ), event_line
    shown = vactor("--json", "history", "inv-1", "--limit", "1").json()
    assert isinstance(shown, list)
    (call,) = shown[0]["calls"]
    assert call["meaning"] == "event 'payment.succeeded' id='wh_8f2c'", call
    assert call["key"] == "\x00event\x00payment.succeeded\x00wh_8f2c"  # (the recorded field, kept)


def test_bench_keep_says_where_it_kept_what_it_wrote(vactor: Vactor, tmp_path: Path) -> None:
    """``vactor bench --keep`` leaves its objects, under a fresh ``vactor-bench-<id>`` prefix it
    named nowhere: the table's title shows the store only, so the user had to list the bucket to
    find what was kept (or, interrupted, where the half-run went). It now says on stderr."""
    root = tmp_path / "bench"
    root.mkdir()
    result = vactor("bench", str(root), "--profile", "tiny", "--rows", "warm", "--keep", "--json")
    assert result.code == 0, result.err
    (kept,) = [p.name for p in root.iterdir() if p.name.startswith("vactor-bench-")]
    assert f"{root}/{kept}" in result.err, result.err
    assert isinstance(result.json(), dict)  # (stdout: the one JSON document still)


@vc.virtual_actor
class Alarm:
    def __init__(self) -> None:
        self.n = 0

    def bump(self, by: int = 1) -> int:
        self.n += by
        return self.n


def test_an_interrupted_timers_tick_says_the_timers_not_fired_stay_due(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor timers tick`` (cron's pass over every due timer) said only ``interrupted`` on
    Ctrl-C, as if something might be lost; ``compact`` and ``events drain`` say what an interrupt
    left. A timer not fired stays due (a fire in flight committed once or not at all): it now
    says so, and to run it again. (Ctrl-C arrives inside the pass, as a KeyboardInterrupt.)"""
    from vactor_cloud.cli import timers

    def interrupted(**_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(timers, "fire_due_timers", interrupted)
    result = vactor("timers", "tick")
    assert result.code == EXIT_INTERRUPTED, result
    line = one_line_error(result)
    assert "stay due" in line and "vactor timers tick" in line, line


def test_an_interrupted_timers_repair_says_how_far_it_got(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor timers repair`` walks every actor (progress per actor) and said only
    ``interrupted``: now how many actors it repaired, and that running it again is safe."""
    from vactor_cloud.cli import timers

    vc.init(store)
    try:
        for actor_id in ("a1", "a2", "a3"):
            Alarm.get_or_create(actor_id).bump.options(delay=3600).run(1)
    finally:
        vc.shutdown()
    real_repair = timers.repair_timer_index
    calls: list[list[str]] = []

    def repair_then_interrupt(actor_ids: list[str]) -> int:
        calls.append(list(actor_ids))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second slice
        return real_repair(actor_ids)

    monkeypatch.setattr(timers, "_REPAIR_SLICE", 1)
    monkeypatch.setattr(timers, "repair_timer_index", repair_then_interrupt)
    result = vactor("timers", "repair")
    assert result.code == EXIT_INTERRUPTED, result
    assert "Traceback" not in result.err, result.err
    (line,) = [line for line in result.err.splitlines() if line.startswith("vactor: ")]  # (and progress)
    assert "interrupted after repairing 1 of 3 actors" in line and "run it again" in line, line


_tax_fails: list[bool] = []


@workflow.step(max_retries=0)
def _taxed(amount: int) -> int:
    if _tax_fails:
        raise ConnectionError("the tax service blinked")
    return amount


@workflow.virtual_actor
class Purse:
    def __init__(self) -> None:
        self.balance = 0

    def pay(self, amount: int) -> Any:
        return self.credit.step(_taxed.step(amount))

    def credit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def touch(self) -> None:
        pass


def test_vactor_compact_says_which_failed_calls_can_no_longer_be_resumed(vactor: Vactor, store: str) -> None:
    """docs/retention.md: a failure record older than min_age goes with compaction, and 'a
    warning on the vactor_cloud logger names the call, its method and why (``vactor compact``
    prints it on stderr)'. It did not: the command prints no library log record (without
    --debug), so a failed call was given up in silence, and --json's report was the only trace.
    It now names each such call on stderr."""
    vc.init(store)
    try:
        purse = Purse.get_or_create("purse")
        _tax_fails[:] = [True]
        with pytest.raises(ConnectionError):
            purse.pay.run(5)
        _tax_fails.clear()
        assert workflow.get_status("purse") == workflow.FAILED
        purse.touch.run()
        purse.touch.run()
    finally:
        vc.shutdown()
    result = vactor("--json", "compact", "purse", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == 0, result.err
    (report,) = result.json()  # type: ignore[misc]
    (call_id,) = report["unresumable"]
    (line,) = [line for line in result.err.splitlines() if "resume" in line]
    assert line.startswith("vactor: warning: actor 'purse'"), line
    assert call_id in line and "no longer" in line, line


def _readme_block(language: str, after: str) -> str:
    """The first ``language`` block of README.md after the line ``after``."""
    text = (ROOT / "README.md").read_text().split(after, 1)[1]
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readme_commands_after_its_tour_work_on_the_actor_the_tour_made(
    vactor: Vactor, store: str, tmp_path: Path
) -> None:
    """The README's tour makes the actor ``visits``; the commands under it (``vactor ls``,
    ``history visits``, ``show visits --step 1``, ``call visits incr 2``) look at it. Before, the
    tour's last line deleted it (``vc.delete_actor("visits")``), so, run in order, ``vactor ls``
    listed nothing and ``vactor call visits incr 2`` said it was deleted (exit 3). The delete is
    now the commands' last (``vactor delete visits``), after what looks at the actor."""
    tour = _readme_block("python", "## A short tour")
    assert 'vc.init("s3://my-bucket/actors")' in tour
    script = tmp_path / "tour.py"
    script.write_text(tour.replace('vc.init("s3://my-bucket/actors")', f"vc.init({store!r})"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    commands = [
        shlex.split(line.split("#", 1)[0])[2:]  # ("$", "vactor", ...)
        for line in _readme_block("console", "## A short tour").splitlines()
        if line.startswith("$ vactor ")
    ]
    looking = [argv for argv in commands if argv[0] in ("ls", "history", "show", "call")]
    assert len(looking) == 4, commands
    for argv in looking:
        result = vactor(*argv)
        assert result.code == 0, (argv, result.err)
        if argv[0] == "ls":
            assert "visits" in result.out, result
    deleting = [i for i, argv in enumerate(commands) if argv[0] == "delete"]
    assert deleting and all(i > commands.index(argv) for i in deleting for argv in looking), commands


def test_a_store_path_that_is_a_file_is_not_called_missing(
    vactor: Vactor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``--storage`` path naming a file said 'no such directory; ... create it first (mkdir -p
    PATH)', which fails on a file; and a missing directory named by $VACTOR_STORAGE was reported
    as ``--storage PATH``, an option the user never passed. Each now says what the path is and
    where it came from."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    line = one_line_error(vactor("--storage", str(a_file), "ls"))
    assert "is a file, not a directory" in line and "mkdir" not in line, line
    monkeypatch.setenv("VACTOR_STORAGE", str(tmp_path / "gone"))
    result = vactor("ls")
    assert result.code == 2, result
    line = one_line_error(result)
    assert line.startswith(f"vactor: error: $VACTOR_STORAGE {tmp_path / 'gone'}: no such directory"), line


class _Terminal(io.StringIO):
    """A stdin that is a terminal, holding what the user types (nothing: Ctrl-D at once)."""

    def isatty(self) -> bool:
        return True


def test_vactor_delete_answered_with_end_of_input_deletes_nothing_and_says_so(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor delete ID`` asks for the id on a terminal. Ctrl-D at the question ended in
    'vactor: error: EOFError:  (run with --debug for the traceback)': a library failure, not
    whether the actor was deleted. It now says that nothing was deleted, as a wrong answer
    does, in the one error line every command uses."""
    vc.init(store)
    try:
        Alarm.get_or_create("al-1")
    finally:
        vc.shutdown()
    monkeypatch.setattr(sys, "stdin", _Terminal(""))
    result = vactor("delete", "al-1")
    assert result.code == EXIT_ERROR, result
    line = one_line_error(result)
    assert "EOFError" not in line and "not deleted" in line, line
    monkeypatch.setattr(sys, "stdin", _Terminal("al-2\n"))
    line = one_line_error(vactor("delete", "al-1"))  # a wrong answer: the same form
    assert "not deleted" in line and "'al-2'" in line, line
    assert vactor("show", "al-1").code == 0  # (still there)


def test_events_of_an_actor_whose_class_cannot_be_loaded_are_not_called_none(
    vactor: Vactor, store: str, tmp_path: Path
) -> None:
    """``vactor events ls`` where an actor's class cannot be loaded printed 'no pending events'
    and then the error about that actor: its waiting event was said not to exist. It now says
    only the error, and that error (as ``events drain``'s) says to put the module on PYTHONPATH,
    as the command's other errors about such a class do."""
    _make_actor_elsewhere(tmp_path, store, "h73_unimportable_events")
    vc.init(store)
    try:
        vc.send_event("d1", "ping", {"n": 1}, event_id="e1")
    finally:
        vc.shutdown()
    for command in ("ls", "drain"):
        result = vactor("events", command)
        assert result.code == EXIT_ERROR, result
        assert "no pending events" not in result.err, result.err
        (line,) = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
        assert "h73_unimportable_events_helper" in line and "PYTHONPATH" in line, line


#: The example of Ray Workflows' virtual-actors page (the project's seed), as written there
SEED_EXAMPLE = """\
from ray import workflow
import ray

@workflow.virtual_actor
class Counter:
    def __init__(self, init_val):
        self._val = init_val

    def incr(self, val=1):
        self._val += val
        print(self._val)

    @workflow.virtual_actor.readonly
    def value(self):
        return self._val

    def __getstate__(self):
        return self._val

    def __setstate__(self, val):
        self._val = val

workflow.init()

# Initialize a Counter actor with id="my_counter".
counter = Counter.get_or_create("my_counter", 0)

# Similar to workflow steps, actor methods support:
# - `run()`, which will return the value
# - `run_async()`, which will return a ObjectRef
counter.incr.run(10)
assert counter.value.run() == 10

# Non-blocking execution.
counter.incr.run_async(10)
counter.incr.run(10)
assert 30 == ray.get(counter.value.run_async())
"""


def test_the_quickstart_is_the_seed_example_with_only_its_imports_changed() -> None:
    """A pin (it held): examples/quickstart.py, which test_examples runs for 10, 20, 30, is Ray's
    example with its two import lines changed and nothing else, as the README and
    docs/migrating-from-ray.md say."""
    ours = (ROOT / "examples" / "quickstart.py").read_text().splitlines()
    seed = SEED_EXAMPLE.splitlines()
    assert seed[:2] == ["from ray import workflow", "import ray"]
    assert ours[:2] == ["from vactor_cloud import workflow", "import vactor_cloud as ray"]
    assert ours[2:] == seed[2:]

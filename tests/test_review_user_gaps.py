"""Four small gaps a new user met (the h103 review), each case failing before its fix.

``vactor ls`` on the parent of a store, ``vactor doctor``'s block of zero counters, a short
signing key taken silently, and the suite's own fixtures dropping a store under a live runtime.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cli_harness import Vactor

import vactor_cloud as vc
from vactor_cloud import counters
from vactor_cloud import settings as settings_module
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.lanes import StoreSpec

# -- vactor ls on the parent of a store: where the actors are --------------------------------------


@vc.virtual_actor
class Pin:
    def __init__(self) -> None:
        self.n = 0

    def set(self, n: int) -> int:
        self.n = n
        return n


def _seed_below(spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, sub: str) -> str:
    """Actors in the store ``<spec>/<sub>``; the environment set for a ``vactor`` run here."""
    for name, value in spec.env.items():
        monkeypatch.setenv(name, value)
    below = f"{spec.url}/{sub}"
    vc.init(below, **spec.options)
    try:
        Pin.get_or_create("p1").set.run(1)
    finally:
        vc.shutdown()
    return below


def _storage_args(spec: StoreSpec, url: str) -> list[str]:
    endpoint = spec.options.get("endpoint_url")
    return ["--storage", url, *(["-o", f"endpoint_url={endpoint}"] if endpoint else [])]


@pytest.mark.parametrize("sub", ["app", "actors"])
@pytest.mark.parametrize("store_lane", ["local", "moto"], indirect=True)
def test_ls_of_the_url_above_a_store_names_the_store_below(
    vactor: Vactor, store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, sub: str
) -> None:
    """``vactor --storage s3://bucket ls`` where the store is ``s3://bucket/app`` said only
    ``no actors under s3://bucket`` (and a local directory holding the store's directory:
    "holds no vactor_cloud store"): now either names the store below, to retry with."""
    below = _seed_below(store_spec, monkeypatch, sub)
    if store_spec.url.startswith("file://"):
        os.makedirs(store_spec.url.removeprefix("file://"), exist_ok=True)
    result = vactor(*_storage_args(store_spec, store_spec.url), "ls")
    hint = result.err.partition(" below it at ")[2].replace("file://", "")  # (or a path)
    assert hint.startswith(below.removeprefix("file://")), result
    assert f"--storage {below.removeprefix('file://')})" in hint, result
    assert result.code in (0, 2) and "Traceback" not in result.err, result
    again = vactor(*_storage_args(store_spec, below), "ls")
    row = again.out.splitlines()[1].split()
    assert again.code == 0 and row[:3] == ["p1", "test_review_user_gaps:Pin", "1"], again


@pytest.mark.parametrize("store_lane", ["local", "moto"], indirect=True)
def test_ls_names_the_stores_below(
    vactor: Vactor, store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sub in ("blue", "green/deep"):
        _seed_below(store_spec, monkeypatch, sub)
    if store_spec.url.startswith("file://"):
        os.makedirs(store_spec.url.removeprefix("file://"), exist_ok=True)
    result = vactor(*_storage_args(store_spec, store_spec.url), "ls")
    err = result.err.replace("file://", "")
    root = store_spec.url.removeprefix("file://")
    if store_spec.url.startswith("s3://"):  # (one LIST: stores at any depth)
        assert f"stores are below it at {root}/blue, {root}/green/deep: " in err, result
    else:  # (the directories right under it)
        assert f"a store is below it at {root}/blue: " in err, result


@pytest.mark.parametrize("store_lane", ["local", "moto"], indirect=True)
def test_ls_that_finds_actors_does_not_look_for_stores_below(
    vactor: Vactor, store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[str] = []

    async def stores_below(store: ObjectStore) -> list[str] | None:
        looked.append(store.url)
        return None

    for store_type in {type(store_spec.open()), ObjectStore}:
        monkeypatch.setattr(store_type, "stores_below", stores_below)
    _seed_below(store_spec, monkeypatch, "app")
    found = vactor(*_storage_args(store_spec, f"{store_spec.url}/app"), "ls")
    assert found.code == 0 and "p1" in found.out and looked == [], (found, looked)
    empty = vactor(*_storage_args(store_spec, f"{store_spec.url}/app"), "ls", "x")  # (a prefix: no probe)
    assert empty.code == 0 and "no actors" in empty.err and looked == [], (empty, looked)


# -- vactor doctor: only the counters that moved -----------------------------------------------------


def _counter_lines(out: str) -> list[str]:
    names = set(counters.COUNTERS)
    return [line for line in out.splitlines() if line.split() and line.split()[0] in names]


def test_doctor_prints_only_the_counters_that_moved_and_json_keeps_them_all(
    vactor: Vactor, store: str
) -> None:
    """After its checks ``doctor`` printed every counter of ``vc.stats()``, a block of 13 zeros
    that read as something to look at; now one line when none moved, else the ones that did."""
    counters.reset()
    quiet = vactor("doctor")
    assert quiet.code == 0, quiet
    assert _counter_lines(quiet.out) == [], quiet.out
    assert "counters" in quiet.out and "all 0" in quiet.out, quiet.out
    counters.reset()
    counters.count("storage_timeouts", 2)
    moved = vactor("doctor")
    assert [line.split() for line in _counter_lines(moved.out)] == [["storage_timeouts", "2"]], moved.out
    counters.reset()
    report = vactor("doctor", "--json").json()
    assert isinstance(report, dict) and set(report["stats"]) >= set(counters.COUNTERS)
    assert all(value == 0 for value in report["stats"].values()), report["stats"]


# -- a short signing key: taken (stores signed with it stay readable), with one warning ------------


def test_a_short_signing_key_is_taken_with_one_warning_per_process_saying_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``signing_key=b"k"`` (or ``$VACTOR_SIGNING_KEY=k``) was accepted silently: an HMAC key
    of one byte is guessed in 256 tries. Refusing it would lock users out of their stores, so
    it is taken, and the first such key of a process logs how long a key should be."""
    monkeypatch.setattr(settings_module, "_short_key_warned", False, raising=False)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        vc.Settings(signing_key=b"k" * 32)  # long enough: nothing said
        assert not caplog.records
        vc.Settings(signing_key=b"short")
        vc.Settings(signing_key=b"other")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "5 bytes" in warnings[0] and "32 bytes" in warnings[0], warnings[0]
    assert "secrets.token_hex(32)" in warnings[0] and "short" not in warnings[0].split("bytes")[0]


def test_a_short_signing_key_from_the_environment_warns_and_still_reads_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, runtime_off: None
) -> None:
    monkeypatch.setattr(settings_module, "_short_key_warned", False, raising=False)
    monkeypatch.setenv("VACTOR_SIGNING_KEY", "abc")
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        vc.init(str(tmp_path / "store"))
        assert KeyedCounter.get_or_create("c").bump.run() == 1
        assert KeyedCounter.get_or_create("c").bump.run() == 2
    warnings = [r.getMessage() for r in caplog.records if "signing key" in r.getMessage()]
    assert len(warnings) == 1 and "3 bytes" in warnings[0], caplog.records
    assert "abc" not in warnings[0]  # (the key itself is never logged)


@vc.virtual_actor
class KeyedCounter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


# -- the suite's fixtures: the runtime shut down before its store is dropped -----------------------

_INNER_CONFTEST = """
import pytest

import vactor_cloud as vc
from vactor_cloud.runtime import current_runtime

@pytest.fixture
def runtime_off():  # (as tests/conftest.py's: shuts the runtime down after the test)
    yield
    vc.shutdown()

@pytest.hookimpl(tryfirst=True)
def pytest_fixture_post_finalizer(fixturedef, request):
    if fixturedef.argname == "store_spec" and current_runtime() is not None:
        print("STORE DROPPED UNDER A RUNNING RUNTIME")
"""

_INNER_TESTS = """
import pytest

import vactor_cloud as vc

@vc.virtual_actor
class Tally:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n

def _two_steps(spec):
    spec.init()
    tally = Tally.get_or_create("answers-3")
    tally.add.run()
    tally.add.run()  # (HEAD lags: moved at shutdown)

@pytest.mark.usefixtures("runtime_off")
def test_marked_first(store_spec):
    _two_steps(store_spec)

def test_requested_first(runtime_off, store_spec):
    _two_steps(store_spec)

def test_requested_after(store_spec, runtime_off):
    _two_steps(store_spec)

def test_actor_store(actor_store):
    _two_steps(actor_store)
"""


def test_a_runtime_on_a_test_store_is_shut_down_before_the_store_is_dropped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@pytest.mark.usefixtures("runtime_off")`` sets ``runtime_off`` up before the test's own
    ``store_spec``, so pytest tore it down after: the store was dropped (its directory removed)
    while the runtime still had a HEAD to move, and its ``shutdown()`` logged ``could not move
    HEAD of 'answers-3': ... No such file or directory``. ``store_spec`` now shuts down a
    runtime on its store before dropping it, whatever order the fixtures came in."""
    pytester.makeconftest(_INNER_CONFTEST)
    pytester.makepyfile(test_inner=_INNER_TESTS)
    repo = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("VACTOR_LANES", "memory,local")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "-o", "log_cli=true", "--log-cli-level=WARNING", timeout=120
    )
    result.assert_outcomes(passed=8)
    result.stdout.no_fnmatch_line("*STORE DROPPED UNDER A RUNNING RUNTIME*")
    result.stdout.no_fnmatch_line("*could not move HEAD*")

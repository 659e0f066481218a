"""Every example in examples/ runs: on the embedded store by default, and on a URL given to it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import python_child
from example_commands import check_printed_inspect_command

from vactor_cloud.storage import LocalStore
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.testing.pytest_plugin import LaneRegistry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """Run ``examples/<name>`` in a fresh interpreter; fail with its output if it fails."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def embedded_env(tmp_path: Path) -> dict[str, str]:
    """No $VACTOR_STORAGE: the examples use the embedded store, here under a temporary XDG_DATA_HOME."""
    env = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    return env


@pytest.fixture(params=["moto", "localstack"])
def moto_store(request: pytest.FixtureRequest, vactor_lanes: LaneRegistry) -> Iterator[StoreSpec]:
    """A fresh bucket on an S3 emulator: moto, and LocalStack (the examples run against both)."""
    lane = vactor_lanes.require(request.param)
    spec = lane.new_store()
    try:
        yield spec
    finally:
        lane.drop_store(spec)


def moto_env(spec: StoreSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE"}
    env.update(spec.env)
    return env


def test_quickstart_prints_the_seed_values(tmp_path: Path) -> None:
    env = {**os.environ, "VACTOR_STORAGE": str(tmp_path / "store")}
    assert run_example("quickstart.py", env=env).split() == ["10", "20", "30"]


def test_bank_transfer_conserves_money_on_the_embedded_store(tmp_path: Path) -> None:
    out = run_example("bank_transfer.py", env=embedded_env(tmp_path))
    # The 'crashing' transfer crashes only if its debit went through (it may find the
    # balance insufficient, depending on how the processes interleaved).
    crashed = 1 if "'crashed': 1" in out else 0
    assert f"recovered {crashed} in-flight transfer(s)" in out
    assert "invariant holds: total 2000" in out
    embedded = LocalStore(tmp_path / "data" / "vactor_cloud")
    assert asyncio.run(embedded.list("actors/", limit=1))


def test_bank_transfer_conserves_money_on_s3(moto_store: StoreSpec) -> None:
    out = run_example("bank_transfer.py", moto_store.url, env=moto_env(moto_store))
    assert "invariant holds: total 2000" in out


def test_serverless_handler_is_exactly_once_across_cold_starts(tmp_path: Path) -> None:
    out = run_example("serverless_handler.py", env=embedded_env(tmp_path))
    assert "retry      req-2 -> {'count': 3}" in out
    assert "exactly once across 6 cold starts" in out


def test_serverless_handler_on_s3_via_environment(moto_store: StoreSpec) -> None:
    env = {**moto_env(moto_store), "VACTOR_STORAGE": moto_store.url}
    out = run_example("serverless_handler.py", env=env)
    assert "summary {'count': 4, 'by_page': {'/': 2, '/cart': 1, '/checkout': 1}}" in out


def test_batch_dask_totals_match(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    env = embedded_env(tmp_path)  # the default store is not the one the example is given
    out = run_example("batch_dask.py", str(tmp_path / "store"), env=env)
    assert "totals match" in out
    assert "by 2 Dask worker processes" in out
    check_printed_inspect_command(out, env)  # (the example's one run serves both checks)


#: the examples that take a storage URL as their argument, and those of them that run
#: several processes (a ``memory://`` store is one process's memory: they cannot share it)
TAKE_A_URL = [
    "bank_transfer.py",
    "batch_dask.py",
    "serverless_handler.py",
    "session_timeout.py",
    "train_in_parallel.py",
    "webhook_handler.py",
]
SEVERAL_PROCESSES = ["bank_transfer.py", "batch_dask.py", "serverless_handler.py", "webhook_handler.py"]


def _example_in(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name> ARGS`` in ``cwd``, with the embedded store elsewhere."""
    if name == "batch_dask.py":
        pytest.importorskip("distributed")
    env = embedded_env(cwd.parent)
    return python_child([str(EXAMPLES / name), *args], env=env, cwd=cwd)


@pytest.mark.parametrize("name", TAKE_A_URL)
def test_an_example_asked_for_help_says_its_usage_and_writes_no_store(name: str, tmp_path: Path) -> None:
    """Before (h103), ``python examples/bank_transfer.py --help`` took ``--help`` for the storage
    path: it ran the whole example on a new store in ``./--help`` (so did every example but
    train_in_parallel.py); a second argument was ignored without a word."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = _example_in(cwd, name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and "storage" in done.stdout, done.stdout
    done = _example_in(cwd, name, str(tmp_path / "store"), "surplus")
    assert done.returncode == 2 and "unrecognized arguments: surplus" in done.stderr, done.stderr
    assert list(cwd.iterdir()) == [] and not (tmp_path / "store").exists()
    assert not (tmp_path / "data").exists()  # nor the embedded store


@pytest.mark.parametrize("name", SEVERAL_PROCESSES)
def test_an_example_of_several_processes_refuses_a_memory_store(name: str, tmp_path: Path) -> None:
    """Before (h103), these examples ran on ``memory://x``, each process on a memory of its own,
    and failed saying what was not so: webhook_handler.py 'the payment was applied more than
    once', serverless_handler.py a summary of 0 visits, bank_transfer.py 'no actor bob-...'."""
    done = _example_in(tmp_path, name, "memory://x")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "memory://" in done.stderr and "several processes" in done.stderr, done.stderr
    assert done.stdout == ""

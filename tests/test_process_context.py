"""The ``process_context`` fixture: children forked from a clean, preloaded fork server."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.testing import processes
from vactor_cloud.testing.lanes import StoreSpec


def _report(queue: Any, name: str) -> None:
    from vactor_cloud import runtime

    queue.put(
        {
            "env": os.environ.get(name),
            "threads": threading.active_count(),
            "runtime": runtime.current_runtime() is not None,
            "cwd": os.getcwd(),
            "preloaded": "s3fs" in __import__("sys").modules,
        }
    )


def _start_and_report(ctx: multiprocessing.context.ForkServerContext, name: str) -> dict[str, Any]:
    queue = ctx.Queue()
    child = ctx.Process(target=_report, args=(queue, name))
    child.start()
    try:
        return queue.get(timeout=60)  # type: ignore[no-any-return]
    finally:
        child.join(60)
        assert child.exitcode == 0


def test_a_child_gets_the_environment_its_parent_has_when_it_starts_it(
    process_context: multiprocessing.context.ForkServerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork server's children get the server's environment, as it was when the server started;
    a variable a test sets later (an endpoint, a setting) must reach them as it would reach a
    spawned child."""
    name = "VACTOR_TEST_PROCESS_CONTEXT_VARIABLE"
    _start_and_report(process_context, name)  # (the fork server runs from here on)
    monkeypatch.setenv(name, "set after the server started")
    assert _start_and_report(process_context, name)["env"] == "set after the server started"
    monkeypatch.delenv(name)
    assert _start_and_report(process_context, name)["env"] is None


def test_a_child_has_none_of_its_parents_threads_or_runtime_and_starts_with_the_imports_done(
    process_context: multiprocessing.context.ForkServerContext, store_spec: StoreSpec, tmp_path: Any
) -> None:
    store_spec.init()
    try:
        before = os.getcwd()
        os.chdir(tmp_path)
        try:
            seen = _start_and_report(process_context, "PATH")
        finally:
            os.chdir(before)
        assert threading.active_count() > 1  # (the parent's IO loop, at least)
    finally:
        vc.shutdown()
    assert seen["threads"] == 1 and not seen["runtime"], seen
    assert seen["cwd"] == str(tmp_path)
    assert seen["preloaded"] == ("s3fs" in processes.PRELOAD)


def test_spawn_context_is_still_spawn(spawn_context: multiprocessing.context.SpawnContext) -> None:
    assert spawn_context.get_start_method() == "spawn"


def _server_threads(ctx: multiprocessing.context.ForkServerContext) -> int:
    """The OS threads of the running fork server (Linux: ``/proc``)."""
    _start_and_report(ctx, "PATH")  # (the server runs from here on)
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


_PRELOADS_A_THREAD = """
from vactor_cloud.testing import processes
import tests.test_process_context as t
processes.PRELOAD.append("starts_a_thread")
print(t._server_threads(processes.process_context()))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_the_fork_server_runs_no_thread_a_child_could_inherit_half_done(
    process_context: multiprocessing.context.ForkServerContext, tmp_path: Any
) -> None:
    """A child is forked from the server: a thread the server ran (started by a preloaded
    module's import) would not run in the child, and a lock it held at the fork would stay
    held there for ever. None of :data:`PRELOAD` starts one; a module that did is seen."""
    assert _server_threads(process_context) == 1
    (tmp_path / "starts_a_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # (on the server's path through the environment: it ignores its parent's sys.path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), root]))
    seen = subprocess.run(
        [sys.executable, "-c", _PRELOADS_A_THREAD],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert seen.stdout.split()[-1] == "2", seen

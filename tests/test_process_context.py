"""The ``process_context`` fixture: children forked from a clean, preloaded fork server."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
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

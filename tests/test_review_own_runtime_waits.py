"""Review h82: ``own_runtime()`` (the ``vactor`` command's ``main()`` called in a program) once
its scope has ended, and waits of the main thread that still blocked in one long wait.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path`` (the signal tests on the lane's store).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.runtime import Runtime, get_runtime, own_runtime
from vactor_cloud.runtime_scope import carry_runtime

#: a hang bound, never the thing proven
HANG = 60.0


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


#: (test_work_in_flight_as_the_scope_closes_...) let go once the scope's runtime begins to close
_closing = threading.Event()


@vc.virtual_actor
class Late:
    """Its method, still running when the scope's runtime closes, calls another actor then."""

    def call_other(self) -> int:
        assert _closing.wait(HANG)
        return Counter.get_or_create("late-other").bump.run()


# -- own_runtime() after its scope ended -----------------------------------------------------------
def test_code_still_in_an_ended_scopes_context_starts_no_runtime_for_it(tmp_path: Path) -> None:
    """What carries the scope's context past its end (a thread started by ``carry_runtime``
    inside, a task on the IO loop created inside, a callback thread of a future made inside)
    and then calls ``get_runtime()``: that started a fresh runtime on the scope's store that
    nothing ever closed (the scope had closed its own already), a runtime leaked per such call
    and per ``main()``. It fails now with ``RuntimeShutdownError``, as a call the runtime's
    close refused does; ``init()`` there too."""
    vc.init(str(tmp_path / "a"))
    try:
        with own_runtime():
            vc.init(str(tmp_path / "b"))
            inside = get_runtime()
            later_get = carry_runtime(get_runtime)
            later_init = carry_runtime(vc.init)
        assert inside.closed
        with pytest.raises(vc.RuntimeShutdownError, match="own_runtime"):
            later_get()
        with pytest.raises(vc.RuntimeShutdownError, match="own_runtime"):
            later_init(str(tmp_path / "c"))
        assert not get_runtime().closed  # the process's runtime: untouched
    finally:
        vc.shutdown()


def test_work_in_flight_as_the_scope_closes_starts_no_runtime_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``run_async`` method still running as the scope ends (its close waits for it) calling
    another actor: the scope had let go of its runtime first, so that call started a fresh
    runtime on the scope's store, made the call there, and the runtime was never closed. It
    fails with ``RuntimeShutdownError`` now."""
    started: list[Runtime] = []
    closing = Runtime.close
    original_init = Runtime.__init__

    def close(self: Runtime, *args: Any, **kwargs: Any) -> None:
        _closing.set()
        closing(self, *args, **kwargs)

    def init(self: Runtime, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(Runtime, "close", close)
    monkeypatch.setattr(Runtime, "__init__", init)
    _closing.clear()
    vc.init(str(tmp_path / "a"))
    try:
        with own_runtime():
            vc.init(str(tmp_path / "b"))
            Counter.get_or_create("late-other")
            future = Late.get_or_create("late").call_other.run_async()
            before = len(started)
        assert isinstance(future.exception(HANG), vc.RuntimeShutdownError)
        assert len(started) == before  # no runtime started for the call
    finally:
        vc.shutdown()

"""Review h85: in which context a done callback of a ``run_async`` future runs, next to
``own_runtime()`` (the ``vactor`` command's ``main()`` called in a program).

A callback is the program's code: it runs in the context of the thread that registered it (as
asyncio's ``add_done_callback`` does), not in the context of the library thread that happens to
settle the future. Each test failed before the fix its docstring names. Local stores under
``tmp_path``, in this process.
"""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path
from typing import Any

import vactor_cloud as vc
from vactor_cloud.runtime import Runtime, get_runtime, own_runtime

#: a hang bound, never the thing proven
HANG = 60.0

#: let go by the test: the gated call returns
_gate = threading.Event()


@vc.virtual_actor
class Gated:
    def wait(self) -> bool:
        return _gate.wait(HANG)


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


class _Callback:
    """A done callback that, once ``go`` is set, records the runtime it sees and bumps a
    ``Tally`` on it (or the error it got)."""

    def __init__(self, go: threading.Event) -> None:
        self.go = go
        self.ran = threading.Event()
        self.runtime: Runtime | None = None
        self.bumped: int | None = None
        self.error: BaseException | None = None

    def __call__(self, _future: Any) -> None:
        try:
            assert self.go.wait(HANG)
            self.runtime = get_runtime()
            self.bumped = Tally.get_or_create("from-callback").bump.run()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ran.set()


def _register_outside(future: Any, callback: Any) -> None:
    """``future.add_done_callback(callback)`` from a thread of the program (outside any scope)."""
    thread = threading.Thread(target=future.add_done_callback, args=(callback,))
    thread.start()
    thread.join(HANG)


def test_a_callback_registered_outside_the_scope_uses_the_programs_runtime(tmp_path: Path) -> None:
    """A future made inside ``own_runtime()``, its callback registered by the program outside
    it, running once the scope has ended: the callback ran in the context of the pool thread
    that settled the future (the scope's, carried to the callback thread), so its
    ``get_runtime()`` and actor calls failed with ``RuntimeShutdownError`` (the ended scope's)
    instead of using the program's runtime."""
    _gate.clear()
    vc.init(str(tmp_path / "program"))
    try:
        program = get_runtime()
        scope_over = threading.Event()
        callback = _Callback(scope_over)
        with own_runtime():
            vc.init(str(tmp_path / "command"))
            future = Gated.get_or_create("gated").wait.run_async()
            _register_outside(future, callback)
            _gate.set()
            assert future.result(HANG) is True
        scope_over.set()
        assert callback.ran.wait(HANG)
        assert callback.error is None, callback.error
        assert callback.runtime is program
        assert callback.bumped == 1
        assert Tally.get_or_create("from-callback").bump.run() == 2  # on the program's store
    finally:
        _gate.set()
        vc.shutdown()


def test_a_callback_registered_inside_the_scope_uses_the_scopes_runtime(tmp_path: Path) -> None:
    """A future of the program's runtime, its callback registered inside ``own_runtime()``:
    the callback ran in the context of the program's pool thread that settled it, so it acted
    on the program's runtime, not the one of the code that registered it."""
    _gate.clear()
    vc.init(str(tmp_path / "program"))
    try:
        future = Gated.get_or_create("gated").wait.run_async()
        with own_runtime():
            vc.init(str(tmp_path / "command"))
            scope = get_runtime()
            now = threading.Event()
            now.set()
            callback = _Callback(now)
            future.add_done_callback(callback)
            _gate.set()
            assert callback.ran.wait(HANG)
            assert callback.error is None, callback.error
            assert callback.runtime is scope
            assert callback.bumped == 1
        assert get_runtime() is not scope
        assert Tally.get_or_create("from-callback").bump.run() == 1  # not on the program's store
    finally:
        _gate.set()
        vc.shutdown()


_tag: contextvars.ContextVar[str] = contextvars.ContextVar("h85_tag", default="none")


def test_a_callback_sees_the_context_variables_of_the_thread_that_registered_it(tmp_path: Path) -> None:
    """As asyncio's ``add_done_callback`` does: a context variable set by the registering
    code is what the callback sees, whichever thread settles the future. It saw the settling
    pool thread's (the default)."""
    _gate.clear()
    vc.init(str(tmp_path))
    try:
        future = Gated.get_or_create("gated").wait.run_async()
        seen: list[str] = []
        ran = threading.Event()

        def callback(_future: Any) -> None:
            seen.append(_tag.get())
            ran.set()

        token = _tag.set("registrant")
        try:
            future.add_done_callback(callback)
        finally:
            _tag.reset(token)
        _gate.set()
        assert ran.wait(HANG)
        assert seen == ["registrant"]
    finally:
        _gate.set()
        vc.shutdown()


def test_a_callback_registered_inside_an_ended_scope_is_refused_its_runtime(tmp_path: Path) -> None:
    """Registered inside the scope on a future of the program's, running after the scope
    ended: as any code left in an ended scope's context, it gets ``RuntimeShutdownError`` (no
    runtime is started for it). It ran in the settling pool thread's context, and used the
    program's runtime."""
    _gate.clear()
    vc.init(str(tmp_path / "program"))
    try:
        future = Gated.get_or_create("gated").wait.run_async()
        scope_over = threading.Event()
        callback = _Callback(scope_over)
        with own_runtime():
            vc.init(str(tmp_path / "command"))
            future.add_done_callback(callback)
        _gate.set()
        scope_over.set()
        assert callback.ran.wait(HANG)
        assert isinstance(callback.error, vc.RuntimeShutdownError)
    finally:
        _gate.set()
        vc.shutdown()

"""Review h131: the class-tag collision check (``ActorDefinition.register``) refuses no
legitimate program: a class defined again under its name (a notebook cell run twice, a module
reloaded), the same class run as ``__main__`` and imported by its module's name, classes
defined by several threads at once."""

from __future__ import annotations

import importlib
import runpy
import sys
import threading
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud.definition import _REGISTRY

pytestmark = pytest.mark.vactor_lanes("memory")

MODULE = """
import vactor_cloud as vc


@vc.virtual_actor
class Reloaded:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n
"""


def test_a_class_defined_again_under_its_name_is_not_refused() -> None:
    def cell() -> type:
        @vc.virtual_actor
        class Cell:
            def get(self) -> int:
                return 1

        return Cell

    first, second = cell(), cell()  # (a notebook cell run twice)
    assert first is not second
    assert _REGISTRY[first.name].cls is second.cls  # type: ignore[attr-defined]


def test_a_reloaded_module_and_its_main_run_define_their_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "h131_reloaded.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("h131_reloaded")
    try:
        importlib.reload(module)
        importlib.reload(module)
        # The same file run as a script: __main__:Reloaded beside h131_reloaded:Reloaded.
        names = runpy.run_path(str(tmp_path / "h131_reloaded.py"), run_name="__main__")
        assert names["Reloaded"].name == "__main__:Reloaded"
        assert module.Reloaded.name == "h131_reloaded:Reloaded"
    finally:
        sys.modules.pop("h131_reloaded", None)


def test_classes_defined_by_several_threads_at_once_are_all_defined() -> None:
    start = threading.Barrier(8)
    defined: list[str] = []
    failed: list[BaseException] = []

    def define(i: int) -> None:
        try:
            start.wait(10)
            for j in range(20):
                kind = type(f"Threaded{i}_{j}", (), {"__module__": __name__, "get": lambda self: 1})
                kind.__qualname__ = f"Threaded{i}_{j}"
                defined.append(vc.virtual_actor(kind).name)
                # and again, as a cell run twice
                defined.append(vc.virtual_actor(kind).name)
        except BaseException as exc:  # (reported below)
            failed.append(exc)

    threads = [threading.Thread(target=define, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failed, failed[:3]
    assert len(defined) == 8 * 20 * 2 and all(name in _REGISTRY for name in defined)

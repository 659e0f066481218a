"""Tests that assert on what a garbage collection frees collect with ``garbage.full_collection``.

Six tests asserted right after one ``gc.collect()`` (a store freed, cores or checkpoints left,
the per-actor state of 600 actors): each failed when that call met another thread's young
collection, as a runtime's threads make under load (``gc.collect()`` then returns 0 at once).
"""

from __future__ import annotations

import contextlib
import gc
import re
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import garbage
import pytest


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class _StaysInItsFinalizer(_Cycle):
    """Garbage whose finalizer keeps its thread inside the collection until ``leave`` is set."""

    def __init__(self, inside: threading.Event, leave: threading.Event) -> None:
        super().__init__()
        self.inside, self.leave = inside, leave

    def __del__(self) -> None:
        self.inside.set()
        self.leave.wait(garbage.HANG)


@contextlib.contextmanager
def a_young_collection_elsewhere() -> Iterator[Callable[[], None]]:
    """Another thread inside a collection of the youngest generation; call the function yielded
    to let it end (it returns once the collection has)."""
    inside, leave = threading.Event(), threading.Event()

    def collect_young() -> None:
        _StaysInItsFinalizer(inside, leave)
        gc.collect(0)

    thread = threading.Thread(target=collect_young, daemon=True)
    thread.start()
    assert inside.wait(garbage.HANG), "the other thread's collection never reached the finalizer"

    def end() -> None:
        leave.set()
        thread.join(garbage.HANG)
        assert not thread.is_alive()

    try:
        yield end
    finally:
        end()


@pytest.fixture
def no_automatic_collections() -> Iterator[None]:
    """No thread starts a collection but those the test asks for (the garbage stays put)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _old_garbage() -> weakref.ref[_Cycle]:
    """A reference cycle in the oldest generation, unreachable (as a closed runtime's store)."""
    cycle = _Cycle()
    garbage.full_collection()  # (it survives a full collection: it is in the oldest now)
    return weakref.ref(cycle)


@pytest.mark.usefixtures("no_automatic_collections")
def test_full_collection_frees_old_garbage_while_another_thread_collects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = _old_garbage()
    pauses: list[float] = []
    with a_young_collection_elsewhere() as end_it:
        assert gc.collect() == 0 and ref() is not None  # (what the six tests met)

        def pause(seconds: float) -> None:
            pauses.append(seconds)
            end_it()  # the other collection ends while this one waits

        monkeypatch.setattr(garbage, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=pause))
        garbage.full_collection()
    assert ref() is None
    assert len(pauses) == 1  # (it tried, met the other collection, waited, collected)


@pytest.mark.usefixtures("no_automatic_collections")
def test_full_collection_gives_up_at_its_bound_while_another_thread_collects() -> None:
    ref = _old_garbage()
    with a_young_collection_elsewhere(), pytest.raises(AssertionError, match="no full garbage"):
        garbage.full_collection(within=0.2)
    assert ref() is not None


def test_no_test_module_asserts_after_a_bare_gc_collect() -> None:
    """``gc.collect()`` is called in tests through ``full_collection`` only (this module aside)."""
    here = Path(__file__)
    bare = re.compile(r"\bgc\.collect\(\)")
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(here.parent.glob("test_*.py"))
        if path != here
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line.split("#")[0]) and "``" not in line
    ]
    assert offenders == []

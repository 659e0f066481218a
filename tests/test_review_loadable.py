"""A state that commits and then never loads (review-h35): each test failed on the code it was
written against.

The commit reads a state back before storing it when some object in it has its own rebuilding
code (test_review_limits). Two holes were left: the actor class's own ``__setstate__`` (the
state's top level is restored by it, never pickled as an instance, so nothing read it back),
and an object whose class defines only ``__getstate__``, returning what the default rebuild
cannot take (its ``__getstate__`` and the default ``__setstate__`` disagree).
"""

from __future__ import annotations

import copyreg
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.errors import StateSerializationError
from vactor_cloud.state import _rebuilds, dumps_state
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_QUIET = vc.Settings(storage="", head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init(settings=replace(_QUIET, storage=store_spec.url))
    try:
        yield store_spec
    finally:
        vc.shutdown()


def reopen(spec: StoreSpec) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    spec.init(settings=replace(_QUIET, storage=spec.url))


@vc.virtual_actor
class Renamed:
    """Its ``__getstate__`` and ``__setstate__`` disagree once ``rename`` ran: the state
    then holds ``count``, and ``__setstate__`` reads ``n``."""

    def __init__(self) -> None:
        self.n = 0
        self.key = "n"

    def __getstate__(self) -> dict[str, Any]:
        return {self.key: self.n, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.n = state["n"]
        self.key = state["key"]

    def incr(self) -> int:
        self.n += 1
        return self.n

    def rename(self) -> int:
        self.key = "count"
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@vc.virtual_actor(serializer="json")
class RenamedJson(Renamed):
    pass


class TupleState:
    """Defines ``__getstate__`` only, returning a tuple: the default rebuild takes a dict."""

    def __init__(self) -> None:
        self.x = 1

    def __getstate__(self) -> tuple[int]:
        return (self.x,)


class Refuses:
    """Its ``__setstate__`` raises at load."""

    def __init__(self) -> None:
        self.x = 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise RuntimeError("Refuses cannot be rebuilt")


@vc.virtual_actor
class Holder:
    def __init__(self) -> None:
        self.n = 0
        self.kept: list[object] = []

    def incr(self) -> int:
        self.n += 1
        return self.n

    def keep_tuple_state(self) -> int:
        self.kept.append(TupleState())
        return len(self.kept)

    def keep_refuses(self) -> int:
        self.kept.append(Refuses())
        return len(self.kept)

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@pytest.mark.parametrize("cls", [Renamed, RenamedJson], ids=["pickle", "json"])
def test_an_actor_whose_own_setstate_fails_at_load_is_refused_and_stays_loadable(
    spec: StoreSpec, cls: Any
) -> None:
    """The actor class's ``__setstate__`` restores the state's top level, which is never
    pickled as an instance: the read-back never saw it. ``rename`` made the state one its
    ``__setstate__`` raises ``KeyError`` on; it committed, and no process could load the actor
    again. Now the call fails with StateSerializationError naming the fix, nothing of it is
    stored, and the actor goes on (json actors too)."""
    handle = cls.get_or_create("renamed")
    assert handle.incr.run() == 1
    with pytest.raises(StateSerializationError, match="__setstate__") as caught:
        handle.rename.run()
    assert "KeyError" in str(caught.value)
    assert handle.incr.run() == 2
    reopen(spec)
    assert vc.get_actor("renamed").value.run() == 2  # a fresh process loads it
    assert vc.get_actor("renamed").incr.run() == 3


@pytest.mark.parametrize("method", ["keep_tuple_state", "keep_refuses"])
def test_a_state_holding_an_object_that_would_not_load_is_refused(spec: StoreSpec, method: str) -> None:
    """An object whose class defines only ``__getstate__``, returning a tuple, pickles; loading
    it raises (the default rebuild takes a dict), and the read-back never looked (it looked for
    ``__setstate__``, ``__reduce__`` ...). One whose ``__setstate__`` raises was refused already:
    kept here as the guard."""
    handle = Holder.get_or_create("holder")
    assert handle.incr.run() == 1
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        getattr(handle, method).run()
    assert handle.incr.run() == 2
    reopen(spec)
    assert vc.get_actor("holder").value.run() == 2
    assert vc.get_actor("holder").incr.run() == 3


@vc.virtual_actor
class NeverLoads:
    def __init__(self) -> None:
        self.n = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"n": self.n}

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise RuntimeError("NeverLoads cannot be rebuilt")

    def incr(self) -> int:
        self.n += 1
        return self.n


def test_an_actor_whose_first_state_would_not_load_is_never_created(spec: StoreSpec) -> None:
    """Creation commits step 0 from the state ``__init__`` left; it was stored, and the actor
    existed and could never be loaded. Now ``get_or_create`` raises, and nothing is created."""
    with pytest.raises(StateSerializationError, match="NeverLoads cannot be rebuilt"):
        NeverLoads.get_or_create("never")
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("never")
    assert vc.list_actors() == []


def test_the_message_of_a_state_that_does_not_unpickle_names_getstate(spec: StoreSpec) -> None:
    handle = Holder.get_or_create("holder")
    with pytest.raises(StateSerializationError, match="whose __getstate__ returns what"):
        handle.keep_tuple_state.run()


# -- which objects are read back: the rule, without a store -------------------------------------------
def _refuse() -> object:
    raise RuntimeError("refused at load")


class Registered:
    """Pickled by a reducer in ``copyreg.dispatch_table``, naming a callable that raises."""


def test_an_object_pickled_by_a_copyreg_reducer_is_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(copyreg.dispatch_table, Registered, lambda obj: (_refuse, ()))
    with pytest.raises(StateSerializationError, match="refused at load"):
        dumps_state({"kept": [Registered()]}, "pickle")


@dataclass(frozen=True, slots=True)
class SlotsPoint:
    x: int


class Plain:
    def __init__(self) -> None:
        self.x = 1


def test_only_own_rebuilding_code_is_read_back() -> None:
    """A frozen dataclass with slots gets ``__getstate__``/``__setstate__`` from the standard
    library: not read back (no cost); one of this module's classes with its own ``__getstate__``
    is."""
    assert "__getstate__" in vars(SlotsPoint)
    assert not _rebuilds(SlotsPoint)
    assert not _rebuilds(Plain)
    assert _rebuilds(TupleState)
    assert _rebuilds(Refuses)

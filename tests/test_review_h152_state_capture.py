"""Review h152, a mutation sweep of ``vactor_cloud/state.py`` (state capture, the serializers,
what is read back before it is stored). Each test fails with the mutation its docstring names
applied, but one, which found a defect: a json actor's next call ran on the cached instance,
not on its state as read back (``test_a_json_actor_runs_its_next_call_on_the_state_as_stored``).

The sweep (16 mutations, run against the state, loadability, execution-model and user-edge
modules on memory and local). Killed by the suite already: the json read-back check dropped
(``test_review_user_edges``), anything taken for plain data (``test_review_loadable``), the
copyreg reducer check, the restore of a class with ``__setstate__`` dropped or the read-back
instance not kept (``test_review_user_edges``, ``test_review_loadable``), ``__setstate__`` and
``__new__`` not counted as rebuilding code. Survivors, each killed by a test here:

* ``restore_instance`` not checking for a dict, or always ``object.__new__``;
* ``_plain`` not looking at a dict's keys; the rebuilder cache trusting an id alone;
* the checking pickler not noting exceptions; ``_rebuilds`` stopping at the first C base;
* ``RecursionError`` not among the failures refused (json); ``expect_serializer`` not raising.

Left, equivalent: ``capture_state`` not copying ``__dict__`` (serialized at once, kept by
nobody).
"""

from __future__ import annotations

import collections
import copyreg

import pytest

import vactor_cloud as vc
from vactor_cloud import state as state_module
from vactor_cloud.errors import IntegrityError, StateSerializationError
from vactor_cloud.state import dumps_state, expect_serializer, restore_instance
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _refuse_to_load() -> None:
    raise RuntimeError("this object never loads")


class LoadsNever:
    """Pickles (by its own ``__reduce__``) and never unpickles."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_load, ())


class Plain:
    pass


def test_an_object_that_never_loads_is_refused_as_a_dict_key_too() -> None:
    """Mutation: ``_plain`` not looking at a dict's keys. A state ``{"seen": {LoadsNever(): 1}}``
    was taken for plain data (pickled without the checking pickler, not read back) and stored:
    the actor could never be loaded again. As a value it was refused; as a key it must be too."""
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        dumps_state({"seen": {"x": LoadsNever()}}, "pickle")
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        dumps_state({"seen": {LoadsNever(): 1}}, "pickle")


def test_the_rebuilder_cache_does_not_answer_for_a_class_at_a_reused_id() -> None:
    """Mutation: ``_rebuilt_by_own_code`` trusting its cache by id alone. A class freed and
    another made at its address (ids are addresses in CPython) got the answer of the first: an
    object that never loads, taken for one that does, was stored unchecked."""
    state_module._REBUILT[id(LoadsNever)] = (Plain, False)  # (what a freed class left at this id)
    try:
        assert state_module._rebuilt_by_own_code(LoadsNever), "the cache answered for another class"
        with pytest.raises(StateSerializationError, match="does not unpickle"):
            dumps_state({"box": [LoadsNever(), Plain()]}, "pickle")
    finally:
        state_module._REBUILT.pop(id(LoadsNever), None)


def test_a_stored_state_that_is_no_dict_is_refused_by_a_class_without_setstate() -> None:
    """Mutation: ``restore_instance`` not checking that the state is a dict. A state stored by
    an earlier version of the class (whose ``__getstate__`` returned a list of pairs), loaded
    by one without ``__setstate__``, was poured into ``__dict__`` as if it were attributes (or
    failed with ``dict.update``'s own TypeError), instead of an error saying what to define."""
    with pytest.raises(StateSerializationError, match="define __setstate__"):
        restore_instance(Plain, [("count", 1)])
    with pytest.raises(StateSerializationError, match="not an attribute dict"):
        restore_instance(Plain, 7)


class Registry(dict[str, int]):
    """An actor class may extend a builtin when it stores its contents itself."""

    def __getstate__(self) -> dict[str, int]:
        return dict(self)

    def __setstate__(self, state: dict[str, int]) -> None:
        self.update(state)


def test_an_instance_of_a_class_extending_a_builtin_is_restored() -> None:
    """Mutation: ``restore_instance`` making every instance with ``object.__new__``. An actor
    class extending ``dict`` (allowed with ``__getstate__``/``__setstate__``) could be created
    and never loaded: ``object.__new__(Registry)`` is not safe, only ``dict.__new__`` is."""
    restored = restore_instance(Registry, {"a": 1})
    assert isinstance(restored, Registry) and restored == {"a": 1}


class TwoArgumentError(Exception):
    """The usual exception that pickles and never unpickles: ``__init__`` takes two arguments
    and passes one on (its pickle calls it with ``args``, one)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(what)
        self.why = why


def test_a_state_keeping_an_exception_that_never_loads_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: the checking pickler not noting exceptions (only classes with their own
    rebuilding code). An actor keeping the last error it met (``self.last = exc``) stored a
    state that no process could load again; it must fail its call instead.

    (Pickled as Python pickles it: importing ``distributed`` (a Dask test run earlier by the
    same xdist worker, which depends on scheduling, hence on load) registers tblib's reducer
    for every exception class defined by then, this one included, and it then round-trips:
    this test failed so, 'DID NOT RAISE' (review-h166).)"""
    monkeypatch.delitem(copyreg.dispatch_table, TwoArgumentError, raising=False)
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        dumps_state({"last": TwoArgumentError("lost", "timeout")}, "pickle")


@vc.virtual_actor(serializer="json")
class Tallies:
    """A json actor keeping its counts in a ``defaultdict``: json stores it as a dict, and reads
    it back as one."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def start_counting(self) -> None:
        self.counts = collections.defaultdict(int)

    def bump(self, key: str) -> int:
        self.counts[key] += 1
        return self.counts[key]


def test_a_json_actor_runs_its_next_call_on_the_state_as_stored(actor_store: StoreSpec) -> None:
    """Defect: a json actor's next call ran on the instance as the last call left it, not as
    stored. json writes a ``defaultdict`` (an ``IntEnum``, a ``str`` subclass) as plain data
    and reads back plain data that compares equal, so the read-back check let it pass; the
    cached instance kept the ``defaultdict``, and ``bump`` worked in this process until the
    actor was evicted, and failed (``KeyError``) in every other process. What a call sees must
    not depend on the cache: it runs on what every process loads."""
    tallies = Tallies.get_or_create("h152-tallies")
    tallies.start_counting.run()
    with pytest.raises(KeyError):
        tallies.bump.run("a")  # as every other process, and this one after an eviction, runs it
    vc.shutdown()
    actor_store.init()
    with pytest.raises(KeyError):
        Tallies.get_or_create("h152-tallies").bump.run("a")


class _RebuildsBadly:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_load, ())


class Number(int, _RebuildsBadly):
    """An ``int`` whose rebuilding code comes from a Python base after the C one in its MRO."""


def test_rebuilding_code_of_a_base_after_a_builtin_in_the_mro_is_noticed() -> None:
    """Mutation: ``_rebuilds`` stopping at the first base implemented in C (``break`` for
    ``continue``). ``Number(int, _RebuildsBadly)`` pickles by its mixin's ``__reduce__`` and
    never loads: taken for a class without rebuilding code, its state was stored unchecked."""
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        dumps_state({"n": Number(5)}, "pickle")


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_a_state_nested_too_deep_is_refused_with_a_clear_error(serializer: str) -> None:
    """Mutation: ``RecursionError`` not among the failures a state's serialization is refused
    for. A state nested deeper than the recursion limit reached its caller as a bare
    ``RecursionError`` instead of ``StateSerializationError`` saying what could not be stored."""
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(StateSerializationError, match="cannot serialize"):
        dumps_state({"tree": nested}, serializer)


def test_a_stored_serializer_other_than_the_class_s_is_refused_before_decoding() -> None:
    """Mutation: ``expect_serializer`` not raising on a mismatch (it answers the class's
    serializer anyway). A step of a json actor whose metadata says ``"pickle"`` (forged, or a
    class whose serializer changed) was then decoded as json, failing with whatever the bytes
    gave, or read as another state: it is an ``IntegrityError`` naming the object, raised
    before any byte is decoded."""
    assert expect_serializer("json", "json", "actors/a/steps/1") == "json"
    with pytest.raises(IntegrityError, match="refused without decoding"):
        expect_serializer("pickle", "json", "actors/a/steps/1")

"""Hostile review (h159) of the failed creation's locals clearing (``creation._forget_locals``).

A failure that is an exception group holds its members, each with its own traceback: the
frames they passed through (and their locals, the arguments) were left held."""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Iterator

import pytest
from garbage import full_collection
from store_helpers import retune
from test_failed_creation_locals import _GIVEN, Blob, _check

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


@vc.virtual_actor
class RefusesInAGroup:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        problems: list[Exception] = []
        try:
            _check(blob)
        except ValueError as exc:
            problems.append(exc)
        raise ExceptionGroup("the creation failed", problems)

    def touch(self) -> None:
        pass


def test_a_failed_creation_raising_an_exception_group_holds_not_its_arguments(
    actor_store: StoreSpec,
) -> None:
    """Before: ``_check``'s frame (in the member's traceback) kept the argument alive."""
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesInAGroup.get_or_create("grouped", Blob())
    with pytest.raises(ExceptionGroup) as first:
        handle.ready().result(30)
    assert first.group_contains(ValueError, match="refused a blob")
    del first
    full_collection()
    assert len(_GIVEN) == 1
    assert _GIVEN[0]() is None, "a member of the failed creation's group holds its argument"


def _checked_one_by_one(blob: Blob) -> Iterator[int]:
    yield len(blob.data)
    raise ValueError("refused the blob's second part")


@vc.virtual_actor
class RefusesFromAGenerator:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        self.sizes = list(_checked_one_by_one(blob))

    def touch(self) -> None:
        pass


def test_a_failed_creation_raising_out_of_a_generator_holds_not_its_arguments(
    actor_store: StoreSpec,
) -> None:
    """A generator the failure left is finished: its frame (in the traceback, holding the
    argument) is cleared too. Before: generators' frames were all passed over, finished or not."""
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesFromAGenerator.get_or_create("generated", Blob())
    with pytest.raises(ValueError, match="second part") as first:
        handle.ready().result(30)
    text = "".join(traceback.format_exception(first.value))
    assert "_checked_one_by_one" in text, text
    del first
    full_collection()
    assert len(_GIVEN) == 1
    assert _GIVEN[0]() is None, "a finished generator's frame in the failure holds the argument"


def test_forgetting_locals_ends_on_a_cycle_of_contexts_and_nested_groups() -> None:
    """Exceptions chained in a cycle, and a group holding itself through a member's context:
    each is visited once (no endless walk), and each finished frame is cleared."""
    from vactor_cloud.creation import _forget_locals

    def fail(blob: Blob) -> ValueError:
        try:
            raise ValueError(len(blob.data))
        except ValueError as exc:
            return exc

    blob = Blob()
    held = weakref.ref(blob)
    first, second = fail(blob), fail(blob)
    first.__context__, second.__context__ = second, first
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [first]), second])
    first.__cause__ = group
    del blob
    _forget_locals(group)
    full_collection()
    assert held() is None

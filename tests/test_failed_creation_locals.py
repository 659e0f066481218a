"""A handle kept alive after its background creation failed holds the failure (``ready()``
raises it every time), not the arguments ``__init__`` was given.

The failure's traceback holds the frames it passed through, ``__init__``'s among them, and each
frame its locals: the arguments, which may be large (a dataset to start from) or secret. The
creation now clears the locals of the finished frames of its failure (and of the failures chained
to it) as it settles: the traceback still prints, line by line."""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Iterator

import pytest
from garbage import full_collection
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: a weak reference to each argument an ``__init__`` below was given (shared with the
#: h159 and h160 modules, which import it with ``Blob`` and ``_check``)
_GIVEN: list[weakref.ref[object]] = []


class Blob:
    """An argument: a large one, in a real program."""

    def __init__(self) -> None:
        self.data = bytearray(1000)


def _check(blob: Blob) -> None:
    raise ValueError(f"refused a blob of {len(blob.data)} bytes")


@vc.virtual_actor
class RefusesItsArgument:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        try:
            _check(blob)
        except ValueError as exc:
            raise RuntimeError("the creation failed") from exc

    def touch(self) -> None:
        pass


def test_a_kept_handle_of_a_failed_creation_holds_not_its_arguments(actor_store: StoreSpec) -> None:
    """Before: the argument stayed alive as long as the handle (through the failure's
    traceback: ``__init__``'s frame and ``_check``'s, in the chained cause)."""
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesItsArgument.get_or_create("kept", Blob())
    with pytest.raises(RuntimeError, match="the creation failed") as first:
        handle.ready().result(30)
    text = "".join(traceback.format_exception(first.value))
    assert "raise RuntimeError" in text and "_check(blob)" in text and "refused a blob" in text, text
    del first
    with pytest.raises(RuntimeError, match="the creation failed"):
        handle.ready().result(30)  # (the handle still says why, every time)
    full_collection()
    assert len(_GIVEN) == 1
    assert _GIVEN[0]() is None, "the failed creation's argument is held by the handle"


#: the exception ``FailsFromAGeneratorsException`` raises its failure from
_CAUSES: list[BaseException] = []


def _suspended_in_its_handler() -> Iterator[object]:
    """Yields the exception it is handling, then waits there (its frame in that exception's
    traceback, suspended)."""
    try:
        raise KeyError("handled by a generator")
    except KeyError as exc:
        yield exc
        yield "still running"


@vc.virtual_actor
class FailsFromAGeneratorsException:
    def __init__(self) -> None:
        # (a module's global, not an argument: arguments arrive as copies, without traceback)
        raise RuntimeError("the creation failed") from _CAUSES[-1]

    def touch(self) -> None:
        pass


def test_a_generator_suspended_in_a_chained_exceptions_traceback_is_left_running(
    actor_store: StoreSpec,
) -> None:
    """Clearing a suspended generator's frame closes the generator (before Python 3.13): the
    clearing passes over generators' and coroutines' frames, whether finished or not."""
    retune(wait_for_init=False)
    generator = _suspended_in_its_handler()
    cause = next(generator)
    assert isinstance(cause, KeyError) and cause.__traceback__ is not None
    _CAUSES.append(cause)
    handle = FailsFromAGeneratorsException.get_or_create("chained")
    with pytest.raises(RuntimeError, match="the creation failed"):
        handle.ready().result(30)
    assert next(generator) == "still running"

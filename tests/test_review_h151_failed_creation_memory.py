"""Review h151: what a failed background creation's ``ready()`` leaves held once the handle is gone.

h150 made ``handle.ready()`` load the actor first and raise the creation's failure in place of
``ActorNotFoundError``. The load's failure is kept by the actor's core (``_load_failed``, the
answer for callers queued behind that load) for as long as the core stays cached: with its
traceback, which holds ``ready()``'s check frame, whose locals hold the handle, the creation and
its failure, whose traceback holds the frames of ``__init__`` and the arguments it was given.
Dropping the handle freed none of it. The core now keeps a failed load only while a caller
waits for it. (Under pytest the warning that the creation failed, its record kept by the log
capture, held the failure too: it now carries the failure's text.)"""

from __future__ import annotations

import gc
import weakref

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: a weak reference to each argument an ``__init__`` below was given
_GIVEN: list[weakref.ref[object]] = []


class Blob:
    """An argument: a large one, in a real program."""

    def __init__(self) -> None:
        self.data = bytearray(1000)


@vc.virtual_actor
class RefusesItsArgument:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        raise ValueError("the creation failed")

    def touch(self) -> None:
        pass


def test_the_arguments_of_a_failed_creation_are_freed_once_its_handle_is_dropped(
    actor_store: StoreSpec,
) -> None:
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesItsArgument.get_or_create("held", Blob())
    with pytest.raises(ValueError, match="the creation failed"):
        handle.ready().result(30)
    with pytest.raises(ValueError, match="the creation failed"):
        handle.ready().result(30)  # (a second time: the failed load met again)
    assert len(_GIVEN) == 1
    del handle
    gc.collect()
    assert _GIVEN[0]() is None, "the failed creation's argument is still held"


@pytest.mark.usefixtures("runtime_off")
def test_ready_on_a_handle_whose_creation_failed_on_another_store_says_there_is_no_actor() -> None:
    """A handle's failed creation speaks for the store it ran on: after ``init`` of another
    store, which has no such actor, ``ready()`` raised that creation's failure (before) where
    the store in use has no actor at all."""
    vc.init(settings=vc.Settings(storage="memory://h151-first", wait_for_init=False))
    try:
        handle = RefusesItsArgument.get_or_create("moved", Blob())
        with pytest.raises(ValueError, match="the creation failed"):
            handle.ready().result(30)
    finally:
        vc.shutdown()
    vc.init(settings=vc.Settings(storage="memory://h151-second", wait_for_init=False))
    try:
        with pytest.raises(vc.ActorNotFoundError):
            handle.ready().result(30)
    finally:
        vc.shutdown()

"""Review h153: a handle given by ``get_or_create`` with ``wait_for_init=False`` remembers its
creation (h150): ``ready()`` raises that creation's failure. ``copy.copy`` and ``copy.deepcopy``
went through ``__reduce__`` (the pickle's path) and dropped it: ``ready()`` on the copy raised
``ActorNotFoundError`` where the original raised the failure. A copy made in this process now
keeps it; a pickled handle cannot carry it (another process has no such creation), and says
``ActorNotFoundError`` (docs/concepts.md says so)."""

from __future__ import annotations

import copy
import pickle

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class FailsToInit:
    def __init__(self) -> None:
        raise ValueError("the creation failed")

    def add(self, k: int) -> int:
        return k


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_a_copy_of_the_handle_of_a_failed_creation_raises_its_failure_as_the_original(
    actor_store: StoreSpec, duplicate: object
) -> None:
    retune(wait_for_init=False)
    handle = FailsToInit.get_or_create("c")
    vc.get_runtime().wait_created("c")
    copied = duplicate(handle)  # type: ignore[operator]
    assert copied is not handle and copied.actor_id == "c"
    for each in (handle, copied):
        with pytest.raises(ValueError, match="the creation failed"):  # before: ActorNotFoundError (the copy)
            vc.get(each.ready(), timeout=10)
    assert copied._made_for() == handle._made_for()


def test_an_unpickled_handle_of_a_failed_creation_knows_no_creation(actor_store: StoreSpec) -> None:
    """(As in another process: the failure stayed with the process that ran the creation.)"""
    retune(wait_for_init=False)
    handle = FailsToInit.get_or_create("p")
    vc.get_runtime().wait_created("p")
    with pytest.raises(vc.ActorNotFoundError):
        vc.get(pickle.loads(pickle.dumps(handle)).ready(), timeout=10)

"""Hostile review h211: per-process structures that grow with use stay bounded.

Each test drives one structure with many distinct ids in one process (a long-lived batch
worker's or server's day, shortened) and counts its entries at a quarter of the way and at the
end: a count that grows with the ids past its bound is the defect.
"""

from __future__ import annotations

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def test_deletes_of_ids_that_hold_no_actor_leave_no_key_behind(actor_store: StoreSpec) -> None:
    """``delete_actor`` of an id that never held an actor raises ``ActorNotFoundError``: a sure
    answer, nothing was written. The runtime kept that delete's key by actor id all the same
    (``Runtime.delete_keys``, meant for deletes left in doubt), one entry per id, for the
    process's life: a clean-up job deleting ids that may not exist grew it with every id."""
    runtime = vc.get_runtime()
    ids = 2000
    counted: list[int] = []
    for i in range(ids):
        with pytest.raises(vc.ActorNotFoundError):
            vc.delete_actor(f"never-made-{i}")
        if i + 1 in (ids // 4, ids):
            counted.append(len(runtime.delete_keys))
    assert counted == [0, 0]

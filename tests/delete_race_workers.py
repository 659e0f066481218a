"""Child-process entry points for tests/test_review_delete_races.py (importable by spawned children)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier

from child_processes import report_stacks_on_request
from test_review_delete_races import Ledger

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()

#: added to the exit code of a child that ran to its end (an error exits 1)
DONE = 16


def delete_each_at_the_barrier(spec: StoreSpec, actor_ids: list[str], barrier: Barrier) -> None:
    """Delete each of ``actor_ids`` as soon as the other child is ready to delete it too; exit
    with ``DONE`` plus the mask of those this process deleted (bit ``i``: ``actor_ids[i]``).
    (``Ledger`` is defined here: the clean-up reads its idempotency table.)"""
    assert Ledger is not None
    spec.init(settings=vc.Settings(storage=""))
    mask = 0
    for index, actor_id in enumerate(actor_ids):
        barrier.wait(60)
        if vc.delete_actor(actor_id):
            mask |= 1 << index
    vc.shutdown()
    raise SystemExit(DONE + mask)

"""The storage boundary under faults, from a hostile review (review-h43): deletes bounded per
folder where each key is its own request (GCS, local, memory), server answers the contract may
not expect (a repeated listing page token, 409 on a GCS conditional upload, a body cut short),
and a silent GCS endpoint: every operation, ``close`` included, ends within its deadline.

No timing assertions: what may hang is bounded by ``HANG``; requests are held by test stores
until the test releases them, or answered by loopback servers written here."""

from __future__ import annotations

import pytest
from combining_workers import OrderLog
from test_combining import commit_behind_its_back, foreign_box, init_switchable, pending_posts, post_adds
from test_review_post_deletes import HANG, StalledDeletes, wait_until

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


# -- (1) deletes bounded per folder where each key is its own request -------------------------
@pytest.mark.vactor_lanes("memory", "local", "fakegcs")
@pytest.mark.usefixtures("runtime_off")
def test_a_folder_on_a_store_without_batch_deletes_keeps_a_bounded_number_of_deletes_in_flight(
    store_spec: StoreSpec,
) -> None:
    """Where each key is its own DELETE (GCS, local, memory), every fold's applied posts went
    as a ``delete_many`` of their own, at once: with deletes stalled (a slow or rate-limited
    endpoint), a folder that kept folding had one more set of requests in flight per fold, with
    no bound (on GCS each holds a connection of the pool its commits need). At most one
    ``delete_many`` round (``ObjectStore.delete_parallel`` requests) per folder; the keys of the
    folds that end meanwhile wait for the next round."""
    spec_store = init_switchable(store_spec, combine_window=60.0)
    runtime = vc.get_runtime()
    store = StalledDeletes(spec_store.inner)
    runtime.store = store
    assert store.delete_batch == 1  # the store's own: one key per request
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["other/0"])
    commit_behind_its_back("a")  # our next commit loses the race, posts, takes the lease, folds
    log.add.run("me/1")
    wait_until(lambda: store.in_flight == 0, "the first fold's delete never ended")
    store.stalled.set()
    folds = store.delete_parallel + 8
    for i in range(1, folds + 1):
        post_adds(foreign_box("a"), [f"other/{i}"])
        assert vc.get(log.add.run_async(f"me/{i + 1}"), timeout=HANG) > 0
    assert store.held.wait(HANG), "no fold's posts were deleted"
    store.release.set()
    wait_until(lambda: not pending_posts("a"), f"posts left behind: {pending_posts('a')}")
    assert store.most_in_flight <= store.delete_parallel, store.sent
    applied: list[str] = log.applied.run()
    assert applied == ["me/0"] + [t for i in range(folds + 1) for t in (f"other/{i}", f"me/{i + 1}")]

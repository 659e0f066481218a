"""Review h238: a mutation sweep of the contention path (TABLE BELOW, filled in at the end)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from actors import OrderLog
from test_combining import give_up_on_a_post, heal_and_fold, init_switchable, wait_for, wait_for_no_posts

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.lease import LeaseStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _lease_of(actor_id: str) -> Any:
    runtime = vc.get_runtime()
    return _sync.sync(LeaseStore(runtime.store, actor_id, runtime.settings.signing_key).read())


@pytest.mark.usefixtures("runtime_off")
def test_a_batch_after_a_call_given_up_on_posts_behind_it_long_after_the_combine_window(
    store_spec: StoreSpec,
) -> None:
    """A call given up on (``CallPendingError``) leaves its post pending; the next batch must
    post behind it, whenever it comes: a batch that raced would apply before the pending post
    (per-process order lost). Here the next batch comes after ``combine_window`` has passed
    since the post, and after the lease was given up as idle: only the pending post itself
    says "contended". (F01: ``_contended`` without ``self._outstanding is not None``.)"""
    store = init_switchable(store_spec, combine_window=0.05)
    log, _ = give_up_on_a_post(store, commit_timeout=0.3)
    # The outage goes on while our holder gives the lease up as idle (no other's post).
    assert wait_for(lambda: not _lease_of("a").valid())
    time.sleep(0.1)  # (past combine_window since our post: a condition, not a measurement)
    assert heal_and_fold(store, log) == 3
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert wait_for_no_posts("a") == []

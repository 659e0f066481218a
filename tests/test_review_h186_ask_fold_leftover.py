"""Review h186: the fold ``call_outcome`` queues (``ActorCore._fold_given_up_posts``) over a post
another process applied but did not delete (its folder died between its step put and the
post's delete), in requests.

Before: the task listed the post, took the folder lease (a GET and a PUT), built a fold on its
cached step (the one before that folder's), lost the put of it to that folder's step, read
that step, listed and read the post again, found it applied, deleted it and released the
lease: 12 requests, among them 3 on the lease and a step PUT. Now: the listing, the newest
step's probe, the post's read, its delete.
"""

from __future__ import annotations

import pytest
from test_combining import (
    foreign_box,
    init_switchable,
    post_adds,
    wait_for_no_posts,
)
from test_review_h178_orphaned_post import ask_until_known
from test_review_h179_given_up_fold import applied_elsewhere_once_the_task_is_queued
from test_review_h182_ask_fold_costs import let_go_writing_nothing, wait_until_quiet

import vactor_cloud as vc
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.testing.lanes import StoreSpec

#: Request counts of this process's own protocol: memory and local suffice.
pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_a_post_another_process_applied_and_left_is_deleted_without_the_lease_or_a_step(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = init_switchable(store_spec)
    held, call_id = applied_elsewhere_once_the_task_is_queued(store, monkeypatch)
    requests, counted = let_go_writing_nothing(store, held)
    assert counted[("delete", "mail")] == 1, counted
    # the listing, the probe (step 3, none at 4), the post's read, its delete
    assert len(requests) <= 5, counted
    assert wait_for_no_posts("a") == []
    assert vc.get_runtime().core("a")._outstanding is None  # applied: our next call need not post
    assert ask_until_known(call_id)[0] == "from step 3"
    assert vc.get_actor("a").applied.run() == ["me/0"]  # (not applied again: step 2's state)


@pytest.mark.usefixtures("runtime_off")
def test_a_post_left_behind_beside_one_still_pending_is_deleted_and_the_pending_one_folded_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly once beside it: another sender's post, not applied, waits too. The task folds
    it (taking the lease as before) and applies the left-behind post no second time."""
    store = init_switchable(store_spec)
    held, call_id = applied_elsewhere_once_the_task_is_queued(store, monkeypatch)
    post_adds(foreign_box("a"), ["f/0"])
    with RequestTrace(store).installed() as trace:
        held.let_go()
        wait_until_quiet(store)
    assert [r.kind for r in trace.requests if r.key.endswith("/lease")] == ["get", "put", "put"]
    assert wait_for_no_posts("a") == []
    assert ask_until_known(call_id)[0] == "from step 3"
    assert vc.get_actor("a").applied.run() == ["me/0", "f/0"]

"""Review h131: the folder lease given up by a serving round that ended on an unexpected
exception (``ActorCore._serve_round`` -> ``_give_up_lease``) is released in the background. A
release that arrives late, after this process took the lease again for its next fold, must
not clear the newer lease (the release is conditional on the version it gave up)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from test_combining import Switchable
from test_review_actor_cache import HANG
from test_review_folding_round_errors import a_serving_round_ended_by_a_defect
from test_review_h133_lease_at_shutdown import a_holder

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec


@pytest.mark.usefixtures("runtime_off")
def test_a_late_release_of_a_given_up_lease_does_not_clear_the_lease_taken_again(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, holder, leases = a_holder(store_spec)
    store = runtime.store
    assert isinstance(store, Switchable)
    hot = vc.get_actor("hot")
    given_up = _sync.sync(leases.read())
    assert given_up.valid()
    # The release's put is held until the lease was taken again.
    release_held = threading.Event()
    retaken = threading.Event()
    inner_around = store._around

    async def hold_the_release(operation: str, key: str, run: Any, **kw: Any) -> Any:
        # (A renewal's put is not held: one in flight at the give-up releases the lease as it
        # lands, by the same release this holds, started once it ended.)
        if (
            operation == "put"
            and key.endswith("/lease")
            and not holder._renewing
            and not release_held.is_set()
        ):
            release_held.set()
            while not retaken.is_set():
                await asyncio.sleep(0.002)
        return await inner_around(operation, key, run, **kw)

    store._around = hold_the_release  # type: ignore[method-assign]
    assert a_serving_round_ended_by_a_defect(monkeypatch, holder), "no serving round ran"
    assert release_held.wait(HANG), "the lease was not given up"
    assert not holder._holding()
    # This process takes the lease again (its own, still valid in the store), and folds.
    assert holder._lease_for_fold()
    retaken_lease = _sync.sync(leases.read())
    assert retaken_lease.valid() and retaken_lease.version != given_up.version
    retaken.set()
    # (Stored by the thread that started the release, which the IO loop may have run first.)
    deadline = time.monotonic() + HANG
    while holder._releasing is None and time.monotonic() < deadline:
        time.sleep(0.002)
    releasing = holder._releasing
    assert releasing is not None
    releasing.result(HANG)
    # The late release was refused: the newer lease stands, and this process holds it.
    lease = _sync.sync(leases.read())
    assert lease.valid() and lease.holder == runtime.post_sender.id, lease
    assert holder._holding() and holder._lease is not None and holder._lease.version == lease.version
    assert hot.add.run("me/2") > 0
    assert hot.applied.run()[-1] == "me/2"
    vc.shutdown()

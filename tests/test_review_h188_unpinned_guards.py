"""Guards of this morning's changes that no test noticed removed (review h188's mutation sweep).

1. ``call_outcome`` that gives up at ``Settings.deadline`` (its reads kept failing) is an
   operation that did not finish within ``Settings.deadline``: it counts ``deadline_timeouts``
   and logs it at WARNING, as docs/observability.md says of that counter (it counted nothing).
"""

from __future__ import annotations

import logging
import uuid

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import init_switchable
from test_review_h183_outcome_not_found import _a_new_process
from test_stats import moved, records

import vactor_cloud as vc
from vactor_cloud.errors import RetryableStorageError, StorageTimeoutError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


# -- 1. call_outcome's own deadline -------------------------------------------------------------
def test_a_call_outcome_that_gives_up_at_its_deadline_counts_a_deadline_timeout(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every LIST of the inbox fails (transiently): the ask reads again until
    ``Settings.deadline``, then says "not known yet" (``StorageTimeoutError``), counted once in
    ``deadline_timeouts`` and logged at WARNING; no commit retry is counted (it is a read)."""
    init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    store = _a_new_process(store_spec, monkeypatch)
    failed: list[str] = []

    def fail_inbox_listings(operation: str, key: str) -> Exception | None:
        if operation == "list" and key.startswith(posts_prefix("a")):
            failed.append(key)
            return RetryableStorageError("injected: the inbox listing failed", key)
        return None

    handle.applied.run()  # (the actor loaded, under the wide deadline)
    store.fail = fail_inbox_listings
    before = vc.stats()
    retune(deadline=0.5)  # (the ask's bound alone)
    with (
        caplog.at_level(logging.WARNING, logger="vactor_cloud"),
        pytest.raises(StorageTimeoutError) as raised,
    ):
        handle.call_outcome(uuid.uuid4().hex)
    retune(deadline=30.0)
    assert "ask call_outcome again later" in str(raised.value)
    assert failed, "the ask never listed the inbox"
    assert moved(before) == {"deadline_timeouts": 1}
    assert records(caplog, logging.WARNING, "Settings.deadline")

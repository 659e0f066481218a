"""Every public way to compact keeps ``min_age >= fresh_window`` (docs/retention.md).

A writer whose cache is younger than ``fresh_window`` commits without reading the ``gc``
watermark. A compaction with a smaller ``min_age`` may delete the step number that writer
is about to create: its create-only put then succeeds on the freed key, and the call is
acknowledged while no step of the history holds it (a lost update; for a posted call,
``call_outcome`` then answers from steps that are not the history's). Two runtimes on one
store stand in for two processes: this one writes, ``other`` calls and compacts.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from actors import Tally
from store_helpers import init, other_process

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.compaction import compact
from vactor_cloud.future import ActorFuture
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: long enough that this process's cache stays fresh through each test, however slow the host
FRESH = 60.0


def call_on(runtime: Runtime, actor_id: str, method: str, *args: Any) -> Any:
    future: ActorFuture[Any] = ActorFuture()
    runtime.core(actor_id).submit(PendingCall(method, args, {}, False, future, uuid.uuid4().hex))
    return future.result(30)


def _warm_writer_elsewhere(spec: StoreSpec) -> tuple[vc.ActorHandle, Runtime]:
    """Step 1 here, step 2 by ``other`` (its cache: fresh, at step 2), steps 3 and 4 here."""
    init(spec, fresh_window=FRESH)
    handle = Tally.get_or_create("t")
    assert handle.incr.run() == 1
    other = other_process(spec, fresh_window=FRESH)
    assert call_on(other, "t", "incr", 1) == 2
    assert handle.incr.run() == 3
    assert handle.incr.run() == 4
    return handle, other


def _no_update_lost(other: Runtime) -> None:
    # Had steps 0..3 gone, other's put of step 3 would land on the freed key unread: answer 3.
    assert call_on(other, "t", "incr", 1) == 5
    assert Tally.get_or_create("t").get.run() == 5


def test_compact_refuses_a_min_age_below_the_writers_fresh_window(spec: StoreSpec) -> None:
    _, other = _warm_writer_elsewhere(spec)
    try:
        with pytest.raises(ValueError, match=r"fresh_window=60"):
            _sync.sync(compact(vc.get_runtime().log("t"), keep_last=1, min_age=0, fresh_window=FRESH))
        _no_update_lost(other)
    finally:
        other.close()


def test_compact_refuses_a_min_age_below_the_default_fresh_window(spec: StoreSpec) -> None:
    """Without ``fresh_window``, the writers' is taken as ``Settings``' default (5 s)."""
    init(spec)
    Tally.get_or_create("t").incr.run()
    with pytest.raises(ValueError, match=r"fresh_window=5"):
        _sync.sync(compact(vc.get_runtime().log("t"), keep_last=1, min_age=1.0))
    assert _sync.sync(vc.get_runtime().log("t").list_steps()) == [0, 1]


@pytest.mark.parametrize("how", ["compact", "compact_async"])
def test_the_handle_refuses_a_min_age_below_its_runtimes_fresh_window(spec: StoreSpec, how: str) -> None:
    handle, other = _warm_writer_elsewhere(spec)
    try:
        with pytest.raises(ValueError, match=r"fresh_window=60"):
            if how == "compact":
                handle.compact(keep_last=1, min_age=0)
            else:
                asyncio.run(handle.compact_async(keep_last=1, min_age=0))
        _no_update_lost(other)
    finally:
        other.close()

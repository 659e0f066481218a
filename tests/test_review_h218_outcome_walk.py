"""``call_outcome`` of a call this process gave up on walks down from the newest step to the
step that applied it. A step, once written, does not change: a try after a failed read reads
only the steps the tries before it had not read. Walking again from the top re-read every
step after each failed read, so under transient failures on one read in a few (a store
throttling, say) a long walk never came through in one piece: ``call_outcome`` tried until
``Settings.deadline`` and raised ``StorageTimeoutError``."""

from __future__ import annotations

import secrets
import tracemalloc
from collections import Counter

import pytest
from garbage import full_collection
from test_combining import gave_up_then_folded, init_switchable

import vactor_cloud as vc
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.keys import step_of
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: steps committed above the one that applied the call
LATER = 16
#: which step GETs fail (counted from the first one ``call_outcome`` makes): each walk from the
#: top that reads no step twice is cut short before the step that applied the call
FAILING = frozenset({5, 10, 15})


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_reads_each_step_of_its_walk_once_however_many_reads_fail(
    store_spec: StoreSpec,
) -> None:
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = gave_up_then_folded(store, commit_timeout=0.3)  # me/1 given up on, then applied
    for i in range(LATER):
        log.add.run(f"me/{3 + i}")
    record = vc.get_runtime().core("a").record
    assert record is not None
    newest = record.step
    gets = 0
    read: Counter[str] = Counter()

    def every_few_step_gets_fail(operation: str, key: str) -> Exception | None:
        nonlocal gets
        step = step_of(key) if operation == "get" else None
        if step is None or step >= newest:
            return None  # (the newest step and above: read again after a failure, to see news)
        gets += 1
        if gets in FAILING:
            return RetryableStorageError("injected: a throttled read", key)
        read[key] += 1
        return None

    store.fail = every_few_step_gets_fail
    assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2
    assert gets >= max(FAILING), gets  # (each failure injected, the walk long enough for them)
    assert max(read.values()) == 1, read


#: the size of each token the large actor's log appends (hex: its state does not compress away)
TOKEN_BYTES = 64 * 1024


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_holds_none_of_the_states_of_the_steps_it_walked(store_spec: StoreSpec) -> None:
    """The steps a walk keeps (read once each, above) are kept without their states: a walk
    down ``LATER`` steps of an actor whose state grows by ``TOKEN_BYTES`` a step held every
    state it passed (their sum about 9 times the newest) until ``call_outcome`` returned."""
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = gave_up_then_folded(store, commit_timeout=0.3)  # me/1 given up on, then applied
    for _ in range(LATER):
        log.add.run(secrets.token_hex(TOKEN_BYTES // 2))
    record = vc.get_runtime().core("a").record
    assert record is not None
    newest_state = len(record.state)
    assert newest_state >= LATER * TOKEN_BYTES  # (the states are as large as meant)
    full_collection()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # one step read at a time: its bytes, its decoded record and a copy or two of its state
    assert peak < 4 * newest_state, (peak, newest_state)

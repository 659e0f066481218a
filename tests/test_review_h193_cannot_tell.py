"""The message of a posted call's outcome that cannot be told (review h193).

A sender leaves the cursor ``SENDER_TTL`` (an hour) after its last post, by the clock of the
writer that drops it: a process asking (``call_outcome``) that long after its own post finds
its sender dropped with no clock skew at all. The message says both causes, and what to do.
"""

from __future__ import annotations

import dataclasses

import pytest
from store_helpers import retune
from test_combining import wait_for_no_posts
from test_posting import _give_up_on_c, outcome_once_folded, spec

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import CommitOutcomeUnknownError
from vactor_cloud.post_cursor import POST_CURSOR, SENDER_TTL
from vactor_cloud.posting import advance_cursor, cursor_of
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


@pytest.mark.usefixtures(spec.__name__)
def test_a_sender_dropped_an_hour_after_its_post_without_clock_skew_is_told_so(spec: StoreSpec) -> None:
    """Our call given up on is folded (step 3); a fold of nothing by a writer whose clock is
    right, ``SENDER_TTL`` after our post (a fake clock: the ``now`` it folds by), drops our
    sender (step 4); step 3 is compacted. Asked then, the outcome cannot be told, and the
    message gives the cause that fits (the time since the post), not a clock ahead alone."""
    handle, call_id = _give_up_on_c(spec)
    assert outcome_once_folded(handle, call_id) == ["a", "b", "c"]  # (step 3 applied it)
    assert wait_for_no_posts("slow") == []
    log_ = vc.get_runtime().core("slow").log
    three = _sync.sync(log_.read_step(3))
    assert three is not None and POST_CURSOR in three.extra
    (entry,) = cursor_of(three.extra).values()
    an_hour_later = float(entry[1]) + SENDER_TTL + 1.0  # (the folding writer's clock, right)
    dropped = advance_cursor(three.extra, [], an_hour_later)
    assert not cursor_of(dropped)
    four = dataclasses.replace(three, step=4, parent=3, posted=b"", carried=b"", extra=dropped)
    _sync.sync(log_.put_step(four))
    retune(fresh_window=0.0)  # (min_age 0 is allowed where no writer trusts a cache)
    assert handle.compact(1, min_age=0.0).watermark == 4
    with pytest.raises(CommitOutcomeUnknownError) as unknown:
        handle.call_outcome(call_id)
    message = str(unknown.value)
    assert "cannot be told" in message, message
    assert "since the post" in message and "clock" in message, message  # both causes
    assert "read the actor's state" in message, message  # what to do

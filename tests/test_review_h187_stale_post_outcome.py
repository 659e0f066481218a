"""``call_outcome`` asked by a process that did not post, of a call whose post its sender's
later post passed (review h187).

A post lands late (its write was in doubt, or its sender's next post was written first): by
then a fold applied its sender's later post, so the cursor names a seq past this one's. The
post is stale: never applied, a fold deletes it unread. h183 took every listed post naming
the call that the cursor "applied" for applied, its outcome gone
(``CommitOutcomeUnknownError``), though the steps walked show the cursor passing the post
without its call: a caller told "applied" does not retry a call that never was.
"""

from __future__ import annotations

import pickle
import uuid

import pytest
from actors import OrderLog
from test_combining import foreign_box
from test_posting import outcome_once_folded
from test_review_h180_outcome_elsewhere import _as_a_new_process

from vactor_cloud import _sync
from vactor_cloud.errors import CallNotFoundError
from vactor_cloud.posting import PostedCall
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _add(token: str) -> PostedCall:
    return PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex)


def test_a_post_its_senders_later_post_passed_is_not_found_not_applied(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_spec.init(settings=Settings(storage=store_spec.url, fresh_window=300.0, combine_after=1))
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    box = foreign_box("a")
    late, early = box.prepare((_add("late"),)), box.prepare((_add("early"),))  # seqs 0 and 1
    _sync.sync(box.send(early))
    _as_a_new_process(monkeypatch)
    assert outcome_once_folded(handle, early.calls[0].call_id) == 2  # the cursor: seq 1
    _sync.sync(box.send(late))  # lands now: stale, its sender's seq 1 applied
    with pytest.raises(CallNotFoundError) as not_found:
        handle.call_outcome(late.calls[0].call_id)
    assert not not_found.value.never  # (another process's call: not a sure never)
    assert handle.applied.run() == ["me/0", "early"]  # and it never applies

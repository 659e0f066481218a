"""Contention combining (issue 13), in one process with two runtimes: a race lost on purpose.

A runtime whose cache is fresh does not probe before its put; another
runtime's commit meanwhile makes that put lose, and the loser posts its
batch instead of racing again. These tests pin what happens then.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.errors import CallPendingError
from vactor_cloud.future import ActorFuture
from vactor_cloud.keys import posts_prefix
from vactor_cloud.post_cursor import POST_CURSOR
from vactor_cloud.posting import decode_outcomes
from vactor_cloud.runtime import Runtime
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

#: how long a wait for what must happen lasts before it is called a hang
HANG = 60.0


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> list[Any]:
        self.items.append(item)
        return list(self.items)

    @vc.virtual_actor.readonly
    def get(self) -> list[Any]:
        return self.items


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    # fresh_window: a long trust in the cache, so a put goes out without a probe and can lose;
    # combine_after=1: that one lost race posts the batch.
    store_spec.init(settings=Settings(storage=store_spec.url, fresh_window=300.0, combine_after=1))
    try:
        yield store_spec
    finally:
        vc.shutdown()


def _other(spec: StoreSpec, **settings: Any) -> Runtime:
    return Runtime(Settings(storage=spec.url, storage_options=spec.options, **settings))


def _commit_behind_its_back(spec: StoreSpec, actor_id: str, item: Any) -> None:
    other = _other(spec)
    try:
        core = other.load(actor_id)
        call = PendingCall.by_value(
            "add", (item,), {}, readonly=False, future=ActorFuture(), call_id=f"x{item}"
        )
        core.call(call)
        call.future.result(30)
    finally:
        other.close()


def _posts(actor_id: str) -> list[str]:
    return _sync.sync(vc.get_runtime().store.list(posts_prefix(actor_id)))


def test_a_lost_race_posts_the_batch_and_the_poster_folds_it(spec: StoreSpec) -> None:
    tally = Tally.get_or_create("t")
    assert tally.add.run("a") == ["a"]
    _commit_behind_its_back(spec, "t", "b")
    # Our cache says step 1 (fresh): the put of step 2 loses, the call is posted and folded.
    assert tally.add.run("c") == ["a", "b", "c"]
    record = vc.get_runtime().core("t").record
    assert record is not None
    assert POST_CURSOR in record.extra
    assert [o.value for o in decode_outcomes(record.posted).values()] == [["a", "b", "c"]]
    assert vc.get_actor("t").get.run() == ["a", "b", "c"]
    assert vc.stats()["posted_calls"] >= 1


def test_an_uncontended_commit_posts_nothing(spec: StoreSpec) -> None:
    tally = Tally.get_or_create("quiet")
    for i in range(5):
        tally.add.run(i)
    record = vc.get_runtime().core("quiet").record
    assert record is not None
    assert POST_CURSOR not in record.extra and record.posted == b""
    assert _posts("quiet") == []


def outcome_once_folded(handle: Any, call_id: str) -> Any:
    """``handle.call_outcome(call_id)``, asked until it no longer says pending (bounded: a hang
    fails)."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            return handle.call_outcome(call_id)
        except CallPendingError:
            assert time.monotonic() < deadline, f"call_outcome still pending after {HANG} s"
            time.sleep(0.05)


def _give_up_on_c(spec: StoreSpec, key: str | None = None) -> tuple[Any, str]:
    """A caller that waits almost not at all: its posted call ``add("c")`` (under the
    idempotency key ``key``, if given) is still pending when it gives up (step 2 ``b`` was
    committed behind its back). Its handle and call id."""
    Tally.get_or_create("slow").add.run("a")
    vc.shutdown()
    spec.init(settings=Settings(storage=spec.url, fresh_window=300.0, max_commit_attempts=1, combine_after=1))
    handle = vc.get_actor("slow")
    handle.get.run()
    _commit_behind_its_back(spec, "slow", "b")
    with pytest.raises(CallPendingError) as pending:
        (handle.add.options(idempotency_key=key) if key else handle.add).run("c")
    (call_id,) = pending.value.call_ids
    assert isinstance(pending.value, vc.CommitOutcomeUnknownError)
    assert len(_posts("slow")) == 1
    return handle, call_id


def test_a_poster_that_stops_waiting_can_ask_for_its_outcome_later(spec: StoreSpec) -> None:
    """Nobody folds the post (the call gave up before it tried the lease): the ask answers
    pending and has this process fold it (review h178); asked again, the outcome."""
    handle, call_id = _give_up_on_c(spec)
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_id)  # its post waits; nobody folded it yet
    outcome = outcome_once_folded(handle, call_id)
    assert outcome == ["a", "b", "c"]
    assert vc.get_actor("slow").get.run() == ["a", "b", "c"]  # applied once


def test_a_given_up_post_is_folded_by_the_next_runtime_that_loses_a_race(spec: StoreSpec) -> None:
    """Not asked about (an ask would have this process fold it: see the test above), the post
    waits; a runtime that waits long enough posts its own call (it loses a race too) and folds
    ours first."""
    _, call_id = _give_up_on_c(spec)
    vc.shutdown()
    spec.init(settings=Settings(storage=spec.url, fresh_window=300.0, combine_after=1))
    handle = vc.get_actor("slow")
    handle.get.run()
    _commit_behind_its_back(spec, "slow", "d")
    assert handle.add.run("e") == ["a", "b", "d", "c", "e"]  # ours folded before the new one
    assert handle.call_outcome(call_id) == ["a", "b", "d", "c"]
    assert vc.get_actor("slow").get.run() == ["a", "b", "d", "c", "e"]  # applied once

"""Hostile review (h34): the bookkeeping of one commit's attempts (``ActorCore._commit_attempts``).

Each test failed before its fix. The premises that a store cannot be made to produce on cue
(a fold stopping at a damaged post, a lost race in the middle of a fold, a lost-race exception
from before the put) are injected by wrapping the core's own steps; everything else is real.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from actors import OrderLog
from background import in_thread
from test_combining import commit_behind_its_back
from test_review_lifecycle import close_in_a_second, recorded, step_put, wait_until
from test_stats import moved, records

import vactor_cloud as vc
from vactor_cloud import counters, holding, step_attempt
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.log import StepCompactedError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.fixture(autouse=True)
def _zero() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


def lose_the_next_put(core: ActorCore, record: Any) -> None:
    """Another writer takes ``record``'s step number first (a copy of the step it builds on)."""
    base = core.record
    assert base is not None and base.step + 1 == record.step
    theirs = dataclasses.replace(base, step=record.step, parent=base.step, writer="someone-else")
    core.env.run(core.log.put_step(theirs))


@pytest.mark.usefixtures("runtime_off")
def test_a_damaged_stop_after_a_fold_that_went_through_pauses_from_the_shortest_again(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``damaged`` counts folds *in a row* that stopped at a damaged post: a fold that went
    through (its put then lost a race) starts the count over. (Before: the count ran on over
    the whole commit, so the next damaged stop paused as long as the fourth in a row.)"""
    store_spec.init(settings=vc.Settings(storage="", combine_after=1))  # one lost race posts
    log = OrderLog.get_or_create("d")
    log.add.run("me/0")
    commit_behind_its_back("d")  # our next put loses: we post the call, take the lease, fold
    pauses: list[int] = []
    folds = 0
    race = False

    def pause(attempt: int) -> float:
        pauses.append(attempt)
        return 0.0

    original_fold = ActorCore._fold_posts

    def fold_posts(self: ActorCore, *args: Any) -> Any:
        nonlocal folds, race
        folds += 1
        if folds in (1, 2, 3, 5):
            return [], [], []  # our post waits behind one whose read was damaged
        race = folds == 4  # this fold goes through; its put loses a race
        return original_fold(self, *args)

    original_put = ActorCore._put_attempt

    def put_attempt(self: ActorCore, c: Any, record: Any, validated: float) -> None:
        nonlocal race
        if race:
            race = False
            lose_the_next_put(self, record)
        original_put(self, c, record, validated)

    monkeypatch.setattr(step_attempt, "damaged_pause", pause)
    monkeypatch.setattr(holding, "damaged_pause", pause)
    monkeypatch.setattr(ActorCore, "_fold_posts", fold_posts)
    monkeypatch.setattr(ActorCore, "_put_attempt", put_attempt)
    assert log.add.run("me/1") == 2
    assert folds == 6
    assert pauses == [1, 2, 3, 1]


@pytest.mark.usefixtures("runtime_off")
def test_transient_errors_before_a_put_are_bounded_per_attempt_not_per_commit(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound on transient errors retried before the put (five) holds for each attempt: an
    attempt whose put got an answer (a lost race) starts the count over. (Before: four errors
    before a lost race and two after it reported the sixth to the caller.)"""
    store_spec.init(settings=vc.Settings(storage="", combine_after=5))  # a lost race does not post
    log = OrderLog.get_or_create("t")
    log.add.run("me/0")
    fail = 4  # before the first attempt's put; then two before the next attempt's
    race = True
    original_base = ActorCore._attempt_base

    def attempt_base(self: ActorCore, c: Any) -> Any:
        nonlocal fail
        if fail:
            fail -= 1
            raise RetryableStorageError("injected: no answer", "k")
        return original_base(self, c)

    original_put = ActorCore._put_attempt

    def put_attempt(self: ActorCore, c: Any, record: Any, validated: float) -> None:
        nonlocal race, fail
        if race:
            race = False
            fail = 2
            lose_the_next_put(self, record)
        original_put(self, c, record, validated)

    monkeypatch.setattr(ActorCore, "_attempt_base", attempt_base)
    monkeypatch.setattr(ActorCore, "_put_attempt", put_attempt)
    before = vc.stats()
    assert log.add.run("me/1") == 2
    assert moved(before) == {"commits": 1, "commit_conflicts": 1, "commit_retries_transient": 6}


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_stopping_a_sent_put_counts_a_commit_error_with_its_outcome_unknown(
    store_spec: StoreSpec,
) -> None:
    """A commit that shutdown stopped after its put was sent ends in CommitOutcomeUnknownError:
    counted in ``commit_errors`` and ``outcome_unknown`` as every other error exit of a commit
    is. (Before: the shutdown exit alone counted nothing.)"""
    runtime, store = recorded(store_spec)
    log = OrderLog.get_or_create("s")
    log.add.run("me/0")
    store.hold(step_put)
    before = vc.stats()
    caller, box = in_thread(lambda: log.add.run("me/1"))
    try:
        assert store.entered.wait(60.0)
        close_in_a_second(runtime)
        caller.join(60.0)
        assert box and isinstance(box[0], vc.CommitOutcomeUnknownError), box
    finally:
        store.release.set()
    assert moved(before) == {"commit_errors": 1, "outcome_unknown": 1}


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_refusing_a_commits_next_attempt_counts_a_commit_error(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown begins while a commit retries a transient error: no attempt starts, the call
    fails with RuntimeShutdownError, and the commit counts in ``commit_errors`` as one that
    shutdown stopped mid-attempt does. (Before: counted nothing.)"""
    runtime, _ = recorded(store_spec)
    log = OrderLog.get_or_create("n")
    log.add.run("me/0")
    original_base = ActorCore._attempt_base
    closing: list[Any] = []

    def attempt_base(self: ActorCore, c: Any) -> Any:
        if not closing:
            closing.append(in_thread(lambda: runtime.close(timeout=60.0))[0])
            assert wait_until(lambda: runtime.closed)
            raise RetryableStorageError("injected: no answer", "k")
        return original_base(self, c)

    monkeypatch.setattr(ActorCore, "_attempt_base", attempt_base)
    before = vc.stats()
    with pytest.raises(vc.RuntimeShutdownError):
        log.add.run("me/1")
    closing[0].join(60.0)
    assert moved(before) == {"commit_retries_transient": 1, "commit_errors": 1}


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("first", [True, False], ids=["first-attempt", "after-a-lost-put"])
def test_a_lost_race_reports_the_step_this_attempt_lost_not_a_stale_record(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, first: bool
) -> None:
    """The lost-race handler takes the step number from what was lost, not from ``c.record``
    (set only once an attempt builds its step). Today the put alone raises a lost race; here
    one comes from before the put, in the first attempt or in the one after a lost put.
    (Before: the first failed the call with an AttributeError; the second reported the
    earlier attempt's step.)"""
    store_spec.init(settings=vc.Settings(storage="", combine_after=5))  # a lost race does not post
    log = OrderLog.get_or_create("r")
    log.add.run("me/0")  # step 1
    if not first:
        commit_behind_its_back("r")  # step 2: our first put (of step 2) loses
    original_apply = ActorCore._apply_attempt
    applied = 0

    def apply_attempt(self: ActorCore, c: Any, base: Any, *args: Any) -> Any:
        nonlocal applied
        applied += 1
        if applied == (1 if first else 2):
            raise StepCompactedError(base.step + 1)
        return original_apply(self, c, base, *args)

    monkeypatch.setattr(ActorCore, "_apply_attempt", apply_attempt)
    before = vc.stats()
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        assert log.add.run("me/1") == 2
    lost = 2 if first else 3
    assert moved(before) == {"commits": 1, "commit_conflicts": 1 if first else 2}
    assert records(caplog, logging.DEBUG, f"lost the race for step {lost} (attempt {1 if first else 2})")

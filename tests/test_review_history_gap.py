"""A step missing at or above the retention watermark is a gap in the history, not its end.

A compaction raises the watermark before it deletes (oldest first), so a step missing below
the watermark is where retention ended the history; one missing at or above it was deleted by
something else (by hand, a lifecycle rule, a restore that left it out). Before 2026-12-08 the
history ended there without a word, as if compacted: an actor's lost steps looked like a
retention policy (docs/retention.md "A step gone above the watermark").
"""

from __future__ import annotations

from typing import Any

import pytest
from actors import Tally
from cli_harness import Vactor, one_line_error
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli import EXIT_ERROR
from vactor_cloud.history import history
from vactor_cloud.keys import step_key
from vactor_cloud.log import ActorLog
from vactor_cloud.testing.lanes import StoreSpec


def _four_calls_then_step_2_deleted(spec: StoreSpec) -> None:
    init(spec)
    tally = Tally.get_or_create("g")
    for _ in range(4):
        tally.incr.run()  # steps 1..4
    _sync.sync(vc.get_runtime().store.delete(step_key("g", 2)))
    init(spec)  # (another process: nothing of "g" cached)


@pytest.mark.usefixtures("runtime_off")
def test_history_names_a_step_deleted_above_the_watermark(store_spec: StoreSpec) -> None:
    """``history`` raises ``IntegrityError`` naming the missing step; with ``on_damaged`` it is
    reported and the steps below it are listed; the actor's calls go on (they restore from the
    newest step)."""
    _four_calls_then_step_2_deleted(store_spec)
    with pytest.raises(vc.IntegrityError, match="step 2 of actor 'g' is missing") as raised:
        vc.get_actor("g").history()
    assert raised.value.key == step_key("g", 2)
    told: list[int] = []
    entries = history("g", on_damaged=lambda step, exc: told.append(step))
    assert told == [2]
    assert [e.step for e in entries] == [4, 3, 1, 0]
    assert vc.get_actor("g").incr.run() == 5


@pytest.mark.usefixtures("runtime_off")
def test_a_compacted_history_still_ends_without_a_word(store_spec: StoreSpec) -> None:
    """The control: steps deleted by a compaction (below the watermark) end the history, and
    nothing is reported."""
    init(store_spec, fresh_window=0.0)
    tally = Tally.get_or_create("c")
    for _ in range(4):
        tally.incr.run()
    tally.compact(2, min_age=0)
    told: list[int] = []
    entries = history("c", on_damaged=lambda step, exc: told.append(step))
    assert [e.step for e in entries] == [4, 3] and told == []
    assert [e.step for e in tally.history()] == [4, 3]


@pytest.mark.vactor_lanes("local")
def test_vactor_history_shows_the_steps_around_a_deleted_one_and_names_it(store: str, vactor: Vactor) -> None:
    """``vactor history`` lists the steps on both sides of the gap, names the missing step in
    its error line, and exits 1."""
    vc.init(store)
    try:
        tally = Tally.get_or_create("h")
        for _ in range(3):
            tally.incr.run()  # steps 1..3
        _sync.sync(vc.get_runtime().store.delete(step_key("h", 1)))
    finally:
        vc.shutdown()
    result = vactor("history", "h")
    assert result.code == EXIT_ERROR, result
    assert [line.split()[0] for line in result.out.splitlines()] == ["STEP", "3", "2", "0"], result.out
    line = one_line_error(result)
    assert "step 1 of 'h'" in line and "is missing" in line and "backup" in line, line


@pytest.mark.usefixtures("runtime_off")
def test_a_past_step_deleted_above_the_watermark_is_named_missing_not_unwritten(
    store_spec: StoreSpec,
) -> None:
    """``state_at`` (and a read ``at_step``) of such a step raises ``IntegrityError`` naming
    it; before, ``StepNotFoundError`` said it "is not written yet (newest is 4)". A step past
    the newest is still not written yet, and one compacted still compacted."""
    _four_calls_then_step_2_deleted(store_spec)
    handle = vc.get_actor("g")
    with pytest.raises(vc.IntegrityError, match="step 2 of actor 'g' is missing"):
        handle.state_at(2)
    assert handle.state_at(3).value == 3
    with pytest.raises(vc.StepNotFoundError, match="is not written yet") as later:
        handle.state_at(9)
    assert not later.value.compacted
    init(store_spec, fresh_window=0.0)
    handle = vc.get_actor("g")
    handle.compact(1, min_age=0)  # (steps 0..3 go: 2 below the watermark now, as the others)
    with pytest.raises(vc.StepNotFoundError, match="was compacted") as compacted:
        handle.state_at(2)
    assert compacted.value.compacted


@pytest.mark.usefixtures("runtime_off")
def test_a_step_written_while_it_was_asked_for_is_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step asked for before it is written, and committed while the answer is made (after
    its first read found nothing), is returned: not taken for one deleted above the
    watermark, nor said to be not written yet."""
    init(store_spec)
    Tally.get_or_create("w").incr.run()  # step 1
    read_step = ActorLog.read_step
    reads: list[int] = []

    async def not_yet_at_first(self: ActorLog, step: int) -> Any:
        reads.append(step)
        if step == 1 and reads.count(1) == 1:
            return None  # (read before its writer put it)
        return await read_step(self, step)

    monkeypatch.setattr(ActorLog, "read_step", not_yet_at_first)
    assert vc.get_actor("w").state_at(1).value == 1

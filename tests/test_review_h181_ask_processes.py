"""``call_outcome`` asked by several OS processes at once, and by a process killed while its
ask's background fold works (review h181).

One process posts ``add("c")`` and gives up (``test_posting._give_up_on_c``: nobody folds the
post). Then fresh processes (children that did not post the call: ``Poster._pending_elsewhere``)
ask until answered: each ask that finds the post pending queues the background fold
(``ActorCore._fold_given_up_posts_soon``), so they race for the folder lease. Every answer
must be pending, then the one outcome (never ``LookupError`` while the post waits, never two
outcomes); the call applies once; no child hangs. A child SIGKILLed at each point of its
ask's fold (the lease taken; the step put landed; the post deleted, the lease not released)
leaves nothing lost or doubled: another process's asks come to the outcome (the dead
holder's lease expires, ``Settings.lease_seconds``), and the actor's next call proceeds.
"""

from __future__ import annotations

import multiprocessing.context
import signal
from pathlib import Path

import pytest
from ask_workers import ask_until_answered
from child_processes import join_all, start_together
from test_combining import foreign_box, post_adds, wait_for_no_posts
from test_posting import _give_up_on_c, outcome_once_folded
from test_review_h180_outcome_elsewhere import _as_a_new_process

import vactor_cloud as vc
from vactor_cloud.testing.faults import FaultConfig, FaultRule
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("local", "moto")

#: the outcome of ``add("c")`` (``_give_up_on_c``), as the children write it
_C = "outcome ['a', 'b', 'c']"


def _ask_in_children(
    ctx: multiprocessing.context.BaseContext,
    spec: StoreSpec,
    tmp_path: Path,
    call_id: str,
    faults: dict[str, FaultConfig | None],
) -> tuple[dict[str, list[str]], dict[str, int | None]]:
    """One child per ``faults`` entry asks ``call_outcome(call_id)`` of ``slow`` until
    answered, all starting together; each child's answers, and its exit code."""
    ready, start = ctx.Queue(), ctx.Value("d", 0.0)
    outs = {who: tmp_path / f"{who}.log" for who in faults}
    procs = {
        who: ctx.Process(
            target=ask_until_answered,
            args=(spec, "slow", call_id, str(outs[who]), f and f.to_json(), ready, start, who),
        )
        for who, f in faults.items()
    }
    start_together(procs.values(), ready, faults, start)
    codes = dict(zip(faults, join_all(procs.values()), strict=True))
    answers = {who: path.read_text().splitlines() if path.exists() else [] for who, path in outs.items()}
    return answers, codes


def _pending_then(lines: list[str], outcome: str) -> bool:
    """Whether ``lines`` are pending answers, then ``outcome`` alone (any number of each)."""
    answered = [line for line in lines if line != "pending"]
    return set(answered) <= {outcome} and lines[len(lines) - len(answered) :] == answered


def test_four_processes_asking_at_once_agree_and_the_call_applies_once(
    shared: StoreSpec, process_context: multiprocessing.context.BaseContext, tmp_path: Path
) -> None:
    _, call_id = _give_up_on_c(shared)
    vc.shutdown()
    answers, codes = _ask_in_children(
        process_context, shared, tmp_path, call_id, {f"asker{i}": None for i in range(4)}
    )
    assert codes == dict.fromkeys(answers, 0), (codes, answers)
    for who, lines in answers.items():
        assert lines and lines[-1] == _C and _pending_then(lines, _C), (who, lines)
    assert any(lines[0] == "pending" for lines in answers.values()), answers  # (asked while it waited)
    shared.init()
    assert vc.get_actor("slow").get.run() == ["a", "b", "c"]  # applied once


#: where the asking child's fold is killed: the lease taken (its PUT answered), the fold's
#: step put about to be sent, or landed (before its post deletes and any caller hears of
#: it), its post deleted (before the lease is released)
_KILLS = {
    "lease_taken": FaultRule("crash_after", frozenset({"put"}), "/lease", at=(1,)),
    "step_unsent": FaultRule("crash_before", frozenset({"put"}), "/steps/", at=(1,)),
    "step_landed": FaultRule("crash_after", frozenset({"put"}), "/steps/", at=(1,)),
    "post_deleted": FaultRule("crash_after", frozenset({"delete"}), "/mail/", at=(1,)),
}


@pytest.mark.parametrize("point", sorted(_KILLS))
def test_an_asker_killed_in_its_fold_loses_and_doubles_nothing(
    shared: StoreSpec,
    process_context: multiprocessing.context.BaseContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    _, call_id = _give_up_on_c(shared)
    vc.shutdown()
    faults = FaultConfig(rules=(_KILLS[point],), name=point)
    answers, codes = _ask_in_children(process_context, shared, tmp_path, call_id, {"victim": faults})
    assert codes == {"victim": -signal.SIGKILL}, (codes, answers)
    assert _pending_then(answers["victim"], _C), answers
    _as_a_new_process(monkeypatch)
    shared.init()
    handle = vc.get_actor("slow")
    assert outcome_once_folded(handle, call_id) == ["a", "b", "c"]
    # A fold of the inbox (another sender's post, asked of: the ask's fold) meets the post
    # the victim applied but did not delete, if it left one: stale, not applied again.
    (d_call,) = post_adds(foreign_box("slow"), ["d"])
    assert outcome_once_folded(handle, d_call) == ["a", "b", "c", "d"]
    handle.add.run("e")  # the next call proceeds (the dead asker's lease: expired, or free)
    assert handle.get.run() == ["a", "b", "c", "d", "e"]  # nothing lost, nothing twice
    assert wait_for_no_posts("slow") == []

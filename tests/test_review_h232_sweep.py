"""Review h232: a mutation sweep (table to come)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud.creation import CreationTurns

from vactor_cloud.deletion import DELETE_CALL, DELETED
from vactor_cloud.history import HistoryEntry
from vactor_cloud.ids import event_dedup_key, resume_dedup_key
from vactor_cloud.log_records import CallRecord, ClassRef, StepRecord
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL

#: how many times ``Counted.__init__`` ran, by the actor id it was given
INITS: dict[str, int] = {}


@vc.virtual_actor
class Counted:
    def __init__(self, name: str) -> None:
        INITS[name] = INITS.get(name, 0) + 1
        self.name = name

    @vc.virtual_actor.readonly
    def whose(self) -> str:
        return self.name


def _call(method: str = "add", *, ok: bool = True, args: str = "1", result: str = "2", key: str | None = None) -> CallRecord:
    return CallRecord(method, "c1", ok, 0.0, args, result, key)


def test_call_text_says_each_call_in_words() -> None:
    """H02-H04, H06-H08: a call's one line in history, for each kind of call."""
    text = HistoryEntry.call_text
    assert text(_call()) == "add(1) -> 2"
    assert text(_call(result="None")) == "add(1)"
    assert text(_call(result="")) == "add(1)"
    assert text(_call(key="order-7")) == "add(1) -> 2  [key order-7]"
    assert text(_call(ok=False, result="ValueError('no')")) == "add(1) !! ValueError('no')"
    assert text(_call(key=resume_dedup_key(0, "c0"))) == "resumed failed call: add(1) -> 2"
    paid = _call("on_paid", args="5", result="5", key=event_dedup_key("paid", "wh_1"))
    assert text(paid) == "event 'paid' id='wh_1': on_paid(5) -> 5"
    refused = _call(CANCEL, ok=False, args="'later'", result="RuntimeError('gone')")
    assert text(refused) == "timer not cancelled: key='later' !! RuntimeError('gone')"
    assert text(_call(DELETE_CALL, args="", result="")) == "actor deleted"


def _step(*calls: CallRecord, extra: dict[str, object] | None = None) -> StepRecord:
    return StepRecord(3, 2, ClassRef("0" * 64, "shop.Cart"), "pickle", b"", "w1", 0.0, calls, extra=extra or {})


def test_history_json_marks_a_tombstone_and_says_what_calls_mean() -> None:
    """H05, H09, H10, L01, L02: ``vactor history --json``'s entry (``to_json``) of a tombstone
    and of a plain step, and its calls read back (``CallRecord.from_json``)."""
    tombstone = HistoryEntry.from_record(_step(_call(DELETE_CALL, args="", result=""), extra={DELETED: {"time": 0.0}}))
    assert tombstone.deleted
    as_json = tombstone.to_json()
    assert as_json["deleted"] is True
    assert as_json["calls"][0]["meaning"] == "actor deleted"
    plain = HistoryEntry.from_record(_step(_call(ok=False, result="ValueError('no')")))
    assert not plain.deleted
    as_json = plain.to_json()
    assert "deleted" not in as_json
    (call,) = as_json["calls"]
    assert "meaning" not in call and "key" not in call  # (nothing to say: no null written)
    assert CallRecord.from_json(call) == _call(ok=False, result="ValueError('no')")


def test_a_creation_that_ended_after_the_caller_looked_is_not_run_again(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C01: thread A looks for the actor (none), then thread B creates it whole before A takes
    its creation turn. A must look again (the creation that ended meanwhile may be this one),
    not run ``__init__`` a second time (its commit then loses to B's: the actor's one
    creation, but a second run of its side effects)."""
    init(spec)
    INITS.clear()
    a_looked, b_created = threading.Event(), threading.Event()
    turn = CreationTurns.turn

    def held_turn(self: CreationTurns, actor_id: str, looked: int) -> Any:
        if threading.current_thread().name == "A" and not a_looked.is_set():
            a_looked.set()
            assert b_created.wait(30), "B never created the actor"
        return turn(self, actor_id, looked)

    monkeypatch.setattr(CreationTurns, "turn", held_turn)
    got: dict[str, str] = {}

    def create(name: str) -> None:
        got[name] = Counted.get_or_create("c-raced", "c-raced").whose.run()

    a = threading.Thread(target=create, args=("A",), name="A")
    a.start()
    assert a_looked.wait(30)
    create("B")
    b_created.set()
    a.join(30)
    assert got == {"A": "c-raced", "B": "c-raced"}
    assert INITS["c-raced"] == 1

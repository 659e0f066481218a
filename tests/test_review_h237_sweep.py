"""Review h237: a mutation sweep of the timer family: ``timers.py``, ``handle_timers.py``,
``timer_firing.py``, ``timer_renewals.py``, ``timer_repair.py``, ``timer_claims.py``,
``timer_membership.py``, ``timer_hints.py`` and ``timer_report.py``.

TABLE
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, keys
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.errors import StateSerializationError
from vactor_cloud.log_records import CallRecord
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL, LATEST_DUE, SCHEDULE, Timer, describe_call, list_index, parse_entry

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Chime:
    def __init__(self) -> None:
        self.rang = 0

    def ring(self) -> int:
        self.rang += 1
        return self.rang

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.rang


def _index() -> list[str]:
    """The due index's entries, as ``actor/key``."""
    return [f"{e.actor_id}/{e.key}" for e in _sync.sync(list_index(vc.get_runtime().store))]


# -- a timer's call in words (describe_call) ----------------------------------------------------
def test_a_cancel_that_found_no_timer_is_not_called_cancelled() -> None:
    """T01: a committed CANCEL that returned False read 'timer cancelled'."""
    assert describe_call(CallRecord(CANCEL, "c", True, 0.0, "'k'", "False")) == (
        "timer not cancelled: key='k' (none pending)"
    )
    assert describe_call(CallRecord(CANCEL, "c", True, 0.0, "'k'", "True")) == "timer cancelled: key='k'"


def test_a_scheduled_calls_string_argument_holding_an_escaped_quote_and_a_comma_reads_whole() -> None:
    """T06: the escaped quote ended the string, and its ``, `` split the keyword arguments."""
    summary = "'bump', args=(), kwargs={'note': 'a\"b\\', c', 'by': 2}, at=1.0, key='k', every=None"
    text = describe_call(CallRecord(SCHEDULE, "c", True, 0.0, summary, "'k'"))
    assert str(text).startswith("timer scheduled: bump(note='a\"b\\', c', by=2) key='k' due "), text


def test_a_timer_due_past_the_year_9999_but_short_of_the_latest_due_still_reads() -> None:
    """T07: 1e12 s is past the year 9999 (``ValueError``, not the ``OSError`` of 1e17)."""
    summary = "'bump', args=(), kwargs={}, at=1000000000000.0, key='k', every=None"
    text = describe_call(CallRecord(SCHEDULE, "c", True, 0.0, summary, "'k'"))
    assert text == "timer scheduled: bump() key='k' due 1000000000000 s after the epoch", text


# -- due times ----------------------------------------------------------------------------------
def test_a_timer_due_before_the_epoch_is_due_at_the_epoch_and_fires(actor_store: StoreSpec) -> None:
    """T08: a due time before the epoch kept its sign: its entry (``-0000...``) was no entry, and
    the timer never fired."""
    chime = Chime.get_or_create("before-epoch")
    assert chime.ring.options(at=-5.0, timer_key="k").run() == "k"
    assert [t["due"] for t in chime.timers()] == [0.0]
    assert _index() == ["before-epoch/k"]
    assert vc.fire_due_timers().fired == 1
    assert chime.count.run() == 1 and chime.timers() == [] and _index() == []


def test_a_due_time_past_the_latest_is_refused_before_anything_is_sent(actor_store: StoreSpec) -> None:
    """T09: a due time a little past :data:`LATEST_DUE` (1e17 s) was taken."""
    chime = Chime.get_or_create("too-late")
    with pytest.raises(ValueError, match="too far ahead"):
        chime.ring.options(at=LATEST_DUE * 2, timer_key="k").run()
    assert chime.timers() == []


@pytest.mark.parametrize("every", [0.0, 0.0005])
def test_a_period_shorter_than_the_shortest_is_refused(actor_store: StoreSpec, every: float) -> None:
    """T10: a period of 0 (or under a millisecond) was taken: 0 divided by zero when it fired."""
    chime = Chime.get_or_create("too-often")
    with pytest.raises(ValueError, match="every= must be at least"):
        chime.ring.options(delay=60, every=every, timer_key="k").run()
    assert chime.timers() == []


# -- the due index's listing (list_index) -------------------------------------------------------
class _CountedLists(MemoryStore):
    """A memory store that records the ``limit`` of each LIST."""

    def __init__(self) -> None:
        super().__init__(f"h237-{uuid.uuid4().hex}")
        self.limits: list[int | None] = []

    async def list(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        self.limits.append(limit)
        return await super().list(prefix, start_after=start_after, limit=limit)


def _indexed(*due_ms: int) -> _CountedLists:
    store = _CountedLists()
    for n, due in enumerate(due_ms):
        _sync.sync(store.put(keys.timer_index_key(due, f"a{n}", "k", n + 1), b""))
    store.limits.clear()
    return store


def test_list_index_due_by_takes_an_entry_due_exactly_then() -> None:
    """T35: "due by" ``due_by_ms``: an entry due at that very ms was left out."""
    store = _indexed(100, 200, 300)
    assert [e.due_ms for e in _sync.sync(list_index(store, due_by_ms=200))] == [100, 200]


def test_list_index_stops_at_a_short_page_and_asks_no_more_than_its_limit_needs() -> None:
    """T36: a page shorter than asked for did not end the listing (one more LIST, empty). T37:
    with ``limit`` a page asked for more keys than were still wanted."""
    store = _indexed(1, 2, 3, 4, 5)
    assert len(_sync.sync(list_index(store, due_by_ms=10, page=3))) == 5
    assert store.limits == [3, 3]
    store.limits.clear()
    assert [e.due_ms for e in _sync.sync(list_index(store, limit=3, page=2))] == [1, 2, 3]
    assert store.limits == [2, 1]


def test_list_index_after_a_key_alone_lists_only_the_entries_after_it() -> None:
    """T38: ``start_after`` without ``due_by_ms`` or ``limit`` listed the whole index."""
    store = _indexed(1, 2, 3)
    first = _sync.sync(list_index(store))[0]
    assert [e.due_ms for e in _sync.sync(list_index(store, start_after=first.object_key))] == [2, 3]


def test_a_stored_row_due_past_the_latest_due_still_names_an_entry() -> None:
    """T11: a row stored before due times were bounded (due past :data:`LATEST_DUE`) named an
    entry of 21 digits: no entry, its timer never listed."""
    row = {"due": 5e17, "method": "ring", "p": "[[],{}]", "at": 0.0, "g": 3}
    timer = Timer.from_json("k", row)
    entry = parse_entry(timer.index_key("a"))
    assert entry is not None and (entry.due_ms, entry.actor_id, entry.key, entry.gen) == (
        math.ceil(LATEST_DUE * 1000),
        "a",
        "k",
        3,
    )


def test_the_next_occurrence_of_a_recurring_timer_is_never_past_the_latest_due() -> None:
    """T13: the next occurrence of a long period went past :data:`LATEST_DUE` (its entry unnamed)."""
    timer = Timer("k", LATEST_DUE - 10.0, "ring", "[[],{}]", every=LATEST_DUE / 2)
    assert timer.next_due(LATEST_DUE - 5.0) == LATEST_DUE
    assert parse_entry(replace(timer, due=timer.next_due(LATEST_DUE - 5.0)).index_key("a")) is not None


# -- scheduling from outside (handle_timers) ----------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {"delay": 60, "timer_key": "a/b"},
        {"delay": 60, "timer_key": ""},
        {"at": math.inf},
        {"at": LATEST_DUE * 2},
        {"delay": 60, "every": 0.0},
    ],
)
def test_a_schedule_refused_from_outside_sends_no_request(
    actor_store: StoreSpec, options: dict[str, Any]
) -> None:
    """HT1 (the key not checked) and HT4 (the due time not checked) where the call is made:
    the refusal came from the actor's step, a commit of a failed call; refused first, it sends
    nothing."""
    chime = Chime.get_or_create("refused")
    with RequestTrace(vc.get_runtime().store).installed() as trace, pytest.raises(ValueError):
        chime.ring.options(**options).run()
    assert trace.requests == []
    assert chime.timers() == []


# -- scheduling inside a call (TimerEdits) ------------------------------------------------------
@vc.virtual_actor
class Planner:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> None:
        self.n += 1

    def schedule_then_cancel(self) -> tuple[bool, bool, list[str]]:
        call = vc.current_call()
        assert call is not None
        call.schedule("bump", after=60, key="k")
        first, second = call.cancel_timer("k"), call.cancel_timer("k")
        return first, second, sorted(call.pending_timers())

    def both(self) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("bump", after=60, at=1.0)

    def private(self) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("_secret", after=60)


def test_a_call_that_schedules_then_cancels_a_timer_sees_it_gone(actor_store: StoreSpec) -> None:
    """T19: a cancel made earlier in the call was not in its view: a second cancel of the key
    found it, and ``pending_timers()`` still listed it."""
    planner = Planner.get_or_create("planner")
    assert planner.schedule_then_cancel.run() == (True, False, [])
    assert planner.timers() == []


def test_schedule_takes_after_or_at_not_both(actor_store: StoreSpec) -> None:
    """T20: both given, ``at`` was dropped without a word."""
    planner = Planner.get_or_create("planner-both")
    with pytest.raises(ValueError, match="exactly one of"):
        planner.both.run()
    assert planner.timers() == []


def test_a_timer_shows_what_it_can_of_arguments_it_cannot_unpickle() -> None:
    """T16: ``handle.timers()`` raised for a timer whose arguments this process cannot unpickle
    (here: not a pickle at all), instead of showing the rest."""
    timer = Timer("k", 1.0, "bump", base64.b64encode(b"not a pickle").decode())
    assert timer.describe("pickle") == {
        "key": "k",
        "due": 1.0,
        "method": "bump",
        "args": (),
        "kwargs": {},
        "every": None,
    }


@vc.virtual_actor(serializer="json")
class JsonPlanner:
    def __init__(self) -> None:
        self.n = 0.0

    def add(self, by: float) -> None:
        self.n += by


def test_a_json_actors_timer_refuses_arguments_json_cannot_hold(actor_store: StoreSpec) -> None:
    """T17: NaN was stored in the timer's JSON arguments (no JSON reader takes it back)."""
    planner = JsonPlanner.get_or_create("json-planner")
    with pytest.raises(StateSerializationError):
        planner.add.options(delay=60, timer_key="k").run(math.nan)
    assert planner.timers() == []


def test_schedule_says_a_timer_calls_a_public_method(actor_store: StoreSpec) -> None:
    """T21: a private name was refused only as no writer method of the actor."""
    planner = Planner.get_or_create("planner-private")
    with pytest.raises(ValueError, match="a timer calls a public method by name"):
        planner.private.run()


# -- a fired timer's call id --------------------------------------------------------------------
CHILD_RUNS: list[str] = []


def _child() -> int:
    CHILD_RUNS.append("ran")
    return len(CHILD_RUNS)


@vc.virtual_actor
class Chore:
    def __init__(self) -> None:
        self.done: list[str] = []

    def arm(self, at: float, tag: str) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("work", at=at, key="job", args=(tag,))

    def work(self, tag: str) -> None:
        self.done.append(f"{tag}: {vc.subtask(_child).run()}")

    @vc.virtual_actor.readonly
    def log(self) -> list[str]:
        return list(self.done)


def test_a_timer_re_armed_at_the_same_due_time_after_a_failed_firing_runs_its_sub_tasks_anew(
    store_spec: StoreSpec,
) -> None:
    """T15: the time a timer was scheduled was lost when its row was read back, so two
    occurrences of a key at one due time had one call id: the second took the sub-task result
    the first's failed firing had checkpointed, not its own."""
    store_spec.init()
    try:
        # puts of steps: 1 create, 2 arm, 3-7 the first firing and its retries (failed), 8 re-arm
        rule = FaultRule(
            "fail_before", operations=frozenset({"put"}), key_contains="/steps/", at=(3, 4, 5, 6, 7)
        )
        install(FaultConfig((rule,), name="first-firing-fails"))
        CHILD_RUNS.clear()
        chore = Chore.get_or_create("chore")
        at = time.time() - 1.0
        chore.arm.run(at, "first")
        assert vc.fire_due_timers().fired == 0
        assert CHILD_RUNS == ["ran"]  # (checkpointed; its commit failed)
        chore.arm.run(at, "second")  # the same key and due time, other arguments
        assert vc.fire_due_timers().fired == 1
        assert chore.log.run() == ["second: 2"]  # (its own child, not the checkpoint of the first's)
    finally:
        vc.shutdown()

"""Review h237: a mutation sweep of the timer family: ``timers.py``, ``handle_timers.py``,
``timer_firing.py``, ``timer_renewals.py``, ``timer_repair.py``, ``timer_claims.py``,
``timer_membership.py``, ``timer_hints.py`` and ``timer_report.py``.

TABLE
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, keys
from vactor_cloud.log_records import CallRecord
from vactor_cloud.storage import MemoryStore
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

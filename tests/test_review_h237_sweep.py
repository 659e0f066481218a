"""Review h237: a mutation sweep of the timer family after the runner's split: ``timers.py``
(the table, scheduling, the due index, repair), ``handle_timers.py``, ``timer_firing.py``,
``timer_renewals.py``, ``timer_repair.py``, ``timer_claims.py``, ``timer_membership.py``,
``timer_hints.py`` and ``timer_report.py``. Mutants of code that only moved out of
``timer_runner.py`` (h163's table) were not made again.

116 hand-made mutations, one at a time, each run against the modules that test that code
(memory and local lanes, ``-x``, 300 s each; ``test_timers`` narrowed to its nine quicker
tests): 46 killed there. Of the 70 left, 60 are killed by the tests here (each test's
docstring names its mutations), 9 are equivalent, 1 is not killed (note n). None showed a
defect of the unmutated code. "killed by" names the module (``test_`` / ``test_review_`` left
off) whose test failed first; "h237" a test here, by words of its name. T13 run first against
all of ``test_timers`` hit the 300 s bound (a hang, not counted as killed); against the
narrowed set it survived.

===== ============================================================ ======== ==============================
id    mutation                                                     survived killed by / why
===== ============================================================ ======== ==============================
T01   describe_call: a cancel that found none called cancelled     yes      h237 (cancel found none)
T02   describe_call: '(none pending)' on the failed cancel         no       h232_sweep
T03   describe_call: a refused schedule called scheduled           no       small
T04   _scheduled_arguments: a one-tuple's comma kept               no       small
T05   _top_level_items: split inside brackets                      no       cli_user_pass
T06   _top_level_items: an escaped quote ends the string           yes      h237 (escaped quote)
T07   _utc: ValueError (year past 9999) not caught                 yes      h237 (past year 9999)
T62   describe_call: a refused schedule's error shown as its key   no       small
T08   checked_due: a time before the epoch kept                    yes      h237 (before the epoch)
T09   checked_due: LATEST_DUE bound ten times looser               yes      h237 (past the latest)
T10   checked_due: every= down to 0 taken                          yes      h237 (shortest period)
T11   Timer.due_ms not bounded by LATEST_DUE                       yes      h237 (stored row past latest)
T12   next_due: the '+ 1' dropped (an occurrence not after now)    no       review_timers
T13   next_due not bounded by LATEST_DUE                           yes      h237 (next occurrence bounded)
T14   to_json drops the generation                                 no       review_timers
T15   from_json: created read as 0                                 yes      h237 (re-armed sub-tasks)
T16   Timer.describe: unpickling errors raised                     yes      h237 (cannot unpickle)
T17   encode_arguments: NaN taken in JSON                          yes      h237 (json arguments)
T19   TimerEdits.view: the call's cancels not applied              yes      h237 (schedule then cancel)
T20   schedule: after= and at= both taken                          yes      h237 (after or at)
T21   schedule: a private method name not refused as such          yes      h237 (public method)
T22   schedule: the writer-method check dropped                    no       review_timers
T23   schedule: occurrence without its generation                  no       review_timers
T25   cancel: the call's own edits not seen                        yes      h237 (schedule then cancel)
T26   cancel: existed read after its own cancel                    no       review_timers
T27   TimerTable.apply: changed not set                            no       timers
T28   TimerTable.apply: changed set with no edits                  yes      equivalent (a)
T29   TimerTable.due: '<' for '<='                                 yes      h237 (due at its due time)
T30   TimerTable.due: due time not checked                         no       timers
T31   consume: next occurrence keeps the old generation            no       review_timers
T32   extra(): an empty table written                              yes      equivalent (b)
T34   parse_entry: actor id not checked                            yes      h237 (no actor id)
T35   list_index: due_by '>=' for '>'                              no       timers
T36   list_index: a short page does not end it                     yes      h237 (short page)
T37   list_index: page not cut to the limit                        yes      h237 (short page)
T38   list_index: start_after alone ignored                        yes      h237 (after a key alone)
T40   _IndexMemory.add: no LRU move                                yes      h237 (least recently used)
T41   _IndexMemory.listed forgets nothing                          no       review_timers
T63   _IndexMemory.listed forgets names past until_ms              yes      h237 (complete listing forgets)
T42   remember_listed: complete_until not kept                     yes      h237 (firing commit re-writes)
T43   firing_only: true for no calls                               yes      h237 (step without calls)
T44   write_entries: what it wrote not remembered                  no       timers
T45   write_entries: an existing entry raises                      no       timers
T46   write_entries: remembered before its failure                 yes      h237 (written not again)
T47   index_after_commit: keep_only dropped                        no       review_timers
T48   index_after_commit: new timers not always written            no       review_timers
T49   index_after_commit: '< covered' for '<='                     yes      h237 (firing commit re-writes)
T50   index_after_commit: firing_only ignored                      yes      h237 (firing commit re-writes)
T64   index_after_commit: no listing covers everything             yes      h237 (firing commit re-writes)
T51   drop_entries: memory not told                                yes      equivalent (c)
T52   drop_entries returns 0                                       yes      equivalent (d)
T53   armed_unindexed: gen >= after_step                           yes      h237 (poster indexes)
T54   armed_unindexed: known entries too                           yes      h237 (poster indexes)
T55   armed_unindexed: always empty                                yes      h237 (poster indexes)
T56   repair_index: counts actors, not timers                      yes      h237 (repair counts timers)
T58   repair_index: failures swallowed                             no       h150_repair_failures
T59   _repair_failed: every actor named                            yes      h237 (failed repair names ten)
T60   _own_copy: notes list shared                                 no       h153_repair_shared_failure
T61   _first_to_raise: the first, not an interrupt                 yes      h237 (failed repair names ten)
T65   _repair_failed: 'and N more' dropped                         yes      h237 (failed repair names ten)
HT1   scheduling_call: key not checked                             yes      h237 (refused sends nothing)
HT3   scheduling_call: every dropped                               no       review_timers
HT4   scheduling_call: due time not checked                        yes      h237 (refused sends nothing)
HT5   list_timers: by key, not due                                 yes      h237 (earliest first)
HT7   cancel_timer: a sent cancel says True                        yes      h237 (sent cancel answers)
HT8   _none_to_cancel: deleted actor not refused                   no       delete_surfaces
HT9   _none_to_cancel: call cycle not checked                      yes      equivalent (h)
HT10  cancel_timer: a failed creation not raised                   no       h146_cancel_in_creation
HT11  scheduling_call: one call id for all                         yes      not killed (n)
F1    _fire_round: core.help dropped                               yes      equivalent (e)
F2    fire_actor: lateness in ms                                   no       timers
F3    fire_actor: missing method taken as excluded                 no       timer_class_change
F4    fire_actor: an excluded call taken as unsure                 no       review_timers
F6    fire_actor: probe re-fires on attempt 1 too                  yes      equivalent (f)
F8    fire_actor: delete flag read backwards                       no       review_timers
F10   fire_actor: a failed claim's entries done                    yes      h237 (claim fails)
F11   fire_actor: claimed_elsewhere not counted                    no       h172_timer_claims
F14   fire_actor: a gone actor's entries counted once              yes      h237 (actor that never was)
F15   fire_actor: fired entry not done                             no       review_timers
F16   delete_entries: NotFound logged as failure                   yes      equivalent (g)
F17   fire_actor: a gone actor's entries not deleted               no       h163_timer_runner
R1    next_renewal: a late one not moved to now                    no       h184_late_renewals
R2    next_renewal: '>=' for '>'                                   yes      h237 (renewal due)
R3    TickRenewals._renew: stop not checked                        yes      h237 (time comes after stop)
R4    TickRenewals._ended: next not armed                          yes      h237 (renewals go on)
R5    TickRenewals.stop: flight not waited for                     no       h179_tick_renewals
R6    TickRenewals._beat: not bounded by the period                no       h184_tick_leave
R7    TickRenewals: first renewal at once                          no       h179_tick_renewals
R8    TickRenewals._arm: stop not checked                          no       h179_tick_renewals
RP1   repair_timer_index: a full chunk ends it                     no       h144_repair_listing
RP2   repair read_extra: an actor never committed fails            yes      h237 (never committed)
RP3   repair_timer_index: the id listing not closed                yes      h237 (cut short closes)
C1    claim_actor: torn, whole at HEAD, last round: not raised     yes      h237 (whole at rest, reads torn)
C2    claim_actor: a torn claim never removed                      no       h172_timer_claims
C3    claim_actor: our landed create not recognised                yes      h237 (landed unanswered)
C4    cut_off_after: no cut-off                                    no       h172_timer_claims
C5    cut_off_after: abandoned task not watched                    no       h176_timer_runner
C9    _abandoned: a cancelled task's exception asked               yes      h237 (abandoned cancelled)
C10   claim_actor: a failed create raised at once                  no       h171_timer_runner
M1    _torn: whole again not re-read                               yes      h237 (whole again)
M2    _torn: a torn heartbeat not removed                          yes      h237 (torn at rest)
M3    beat: no cut-off                                             yes      h237 (stops waiting)
M4    leave: renewals in flight not waited for                     no       h184_tick_leave
M5    leave: the wait not bounded                                  no       h187_tick_leave_stalled
M6    _settled_write: writes never forgotten                       yes      h237 (ended not kept)
M7    _torn: gone taken as whole                                   yes      equivalent (i)
M8    _torn: a failed HEAD: dropped from the view                  yes      h237 (look failed)
HN1   still_torn: gone taken as whole                              yes      h237 (still_torn)
HN3   decode_hint: a non-object body taken                         yes      h237 (no JSON object)
RPT1  error_count: dropped not counted                             no       h163_timer_runner
RPT2  max_lateness: dropped max ignored                            no       memory
RPT3  merge: dropped max not merged                                yes      h237 (trimmed still count)
RPT4  _trim: first trimmed, not max                                yes      h237 (trimmed still count)
RPT6  merge: errors_dropped not merged                             yes      h237 (trimmed still count)
RPT7  TickError: cause dropped                                     yes      h237 (trimmed still count)
RPT8  _note_dropped: the last, not the max                         no       memory
===== ============================================================ ======== ==============================

(a) The table is rebuilt from itself: the same rows for every row this version writes (a
    parse and a dump more). (b) ``"timers": {}`` in a step: every reader (``pending_timers``,
    ``armed_unindexed``, ``index_after_commit``) takes it for none; a few bytes a step.
    (c) The names left are of the deleted actor's occurrences: their generations are its
    steps, never a later actor's; pruned at the actor's next commit, bounded by the memory's
    limit. (d) Every caller of ``forget_timers`` drops the count. (e) ``help`` lends the
    waiting thread to the core's work; without it the core's own worker applies the FIRE and
    the future settles the same (every bounded wait of the suite passed). (f) The loop has two
    rounds: after the second, ``todo`` is not read. (g) ``NotFoundError`` is a
    ``StorageError``: a debug line for an entry already gone, nothing else. (h) A call cycle
    through the actor holds its core (not idle: the cancel is sent anyway), except through a
    read-only method of it, where the read and a sent CANCEL give the same answer (the sent
    one commits a step). (i) A heartbeat gone at the HEAD is read once more and found gone
    (one GET). (n) Every scheduling call of the process had one call id: the usual path is
    unaffected (five at once: all applied, each its own key); where it would show (posted
    calls delivered by call id, on the contended path) no test was written.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from test_review_h171_timer_runner import Chime

import vactor_cloud as vc
from vactor_cloud import (
    _sync,
    handle_timers,
    keys,
    timer_claims,
    timer_firing,
    timer_repair,
    timer_report,
    timers,
)
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.errors import (
    AlreadyExistsError,
    StateSerializationError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
)
from vactor_cloud.log_records import CallRecord
from vactor_cloud.storage import Blob, MemoryStore, ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_claims import claim_actor
from vactor_cloud.timer_hints import decode_hint, still_torn
from vactor_cloud.timer_membership import Membership
from vactor_cloud.timer_renewals import TickRenewals, next_renewal
from vactor_cloud.timer_repair import repair_timer_index
from vactor_cloud.timer_report import TickError, TickReport
from vactor_cloud.timers import (
    CANCEL,
    LATEST_DUE,
    SCHEDULE,
    TIMERS,
    Timer,
    TimerTable,
    describe_call,
    list_index,
    parse_entry,
)

pytestmark = pytest.mark.vactor_lanes("memory", "local")


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
class _Store(MemoryStore):
    """A memory store of its own that records the ``limit`` of each LIST, and fails the puts of
    index entries while ``failing``."""

    def __init__(self) -> None:
        super().__init__(f"h237-{uuid.uuid4().hex}")
        self.limits: list[int | None] = []
        self.failing = False

    async def put(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> str:
        if self.failing and key.startswith(keys.TIMER_INDEX):
            raise StorageError(f"{key}: failed on purpose")
        return await super().put(key, data, *args, **kwargs)

    async def list(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        self.limits.append(limit)
        return await super().list(prefix, start_after=start_after, limit=limit)


def _indexed(*due_ms: int) -> _Store:
    store = _Store()
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


def test_a_timer_is_due_at_its_due_time() -> None:
    """T29: a timer was due only after its due time (a FIRE at that very time found none)."""
    row = {"due": 5.0, "method": "ring", "p": "[[],{}]", "at": 0.0, "g": 1}
    table = TimerTable({TIMERS: {"k": row}}, "json", None, step=2)
    assert table.due("k", 5.0) == Timer.from_json("k", row)
    assert table.due("k", 4.999) is None


def test_an_index_key_whose_actor_part_is_no_actor_id_is_no_entry() -> None:
    """T34: ``..`` (or a NUL, or an id too long) was taken for an actor: no actor can be loaded
    to fire it or find it stale, and every tick met it again."""
    for actor in ("..", "a\x00", "x" * 300):
        assert parse_entry(keys.timer_index_key(5, actor, "k", 1)) is None
    assert parse_entry(keys.timer_index_key(5, "ok", "k", 1)) is not None


# -- what this process knows of the index (_IndexMemory, index_after_commit) --------------------
def _row(due_ms: int, gen: int = 1) -> dict[str, Any]:
    return {"due": due_ms / 1000, "method": "ring", "p": "[[],{}]", "at": 0.0, "g": gen}


def _entries(store: ObjectStore) -> list[str]:
    return _sync.sync(store.list(keys.TIMER_INDEX))


def test_the_index_memory_forgets_the_least_recently_used_actor_first() -> None:
    """T40: an actor written to again was forgotten first (first in, first out)."""
    memory = timers._IndexMemory(limit=2)
    store = _Store()
    memory.add(store, "a", {("k", 1, 1)})
    memory.add(store, "b", {("k", 1, 1)})
    memory.add(store, "a", {("k", 2, 2)})
    memory.add(store, "c", {("k", 1, 1)})
    assert memory.known(store, "a") == {("k", 1, 1), ("k", 2, 2)}
    assert memory.known(store, "b") == set()


def test_a_complete_listing_forgets_the_names_due_by_then_it_did_not_show_and_only_those() -> None:
    """T41: names a complete listing did not show (deleted meanwhile) were kept: the next commit
    took their entries for written. T63: names due after what the listing covered went too."""
    memory = timers._IndexMemory()
    store = _Store()
    memory.add(store, "a", {("gone", 5, 1), ("later", 50, 1), ("shown", 6, 1)})
    memory.listed(store, "a", {("shown", 6, 1)}, until_ms=10)
    assert memory.known(store, "a") == {("later", 50, 1), ("shown", 6, 1)}


def test_a_step_without_calls_is_not_one_that_only_fired_timers() -> None:
    """T43: a step of no call records (``all`` of nothing) was taken for a runner's, whose index
    re-writes and HEAD move are put off."""
    fired = CallRecord("ring", "c", True, 0.0, key=timers.timer_dedup_key("k", 5.0))
    assert timers.firing_only([fired]) is True
    assert timers.firing_only([]) is False
    assert timers.firing_only([fired, CallRecord("ring", "d", True, 0.0)]) is False


def _carried(due_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A base step and a committed step that carries its timer ``k`` unchanged."""
    extra = {TIMERS: {"k": _row(due_ms)}}
    return extra, dict(extra)


def test_a_firing_commit_re_writes_a_carried_entry_only_when_a_complete_listing_missed_it() -> None:
    """A runner's commit (firing only) re-writes a carried timer's entry this process does not
    know of only if a complete listing covered its due time (and so found it missing). T64:
    without any complete listing, it wrote every one. T50: it wrote them past what the listing
    covered. T42: a complete listing's reach was not kept (none re-written). T49: one due at its
    very end was not."""
    store = _Store()
    base, committed = _carried(5_000)
    _sync.sync(timers.index_after_commit(store, "a", base, committed, firing_only=True))
    assert _entries(store) == []  # (no complete listing yet: nothing known missing)
    timers.remember_listed(store, [], complete_until_ms=4_000)
    _sync.sync(timers.index_after_commit(store, "a", base, committed, firing_only=True))
    assert _entries(store) == []  # (due after what the listing covered)
    timers.remember_listed(store, [], complete_until_ms=5_000)
    _sync.sync(timers.index_after_commit(store, "a", base, committed, firing_only=True))
    assert _entries(store) == [keys.timer_index_key(5_000, "a", "k", 1)]


def test_an_entry_written_is_not_written_again_by_the_next_commit_and_a_failed_one_is() -> None:
    """T44: an entry written was not remembered: every later commit of the actor wrote it again.
    T46: one whose write failed was remembered as written, and no later commit wrote it."""
    store = _Store()
    base, committed = _carried(5_000)
    timer = Timer.from_json("k", _row(5_000))
    store.failing = True
    with pytest.raises(StorageError):
        _sync.sync(timers.write_entries(store, "a", [timer]))
    store.failing = False
    with RequestTrace(store).installed() as trace:
        _sync.sync(timers.index_after_commit(store, "a", base, committed))
    assert [(r.kind, r.key) for r in trace.requests] == [("put", timer.index_key("a"))]
    with RequestTrace(store).installed() as trace:
        _sync.sync(timers.index_after_commit(store, "a", base, committed))
    assert trace.requests == []


def test_timers_are_listed_earliest_first(actor_store: StoreSpec) -> None:
    """HT5: ``handle.timers()`` listed them by key."""
    chime = Chime.get_or_create("listed")
    chime.ring.options(delay=7200, timer_key="a").run()
    chime.ring.options(delay=3600, timer_key="b").run()
    assert [t["key"] for t in chime.timers()] == ["b", "a"]


# -- cancelling from outside (handle_timers) ----------------------------------------------------
def test_a_cancel_that_is_sent_says_whether_it_found_the_timer(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HT7: a cancel sent to the actor (not answered by the read of its newest step: a call of
    this process still to apply, here every time) said True whatever its CANCEL found."""
    monkeypatch.setattr(handle_timers, "_none_to_cancel", lambda *args: False)
    chime = Chime.get_or_create("cancelled")
    chime.ring.options(delay=3600, timer_key="later").run()
    assert chime.cancel_timer("none") is False
    assert chime.cancel_timer("later") is True
    assert chime.timers() == []


def test_a_poster_indexes_only_the_timers_armed_after_what_it_knew_that_it_knows_no_entry_of() -> None:
    """``armed_unindexed``: the pending timers a step after ``after_step`` put in the table whose
    entries this process does not know. T55: none. T53: also one the step ``after_step`` put
    (known to the poster when it posted). T54: also one whose entry this process wrote."""
    store = _Store()
    extra = {TIMERS: {"old": _row(5_000, gen=4), "new": _row(6_000, gen=5), "known": _row(7_000, gen=6)}}
    _sync.sync(timers.write_entries(store, "a", [Timer.from_json("known", extra[TIMERS]["known"])]))
    assert [t.key for t in timers.armed_unindexed(store, "a", extra, after_step=4)] == ["new"]
    assert timers.armed_unindexed(store, "a", {}, after_step=0) == []


# -- renewals, reports ---------------------------------------------------------------------------
def test_a_renewal_is_due_a_period_after_the_last_or_a_period_after_a_late_one() -> None:
    """R1: a late renewal's successor was due a period after the missed time, long past: it
    followed at once, back to back. R2: one due exactly now was too."""
    assert next_renewal(10.0, 5.0, 12.0) == 15.0
    assert next_renewal(10.0, 5.0, 16.0) == 21.0
    assert next_renewal(10.0, 5.0, 15.0) == 20.0


# -- repair --------------------------------------------------------------------------------------
def test_repair_counts_the_timers_it_indexed(actor_store: StoreSpec) -> None:
    """T56: it counted the actors repaired, not their timers."""
    chime = Chime.get_or_create("two-timers")
    for key in ("a", "b"):
        chime.ring.options(delay=3600, timer_key=key).run()
    store = vc.get_runtime().store
    for key in _entries(store):
        _sync.sync(store.delete(key))
    assert repair_timer_index(["two-timers"]) == 2
    assert sorted(_index()) == ["two-timers/a", "two-timers/b"]


class _Interrupt(BaseException):
    """Not an ``Exception``: as an interrupt or a cancellation."""


def test_a_failed_repair_names_ten_actors_and_counts_the_rest_and_raises_an_interrupt_first() -> None:
    """T59: every failed actor was named (a thousand in one line). T65: the ones past ten went
    unsaid. T61: an interrupt among the failures was not the one raised."""
    ids = [f"actor-{n:02d}" for n in range(12)]

    async def read_extra(actor_id: str) -> dict[str, Any]:
        if actor_id == "actor-07":
            raise _Interrupt(actor_id)
        raise ValueError(actor_id)

    with pytest.raises(_Interrupt) as raised:
        _sync.sync(timers.repair_index(_Store(), ids, read_extra))
    (note,) = raised.value.__notes__
    assert "failed for 12 of 12 actors" in note, note
    assert all(repr(a) in note for a in ids[:10]) and repr(ids[10]) not in note, note
    assert "and 2 more" in note, note


# -- firing (timer_firing) -----------------------------------------------------------------------
def test_every_entry_of_an_actor_that_never_was_is_stale_and_dropped(actor_store: StoreSpec) -> None:
    """F14: the entries of an actor that never was counted one stale, however many there were."""
    store = vc.get_runtime().store
    due_ms = int(time.time() * 1000) - 1_000
    for key in ("k1", "k2", "k3"):
        _sync.sync(store.put(keys.timer_index_key(due_ms, "ghost", key, 1), b""))
    report = vc.fire_due_timers(split="none")
    assert (report.fired, report.stale, report.errors) == (0, 3, [])
    assert _index() == []


def test_an_actor_whose_claim_fails_keeps_its_entries_for_a_later_pass(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F10: a claim that failed (an error, not another runner's claim) handed its entries back
    as done with: a long-running runner took them for deleted, and did not fire them."""
    chime = Chime.get_or_create("unclaimed")
    chime.ring.options(at=time.time() - 1.0, timer_key="k").run()
    (entry,) = _sync.sync(list_index(vc.get_runtime().store))

    async def failing(*args: Any) -> str:
        raise StorageError("the claim's put failed")

    monkeypatch.setattr(timer_firing, "claim_actor", failing)
    report, done = timer_firing.fire_actor(vc.get_runtime(), "runner", 30.0, "unclaimed", [entry])
    assert (report.fired, done, len(report.errors)) == (0, [], 1)
    assert "claim" in report.errors[0], report.errors
    monkeypatch.undo()
    assert _index() == ["unclaimed/k"]
    assert vc.fire_due_timers(split="claims").fired == 1 and chime.count.run() == 1


class _CountedBeats:
    """A membership whose renewals are counted (``third``: three began)."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.beats = 0
        self.third = threading.Event()

    async def beat(self, within: float | None = None) -> None:
        self.beats += 1
        if self.beats >= 3:
            self.third.set()


def test_a_ticks_renewals_go_on_one_after_another(actor_store: StoreSpec) -> None:
    """R4: the renewal that ended did not time the next: a tick renewed its heartbeat once."""
    membership = _CountedBeats(lease=0.03)
    renewals = TickRenewals(vc.get_runtime(), membership, "stub", time.monotonic())  # type: ignore[arg-type]
    renewals.begin()
    try:
        assert membership.third.wait(30), f"{membership.beats} renewal(s), then none"
    finally:
        renewals.stop(True)


def test_a_renewal_whose_time_comes_after_stop_does_not_begin(actor_store: StoreSpec) -> None:
    """R3: a renewal timer that fired as ``stop`` was made (its cancel not yet run by the IO
    loop) began a renewal after the stop: a heartbeat written after the tick left."""
    membership = _CountedBeats(lease=3600.0)
    renewals = TickRenewals(vc.get_runtime(), membership, "stub", time.monotonic())  # type: ignore[arg-type]
    renewals.begin()
    renewals.stop(False)

    async def its_time_comes() -> None:
        renewals._renew()  # (as its timer would, due as the stop was made)
        for _ in range(3):
            await asyncio.sleep(0)

    _sync.sync(its_time_comes())
    assert membership.beats == 0


def test_repair_of_an_actor_that_never_committed_a_step_writes_nothing_and_fails_nothing(
    actor_store: StoreSpec,
) -> None:
    """RP2: an actor id with no committed step (a creation that never committed) failed the repair."""
    assert repair_timer_index(["never-created"]) == 0


def test_a_repair_of_every_actor_cut_short_closes_its_listing_of_ids(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RP3: a repair that failed mid-way left its listing of actor ids suspended, closed (its
    LIST in flight ended) only when collected."""
    closed = threading.Event()

    async def ids(store: ObjectStore) -> AsyncIterator[str]:
        try:
            for n in range(3):
                yield f"actor-{n}"
        finally:
            closed.set()

    async def failing(*args: Any) -> int:
        raise StorageError("the repair failed")

    monkeypatch.setattr(timer_repair, "iter_actor_ids", ids)
    monkeypatch.setattr(timer_repair, "repair_index", failing)
    monkeypatch.setattr(timer_repair, "_REPAIR_CHUNK", 1)
    with pytest.raises(StorageError) as raised:
        repair_timer_index()
    assert closed.is_set(), raised  # (the traceback keeps the listing alive: only a close ends it)


def _torn(key: str) -> StorageError:
    return TruncatedObjectError(f"{key}: cut short", key)


class _FaultyHints(_Store):
    """Reads (GET) of the objects under ``prefix`` raise ``on_read(key)`` while it is set,
    and are counted; HEADs of them raise ``on_head(key)``, or with ``healed_by_head`` clear
    ``on_read`` first (the object written whole again since)."""

    def __init__(
        self,
        prefix: str,
        on_read: Callable[[str], StorageError] | None = None,
        on_head: Callable[[str], StorageError] | None = None,
        *,
        healed_by_head: bool = False,
    ) -> None:
        super().__init__()
        self.prefix, self.on_read, self.on_head, self.healed_by_head = (
            prefix,
            on_read,
            on_head,
            healed_by_head,
        )
        self.reads = 0

    async def get(self, key: str) -> Blob:
        if key.startswith(self.prefix):
            self.reads += 1
            if self.on_read is not None:
                raise self.on_read(key)
        return await super().get(key)

    async def head(self, key: str) -> str | None:
        if key.startswith(self.prefix):
            if self.healed_by_head:
                self.on_read = None
            elif self.on_head is not None:
                raise self.on_head(key)
        return await super().head(key)


# -- claims --------------------------------------------------------------------------------------
def test_a_claim_whole_at_rest_that_every_read_finds_torn_is_an_error_not_another_runners() -> None:
    """C1: on the last round such a claim was taken for another runner's (None: "claimed
    elsewhere", said at every tick), not raised."""
    store = _FaultyHints(keys.TIMER_CLAIMS, on_read=_torn)  # (whole at rest: HEAD finds it)
    _sync.sync(store.put(keys.timer_claim_key("a"), b'{"runner": "other", "until": 0}'))
    with pytest.raises(TruncatedObjectError):
        _sync.sync(claim_actor(store, "a", "runner", 30.0))


class _LandedButLost(_Store):
    """A claim's create-only put lands, and its answer is lost: the retry meets it (409)."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_puts = 0

    async def put(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> str:
        if not key.startswith(keys.TIMER_CLAIMS):
            return await super().put(key, data, *args, **kwargs)
        self.claim_puts += 1
        await super().put(key, data, *args, **kwargs)
        if kwargs.get("mode") == "create":
            raise AlreadyExistsError(f"{key}: the retry met the put that landed", key)
        return (await self.head(key)) or ""


def test_a_claim_whose_create_landed_unanswered_is_found_ours_without_another_put() -> None:
    """C3: it was not recognised by its bytes, but taken over (an if-match put) as an expired
    claim of this runner: a second put, and a version other than the one the create wrote."""
    store = _LandedButLost()
    version = _sync.sync(claim_actor(store, "a", "runner", 30.0))
    assert version is not None and version == _sync.sync(store.head(keys.timer_claim_key("a")))
    assert store.claim_puts == 1


def test_a_cut_off_claim_abandoned_cancelled_is_taken_quietly() -> None:
    """C9: the outcome of an abandoned claim that ended cancelled was asked for: its
    ``CancelledError`` raised from the taking (in the caller, or in the loop's callback)."""

    async def abandon() -> None:
        task = asyncio.get_running_loop().create_future()
        task.cancel()
        timer_claims._abandoned(task, "timer-claims/a", "a timer claim")

    _sync.sync(abandon())


# -- membership ----------------------------------------------------------------------------------
def test_a_heartbeat_whole_again_when_looked_at_is_read_again_and_counted() -> None:
    """M1: it was taken for unreadable (its runner not counted live for a lease)."""
    store = _FaultyHints(keys.TIMER_RUNNERS, healed_by_head=True)
    _sync.sync(Membership(store, "other", 30.0, "all").beat())
    store.on_read = _torn
    assert _sync.sync(Membership(store, "me", 30.0, "all").refresh()) == ("me", "other")


def test_a_heartbeat_torn_at_rest_is_removed() -> None:
    """M2: it was left (not counted, never removed): every refresh read it three times again."""
    store = _FaultyHints(keys.TIMER_RUNNERS, on_read=_torn, on_head=_torn)
    _sync.sync(Membership(store, "other", 30.0, "all").beat())
    assert _sync.sync(Membership(store, "me", 30.0, "all").refresh()) == ("me",)
    assert _sync.sync(store.list(keys.TIMER_RUNNERS)) == []


class _StalledPuts(_Store):
    """Puts of heartbeats wait for ``release`` (30 s at most)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    async def put(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> str:
        if key.startswith(keys.TIMER_RUNNERS):
            await asyncio.to_thread(self.release.wait, 30)
        return await super().put(key, data, *args, **kwargs)


def test_a_renewal_stops_waiting_for_its_write_after_within() -> None:
    """M3: ``beat(within=)`` waited for the stalled write to end."""
    store = _StalledPuts()
    membership = Membership(store, "me", 30.0, "all")
    try:
        with pytest.raises(StorageTimeoutError):
            _sync.sync(membership.beat(within=0.01))
    finally:
        store.release.set()
    _sync.sync(membership.leave())  # (waits for the write left in flight, then deletes)
    assert _sync.sync(store.list(keys.TIMER_RUNNERS)) == []


def test_a_torn_heartbeat_whose_look_failed_is_looked_at_again_a_lease_later() -> None:
    """M8: it was forgotten (as gone): every refresh read it again, not once a lease."""
    store = _FaultyHints(
        keys.TIMER_RUNNERS, on_read=_torn, on_head=lambda key: StorageError(f"{key}: the HEAD failed", key)
    )
    _sync.sync(Membership(store, "other", 30.0, "all").beat())
    me = Membership(store, "me", 30.0, "all")
    assert _sync.sync(me.refresh()) == ("me",)
    reads = store.reads
    assert reads > 0
    assert _sync.sync(me.refresh()) == ("me",)
    assert store.reads == reads


def test_a_renewal_that_ended_is_not_kept() -> None:
    """M6: each renewal made with ``within`` stayed in the set of those in flight, for good."""
    membership = Membership(_Store(), "me", 30.0, "all")
    for _ in range(3):
        _sync.sync(membership.beat(within=30.0))
    assert membership._writes == set()


def test_still_torn_tells_gone_from_whole_and_torn() -> None:
    """HN1: a hint gone by the time it was looked at was called whole (False): a claim's last
    round raised it as torn, a heartbeat was read once more."""
    store = _FaultyHints(keys.TIMER_RUNNERS, on_read=_torn, on_head=_torn)
    assert _sync.sync(still_torn(store, keys.timer_claim_key("gone"))) is None
    _sync.sync(store.put(keys.timer_runner_key("torn"), b"{}"))
    assert _sync.sync(still_torn(store, keys.timer_runner_key("torn"))) is True
    _sync.sync(store.put(keys.timer_claim_key("a"), b"{}"))
    assert _sync.sync(still_torn(store, keys.timer_claim_key("a"))) is False


def test_a_hint_that_is_no_json_object_is_refused() -> None:
    """HN3: JSON of another shape (a list, a string) was handed back as the hint's body."""
    for data in (b"[1, 2]", b'"until"', b"3"):
        with pytest.raises(ValueError, match="not a JSON object"):
            decode_hint(keys.timer_runner_key("r"), "timer-runner", data, None)


def test_a_reports_trimmed_errors_and_lateness_still_count_in_its_totals_and_merges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RPT1: ``error_count`` left out the errors trimmed. RPT2: ``max_lateness`` the lateness
    trimmed. RPT3, RPT6: ``merge`` dropped the other report's trimmed lateness and errors.
    RPT4, RPT8: the trimmed maximum was the first figure trimmed, or the last one noted.
    RPT7: an error lost the exception it tells of."""
    monkeypatch.setattr(timer_report, "_TOTAL_LATENESS", 2)
    monkeypatch.setattr(timer_report, "_TOTAL_ERRORS", 1)
    cause = ValueError("boom")
    part = TickReport(errors=[TickError("a: boom", cause), TickError("b: x")], lateness=[1.0, 5.0, 2.0, 3.0])
    part._trim()
    assert (part.errors, part.errors_dropped, part.error_count) == (["b: x"], 1, 2)
    assert (part.lateness, part.lateness_dropped_max, part.max_lateness) == ([2.0, 3.0], 5.0, 5.0)
    total = TickReport()
    total.merge(part)
    assert (total.errors_dropped, total.error_count, total.max_lateness) == (1, 2, 5.0)
    earlier = TickReport(lateness=[9.0, 0.5, 0.1])
    earlier._trim()
    earlier.merge(part)
    assert earlier.max_lateness == 9.0
    assert TickError("a: boom", cause).cause is cause

"""Mutation sweep (review h229) of the library's changes from 1ca65e7 to f277e8e: the
backlog of events set aside once per listing (``inbox.py``, ``inbox_events.py``: ``_looked``,
``aside_floors``), ``call_outcome``'s walk reading each step once across its tries
(``outcome_elsewhere.py``, ``poster.py``: ``_walk_step``), ``forked_child.py`` and its
callers, ``subtask_checkpoints.actor_serializer`` and the warnings on a call compaction made
unresumable. ``call_runtime.py``, ``committer.py``'s and ``batch.py``'s changes are protocols
and annotations (nothing runs), left out.

92 mutations of the changed lines, applied one at a time, each run against the modules that
test that code (memory and local lanes): 60 killed; of the 32 left, 17 are killed by the tests
here (each test's docstring names its mutations), 15 are equivalent:

(a) ``None`` and ``{}`` alike where it is read: ``_looked_still`` is false for ``None``, and
    ``_looked_for`` starts as no class's (a serializer is never ``""``).
(b) A class whose serializer changed cannot commit on the actor (its idempotency table is
    refused, ``IntegrityError``): no fold meets a backlog kept under another serializer.
(c) A fold onto a step another process made lists first, which makes the backlog again (or
    it holds no event).
(d) The later events of a sender with an unconfirmed event are unconfirmed too (found by the
    same listing or a later one), or safe to apply (every earlier event of theirs was seen):
    they wait on their own; the mutation spares only the next commit's confirming LIST.
(e) ``_looked_still`` asks for the cache's trust again where it is used; one made untrusted
    takes a core that learned of a newer step during the fold's own listing: at most a stale
    entry set aside until the next listing.
(f) Event names and ids hold no control character, ``_known_by_dedup`` skips ``None``, and a
    key that is no event's past the prefix fails the dedup-key comparison (I29's guard).
(g) An event whose outcome records (a success, or an error that is its outcome) commits with
    the batch and leaves the cache (``_delete``) before ``_note_excluded`` looks; a batch with
    none of those commits nothing (``result.state`` None).
(h) A running call's class is loaded: the core's ``definition`` is never None there.
(i) A step not there, kept as None, is read again as one not kept (``read.get`` gives None).
(j) A listing that fails part way leaves listed events unread (``_unread``): the fold applies
    none of them, and the next fold lists again, whose end resets the backlog set aside (I02
    was killed by a test here until the inbox applied nothing a listing left unread: that
    test's premise, the event read applied by the same fold, no longer holds;
    ``test_review_h226_backlog_drain`` tests the rule).

Each mutation, and what kills it: the first module's test that failed (``killed``), the test
here (``new``: words of its name), or why it is equivalent.

  I01  _refresh: no reset of the set-aside backlog (_looked) after a listing  killed: h222_backlog_work
  I02  _refresh: reset only after a listing that ended, not one that failed  equivalent (j)
  I03  _refresh: reset before the listing, not after it                      killed: h222_backlog_work
  I04  _reread: no reset when another event is found under a key             killed: h222_backlog_work
  I05  fold: early return on an empty backlog aside, not asking if it holds  killed: h222_backlog_work
  I06  fold: no early return (a table read each warm commit)                 killed: h222_backlog_work
  I07  fold: `not self._looked` for `self._looked == {}`                     equivalent (a)
  I08  fold: early return whenever the set-aside backlog still holds         new: handler_exited
  I09  refused_by without the class's serializer                             equivalent (b)
  I10  refused_by without the class's handlers                               killed: h222_backlog_work
  I11  _looked_still: the class (refused_by) not compared                    killed: h222_backlog_work
  I12  _looked_still: the cache's trust not asked                            equivalent (c)
  I13  _looked_still: `_looked is not None` dropped                          equivalent (a)
  I14  _to_look_at: the backlog set aside made again by every fold           new: exiting_handler
  I15  _to_look_at: set aside also when the table holds the event (applied)  new: applied_event_left
  I16  _to_look_at: set aside also when unconfirmed                          equivalent (d)
  I17  _to_look_at: refusal test flipped                                     killed: h222_backlog_work
  I18  _to_look_at: events set aside keep their payloads                     killed: h220_inbox_backlog
  I19  _to_look_at: floors made with nothing set aside                       killed: h222_backlog_work
  I20  _to_look_at: every floor -inf                                         killed: h222_backlog_work
  I21  _to_look_at: kept also when made on an untrusted base                 equivalent (e)
  I22  _to_look_at: never kept                                               killed: h222_backlog_work
  I23  _to_look_at: _looked_for not recorded                                 killed: h222_backlog_work
  I24  _to_look_at: fold_order without the floors                            killed: h222_backlog_work
  I25  _to_look_at: an event gone from the cache looked up by [] (KeyError)  killed: h222_backlog_work
  I26  _to_look_at: every known event looked at                              killed: h222_backlog_work
  I27  _known_by_dedup: EVENT_KEY_PREFIX not checked                         equivalent (f)
  I28  _known_by_dedup: the event name taken for its id                      killed: h222_backlog_work
  I29  _known_by_dedup: the event at the key not compared by dedup key       new: own_name
  I30  _known_by_dedup: id taken after the last NUL                          equivalent (f)
  I31  settle: only the first applied event deleted                          killed: h222_backlog_work
  I32  settle: the first applied key skipped                                 killed: h222_backlog_work
  I33  _note_excluded: an outcome (is_outcome) excluded too                  equivalent (g)
  I34  _note_excluded: successes excluded too                                equivalent (g)
  I35  _note_excluded: no refold for a newly excluded event                  killed: h147_inbox_sweep
  I36  _note_excluded: refold for one excluded before                        killed: h147_inbox_sweep
  I37  _note_excluded: None keys passed on                                   equivalent (f)
  I38  _looked starts as {} not None                                         equivalent (a)
  I39  _refresh: reset to {} (an empty backlog) not None                     killed: h222_backlog_work
  I40  _to_look_at: nothing set aside (events stripped only)                 killed: h222_backlog_work
  I41  fold: early return only with no event known (`and`)                   killed: h222_backlog_work
  E01  fold_order: floors ignored                                            killed: h222_backlog_work
  E02  fold_order: a floor replaces the sender's count                       killed: h222_backlog_work
  E03  fold_order: an event without a floor counted at +inf                  new: floors
  E04  fold_order: the sender's running max dropped                          killed: h222_backlog_work
  E05  aside_floors: no running max                                          killed: h222_backlog_work
  E06  aside_floors: the sender's time, not min(time, seen)                  killed: h222_backlog_work
  E07  aside_floors: seen, not min(time, seen)                               killed: h222_backlog_work
  E08  aside_floors: aside test flipped                                      killed: h222_backlog_work
  E09  aside_floors: every floor -inf                                        killed: h222_backlog_work
  E10  aside_floors: events not sorted by order                              killed: h222_backlog_work
  E11  aside_floors: a floor dropped after each event looked at              new: floors
  E12  aside_floors: one sender for all                                      killed: h222_backlog_work
  E13  aside_floors: the floor carried from one sender to the next           killed: h222_backlog_work
  E14  aside_floors: sorted backwards                                        killed: h222_backlog_work
  O01  _walk_step: the tries' cache not read                                 killed: h218_outcome_walk
  O02  _walk_step: nothing kept in the cache                                 killed: h218_outcome_walk
  O03  _walk_step: kept whole                                                killed: h218_outcome_walk
  O04  _walk_step: the state kept                                            killed: h218_outcome_walk
  O05  _walk_step: the idempotency table kept                                new: walk_keeps
  O06  _walk_step: the step given whole (the kept copy stripped)             new: walk_keeps
  O07  _walk_since: reads the store itself                                   new: walk_since
  O08  _walk_since: the newest step read again                               new: walk_since
  O09  _look_up_outcome: reads the store itself                              killed: h218_outcome_walk
  O10  _look_up_outcome: the newest step read again                          new: walk_since
  O11  call_outcome: a cache per try                                         killed: h218_outcome_walk
  O12  _pending_elsewhere: the walk since given a cache of its own           new: walk_since
  O13  _look_up_outcome: _pending_elsewhere given a cache of its own         new: walk_since
  O14  _walk_step: the step below given from the cache                       new: walk_since
  O15  _walk_step: the carried outcomes stripped too                         new: step_carries
  O16  _walk_step: a step not there kept as None                             equivalent (i)
  F01  renew: records not emptied                                            killed: h219_forked_child
  F02  renew: no new lock                                                    killed: h219_forked_child
  F03  no TypeError for a name that is no lock                               killed: h219_forked_child
  F04  registered after_in_parent                                            killed: h219_forked_child
  F05  renew: only the first record emptied                                  killed: h219_forked_child
  F06  workflow: _rerun_done not registered                                  killed: h219_forked_child
  F07  batch: _applying not registered                                       killed: h219_forked_child
  F08  timers: no registration                                               killed: h219_forked_child
  F09  subtask_executors: _pools not registered                              killed: h219_forked_child
  F10  reentrancy: _blocked not registered                                   killed: h219_forked_child
  F11  counters: no registration                                             killed: h219_forked_child
  F12  workflow_steps: no registration                                       killed: h219_forked_child
  F13  storage._memory: no registration                                      killed: h219_forked_child
  F14  mailkey: no registration                                              killed: h219_forked_child
  F15  definition: no registration                                           killed: h219_forked_child
  F16  any object taken for a lock                                           killed: h219_forked_child
  F17  namespace[lock]: a KeyError for a missing name                        killed: h219_forked_child
  S01  actor_serializer: always pickle                                       new: sub_task_results
  S02  actor_serializer: json with no definition                             equivalent (h)
  C01  compaction warning: no history hint                                   killed: h220_resume_compaction
  C02  vactor compact's warning without the history hint                     new: vactor_compact
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from actors import OrderLog, Tally
from cli_harness import Vactor
from store_helpers import init
from test_combining import gave_up_then_folded, init_switchable
from test_delete_surfaces import inbox_size
from test_review_clock_skew import _inbox_deletes_lost
from test_review_h147_inbox_sweep import EXITS, Chime
from test_review_h194_outcome_after_delete import _at_the_inbox_listing
from test_review_h222_backlog_work import _events, _keeper, _Looks

import vactor_cloud as vc
from vactor_cloud import _sync, codec, compaction
from vactor_cloud.cli import EXIT_OK
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.ids import event_dedup_key
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.inbox_events import InboxEvent, aside_floors, fold_order
from vactor_cloud.keys import inbox_key, step_of, tasks_prefix
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import StepRecord
from vactor_cloud.outcome_elsewhere import OutcomeElsewhere
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.lanes import StoreSpec


@pytest.mark.vactor_lanes("memory", "local")
def test_an_event_whose_handler_exited_is_tried_again_by_the_next_warm_commit(actor_store: StoreSpec) -> None:
    """An event whose handler raised SystemExit stays in the inbox and is tried again by the
    next commit, one that lists nothing (docs/events.md). (I08: a fold that found the events set
    aside still set aside returned at once, also with events looked at left: the event waited
    for the next listing, an hour here.)"""
    init(actor_store, inbox_interval=3600.0)
    EXITS.clear()
    chime = Chime.get_or_create("exits")
    vc.send_event("exits", "exit-once", "again", event_id="x")
    assert chime.add.run("first") == 1  # (its fold lists: the handler exits)
    assert EXITS == ["again"]
    assert chime.add.run("second") == 3  # (no listing: the event is tried again, before it)
    assert EXITS == ["again", "again"]
    assert chime.log.run() == ["first", "again", "second"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.vactor_lanes("memory", "local")
def test_the_steps_a_walk_keeps_and_gives_hold_no_state_and_no_table(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``call_outcome``'s walk keeps, and gives its loop, each step it read without its state
    and its idempotency table (``OutcomeElsewhere._walk_step``). (O05: the table kept; O06: the
    step given whole, only the kept copy stripped: the lowest step walked was held whole.)"""
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = gave_up_then_folded(store, commit_timeout=0.3)  # me/1 given up on, then applied
    for i in range(4):  # (each step's idempotency table records its call's key)
        log.add.options(idempotency_key=f"k{i}").run(f"me/{3 + i}")
    walk_step = OutcomeElsewhere._walk_step
    kept: dict[int, dict[int, StepRecord]] = {}  # (the walks' dicts of steps read, by id)
    given: list[StepRecord] = []

    def watched(self: OutcomeElsewhere, step: int, read: dict[int, StepRecord]) -> StepRecord | None:
        record = walk_step(self, step, read)
        kept[id(read)] = read
        if record is not None:
            given.append(record)
        return record

    monkeypatch.setattr(OutcomeElsewhere, "_walk_step", watched)
    assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2
    records = given + [r for read in kept.values() for r in read.values()]
    assert len(given) >= 4
    assert {(r.state, r.dedup) for r in records} == {(b"", b"")}


@pytest.mark.vactor_lanes("memory", "local")
def test_a_warm_commit_that_tries_an_exiting_handler_again_looks_at_none_of_the_backlog(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog of events the class refuses, and one event whose handler exits at every try
    (tried again by every commit): a warm commit looks at that event, not at the backlog,
    whose size it does not depend on (counted as in review h222). (I14: the events to look at
    made again by every fold, the backlog gone through each commit.)"""
    init(actor_store, inbox_interval=3600.0)
    EXITS.clear()
    chimes = {}
    for size in (10, 100):
        actor_id = f"backlog-{size}"
        chimes[size] = chime = Chime.get_or_create(actor_id)
        for i in range(size):
            vc.send_event(actor_id, "nobody", i, event_id=f"n{i:04}")
        vc.send_event(actor_id, "exit", size, event_id="x")
        assert chime.process_events() == 0
        chime.add.run("after the listing")
    looks = _Looks(monkeypatch)
    per_backlog = {}
    for size, chime in chimes.items():
        looks.count = 0
        EXITS.clear()
        for _ in range(5):
            chime.add.run("warm")
        assert list(EXITS) == [size] * 5  # (tried again by each commit)
        per_backlog[size] = looks.count
    assert per_backlog[10] == per_backlog[100]


@pytest.mark.vactor_lanes("memory", "local")
def test_an_applied_event_left_in_the_inbox_is_deleted_by_a_class_that_refuses_it(
    actor_store: StoreSpec,
) -> None:
    """An event applied whose writer died before deleting it, then the class defined again
    without its handler: the next listing finds it applied (its table holds it) and deletes it;
    it is not set aside as refused. (I15: set aside whether or not the table holds it: the
    applied event stayed in the inbox for good.)"""
    runtime = init(actor_store, inbox_interval=3600.0)
    handles = _keeper(True).get_or_create("leftover")
    vc.send_event("leftover", "later", 1, event_id="l")
    with pytest.MonkeyPatch.context() as lost:
        _inbox_deletes_lost(runtime.store, lost)  # (its writer died before deleting it)
        assert handles.process_events() == 1
        assert inbox_size("leftover") == 1
    refuses = _keeper(False).get_or_create("leftover")
    assert refuses.process_events() == 0
    for _ in range(1000):  # (the delete runs beside the commit)
        if inbox_size("leftover") == 0:
            break
        time.sleep(0.01)
    assert inbox_size("leftover") == 0
    assert handles.count.run() == 1


def test_an_event_is_found_by_its_dedup_key_only_under_its_own_name() -> None:
    """``settle`` and ``_note_excluded`` find the events a commit applied (or failed) by their
    idempotency keys: an event whose id is at that key under another name is not the one.
    (I29: any event at the key its id names taken: deleted, or excluded, as another.)"""
    log = ActorLog(MemoryStore("review-h229"), "a")
    inbox = ActorInbox(log, vc.Settings(), lambda call: None, lambda: -1)
    key = inbox_key("a", "e")
    event = InboxEvent(
        key=key, event_id="e", name="handled", payload=b"1", serializer="json", time=0.0, sender="s", seq=0
    )
    inbox._known[key] = event
    assert inbox._known_by_dedup([event_dedup_key("handled", "e")]) == {event.dedup_key: event}
    # another event under the id (its object deleted unapplied and the id sent again), a call's key
    assert inbox._known_by_dedup([event_dedup_key("other", "e"), "abcdefghandled\x00e", None]) == {}


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.vactor_lanes("memory", "local")
def test_the_walk_since_the_first_reads_each_step_once_across_the_tries(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``call_outcome`` of a call this process did not post: steps are committed between its
    walk and its LIST of the inbox, and a read of one of them by the walk since the first fails
    (a throttled read). The next try reads each of those steps once in all, and no walk reads
    the newest step, which the probe for it gave. (O07: the walk since the first reading the
    store itself; O12, O13: it given a dict of its own, not the tries'; O08, O10: a walk
    reading the newest step again; O14: a step given from the cache as another.)"""
    store = init_switchable(store_spec)
    actor = OrderLog.get_or_create("a")
    for i in range(3):
        actor.add.run(f"old/{i}")
    core = vc.get_runtime().core("a")
    walked = core.env.run(core.revalidate()).step
    since = range(walked + 1, walked + 4)  # (below the newest, walked + 4: the probes read it)

    def four_steps_more() -> None:
        for i in range(4):
            actor.add.run(f"new/{i}")

    ran = _at_the_inbox_listing(monkeypatch, four_steps_more)
    probe_from = ActorLog.probe_from
    probing: list[object] = []

    async def probing_marked(log: ActorLog, record: StepRecord) -> tuple[StepRecord, int]:
        probing.append(log)  # (the probe for the newest step reads steps too: not the walks')
        try:
            return await probe_from(log, record)
        finally:
            probing.pop()

    monkeypatch.setattr(ActorLog, "probe_from", probing_marked)
    walk_step = OutcomeElsewhere._walk_step
    given: list[tuple[int, int]] = []  # (each step a walk asked for, the step it was given)

    def watched(core: OutcomeElsewhere, step: int, steps: dict[int, StepRecord]) -> StepRecord | None:
        record = walk_step(core, step, steps)
        given.append((step, step if record is None else record.step))
        return record

    monkeypatch.setattr(OutcomeElsewhere, "_walk_step", watched)
    read: Counter[int] = Counter()
    failed: list[int] = []

    def the_second_step_since_fails_once(operation: str, key: str) -> Exception | None:
        step = step_of(key) if operation == "get" and not probing else None
        if step is None or not walked < step <= since[-1] + 1:
            return None
        if step == walked + 2 and not failed:
            failed.append(step)
            return RetryableStorageError("injected: a throttled read", key)
        read[step] += 1
        return None

    store.fail = the_second_step_since_fails_once
    with pytest.raises(vc.CallNotFoundError):
        vc.get_actor("a").call_outcome(uuid.uuid4().hex)
    assert ran.is_set() and failed  # (the walk since read the steps made after the first walk)
    assert read == dict.fromkeys(since, 1)  # (the newest: none, given by the probe)
    assert {asked for asked, _ in given} >= {walked, *since}  # (the second try: from the cache)
    assert [asked for asked, step in given if asked != step] == []


def test_the_floors_of_a_backlog_set_aside_stay_right_as_the_events_looked_at_leave() -> None:
    """The events looked at, kept from one fold to the next, leave the cache as they are
    applied, the floors made once staying: ``fold_order`` of those left, with those floors, is
    the order of all the events left, those set aside taken away. And an event without a floor
    has none. (E11: a sender's floor dropped after each event looked at, which carries it on
    only while that event is there; E03: an event without a floor counted at +inf.)"""
    rng = random.Random(229)
    for _ in range(300):
        every = list(_events(rng))
        aside = {e.key for e in every if rng.random() < 0.5}
        floors = aside_floors(every, aside)
        left = [e for e in every if e.key in aside or rng.random() < 0.5]  # (others applied)
        looked = [e for e in left if e.key not in aside]
        expected = [e.key for e in fold_order(left) if e.key not in aside]
        assert [e.key for e in fold_order(looked, floors)] == expected
        assert fold_order(looked, {}) == fold_order(looked)  # (no floor: none)


@vc.virtual_actor(serializer="json")
class Doubler:
    def __init__(self) -> None:
        self.total = 0

    def fan_out(self) -> list[int]:
        return list(vc.subtask(lambda x: x * 2).map([1, 2, 3]))


@pytest.mark.vactor_lanes("memory", "local")
def test_a_json_actors_sub_task_results_are_checkpointed_in_json(actor_store: StoreSpec) -> None:
    """A json actor's sub-task results are checkpointed with its serializer, never pickled
    (``subtask_checkpoints.actor_serializer``). (S01: ``"pickle"`` for every actor: a json
    actor's checkpoints pickled, and read back by unpickling.)"""
    runtime = init(actor_store)
    assert Doubler.get_or_create("doubler").fan_out.run() == [2, 4, 6]
    keys = _sync.sync(runtime.store.list(tasks_prefix("doubler")))
    assert len(keys) == 3
    for key in keys:
        envelope = codec.decode(key, _sync.sync(runtime.store.get(key)).data)
        assert envelope.meta["serializer"] == "json"
        assert json.loads(envelope.parts["result"]) in (2, 4, 6)


def test_vactor_compact_says_to_look_in_the_history_for_a_call_it_made_unresumable(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor compact`` names each call whose failure record it deleted, and says to look for
    it in ``vactor history`` before running it again (a resume that listed the record may have
    run it). (C02: the warning without the history hint.)"""
    vc.init(store)
    Tally.get_or_create("t").incr.run()
    vc.shutdown()
    compact = compaction.compact

    async def one_record_gone(*args: Any, **kwargs: Any) -> compaction.CompactionReport:
        return dataclasses.replace(await compact(*args, **kwargs), unresumable=("c1",))

    monkeypatch.setattr(compaction, "compact", one_record_gone)
    result = vactor("compact", "t", "--keep-last", "1", "--min-age", "0", "--force")
    assert result.code == EXIT_OK, result
    (warning,) = [line for line in result.err.splitlines() if "c1" in line]
    assert "workflow.resume can no longer run that call" in warning, warning
    assert "look for the call in `vactor history`" in warning, warning


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.vactor_lanes("memory", "local")
def test_a_walk_finds_an_outcome_in_the_copy_a_step_carries_of_a_compacted_one(store_spec: StoreSpec) -> None:
    """The step that applied a call given up on is compacted; the fold above it, kept (not the
    newest), carries a copy of its outcomes: the walk, which keeps each step read without its
    state and table, keeps that copy and answers from it. (O15: the walk's steps kept without
    their carried outcomes too: "applied, but the step holding its outcome has been
    compacted".)"""
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = gave_up_then_folded(store, commit_timeout=0.3)  # me/1 given up on, then applied
    for token in ("me/3", "me/4"):
        log.add.run(token)
    log_of_a = vc.get_runtime().log("a")  # (as vactor compact --force: no writer to outlive)
    report = _sync.sync(compaction.compact(log_of_a, 3, min_age=0.0, fresh_window=0.0))
    # (gone: the step that applied me/1; kept: the fold's above it, which carries its outcomes)
    assert report.deleted_steps == 4, report
    assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2

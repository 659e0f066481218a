"""Review h147: a mutation sweep of the event inbox and signed mail (events.py, inbox.py,
mailkey.py).

Guarantees held: an event sent once is applied once (also sent again by its id, across
compaction and the actor's deletion), a forged or unsigned event on a signed store is refused,
a damaged inbox object is not taken for an event, events apply in the documented order, and
``process_events``/``wait_for_event`` page through a backlog and stop (or raise) cleanly. 110
hand-made mutations, one at a time, against the event tests (test_events, test_review_events,
test_review_signed_store_forgeries, test_clean_room_events_timers, test_review_outcomes_events,
test_review_delete_races, test_review_deleted_leftovers, test_review_clock_skew,
test_review_memory, test_review_limits, test_review_fold_mutations, test_review_timers_events,
test_integrity; for mailkey: test_inline_posts, test_review_h142_reads_cut_short,
test_review_hangs) on the memory lane; survivors again on 16 wider files and, where listings
matter, on the local lane. "h147" = a test of this module or of test_review_h147_event_waits.

events.py (E)                                              killed by
 E1  a cached tombstone taken for a live actor              clean_room ..._deletes_is_deleted_for_the_library
 E2  newest step a tombstone: no ActorDeletedError          (same)
 E3  _existing unbounded                                    review_memory ..._remembers_a_bounded_number
 E4  send without the existence check                       events ..._missing_actor_and_bad_payload
 E5  send not signalling the inbox                          events ..._folded_into_next_writer_call
 E6  _process one round only                                fold_mutations ..._backlog_longer_than_one_commit
 E7  _process_here one round only                           review_events ..._key_of_an_applied_event
 E8  _process_here waiting on after help() gave up          h147 a_wait_times_out_while_a_writer_method_runs
 E9  applied_event not copying the outcome                  review_events ..._the_callers_own
 E10 _Blips raising the 30th damaged read, not the 3rd      h147 a_wait_raises_a_read_damaged_three_times
 E11 FormatVersionError polled through                      h147 ..._object_of_a_newer_format_at_once
 E12 _Blips never comparing with the deadline               h147 ..._storage_errors_last_the_deadline
 E13 count not cleared after a clean look (async)           h147 damaged_reads_apart_from_each_other...
 E14 _by dropping the result of process_events              h147 ..._failing_inbox_listing_once_it_lasts...
 E15 NaN timeout accepted                                   review_api ..._timeout_that_is_not_a_number
 E16 wait_for_event's reentrancy refusal dropped            h147 applying_its_own_events_from_inside...
 E17 _unhandled saying "no handler" for handled names       review_user_edges ..._does_not_handle_says_so
 E18 applied_event without event_id: no newest lookup       events ..._returns_handler_result_or_raises
 E19 process_events' reentrancy refusal dropped            h147 (as E16: the core's refusal has other words)
 E21 _wait_here not checking for a runtime shut down        equivalent: the poll raises RuntimeShutdownError,
                                                            turned into the same error
 E23 a look finding no actor not clearing the count        h147 damaged_reads_apart... (actor-not-created)
 E24 _actor_exists not moving a hit to the recent end      h147 send_remembers_the_actors_it_sent_to...
 E25 a wait on a deleted actor: no note                    delete_actor ..._of_a_deleted_actor_ends_with...
 E26 send ignoring ``create=True``                          events ..._sent_with_create_waits_for_the_actor
 E29 the wait's backoff not capped at 1 s                  h147 a_wait_polls_at_least_once_a_second
inbox.py (I)
 I1  fold_order losing a sender's own order (no max)        review_limits ..._keeps_each_senders_order
 I2  fold_order ignoring ``seen`` (clock ahead)             review_limits ..._clock_runs_ahead_is_not_starved
 I3  fold_order not sorting                                 review_limits (as I1)
 I4  sender clock not monotonic                             fold_mutations ..._when_its_clock_steps_back
 I5  payload bound one byte late                            h147 a_payload_one_byte_past_the_limit...
 I6  json payload with allow_nan                            h147 a_json_payload_that_is_no_json...
 I7  decode_event not checking ``kind``                     h147 an_object_of_another_kind_at_an_inbox_key
 I8  decode_event not checking the key's id                 review_names ..._one_level_down...; h147 too
 I9  OverflowError (int of inf) not caught                  review_names ..._numbers_are_infinite; h147 too
 I10 events encoded unsigned on a signed store              review_signed_store_forgeries
 I11 put_event: AlreadyExists taken without the name check  clean_room ..._applied_once_in_inbox_order
 I12 PermissionDenied put taken for a put in doubt          h147 a_send_the_store_refuses_raises...
 I13 put_event: object not there taken for stored           fold_mutations ..._put_failed_before_landing
 I14 put_event: no name check on read-back                  clean_room (as I11)
 I15 event_keys keeping keys one level down                 review_names ..._no_event_can_have_are_passed_over
 I16 event_keys keeping the folder marker                   (same)
 I17 damaged reads not recorded                             review_events (damaged-once)
 I18 pickled payload not refused by a json actor            events ..._json_actor_refuses_pickled_payload
 I19 unknown payload serializer not refused (unpickled)     h147 ..._unknown_payload_serializer_is_kept...
 I20 more_to_do: full alone (1000 empty folds)              h147 process_events_stops_after_a_full_fold...
 I21 more_to_do ignoring _refold                            review_events (as E7)
 I22 wants_fold ignoring the events held                    h147 ..._the_creation_listed_are_applied...
 I23 _list_confirmed listing once                           events ..._next_writer_call[local] (memory
                                                            listings are one moment)
 I24 _unconfirmed reset by every listing                    equivalent now: it differed only when two
                                                            listings overlapped, which let a stale one
                                                            drop events (DEFECT, fixed: listings take
                                                            turns; test_review_h147_listing_overlap)
 I25 listing keeping events it no longer lists              h147 ..._deleted_unapplied_and_its_id_sent_again
 I26 damaged object never read again                        h147 ..._read_damaged_three_times_is_read_again
 I27 _waiting_on_damaged always False                       review_events (damaged-once)
 I28 _trim one event late                                   review_memory ..._gone_when_read_again
 I29 _reread keeping an event found gone                    equivalent: one GET more per fold until the
                                                            next listing drops it; nothing applied
 I30 _reread taking another order for the same event        review_memory ..._sent_again_meanwhile...
 I31 _reread not comparing the dedup key                    equivalent: one (time, sender, seq, id) stamp
                                                            per send; another name there is no send
 I32 _cache_trusted always true                             h147 a_cached_event_another_process_applied...
 I33 fold deleting a key held before it listed              review_events (as E7)
 I34 fold not deleting applied leftovers                    events ..._next_writer_call
 I35 fold not holding a waiting sender's later events       review_events ..._paged_listing_missed_the_first
 I36 refused events kept with their payloads                review_memory ..._refuses_are_not_held...
 I37 byte bound not marking the fold full                   review_memory ..._bounded_in_bytes_too
 I38 excluded events never chosen again                     h147 ..._handler_was_excluded_is_tried_again
 I39 failed re-read: later whole events applied             h147 ..._could_not_be_read_again_wait_for_it
 I40 load_payload guarded by Exception only                 h147 ..._payload_exits_when_unpickled...
 I41 waiting senders not folded again                       h147 ..._paged_listing_held_back_in_the_same_call
 I42 fold not waiting on a damaged read                     review_events (damaged-once)
 I43 failed re-listing keeping an untrusted cache           h147 (as I32)
 I44 settle deleting events of a batch not committed        equivalent: apply_batch records no calls
                                                            when it commits nothing (result.calls empty)
 I45 settle moving _listed_step past any base               not killed; no case found where it changes
                                                            what is applied (the fold listed again)
 I46 process_events not told its listing failed             review_memory ..._loses_no_event
 I47 _note_excluded taking any raising handler              equivalent: settle drops applied events from
                                                            _known first, so none is found
 I48 _deleting never cleared (wait_deleted hangs)           events ..._next_writer_call (a timeout)
 I49 clean-up ignoring events told by call id               review_clock_skew ..._sent_again_for_the_next...
 I50 clean-up never looking up call ids                     review_clock_skew ..._from_a_clock_ahead...
 I51 lookback cut short called complete                     h147 ..._whose_step_was_compacted_is_not_applied
 I52 lookback not stopping at the skew bound                equivalent: reads more steps (at most 256);
                                                            the answer is only more complete
 I53 clean-up reading the table as json always              clean_room ..._a_deleter_that_died_left...
 I54 full fold not marking ``_filled``                      review_memory ..._one_commits_worth_of_payloads
 I55 _delete not skipping keys in flight                    equivalent: a DELETE sent twice, idempotent
 I56 listing not clearing ``_signalled``                    events ..._warm_commit_does_not_list
 I57 listing not stamping ``seen``                          review_limits (as I2)
 I58 exclusions kept for keys no longer listed              h147 an_excluded_event_deleted_and_its_id...
 I59 read-back refused: raised, not taken for the event     review_outcomes_events ..._not_read_it...
 I60 EventInDoubtError swallowed                            review_outcomes_events ..._names_the_event_id
 I61 _send_deletes one key a round                         h147 ..._deleted_a_batch_per_request...
 I62 read_events not sorting                               equivalent: every caller orders (fold_order)
                                                            or does not need an order
 I64 listing re-reading keys being deleted                 review_memory ..._one_commits_worth_of_payloads
 I68 clean-up reading every event listed                   h147 ..._clean_up_reads_no_event_its_actor...
 I70 put_event raising a read-back cut short               review_outcomes_events (as I60)
 I71 listing not stamping ``_listed_at`` (always stale)    events ..._warm_commit_does_not_list
 I73 a forgotten applied event not folded again            review_events (as E7)
 I75 ActorInbox.finish not awaiting its tasks              h147 shutdown_waits_for_the_deletes...
 I76 _delete keeping the key's exclusion                   h147 ..._excluded_then_applied_leaves_no...
 I77 clean-up taking ids applied under another name        h147 ..._clean_up_keeps_an_id_sent_again...
 I78 read_event raising NotFoundError                      h147 ..._gone_between_the_listing_and_its_read...
mailkey.py (M)
 M1  keystream without the block counter                    inline_posts ..._byte_for_byte...
 M2  keystream without the personalization                  (same)
 M3  _decode not checking the key's length                  h147 a_mail_key_object_of_another_length...
 M4  _decode not checking the kind                          (same)
 M5  _due always due for a poster                           inline_posts ..._damaged_mail_key...
 M6  _due ignoring a reader's "found none"                  inline_posts ..._bare_names_reads_sealed_ones
 M7  a lost race keeping its own key                        inline_posts ..._racing_to_make_the_mail_key
 M8  a damaged key raised to the poster                     inline_posts ..._damaged_mail_key...
 M9  _read by a plain GET                                   h142_reads_cut_short (the mail key is read)
 M10 mail_keys reusing keys of another signing key          h147 the_mail_key_of_a_signed_store...
 M11 the key object unsigned                                inline_posts ..._forged_name...; h147 too
 M12 the failed try's time not kept                         inline_posts (as M5)
 M13 a reader's "found none" not kept                       inline_posts (as M6)
 M14 key_id without the key                                 inline_posts (as M1)

Noticed, left alone: a pending event (one no handler takes) deleted out of band and its id
sent again before this process lists the inbox again stays cached under its key, and the new
event is not read while the actor stays cached (listings GET only keys not held). The tests
of I25 and I58 list in between.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

import pytest
from store_helpers import init, other_process, raw_put, retune
from test_review_events import _PagedListings

import vactor_cloud as vc
from vactor_cloud import _sync, codec, events, inbox, inbox_events, keys
from vactor_cloud.batch import PendingCall
from vactor_cloud.errors import IntegrityError, PermissionDeniedError, RetryableStorageError
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore, install
from vactor_cloud.testing.lanes import StoreSpec

_real_time = time.time


@vc.virtual_actor
class Chime:
    def __init__(self) -> None:
        self.heard: list[Any] = []

    def add(self, token: str) -> int:
        self.heard.append(token)
        return len(self.heard)

    @vc.virtual_actor.on_event("ring")
    def on_ring(self, payload: Any) -> Any:
        self.heard.append(payload)
        return payload

    @vc.virtual_actor.readonly
    def log(self) -> list[Any]:
        return list(self.heard)

    def hold(self) -> None:
        HELD.set()
        assert RELEASE.wait(60), "the test never released the writer"

    @vc.virtual_actor.on_event("exit")
    def on_exit(self, payload: Any) -> None:
        EXITS.append(payload)
        raise SystemExit("a handler that exits")

    @vc.virtual_actor.on_event("exit-once")
    def on_exit_once(self, payload: Any) -> Any:
        EXITS.append(payload)
        if len(EXITS) == 1:
            raise SystemExit("a handler that exits the first time")
        self.heard.append(payload)
        return payload

    def drain_own(self, how: str) -> Any:
        """Apply this actor's own events from inside its writer method (refused)."""
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        if how == "process":
            return events.process_events(actor_id)
        return events.wait_for_event(actor_id, "ring", timeout=5.0)


#: a writer of Chime is inside ``hold``; it leaves once RELEASE is set
HELD = threading.Event()
RELEASE = threading.Event()
#: payloads of the ``exit`` events whose handler ran (and raised SystemExit)
EXITS: list[Any] = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    HELD.clear()
    RELEASE.clear()
    EXITS.clear()


def _exit_on_load() -> None:
    raise SystemExit("a payload whose unpickling exits")


class ExitsWhenLoaded:
    """A payload that pickles fine and raises SystemExit when unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_exit_on_load, ())


def _inbox_ids(actor_id: str) -> list[str]:
    listed = _sync.sync(inbox.list_inbox(vc.get_runtime().store, actor_id))
    return [key.rsplit("/", 1)[1] for key in listed]


def _event_object(actor_id: str, event_id: str, **meta: Any) -> tuple[str, bytes]:
    """An inbox object as a sender writes it (unsigned), with ``meta`` over the usual fields."""
    key = keys.inbox_key(actor_id, event_id)
    fields: dict[str, Any] = {"kind": "event", "event_id": event_id, "name": "ring", "serializer": "json"}
    fields |= {"time": time.time(), "sender": "s" * 32, "seq": 0}
    payload = meta.pop("payload", json.dumps("forged").encode())
    return key, codec.encode(key, fields | meta, {"payload": payload})


# -- sending --------------------------------------------------------------------------------------
def test_a_payload_one_byte_past_the_limit_is_refused_and_one_at_it_is_taken() -> None:
    """docs/events.md: "a payload past 32 MB serialized ... is a ``ValueError``" (every lister
    reads an event whole). (Mutation: the bound compared one byte late: an event of
    ``MAX_EVENT_PAYLOAD_BYTES + 1`` bytes was stored.)"""
    limit = inbox.MAX_EVENT_PAYLOAD_BYTES
    assert len(inbox_events.serialize_payload("x" * (limit - 2), "json")) == limit  # (the quotes)
    with pytest.raises(ValueError, match="at most"):
        inbox_events.serialize_payload("x" * (limit - 1), "json")


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_a_json_payload_that_is_no_json_is_refused_before_anything_is_written(number: float) -> None:
    """A json payload is plain data that any reader (another language, ``vactor events ls
    --json``) parses: NaN and the infinities are no JSON, so they are refused as
    ``StateSerializationError`` before the put, as the state of a json actor is. (Mutation:
    ``serialize_payload`` with ``allow_nan=True``: ``NaN`` was stored.)"""
    with pytest.raises(vc.StateSerializationError, match="cannot serialize the event payload"):
        inbox_events.serialize_payload({"amount": number}, "json")


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_wait_raises_a_failing_inbox_listing_once_it_lasts_the_deadline(
    store_spec: StoreSpec, twin: str
) -> None:
    """A wait applies pending events itself; when that cannot list the inbox (the store down for
    the inbox), the listing's error is polled through for ``Settings.deadline`` and then
    raised, as the other transient errors of a wait are, not swallowed into a
    ``TimeoutError`` after ``timeout``. (Mutation: ``_by`` not taking the result of the
    ``process_events`` it awaited: the async wait timed out instead.)"""
    store_spec.init()
    install(FaultConfig(seed=1, rules=(FaultRule("fail_before", frozenset({"list"}), "/inbox/", 1.0),)))
    Chime.get_or_create("a").add.run("me")
    retune(deadline=0.3)
    with pytest.raises(RetryableStorageError):
        if twin == "sync":
            events.wait_for_event("a", "ring", timeout=10.0)
        else:
            asyncio.run(events.wait_for_event_async("a", "ring", timeout=10.0))


# -- reading inbox objects ------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_event_of_an_unknown_payload_serializer_is_kept_and_never_unpickled(store_spec: StoreSpec) -> None:
    """An event whose serializer is neither json nor pickle (a newer sender's, or written by
    hand) is refused and kept, as docs/events.md says of events an actor cannot read: a
    payload is unpickled only when it says pickle. (Mutation: ``refusal`` not checking the
    serializer: the payload went to ``pickle.loads`` and the handler applied it.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    raw_put(*_event_object("a", "odd", serializer="pickle-next", payload=pickle.dumps("unpickled")))
    assert chime.process_events() == 0
    assert chime.log.run() == [] and _inbox_ids("a") == ["odd"]


def test_an_object_of_another_kind_at_an_inbox_key_is_no_event() -> None:
    """An inbox key holding an object of another kind (fields like an event's) is read as
    damaged, not applied. (Mutation: ``decode_event`` not checking ``kind``.)"""
    key, data = _event_object("a", "e1", kind="timer")
    with pytest.raises(IntegrityError, match="expected an event object"):
        inbox_events.decode_event(key, data, None)


def test_an_event_object_at_another_events_key_is_no_event() -> None:
    """An event object moved (or written) under another id's key is not taken for either: its
    dedup key would be one id's, its deletes the other's. (Mutation: ``decode_event`` checking
    only that the key is an inbox key.)"""
    key, data = _event_object("a", "e1")
    elsewhere = keys.inbox_key("a", "e2")
    moved = codec.encode(elsewhere, codec.decode(key, data).meta, {"payload": b"1"})
    with pytest.raises(IntegrityError, match="not the one its key names"):
        inbox_events.decode_event(elsewhere, moved, None)


def test_an_event_with_an_infinite_sequence_number_is_read_as_damaged() -> None:
    """``int()`` of an infinite ``seq`` raises ``OverflowError``: a malformed object, read as
    damaged, not an error out of the fold. (Mutation: ``OverflowError`` not caught.)"""
    key, data = _event_object("a", "e1", seq=float("inf"))
    with pytest.raises(IntegrityError, match="malformed"):
        inbox_events.decode_event(key, data, None)


# -- applying -------------------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_wait_times_out_while_a_writer_method_runs(store_spec: StoreSpec) -> None:
    """docs/events.md: ``wait_for_event`` raises ``TimeoutError`` after ``timeout`` "also while
    a writer method of the actor runs: applying events waits behind it, but the wait does
    not". (Mutation: ``_process_here`` waiting for its commit after ``help`` gave up at the
    timeout: the wait ended only when the writer did; every event and wait test passed.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    writer = threading.Thread(target=chime.hold.run)
    writer.start()
    assert HELD.wait(30)
    released_by_test = threading.Timer(10.0, RELEASE.set)  # (a wait that does not end, ended)
    released_by_test.start()
    try:
        with pytest.raises(TimeoutError):
            events.wait_for_event("a", "ring", timeout=0.3)
        assert not RELEASE.is_set(), "the wait ended only once the writer method returned"
    finally:
        released_by_test.cancel()
        RELEASE.set()
        writer.join(60)


@pytest.mark.usefixtures("runtime_off")
def test_process_events_stops_after_a_full_fold_that_applied_nothing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold that chose a commit's worth of events and applied none of them (every handler
    raised SystemExit: excluded, kept) would only repeat itself: ``process_events`` stops (each
    excluded event is tried once more, after the others, then left). (Mutation: ``more_to_do``
    asking only whether the fold was full: 1,000 folds, every handler run 1,000 times.)"""
    store_spec.init()
    monkeypatch.setattr(inbox, "MAX_EVENTS_PER_COMMIT", 2)
    chime = Chime.get_or_create("a")
    vc.send_event("a", "exit", 1, event_id="x1")
    vc.send_event("a", "exit", 2, event_id="x2")
    assert chime.process_events() == 0
    assert sorted(EXITS) == [1, 1, 2, 2]  # newly excluded: folded once more, then left
    assert _inbox_ids("a") == ["x1", "x2"]


@pytest.mark.usefixtures("runtime_off")
def test_events_the_creation_listed_are_applied_by_the_first_writer_call(store_spec: StoreSpec) -> None:
    """An event sent with ``create=True`` by another process waits for the actor; creating it
    lists the inbox once (beside the creation), and the first writer call applies the event
    before its own call, in the same commit (docs/events.md: "applied at the first commit
    after someone creates it"). (Mutation: ``wants_fold`` ignoring the events it holds: the
    first commits did not look at them until the listing went stale, 15 s on.)"""
    store_spec.init()
    vc.send_event("a", "ring", "early", event_id="e1", create=True)
    store_spec.init()  # another process: it never sent the actor an event
    chime = Chime.get_or_create("a")
    assert chime.add.run("first call") == 2
    assert chime.log.run() == ["early", "first call"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("how", ["process", "wait"])
def test_applying_its_own_events_from_inside_a_writer_method_is_refused(
    store_spec: StoreSpec, how: str
) -> None:
    """``process_events``/``wait_for_event`` of an actor from inside one of its writer methods
    would wait for a commit that waits for the method: ``ReentrantCallError`` at once, naming
    the call and saying that nothing was applied. (Mutations: either refusal dropped: the
    commit's own cycle check still refused, in words about a method call; every test passed.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "ring", "ding", event_id="e1")
    what = "process_events" if how == "process" else "wait_for_event"
    watchdog = threading.Timer(20.0, vc.shutdown)  # (a call that waits for ever, ended)
    watchdog.start()
    try:
        with pytest.raises(vc.ReentrantCallError, match=rf"{what}\(\) of actor .a. .*nothing was applied"):
            chime.drain_own.run(how)
    finally:
        watchdog.cancel()
    assert chime.log.run() == ["ding"]  # (folded into the writer call's own commit, once)


@pytest.mark.usefixtures("runtime_off")
def test_an_event_whose_handler_was_excluded_is_tried_again_by_the_next_fold(store_spec: StoreSpec) -> None:
    """docs/events.md: an event whose handler raised SystemExit "stays in the inbox ... and is
    tried again by the next commit that applies events". (Mutation: the fold never choosing an
    excluded event again: it stayed in the inbox for good; every event test passed.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "exit-once", "second try", event_id="x1")
    assert chime.process_events() == 1
    assert EXITS == ["second try", "second try"] and chime.log.run() == ["second try"]
    assert _inbox_ids("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_an_event_whose_payload_exits_when_unpickled_stays_and_the_others_apply(
    store_spec: StoreSpec,
) -> None:
    """A pickled payload whose loading raises ``SystemExit`` is the event's fault, not the
    caller's: the event stays in the inbox, the events after it apply. (Mutation: the fold
    catching ``Exception`` only around ``load_payload``.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "ring", ExitsWhenLoaded(), event_id="e1", serializer="pickle")
    vc.send_event("a", "ring", "after", event_id="e2")
    assert chime.process_events() == 1
    assert chime.log.run() == ["after"] and _inbox_ids("a") == ["e1"]


@pytest.mark.usefixtures("runtime_off")
def test_an_inbox_object_read_damaged_three_times_is_read_again_later_and_applied(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/events.md: after 3 damaged reads in a row an inbox object is skipped, and "each
    process reads it again once a minute": read whole then, it is applied. (Mutation:
    ``_read_due`` never reading it again: the event stayed unapplied for good.)"""
    store_spec.init()
    monkeypatch.setattr(inbox, "_DAMAGED_RECHECK", 0.0)
    install(
        FaultConfig(seed=1, rules=(FaultRule("corrupt_read", frozenset({"get"}), "/inbox/e1", at=(1, 2, 3)),))
    )
    chime = Chime.get_or_create("a")
    vc.send_event("a", "ring", "cut in transit thrice", event_id="e1")
    for _ in range(6):
        chime.process_events()
        if chime.log.run():
            break
    assert chime.log.run() == ["cut in transit thrice"] and _inbox_ids("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_events_after_one_that_could_not_be_read_again_wait_for_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event held without its payload (past a commit's worth when listed) is read again
    when due; when that read fails, the events chosen after it wait too (docs/events.md: in
    inbox order), and apply after it once it is read. (Mutation: the fold applying every
    event chosen that it still held whole: ``e4`` went before ``e3``.)"""
    store_spec.init()
    monkeypatch.setattr(inbox, "MAX_EVENTS_PER_COMMIT", 2)
    install(FaultConfig(seed=1, rules=(FaultRule("fail_before", frozenset({"get"}), "/inbox/e3", at=(2,)),)))
    chime = Chime.get_or_create("a")
    for n in (1, 2, 3):
        vc.send_event("a", "ring", f"e{n}", event_id=f"e{n}")
    chime.add.run("x")  # e1 and e2 with it (a commit's worth); e3 held without its payload
    vc.send_event("a", "ring", "e4", event_id="e4")
    chime.add.run("y")  # e3 and e4 chosen; reading e3 again fails: both wait
    chime.process_events()
    assert chime.log.run() == ["e1", "e2", "x", "y", "e3", "e4"]


def _process_on(runtime: Runtime, actor_id: str) -> int:
    """``process_events`` (one fold) of ``actor_id`` by ``runtime``, another process's."""
    future: Future[int] = Future()
    runtime.core(actor_id).submit(PendingCall(inbox.PROCESS_EVENTS, (), {}, False, future, uuid.uuid4().hex))
    applied = future.result(60)
    _sync.sync(events._inbox(runtime, actor_id).wait_deleted())
    return applied


@pytest.mark.usefixtures("runtime_off")
def test_a_cached_event_another_process_applied_past_the_window_is_not_applied_again(
    store_spec: StoreSpec,
) -> None:
    """docs/events.md: "A cached event is folded only while nobody else has committed since the
    listing that found it ... Otherwise the commit lists the inbox again first": another process
    may have applied and deleted it, and past the dedup window nothing else stops a second
    application. Listing again failing, the cache is dropped, not folded. (Mutations:
    ``_cache_trusted`` always true; the failed listing keeping the cache: ``e1`` applied
    twice; every event test passed. On the local lane a listing is no single moment, and
    ``e1`` waits unconfirmed there anyway.)"""
    init(store_spec, dedup_window=(1, 0.0))  # (the table remembers the newest event only)
    chime = Chime.get_or_create("a")
    chime.add.run("a0")
    vc.send_event("a", "ring", "e1", event_id="e1")
    listed = events._inbox(vc.get_runtime(), "a")
    _sync.sync(listed._refresh())  # listed here, not applied
    other = other_process(store_spec, dedup_window=(1, 0.0))
    try:
        assert _process_on(other, "a") == 1
        key, data = inbox.encode_event("a", "e2", "ring", json.dumps("e2").encode(), "json", None)
        _sync.sync(inbox.put_event(other.store, key, data, name="ring", signing_key=None))
        assert _process_on(other, "a") == 1  # e1 leaves the dedup window
    finally:
        other.close()
    lists = FaultConfig(seed=1, rules=(FaultRule("fail_before", frozenset({"list"}), "/inbox/", 1.0),))
    listed.store = FaultyStore(listed.store, lists)
    assert chime.add.run("a1") == 4
    assert chime.log.run() == ["a0", "e1", "e2", "a1"]


@pytest.mark.usefixtures("runtime_off")
def test_an_event_deleted_unapplied_and_its_id_sent_again_under_another_name_is_the_new_one(
    store_spec: StoreSpec,
) -> None:
    """An event nobody handles stays in the inbox; an operator deletes it (``aws s3 rm``) and the
    id is sent again under a name the class handles: a new event (docs/events.md: the inbox key
    holds one event). A listing forgets what it no longer lists, and the next one reads the key
    anew.
    (Mutation: the listing keeping known events it no longer lists: the old, unhandled event
    stood for the key, and the new one was never applied.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "unhandled", "old", event_id="x1")
    assert chime.process_events() == 0 and _inbox_ids("a") == ["x1"]
    _sync.sync(vc.get_runtime().store.delete(keys.inbox_key("a", "x1")))
    assert chime.process_events() == 0  # (a listing in between: see the module's docstring)
    vc.send_event("a", "ring", "new", event_id="x1")
    assert chime.process_events() == 1
    assert chime.log.run() == ["new"] and _inbox_ids("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_send_the_store_refuses_raises_the_refusal_at_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put refused for lack of permission wrote nothing: ``send_event`` raises the
    ``PermissionDeniedError`` after one attempt, not an ``EventInDoubtError`` after five with
    backoff (nothing is in doubt). (Mutation: ``put_event`` not singling it out of
    ``StorageError``.)"""
    store_spec.init()
    Chime.get_or_create("a")
    store = vc.get_runtime().store
    puts: list[str] = []
    real_put = store.put

    async def refusing_put(key: str, data: bytes, **kwargs: Any) -> Any:
        if "/inbox/" in key:
            puts.append(key)
            raise PermissionDeniedError("AccessDenied: s3:PutObject", key)
        return await real_put(key, data, **kwargs)

    monkeypatch.setattr(store, "put", refusing_put)
    with pytest.raises(PermissionDeniedError, match="AccessDenied"):
        vc.send_event("a", "ring", "refused", event_id="e1")
    assert puts == [keys.inbox_key("a", "e1")]


@vc.virtual_actor
class Purse:
    def __init__(self) -> None:
        self.paid = 0

    @vc.virtual_actor.on_event("pay")
    def on_pay(self, payload: int) -> int:
        self.paid += payload
        return self.paid

    @vc.virtual_actor.readonly
    def total(self) -> int:
        return self.paid


def inbox_deletes_lost(patch: pytest.MonkeyPatch, store: Any) -> None:
    """From here on (until ``patch`` is undone) ``store`` deletes no inbox object, as if the
    writer that applied the events died after its commit: they are left behind."""
    delete_many, delete_unchanged = store.delete_many, store.delete_unchanged

    async def deletes_lost(keys: list[str], *args: Any, **kwargs: Any) -> Any:
        return await delete_many([k for k in keys if "/inbox/" not in k], *args, **kwargs)

    async def unchanged_deletes_lost(versions: dict[str, str]) -> Any:
        return await delete_unchanged({k: v for k, v in versions.items() if "/inbox/" not in k})

    patch.setattr(store, "delete_many", deletes_lost)
    patch.setattr(store, "delete_unchanged", unchanged_deletes_lost)


def paid_and_deleted(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, *, clock_stands: bool = False
) -> None:
    """Purse "p" applies event e1 (30), then e2 (5), each left behind in its inbox (its writer
    died after the commit); the step that applied e1 is compacted; then "p" is deleted.
    ``clock_stands``: every clock reading meanwhile is one (stamps equal the steps' times)."""
    init(store_spec, fresh_window=0.0)
    store = vc.get_runtime().store
    old = Purse.get_or_create("p")
    with monkeypatch.context() as patch:
        inbox_deletes_lost(patch, store)
        if clock_stands:
            stood = time.time()
            patch.setattr(time, "time", lambda: stood)
        vc.send_event("p", "pay", 30, event_id="e1")
        assert old.process_events() == 1
        vc.send_event("p", "pay", 5, event_id="e2")
        assert old.process_events() == 1
    old.compact(1, min_age=0)  # the step that applied e1 goes
    assert _inbox_ids("p") == ["e1", "e2"]
    assert vc.delete_actor("p") is True


@pytest.mark.usefixtures("runtime_off")
def test_an_applied_event_left_behind_whose_step_was_compacted_is_not_applied_by_the_next_actor(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete's clean-up looks an event stamped near the last step up by its call id in the
    last steps; when those reads are cut short (the step that applied it compacted), it tells
    only what it found, and the event stamped before the last step goes by its stamp
    (docs/events.md). (Mutation: ``_applied_in_last_steps`` calling a lookback cut short by a
    compacted step complete: the event was taken for one sent again for the next actor, kept,
    and the next actor applied the payment again.)"""
    paid_and_deleted(store_spec, monkeypatch)
    new = Purse.get_or_create("p")
    new.process_events()
    assert new.total.run() == 0 and _inbox_ids("p") == []


@pytest.mark.usefixtures("runtime_off")
def test_an_excluded_event_deleted_and_its_id_sent_again_is_applied_in_inbox_order(
    store_spec: StoreSpec,
) -> None:
    """An event whose handler exits is excluded (kept, chosen after the others); an operator
    deletes it, and its id is sent again as another event, followed by a later one. The new
    event is no excluded one: it applies in inbox order, first. (Mutation: the listing not
    forgetting the exclusions of keys it no longer lists: the new event went after ``e2``.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "exit", "old", event_id="x1")
    assert chime.process_events() == 0 and _inbox_ids("a") == ["x1"]
    _sync.sync(vc.get_runtime().store.delete(keys.inbox_key("a", "x1")))
    assert chime.process_events() == 0  # (a listing in between: see the module's docstring)
    vc.send_event("a", "ring", "x1 again", event_id="x1")
    vc.send_event("a", "ring", "e2", event_id="e2")
    assert chime.process_events() == 2
    assert chime.log.run() == ["x1 again", "e2"]


@pytest.mark.usefixtures("runtime_off")
def test_process_events_applies_what_a_paged_listing_held_back_in_the_same_call(
    store_spec: StoreSpec,
) -> None:
    """A listing of several pages missed a sender's first event and saw its second; the fold's
    second listing sees the first only now, so both wait for a third (docs/events.md). That
    is work ``process_events`` saw: it folds again and applies both in this call, not at some
    later commit. (Mutation: the fold not asking for another when senders wait: this call
    applied nothing, and the events waited for the next listing.)"""
    store_spec.init()
    runtime = vc.get_runtime()
    runtime.store = _PagedListings(runtime.store, hidden="b-first")
    chime = Chime.get_or_create("a")
    vc.send_event("a", "ring", "first", event_id="b-first")
    vc.send_event("a", "ring", "second", event_id="y-second")
    assert chime.process_events() == 2
    assert chime.log.run() == ["first", "second"]


@pytest.mark.usefixtures("runtime_off")
def test_applied_events_are_deleted_a_batch_per_request_where_the_store_deletes_many(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/events.md: the deletes of applied events go "one ``delete_unchanged`` round in flight per
    actor (one ``DeleteObjects`` on S3 ...)": a store that deletes many keys a request gets them
    in one. (Mutation: ``_send_deletes`` taking one key a round: a request per event on S3.)"""
    store_spec.init()
    store = vc.get_runtime().store
    monkeypatch.setattr(store, "delete_batch", 1000)
    rounds: list[list[str]] = []
    delete_many = store.delete_many
    delete_unchanged = store.delete_unchanged

    async def counted(keys_: list[str], *args: Any, **kwargs: Any) -> Any:
        rounds.append(list(keys_))
        return await delete_many(keys_, *args, **kwargs)

    async def counted_unchanged(versions: dict[str, str]) -> Any:  # (the inbox's deletes, h156)
        rounds.append(list(versions))
        return await delete_unchanged(versions)

    monkeypatch.setattr(store, "delete_many", counted)
    monkeypatch.setattr(store, "delete_unchanged", counted_unchanged)
    chime = Chime.get_or_create("a")
    for n in range(5):
        vc.send_event("a", "ring", n, event_id=f"e{n}")
    assert chime.process_events() == 5
    inbox_rounds = [r for r in rounds if any("/inbox/" in k for k in r)]
    assert [len(r) for r in inbox_rounds] == [5] and _inbox_ids("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_the_deletes_clean_up_reads_no_event_its_actor_never_applied(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-up of a deleted actor's inbox reads only the events whose ids its last table
    holds ("a backlog waiting unapplied is not read"); the others wait for the next actor.
    (Mutation: ``forget_applied_events`` reading every event listed.)"""
    store_spec.init()
    store = vc.get_runtime().store
    chime = Chime.get_or_create("a")
    for n in range(3):
        vc.send_event("a", "unhandled", n, event_id=f"w{n}")
    vc.send_event("a", "ring", "applied", event_id="e1")
    assert chime.process_events() == 1
    reads: list[str] = []
    get = store.get

    async def counted(key: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(key)
        return await get(key, *args, **kwargs)

    monkeypatch.setattr(store, "get", counted)
    assert vc.delete_actor("a") is True
    assert [k for k in reads if "/inbox/" in k] == []
    assert _inbox_ids("a") == ["w0", "w1", "w2"]


@pytest.mark.usefixtures("runtime_off")
def test_send_remembers_the_actors_it_sent_to_most_recently(store_spec: StoreSpec) -> None:
    """``send_event`` remembers the ``max_cached_actors`` actors it *used* most recently (one it
    sends to often is not forgotten for one it found once since): a send to it is one PUT.
    (Mutation: a hit not moving the actor to the recent end: the oldest found went first, and
    the next send read HEAD and the newest step again.)"""
    store_spec.init()
    for actor_id in ("a", "b", "c"):
        Chime.get_or_create(actor_id)
    init(store_spec, max_cached_actors=2)  # another process: it knows none of them
    store = vc.get_runtime().store
    for actor_id in ("a", "b", "a", "c"):
        vc.send_event(actor_id, "ring", actor_id, create=False)
    store.requests.reset()
    vc.send_event("a", "ring", "again")
    assert store.requests.snapshot() == {"put": 1}


@pytest.mark.usefixtures("runtime_off")
def test_the_deletes_clean_up_keeps_an_id_sent_again_under_another_name(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id applied as one event and sent again under another name is another event
    (docs/events.md); waiting when the actor is deleted, it stays for the next actor, however
    long before the last step its sender stamped it. (Mutation: ``forget_applied_events``
    taking every event whose id the table holds, whatever its name: deleted unapplied.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "ring", "applied", event_id="e1")
    assert chime.process_events() == 1 and _inbox_ids("a") == []
    with monkeypatch.context() as patch:
        patch.setattr(inbox_events, "_clock", inbox_events._SenderClock())  # (a sending process of its own)
        patch.setattr(time, "time", lambda: _real_time() - 600.0)  # its clock ten minutes behind
        vc.send_event("a", "unhandled", "another event", event_id="e1")
    chime.add.run("last step")
    assert vc.delete_actor("a") is True
    assert _inbox_ids("a") == ["e1"]


@pytest.mark.usefixtures("runtime_off")
def test_an_event_excluded_then_applied_leaves_no_exclusion_for_its_id_sent_again(
    store_spec: StoreSpec,
) -> None:
    """An event excluded once (its handler exited) and applied by the next fold is done: its id
    sent again under another name is a new event, applied in inbox order, not chosen after
    the others as an excluded one. (Mutation: ``_delete`` not dropping the key's exclusion.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    vc.send_event("a", "exit-once", "once", event_id="x1")
    assert chime.process_events() == 1 and _inbox_ids("a") == []
    vc.send_event("a", "ring", "x1 again", event_id="x1")
    vc.send_event("a", "ring", "e2", event_id="e2")
    assert chime.process_events() == 2
    assert chime.log.run() == ["once", "x1 again", "e2"]


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_waits_for_the_deletes_of_applied_events(store_spec: StoreSpec) -> None:
    """A writer call's commit applies the pending events and deletes them in the background;
    ``vc.shutdown()`` waits for that background work (``ActorInbox.finish``), so no applied
    event is left in the inbox for the next fold to find. (Mutation: ``finish`` not awaiting
    the tasks: the deletes in flight were cut off at shutdown.)"""
    store_spec.init()
    slow = FaultRule("delay", frozenset({"delete"}), "/inbox/", 1.0, delay=0.3)
    install(FaultConfig(seed=1, rules=(slow,)))
    chime = Chime.get_or_create("a")
    for n in range(3):
        vc.send_event("a", "ring", n, event_id=f"e{n}")
    assert chime.add.run("x") == 4  # the events, then the call; their deletes go on behind it
    vc.shutdown()
    store_spec.init()
    assert _inbox_ids("a") == []


class _ListsAGhost(FaultyStore):
    """Inbox listings that name an event deleted before its read (applied by another process
    between the LIST and the GET)."""

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        result = await super()._around(operation, key, run, batch=batch)
        if operation == "list" and key.endswith("/inbox/"):
            result = sorted([*result, f"{key}ghost"])
        return result


@pytest.mark.usefixtures("runtime_off")
def test_an_event_gone_between_the_listing_and_its_read_is_passed_over(store_spec: StoreSpec) -> None:
    """An event listed and deleted before it is read was applied by another process: the read
    finds nothing, and the listing goes on with the others (``read_event`` answers ``None``).
    (Mutation: ``read_event`` raising ``NotFoundError``: every listing failed, and
    ``process_events`` with it.)"""
    store_spec.init()
    runtime = vc.get_runtime()
    runtime.store = _ListsAGhost(runtime.store, FaultConfig())
    chime = Chime.get_or_create("a")
    vc.send_event("a", "ring", "real", event_id="e1")
    assert chime.process_events() == 1
    assert chime.log.run() == ["real"]

"""A hostile review of limits, HEAD, loadability and fairness (review-h27): each test failed on
the code it was written against.

What is attacked: names no object store could hold (an idempotency key of any length, a store
prefix that leaves a key no room), a HEAD that names a step no one wrote, a timer runner's
heartbeat or claim stamped far in the future, a state that pickles but never unpickles, events
whose handlers keep raising ``SystemExit``, and a sender whose clock runs ahead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from test_review_events import Tape, drain_on, inbox_ids

import vactor_cloud as vc
from vactor_cloud import _sync, codec, keys, timer_claims, timer_membership
from vactor_cloud.cli.request_trace import Request, RequestTrace
from vactor_cloud.errors import ActorDefinitionError, StateSerializationError
from vactor_cloud.events import process_events, send_event
from vactor_cloud.inbox import MAX_EVENTS_PER_COMMIT, InboxEvent, fold_order
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog, ClassRef
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: HEAD moves only when a test flushes it, and caches stay fresh: request counts stay exact
_QUIET = vc.Settings(storage="", head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)


def _refuse_to_load() -> object:
    raise RuntimeError("this object cannot be rebuilt")


class Trap:
    """Pickles (its ``__reduce__`` names a callable) and never unpickles (the callable raises)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_load, ())


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0
        self.kept: list[object] = []

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def keep(self, value: object) -> int:
        self.kept.append(value)
        return len(self.kept)

    def keep_trap(self) -> int:
        self.kept.append(Trap())
        return len(self.kept)

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@vc.virtual_actor
class Decoy:
    """Another class, importable here: what a HEAD naming it would have a load run."""

    def __init__(self) -> None:
        self.n = 0

    def incr(self, by: int = 1) -> str:
        return "decoy"


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init(settings=replace(_QUIET, storage=store_spec.url))
    try:
        yield store_spec
    finally:
        vc.shutdown()


def trace() -> RequestTrace:
    return RequestTrace(vc.get_runtime().store)


# -- 1. names too long for an object key ---------------------------------------------------------
def test_an_idempotency_key_longer_than_the_limit_is_refused_before_anything_is_written(
    spec: StoreSpec,
) -> None:
    """An idempotency key had no length limit: a key of 100,000 bytes was accepted on every
    store, committed, and carried in the idempotency table of every step of its window (a
    name every other kind of key a caller gives is held to 255 bytes). Now it is refused at
    the call site, saying the limit and what to do, before any request."""
    handle = Tally.get_or_create("keyed")
    ok = "k" * 255
    assert handle.incr.options(idempotency_key=ok).run() == 1
    with trace().installed() as t:
        for size in (256, 2_000, 100_000):
            with pytest.raises(ValueError, match=r"256|2000|100000") as refused:
                handle.incr.options(idempotency_key="k" * size).run()
            assert "255" in str(refused.value)
            assert "sha256" in str(refused.value)  # what to do
        # multi-byte characters count in UTF-8 bytes
        with pytest.raises(ValueError, match="255"):
            handle.incr.options(idempotency_key="é" * 128)
    assert t.requests == []
    assert handle.value.run() == 1


@pytest.mark.parametrize("url", ["s3://bucket/", "gs://bucket/"])
def test_a_store_prefix_that_leaves_the_longest_key_no_room_is_refused_at_init(
    url: str, runtime_off: None
) -> None:
    """S3 and GCS refuse object keys over 1,024 bytes, the store's prefix included; ids and
    event ids are held to 255 bytes each, so vactor_cloud's own keys reach 524 bytes
    (``actors/<id>/inbox/<event_id>``). Under a prefix of 600 bytes ``init`` took the store,
    and such a key would have been sent, past the limit the servers enforce, after the actor's
    steps were written (the memory and local stores take it). Now ``init`` refuses the prefix,
    saying the limit and by how much to shorten it."""
    pytest.importorskip("boto3" if url.startswith("s3") else "gcsfs")
    with pytest.raises(ValueError, match="1,024") as refused:
        vc.init(url + "p" * 600)
    assert "prefix" in str(refused.value)
    vc.init(url + "p" * 400)  # room enough: nothing is sent until the first call


# -- 2. a HEAD past the newest step --------------------------------------------------------------
def reopen(spec: StoreSpec) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    spec.init(settings=replace(_QUIET, storage=spec.url))


def step_listings(requests: list[Request]) -> int:
    return sum(1 for r in requests if r.kind == "list" and "/steps/" in r.key)


def test_a_head_past_the_newest_step_is_pulled_back_by_the_next_load(spec: StoreSpec) -> None:
    """HEAD moved only forward: a HEAD naming a step no one wrote (forged, or restored from
    another copy of the bucket) stayed there until the log grew past it, and every cold load
    meanwhile read two missing steps and listed ``steps/``. Now the load that finds it so pulls
    it back to the newest step, by if-match; the next cold load reads HEAD and steps only."""
    handle = Tally.get_or_create("ahead")
    for _ in range(3):
        handle.incr.run()
    runtime = vc.get_runtime()
    _sync.sync(runtime.heads.flush())
    log = ActorLog(runtime.store, "ahead")
    head = _sync.sync(log.read_head())
    assert head is not None and head.step == 3
    _sync.sync(log.advance_head(head.step + 50, head.class_ref, head))  # forged: 50 steps ahead
    reopen(spec)
    assert vc.get_actor("ahead").value.run() == 3  # this load finds HEAD past the log
    head = _sync.sync(ActorLog(vc.get_runtime().store, "ahead").read_head())
    assert head is not None and head.step == 3  # pulled back, never below the newest step
    reopen(spec)
    with trace().installed() as t:
        assert vc.get_actor("ahead").incr.run() == 4
    assert step_listings(t.requests) == 0
    reopen(spec)
    assert vc.get_actor("ahead").value.run() == 4


def test_a_rate_limited_head_move_pauses_before_it_tries_again(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HEAD move refused as rate-limited (S3's 503 SlowDown, GCS's 429) was tried again at
    once, up to eight puts and eight reads back to back: more requests to a store asking for
    fewer. Each retry after a transient refusal now waits a jittered backoff first (a lost
    compare-and-swap still reads HEAD again at once: nothing to wait for)."""
    from vactor_cloud import actor_objects
    from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore

    handle = Tally.get_or_create("slow-down")
    handle.incr.run()
    runtime = vc.get_runtime()
    _sync.sync(runtime.heads.flush())
    rule = FaultRule("rate_limited", operations=frozenset({"put"}), key_contains="/HEAD", at=(1, 2, 3))
    store = FaultyStore(runtime.store, FaultConfig((rule,), name="rate_limited"))
    log = ActorLog(store, "slow-down")
    head = _sync.sync(log.read_head())
    assert head is not None
    pauses: list[int] = []
    real = actor_objects.retry_pause

    def counted(attempt: int) -> float:
        pauses.append(attempt)
        return real(attempt) / 10

    monkeypatch.setattr(actor_objects, "retry_pause", counted)
    moved = _sync.sync(log.advance_head(head.step + 1, head.class_ref, head))
    assert store.injected["rate_limited"] == 3
    assert moved.step == head.step + 1
    assert pauses == [0, 1, 2]


# -- 3. a heartbeat or claim stamped far ahead ---------------------------------------------------
def test_a_heartbeat_stamped_far_ahead_holds_no_share_of_the_actors(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner's heartbeat holds its expiry as the writer's clock plus its lease; a reader
    believed any expiry. One stamped ten days ahead (a runner whose clock ran ahead, then
    died; or a forged object) kept its runner "live" for ten days, and the actors rendezvous
    hashing gave it were fired by no one. Now an expiry further ahead than a lease and the
    clock skew runners are assumed to have is taken for an expired one, with a warning."""
    store = vc.get_runtime().store
    ghost = {"runner": "ghost", "until": time.time() + 10 * 86400, "lease": 30.0, "group": "all"}
    _sync.sync(store.put(keys.timer_runner_key("ghost"), json.dumps(ghost).encode()))
    honest = {"runner": "other", "until": time.time() + 30.0, "lease": 30.0, "group": "all"}
    _sync.sync(store.put(keys.timer_runner_key("other"), json.dumps(honest).encode()))
    membership = timer_membership.Membership(store, "me", 30.0, "all")
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert _sync.sync(membership.refresh()) == ("me", "other")
    assert "ghost" in caplog.text and "ahead" in caplog.text


def test_a_claim_stamped_far_ahead_is_taken_over(spec: StoreSpec, caplog: pytest.LogCaptureFixture) -> None:
    """A timer claim (``split="claims"``) holds its writer's clock plus the lease; one stamped
    ten days ahead kept every runner off the actor's due timers for ten days. Now it is taken
    over like an expired one, with a warning; an honest claim of another runner still holds."""
    store = vc.get_runtime().store
    far = {"runner": "ghost", "until": time.time() + 10 * 86400}
    _sync.sync(store.put(keys.timer_claim_key("held"), json.dumps(far).encode()))
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert _sync.sync(timer_claims.claim_actor(store, "held", "me", 30.0))
    assert "ahead" in caplog.text
    claim = json.loads(_sync.sync(store.get(keys.timer_claim_key("held"))).data)
    assert claim["runner"] == "me"
    near = {"runner": "other", "until": time.time() + 30.0}
    _sync.sync(store.put(keys.timer_claim_key("kept"), json.dumps(near).encode()))
    assert not _sync.sync(timer_claims.claim_actor(store, "kept", "me", 30.0))


# -- 4. a state that pickles and never unpickles -----------------------------------------------------
def test_a_state_that_would_not_load_back_is_refused_and_the_actor_stays_loadable(spec: StoreSpec) -> None:
    """The commit read a state back only when it held an exception (the usual object that
    pickles and does not unpickle). A state holding any other such object (here one whose
    ``__reduce__`` names a callable that raises) was committed, and from then on no process
    could load the actor: every call failed. Now such a state is read back before it is
    stored: the call fails with StateSerializationError saying why, nothing is committed,
    and its batch-mates commit."""
    handle = Tally.get_or_create("trapped")
    assert handle.incr.run() == 1
    with pytest.raises(StateSerializationError, match="does not unpickle"):
        handle.keep_trap.run()
    assert handle.incr.run() == 2
    reopen(spec)
    assert vc.get_actor("trapped").value.run() == 2  # a fresh process loads it
    assert vc.get_actor("trapped").incr.run() == 3


# -- 5. events whose handlers raise SystemExit --------------------------------------------------------
def test_events_whose_handlers_exit_do_not_hold_back_the_events_after_them(spec: StoreSpec) -> None:
    """An event whose handler raises ``SystemExit`` is excluded and stays in the inbox, tried
    again by the next fold (docs/events.md). But each fold chose the first 256 pending events
    in inbox order: with 256 or more such events first, every fold chose them again, and the
    events sent after them were never applied (``process_events`` applied none). Now a fold
    chooses events not excluded before ahead of those that were; they are still tried, and
    still kept."""
    Tape.get_or_create("exits")
    stops = MAX_EVENTS_PER_COMMIT + 44
    for n in range(stops):
        send_event("exits", "stop", None, event_id=f"a-stop-{n:04d}")
    for n in range(10):
        send_event("exits", "n", {"n": n}, event_id=f"b-n{n:04d}")
    assert process_events("exits") == 10
    assert vc.get_actor("exits").view.run() == list(range(10))
    assert inbox_ids("exits") == [f"a-stop-{n:04d}" for n in range(stops)]  # excluded, kept
    send_event("exits", "n", {"n": 10}, event_id="c-n0010")
    assert process_events("exits") == 1
    assert vc.get_actor("exits").view.run() == list(range(11))


# -- 6. a sender whose clock runs ahead ---------------------------------------------------------------
def _send_stamped(actor_id: str, event_id: str, n: int, sent: float, sender: str, seq: int) -> None:
    """An event as another process whose clock reads ``sent`` writes it."""
    key = keys.inbox_key(actor_id, event_id)
    meta = {"kind": "event", "event_id": event_id, "name": "n", "serializer": "json"}
    meta |= {"time": sent, "sender": sender, "seq": seq}
    data = codec.encode(key, meta, {"payload": json.dumps({"n": n}).encode()}, signing_key=None)
    _sync.sync(vc.get_runtime().store.put(key, data, mode="create"))


def test_a_sender_whose_clock_runs_ahead_is_not_starved_by_a_backlog(spec: StoreSpec) -> None:
    """Pending events are applied in order of their senders' clocks, a commit's worth (256) at
    a time. A sender whose clock ran an hour ahead had its events sorted after every event the
    others sent in that hour: under a backlog that never drained, they waited the whole hour
    (here: three folds of 256, each after 256 more events from an honest sender, and none of
    its five applied). Now a fold orders an event by its sender's time or, when that lies
    ahead, by when this process first listed it; one sender's events keep their order."""
    Tape.get_or_create("fair")
    ahead = time.time() + 3600
    for i in range(5):
        _send_stamped("fair", f"fast-{i}", 10_000 + i, ahead + i, "fast-sender", i)
    runtime = vc.get_runtime()
    for round_ in range(3):
        for n in range(MAX_EVENTS_PER_COMMIT):
            send_event("fair", "n", {"n": round_ * 1000 + n}, event_id=f"n-{round_}-{n:04d}")
        assert drain_on(runtime, "fair") == MAX_EVENTS_PER_COMMIT  # one commit's worth
    applied = vc.get_actor("fair").view.run()
    fast = [n for n in applied if n >= 10_000]
    assert fast == [10_000 + i for i in range(5)]  # all of them, in their sender's order


def test_a_fold_keeps_each_senders_order_when_an_earlier_event_is_listed_later() -> None:
    """The guard of the fix above: a listing of several pages may see a sender's later event
    before its earlier one. Both stamped ahead, the earlier one counts from when it was listed,
    later; it still goes first (its sender's next event counts from no earlier a time)."""

    def event(event_id: str, sent: float, sender: str, seq: int, seen: float) -> InboxEvent:
        return InboxEvent(
            f"actors/a/inbox/{event_id}", event_id, "n", b"{}", "json", sent, sender, seq, seen=seen
        )

    first = event("first", 5_000.0, "fast", 0, seen=200.0)
    second = event("second", 5_001.0, "fast", 1, seen=100.0)
    other = event("other", 150.0, "slow", 0, seen=300.0)
    honest = event("honest", 250.0, "slow", 1, seen=300.0)
    assert [e.event_id for e in fold_order([second, honest, first, other])] == [
        "other",
        "first",
        "second",
        "honest",
    ]


def _write_head(actor_id: str, step: int, ref: ClassRef) -> None:
    """HEAD as another process (or an older version of the class) wrote it."""
    store = vc.get_runtime().store
    key = keys.head_key(actor_id)
    data = codec.encode(key, {"kind": "head", "step": step, "class": ref.to_json()}, signing_key=None)
    _sync.sync(store.put(key, data))


@pytest.mark.parametrize("ahead", [0, 5], ids=["at-the-newest-step", "past-it"])
def test_a_head_naming_a_class_this_process_cannot_load_does_not_stop_the_load(
    store_spec: StoreSpec, ahead: int, runtime_off: None
) -> None:
    """HEAD names the class of the step it points at, and a load fetched that class beside the
    steps. A HEAD whose class this process cannot load (written before the class was renamed,
    the old name no longer importable, with ``load_classes_from_storage=False``; or forged)
    failed every load, though the newest step's class was importable: HEAD is only a hint,
    and the step's class decides. (Past the newest step, the HEAD pulled back named the step's
    class, and the class fetched for the old HEAD was kept: the actor ran as another class.)"""
    settings = replace(_QUIET, storage=store_spec.url, load_classes_from_storage=False)
    store_spec.init(settings=settings)
    handle = Tally.get_or_create("renamed")
    assert handle.incr.run() == 1
    _write_head("renamed", 1 + ahead, ClassRef("0" * 64, "gone_module:Renamed"))
    vc.shutdown()
    store_spec.init(settings=settings)
    assert vc.get_actor("renamed").incr.run() == 2
    assert vc.get_actor("renamed").value.run() == 2


def test_a_head_pulled_back_leaves_the_load_with_the_class_of_the_newest_step(spec: StoreSpec) -> None:
    """A load fetched the class HEAD names beside the steps, and kept it when the newest step
    named the same class as HEAD. A HEAD past the newest step is pulled back to that step (and
    names its class): compared with the HEAD pulled back, a class fetched for the HEAD as read
    (here another importable class) was kept, and the actor ran as that class."""
    handle = Tally.get_or_create("decoyed")
    assert handle.incr.run() == 1
    decoy = ClassRef("1" * 64, f"{Decoy.__module__}:Decoy")
    _write_head("decoyed", 9, decoy)
    reopen(spec)
    assert vc.get_actor("decoyed").incr.run() == 2


def test_an_event_name_is_held_to_the_limit_of_names_when_sent_and_when_handled(spec: StoreSpec) -> None:
    """Event names had no length limit (and a handler's name no rule at all): an event named
    with 100,000 bytes was stored and, applied, recorded in the idempotency table of every
    step of its window; a handler for a name no event can carry (a control character) was
    accepted and never called. Now both are refused, saying why, before anything is written."""
    Tape.get_or_create("named")
    with trace().installed() as t, pytest.raises(ValueError, match="255"):
        send_event("named", "e" * 256, None)
    assert t.requests == []
    for bad in ("e" * 256, "tab\there"):
        with pytest.raises(ActorDefinitionError, match="on_event"):
            vc.virtual_actor.on_event(bad)


def _write_lease(actor_id: str, holder: str, expires: float, written: float | None) -> None:
    """A folder lease as a process whose clock reads ``written`` wrote it."""
    key = keys.lease_key(actor_id)
    meta = {"kind": "lease", "holder": holder, "expires": expires, "step": 0, "token": "0" * 16}
    if written is not None:
        meta["time"] = written
    _sync.sync(vc.get_runtime().store.put(key, codec.encode(key, meta, {}, signing_key=None)))


def test_a_folder_lease_stamped_far_ahead_is_free_to_take(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """The folder lease holds its writer's clock plus ``lease_seconds`` (2 s). One written by a
    process whose clock ran a day ahead, which then died, read as held for that day: no process
    in contention took it over (free = expired, docs/protocol.md), and posters waited for a
    folder that was gone. Now a lease whose writer's clock lies further ahead than the clock
    skew processes are assumed to have is read as expired (with a warning), free to take by
    if-match."""
    lease_store = LeaseStore(vc.get_runtime().store, "leased", None)
    now = time.time()
    _write_lease("leased", "ghost", now + 86400 + 2.0, now + 86400)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert not _sync.sync(lease_store.read()).valid()
    assert "ahead" in caplog.text
    _write_lease("leased", "ghost", now + 86400, None)  # (written before leases recorded their time)
    assert not _sync.sync(lease_store.read()).valid()
    _write_lease("leased", "alive", now + 2.0, now)  # an honest lease still holds
    assert _sync.sync(lease_store.read()).valid()
    _write_lease("leased", "alive", now + 2.0, None)
    assert _sync.sync(lease_store.read()).valid()

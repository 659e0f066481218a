"""Hostile review: memory stays bounded in a long-lived process.

Each test measures a process-lifetime structure after many actors, stores or calls, with a
bound the library keeps; each failed before its fix.
"""

from __future__ import annotations

import gc
import pickle
import threading
import time
from typing import Any

import pytest
from garbage import full_collection

import vactor_cloud as vc
from vactor_cloud import events, inbox, mailkey, timer_report, timer_runner, timers
from vactor_cloud.log import ActorLog
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_a_store_that_posted_is_freed_with_its_runtime(store_spec: StoreSpec) -> None:
    """The mail keys are remembered per store object, weakly keyed; each MailKeys held its store
    strongly, so the entry (and the store: its transport, its pools) never went. A process that
    inits a runtime per job (or ``subtask`` workers adopting one per recipe) kept every store
    whose actors ever posted."""
    before = len(mailkey._KEYS)
    for _ in range(200):
        store_spec.init()
        vc.get_runtime().core("poster")._posts()  # the first post of an actor makes its PostBox
        vc.shutdown()
    full_collection()
    assert len(mailkey._KEYS) - before <= 2


@vc.virtual_actor
class Inbox:
    def __init__(self) -> None:
        self.seen = 0

    @vc.virtual_actor.on_event("ping")
    def on_ping(self, payload: object) -> int:
        self.seen += 1
        return self.seen


@pytest.mark.usefixtures("runtime_off")
def test_sending_events_to_many_actors_remembers_a_bounded_number_of_them(store_spec: StoreSpec) -> None:
    """``send_event`` remembers which actors it found to exist (a LIST saved on the next send):
    one entry per actor id ever sent to, for the runtime's life, however few actors are cached."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cached_actors=10))
    ids = [f"inbox-{i}" for i in range(50)]
    for actor_id in ids:
        Inbox.get_or_create(actor_id)
    for actor_id in ids:
        events.send_event(actor_id, "ping", 1)
    runtime = vc.get_runtime()
    assert len(events._existing.get(runtime, ())) <= 10
    assert events.process_events(ids[0]) == 1  # (still delivered, to an actor no longer remembered)


#: how many more times ``Alarms.ring`` raises ``SystemExit`` (its call excluded: the timer
#: stays due, the runner reports an error and fires it again at a later poll); a lock, as the
#: runner fires actors side by side
RING_EXITS = [0]
_RING_EXITS_LOCK = threading.Lock()


@vc.virtual_actor
class Alarms:
    def __init__(self) -> None:
        self.rang = 0

    def arm(self, count: int) -> None:
        call = vc.current_call()
        assert call is not None
        for i in range(count):
            call.schedule("ring", after=0, key=f"t{i}")

    def ring(self) -> None:
        with _RING_EXITS_LOCK:
            exiting = RING_EXITS[0] > 0
            RING_EXITS[0] -= exiting
        if exiting:
            raise SystemExit(3)
        self.rang += 1


@pytest.mark.usefixtures("runtime_off")
def test_a_long_running_timer_runner_keeps_bounded_totals(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_timers`` returns its totals when stopped: they kept one lateness figure per timer
    fired (and every error) for the runner's whole life, hours of it in ``vactor timers run``.
    With the bounds lowered to 50 figures and 2 errors (``TickReport._trim`` reads both in
    ``timer_report``), 240 firings keep 50 figures and 5 excluded fires keep 2 errors; the
    counts stay whole."""
    monkeypatch.setattr(timer_report, "_TOTAL_LATENESS", 50)
    monkeypatch.setattr(timer_report, "_TOTAL_ERRORS", 2)
    store_spec.init()
    for n in range(4):
        Alarms.get_or_create(f"alarms-{n}").arm.run(60)
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
    stop = threading.Event()
    fired = 0
    lateness: list[float] = []  # every figure of every tick (a tick's own report is not trimmed)

    def on_tick(report: timer_runner.TickReport) -> None:
        nonlocal fired
        fired += report.fired
        lateness.extend(report.lateness)
        if fired >= 240:
            stop.set()

    deadline = threading.Timer(60, stop.set)
    deadline.start()
    RING_EXITS[0] = 5
    try:
        total = timer_runner.run_timers(poll=0.05, stop=stop, on_tick=on_tick)
    finally:
        deadline.cancel()
        RING_EXITS[0] = 0
    assert total.fired == 240
    assert len(total.lateness) == 50 and len(lateness) == 240
    assert total.max_lateness == max(lateness)
    assert (len(total.errors), total.error_count) == (2, 5), total.errors


def test_trimmed_totals_still_count_every_error_and_the_largest_lateness() -> None:
    """What the bounds trim still counts: ``vactor timers run`` prints ``errors`` and
    ``max_lateness_s`` from the totals."""
    total = timer_runner.TickReport()
    for n in range(3 * timer_report._TOTAL_ERRORS):
        total.merge(timer_runner.TickReport(errors=[f"e{n}"], lateness=[100.0 if n == 0 else 0.5]))
        total._trim()
    for _ in range(timer_report._TOTAL_LATENESS // 1000 + 1):
        total.merge(timer_runner.TickReport(lateness=[0.25] * 1000))
        total._trim()
    assert len(total.errors) == timer_report._TOTAL_ERRORS
    assert total.error_count == 3 * timer_report._TOTAL_ERRORS
    assert 100.0 not in total.lateness  # trimmed: the first figure of all
    assert total.max_lateness == 100.0


@vc.virtual_actor
class Keyed:
    def __init__(self) -> None:
        self.calls = 0

    def work(self, size: int) -> bytes:
        self.calls += 1
        return b"x" * size


def _checkpoint_bytes_held(store: object) -> int:
    """Bytes (pickled) of every idempotency checkpoint held decoded by an ActorLog of ``store``."""
    full_collection()
    held = 0
    for thing in gc.get_objects():
        if isinstance(thing, ActorLog) and thing.store is store and thing.dedup_cache is not None:
            held += len(pickle.dumps(thing.dedup_cache[1].entries))
    return held


@pytest.mark.usefixtures("runtime_off")
def test_cached_idempotency_tables_count_against_max_cache_bytes(store_spec: StoreSpec) -> None:
    """Each actor's log keeps the idempotency checkpoint it decoded last (up to the dedup window:
    10,000 keys or a day's, with their results). The actor cache weighed only the step's
    state and its 2 KB delta, so ``max_cache_bytes`` did not bound them: 12 actors with 20 keyed
    results of 20 KB held 4.8 MB against a 1 MB bound. (HEAD moves waiting to be flushed held
    evicted actors' logs, with their checkpoints, for up to a minute too.) Each actor ends with
    keyed calls of small results: a step that writes a checkpoint weighs it in its own record, so
    only steps after it leave the log's decoded copy to ``cached_bytes`` alone."""
    bound = 1_000_000
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cache_bytes=bound))
    for n in range(12):
        actor = Keyed.get_or_create(f"keyed-{n}")
        for i in range(20):
            assert len(actor.work.options(idempotency_key=f"key-{i}").run(20_000)) == 20_000
        for i in range(3):  # (steps that write no checkpoint: the one the log holds is older)
            assert actor.work.options(idempotency_key=f"small-{i}").run(1) == b"x"
    assert Keyed.get_or_create("keyed-0").work.options(idempotency_key="key-3").run(1) == b"x" * 20_000
    assert _checkpoint_bytes_held(vc.get_runtime().store) <= 2 * bound


@pytest.mark.usefixtures("runtime_off")
def test_events_an_actor_refuses_are_not_held_with_their_payloads(store_spec: StoreSpec) -> None:
    """Events without a handler stay in the inbox (docs/events.md), and the actor's inbox kept
    each one it listed in memory, payload and all, for as long as the actor stayed cached (its
    weight in the cache did not count them): 100 refused events of 20 KB, 2 MB for one actor."""
    store_spec.init()
    Inbox.get_or_create("refuser")
    for i in range(100):
        events.send_event("refuser", "unknown", "x" * 20_000, event_id=f"e{i}")
    events.send_event("refuser", "ping", 1)
    assert events.process_events("refuser") == 1
    assert events.process_events("refuser") == 0
    known = vc.get_runtime().core("refuser").inbox._known  # type: ignore[attr-defined]
    assert len(known) == 100  # still known: a listing does not read them again
    assert sum(len(event.payload) for event in known.values()) <= 100_000
    keys = vc._sync.sync(inbox.list_inbox(vc.get_runtime().store, "refuser"))
    assert len(keys) == 100  # and they stay in the inbox


@vc.virtual_actor
class Taker:
    def __init__(self) -> None:
        self.taken: list[object] = []

    @vc.virtual_actor.on_event("unknown")
    def on_unknown(self, payload: object) -> None:
        self.taken.append(payload)


@pytest.mark.usefixtures("runtime_off")
def test_a_refused_event_held_without_its_payload_is_read_again_when_a_class_takes_it(
    store_spec: StoreSpec,
) -> None:
    """(The other side of the bound above.) A class that has the handler (the actor's stored class
    replaced by another process) gets the event whole, in inbox order: read again first."""
    store_spec.init()
    Inbox.get_or_create("converted")
    events.send_event("converted", "unknown", "first", event_id="e1")
    events.send_event("converted", "unknown", "second", event_id="e2")
    assert events.process_events("converted") == 0
    core = vc.get_runtime().core("converted")
    box = core.inbox
    assert all(e.stripped for e in box._known.values())  # type: ignore[attr-defined]
    assert core.record is not None
    taker = Taker.definition
    calls = vc._sync.sync(box.fold([], core.record, taker))  # type: ignore[attr-defined]
    # Not with an empty payload: read again by the fold itself, in inbox order.
    assert [c.args for c in calls] == [("first",), ("second",)]


@vc.virtual_actor
class Recorder:
    def __init__(self) -> None:
        self.order: list[int] = []

    @vc.virtual_actor.on_event("ping")
    def on_ping(self, payload: dict[str, object]) -> None:
        number = payload["i"]
        assert isinstance(number, int)
        self.order.append(number)

    @vc.virtual_actor.readonly
    def seen(self) -> list[int]:
        return self.order

    def noop(self) -> int:
        return len(self.order)


def _send_backlog(actor_id: str, count: int, pad: int = 0) -> None:
    """``count`` ping events numbered 0.. (ids e0000..), each with ``pad`` bytes of padding."""
    for i in range(count):
        events.send_event(actor_id, "ping", {"i": i, "pad": "x" * pad}, event_id=f"e{i:04d}")


def _listed(actor_id: str) -> Any:
    """The actor's inbox in this process, after one listing."""
    box = vc.get_runtime().core(actor_id).inbox
    vc._sync.sync(box._refresh())  # type: ignore[attr-defined]
    return box


def _held_payload_bytes(actor_id: str) -> int:
    known = vc.get_runtime().core(actor_id).inbox._known  # type: ignore[attr-defined]
    return sum(len(event.payload) for event in known.values())


@pytest.mark.usefixtures("runtime_off")
def test_an_inbox_backlog_is_held_with_at_most_one_commits_worth_of_payloads(store_spec: StoreSpec) -> None:
    """A listing read every pending event and kept each one with its payload until applied, at
    most 256 per commit: memory per actor grew with its inbox's backlog (600 events of 10 KB:
    6 MB held, uncounted in the cache's weight, however few one commit can apply). Now the events
    past the first 256 in inbox order are held without their payloads and read again when their
    turn comes; every event is still applied once, in order."""
    store_spec.init()
    actor = Recorder.get_or_create("backlog")
    size = 10_000
    backlog = 400  # (held whole: 4 MB, past the bound of 2.6 MB)
    _send_backlog("backlog", backlog, size)
    box = _listed("backlog")
    assert len(box._known) == backlog  # type: ignore[attr-defined]
    assert _held_payload_bytes("backlog") <= inbox.MAX_EVENTS_PER_COMMIT * (size + 100)
    assert events.process_events("backlog") == backlog
    assert actor.seen.run() == list(range(backlog))
    assert _held_payload_bytes("backlog") == 0
    assert vc._sync.sync(inbox.list_inbox(vc.get_runtime().store, "backlog")) == []


@pytest.mark.usefixtures("runtime_off")
def test_an_event_held_without_its_payload_and_gone_when_read_again_is_not_applied(
    store_spec: StoreSpec,
) -> None:
    """An event held without its payload whose object is gone when the fold reads it again
    (applied by another process, which deletes only after its commit) is dropped, not applied
    with an empty payload; the ones after it are applied in order."""
    store_spec.init()
    actor = Recorder.get_or_create("gone")
    _send_backlog("gone", 300)
    box = _listed("gone")
    stripped = sorted(k for k, e in box._known.items() if e.stripped)  # type: ignore[attr-defined]
    assert len(stripped) == 300 - inbox.MAX_EVENTS_PER_COMMIT
    vc._sync.sync(vc.get_runtime().store.delete(stripped[0]))
    assert events.process_events("gone") == 299
    assert actor.seen.run() == [i for i in range(300) if f"e{i:04d}" != stripped[0].rsplit("/", 1)[1]]


@pytest.mark.usefixtures("runtime_off")
def test_timer_passes_on_many_runtimes_leave_no_memory_per_store(store_spec: StoreSpec) -> None:
    """A runner's complete listing is remembered per store, by ``id(store)``, and was never
    forgotten: one entry per store object a pass ever ran on (a worker that inits a runtime
    per job and fires due timers in it), and a new store at a freed address inherited it."""
    before = len(timers._memory.complete_until)
    for _ in range(100):
        store_spec.init()
        timer_runner.fire_due_timers(split="none")
        vc.shutdown()
    full_collection()
    assert len(timers._memory.complete_until) - before <= 2


def test_a_store_at_a_dead_stores_address_inherits_none_of_its_index_memory() -> None:
    """The index memory is keyed by store and actor: by ``id(store)``, a store made where a
    dead one was (another bucket, say) took that one's names for entries it had, and skipped
    writing them (remembering an entry that is not there costs its timer the entry: it never
    fires until ``vactor timers repair``). Each store object now has a number never reused."""
    from vactor_cloud.storage import open_store

    memory = timers._IndexMemory()
    entry = ("k", 1_900_000_000_000, 1)
    addresses: set[int] = set()
    reused = 0
    for n in range(200):
        store = open_store(f"memory://index-memory-{n}-{time.monotonic_ns()}")
        reused += id(store) in addresses
        addresses.add(id(store))
        assert memory.known(store, "a") == set(), f"store {n} inherited a dead store's names"
        memory.add(store, "a", {entry})
        del store  # freed at once (no gc.collect: 200 of them took 80 s in a busy test worker)
    assert reused, "no address was reused: the test showed nothing"


@vc.virtual_actor
class Chunky:
    def __init__(self) -> None:
        self.runs = 0

    def work(self) -> int:
        self.runs += 1
        return sum(vc.subtask(abs).map([-1, -2]))


def test_a_thread_that_ran_subtasks_keeps_no_runtime_alive_after_shutdown(store_spec: StoreSpec) -> None:
    """``subtask``'s per-thread cursor held the thread's last ``CallContext`` strongly, and with
    it that call's runtime, its store and its actor cache, after ``vc.shutdown()``: until the
    thread's next subtask, for good in a thread that ran none again (a worker that inits a
    runtime per job)."""
    import weakref

    from vactor_cloud.runtime import get_runtime

    store_spec.init()
    assert Chunky.get_or_create("chunky").work.run() == 3
    runtime = weakref.ref(get_runtime())
    vc.shutdown()
    assert _freed_by_collections(runtime), [type(r).__name__ for r in gc.get_referrers(runtime())]


def _freed_by_collections(ref: Any, *, within: float = 5.0) -> bool:
    """True once ``ref``'s object is freed by a garbage collection, tried for ``within`` seconds.

    One collection is not enough to tell: another thread may hold the object a moment longer on
    its C stack (a pool thread's frames unwinding). (And one ``gc.collect()`` does nothing while
    another thread's collection runs: it returned 0 with the runtime alive, in a full-suite run;
    ``full_collection`` waits that out.)
    A reference kept for good (the defect these tests look for) keeps it past any wait."""
    deadline = time.monotonic() + within
    while True:
        full_collection()
        if ref() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.mark.usefixtures("runtime_off")
def test_an_event_held_without_its_payload_and_sent_again_meanwhile_is_applied_once(
    store_spec: StoreSpec,
) -> None:
    """An event held without its payload whose object was replaced meanwhile (deleted unapplied,
    its id sent again: a new place in the order) is applied once, at its new place, by the same
    ``process_events`` call; not with the old object's place, not skipped."""
    store_spec.init()
    actor = Recorder.get_or_create("moved")
    _send_backlog("moved", 300)
    box = _listed("moved")
    moved = min(k for k, e in box._known.items() if e.stripped)  # type: ignore[attr-defined]
    event_id = moved.rsplit("/", 1)[1]
    vc._sync.sync(vc.get_runtime().store.delete(moved))
    events.send_event("moved", "ping", {"i": 1000, "pad": ""}, event_id=event_id)
    assert events.process_events("moved") == 300
    expected = [i for i in range(300) if f"e{i:04d}" != event_id] + [1000]
    assert actor.seen.run() == expected


@pytest.mark.usefixtures("runtime_off")
def test_a_failed_read_of_held_back_events_fails_no_writer_call_and_loses_no_event(
    store_spec: StoreSpec,
) -> None:
    """The fold reads held-back events again when they are due; a storage error there must not
    fail the writer call whose commit folds them (the inbox never fails a call: a failed listing
    leaves events for a later commit), and ``process_events`` raises rather than returning short.
    Nothing is lost or applied twice: once the store answers, they are applied in order."""
    from vactor_cloud.errors import StorageError
    from vactor_cloud.testing.faults import FaultConfig, FaultRule, install

    store_spec.init()
    # Every GET of an inbox object after the first listing's 300 fails.
    faulty = install(
        FaultConfig(
            rules=(
                FaultRule(
                    "fail_before",
                    operations=frozenset({"get"}),
                    key_contains="/inbox/",
                    at=tuple(range(301, 100_000)),
                    retryable=False,
                ),
            )
        )
    )
    actor = Recorder.get_or_create("flaky")
    _send_backlog("flaky", 300)
    with pytest.raises(StorageError):
        events.process_events("flaky")
    assert faulty.injected["fail_before"] > 0
    assert actor.seen.run() == list(range(256))
    assert actor.noop.run() == 256  # its commit's fold could not read the held-back events
    faulty.config = FaultConfig()
    faulty._matched, faulty._fired = [], []
    assert events.process_events("flaky") == 44
    assert actor.seen.run() == list(range(300))


@pytest.mark.usefixtures("runtime_off")
def test_held_and_folded_event_payloads_are_bounded_in_bytes_too(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """256 events is a bound by count: 256 payloads of 10 MB were held between commits, and
    folded into one commit, 2.5 GB. Payloads held and folded into one commit are bounded in
    bytes as well (at least one event a commit); every event is still applied once, in order."""
    monkeypatch.setattr(inbox, "_PAYLOAD_BYTES", 100_000)
    store_spec.init()
    actor = Recorder.get_or_create("heavy")
    size = 10_000
    _send_backlog("heavy", 30, size)
    box = _listed("heavy")
    assert len(box._known) == 30  # type: ignore[attr-defined]
    assert _held_payload_bytes("heavy") <= 100_000 + size + 100
    steps_before = len(actor.history())
    assert events.process_events("heavy") == 30
    assert actor.seen.run() == list(range(30))
    assert len(actor.history()) - steps_before >= 3  # 30 x 10 KB in commits of at most ~100 KB

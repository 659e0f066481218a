"""External events (the inbox, ``send_event`` / ``process_events`` / ``wait_for_event``), from a
hostile review (review-h19): each test failed on the code it was written against."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import other_process

import vactor_cloud as vc
from vactor_cloud import _sync, inbox
from vactor_cloud.batch import PendingCall
from vactor_cloud.cli import events as events_cli
from vactor_cloud.dedup import RecordedError
from vactor_cloud.events import process_events, send_event
from vactor_cloud.future import ActorFuture
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Till:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: Any) -> int:
        self.seen.append(("paid", payload))
        return len(self.seen)

    @vc.virtual_actor.on_event("refunded")
    def on_refunded(self, payload: Any) -> int:
        self.seen.append(("refunded", payload))
        return len(self.seen)

    def add(self, item: Any) -> int:
        self.seen.append(("add", item))
        return len(self.seen)

    @vc.virtual_actor.readonly
    def view(self) -> list[tuple[str, Any]]:
        return self.seen


@pytest.fixture
def spec(actor_store: StoreSpec) -> StoreSpec:
    """``actor_store``: vactor_cloud started on a fresh store of the lane, shut down after."""
    return actor_store


def reopen(spec: StoreSpec) -> Runtime:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    spec.init()
    return vc.get_runtime()


def drain_on(runtime: Runtime, actor_id: str) -> int:
    """``process_events`` through ``runtime`` (not the global one); waits for its inbox cleanup."""
    future: ActorFuture[int] = ActorFuture()
    runtime.core(actor_id).submit(PendingCall(inbox.PROCESS_EVENTS, (), {}, False, future, uuid.uuid4().hex))
    # (A bound, not a timing claim: a drain of 256 events takes 9-13 s on a quiet moto and timed
    # out at 30 s in a loaded CI run, 4 workers beside LocalStack.)
    applied = future.result(120)
    _sync.sync(runtime.core(actor_id).inbox.wait_deleted())  # type: ignore[attr-defined]
    return applied


def inbox_ids(actor_id: str) -> list[str]:
    keys = _sync.sync(inbox.list_inbox(vc.get_runtime().store, actor_id))
    return [k.rsplit("/", 1)[1] for k in keys]


# -- an inbox key used again, by another event ------------------------------------------------------
def test_an_event_under_the_key_of_an_applied_event_this_process_had_listed_is_applied_not_deleted(
    spec: StoreSpec,
) -> None:
    """The inbox cache is keyed by object key, and a listing read only keys it did not hold yet
    ("inbox objects never change"). But a key is free again once its event was applied and
    deleted, and an event id is remembered *with its name* (docs/events.md): ``refunded`` under
    the id of an applied ``paid`` is a new event. A process that had listed the ``paid`` object
    (and not seen it go) took the new object for the applied one, found it in the idempotency
    table and deleted it unapplied: an acknowledged event lost."""
    Till.get_or_create("t")
    send_event("t", "paid", 30, event_id="evt-1")
    here = reopen(spec)
    box = here.core("t").inbox
    _sync.sync(box._refresh())  # type: ignore[attr-defined]  # a listing of ours caches evt-1
    other = other_process(spec)
    try:
        assert drain_on(other, "t") == 1  # another process applies it and deletes its object
    finally:
        other.close()
    assert inbox_ids("t") == []
    send_event("t", "refunded", 30, event_id="evt-1")  # the same id, another event
    assert process_events("t") == 1
    assert vc.get_actor("t").view.run() == [("paid", 30), ("refunded", 30)]
    assert inbox_ids("t") == []


# -- results by value ------------------------------------------------------------------------------
@vc.virtual_actor
class Echo:
    def __init__(self) -> None:
        self.count = 0

    @vc.virtual_actor.on_event("echo")
    def on_echo(self, payload: Any) -> list[Any]:
        self.count += 1
        return [payload, {"count": self.count}]


@pytest.mark.parametrize("size", [10, 5_000])
def test_a_result_wait_for_event_returned_is_the_callers_own(spec: StoreSpec, size: int) -> None:
    """By value ("results reach the caller as independent objects"): ``wait_for_event`` handed each caller
    the idempotency table's own decoded outcome (the process keeps the table it decoded last),
    so a caller that changed the list it got changed what the next waiter got, in this process,
    for as long as the table stayed cached (a result over 2 KB: from the first wait on)."""
    echo = Echo.get_or_create("echo")
    echo.send_event("echo", "x" * size, event_id="e1")
    first = echo.wait_for_event("echo", timeout=30, event_id="e1")
    first[0] = "changed by the first caller"
    first[1]["count"] = -1
    for i in range(3):  # more events: the entry moves from the step into a checkpoint
        echo.send_event("echo", i, event_id=f"more-{i}")
        assert echo.process_events() == 1
    second = echo.wait_for_event("echo", timeout=30, event_id="e1")
    assert second == ["x" * size, {"count": 1}]
    second.append("changed by the second caller")
    assert echo.wait_for_event("echo", timeout=30, event_id="e1") == ["x" * size, {"count": 1}]


# -- a handler whose result cannot be recorded --------------------------------------------------
@vc.virtual_actor(serializer="json")
class Tags:
    def __init__(self) -> None:
        self.count = 0

    @vc.virtual_actor.on_event("tag")
    def on_tag(self, payload: Any) -> Any:
        self.count += 1
        return {payload} if payload == "set" else payload  # a set is no JSON

    @vc.virtual_actor.readonly
    def view(self) -> int:
        return self.count


def test_a_handler_whose_result_cannot_be_recorded_is_applied_as_raising_and_removed(spec: StoreSpec) -> None:
    """docs/events.md said such an event "stays in the inbox"; it is applied like a handler that
    raised (as any call whose result cannot be copied): mutations discarded, the error recorded
    and re-raised by ``wait_for_event``, the event removed, its commit-mates applied. The doc
    now says so; this pins it (an event kept would be re-run by every later commit)."""
    tags = Tags.get_or_create("tags")
    tags.send_event("tag", "set", event_id="bad")
    tags.send_event("tag", "plain", event_id="good")
    assert tags.process_events() == 2
    assert tags.view.run() == 1
    with pytest.raises(RecordedError, match="StateSerializationError"):
        tags.wait_for_event("tag", timeout=30, event_id="bad")
    assert tags.wait_for_event("tag", timeout=30, event_id="good") == "plain"
    assert inbox_ids("tags") == []


# -- two processes draining one backlog past a commit's worth -------------------------------------
@vc.virtual_actor
class Tape:
    def __init__(self) -> None:
        self.numbers: list[int] = []

    @vc.virtual_actor.on_event("n")
    def on_n(self, payload: dict[str, Any]) -> int:
        self.numbers.append(payload["n"])
        return len(self.numbers)

    @vc.virtual_actor.on_event("stop")
    def on_stop(self, payload: Any) -> None:
        raise SystemExit("a handler that exits")

    @vc.virtual_actor.readonly
    def view(self) -> list[int]:
        return self.numbers


def test_two_processes_draining_a_backlog_past_what_one_commit_holds_apply_each_once_in_order(
    spec: StoreSpec,
) -> None:
    """Each drainer holds payloads for the first 256 pending events only and reads the others
    again when due (the bounded backlog); racing another drainer, the events it holds are
    applied by the other, deleted, and its re-reads find them gone. Every event is applied
    once, in send order, and the inbox ends empty. 400 events: past one commit's 256 far enough
    that a drainer's second commit re-reads events the other one has applied meanwhile (with
    300, nobody's re-read found an event gone); 600 until h162, the sends (one request each)
    most of the test's time on S3."""
    count = 400
    assert count > inbox.MAX_EVENTS_PER_COMMIT
    Tape.get_or_create("tape")
    for n in range(count):
        send_event("tape", "n", {"n": n, "pad": "x" * 200}, event_id=f"n{n:04d}")
    runtimes = [other_process(spec), other_process(spec)]
    try:
        drain_together("tape", [functools.partial(drain_on, r, "tape") for r in runtimes])
    finally:
        for runtime in runtimes:
            runtime.close()
    assert process_events("tape") == 0
    assert vc.get_actor("tape").view.run() == list(range(count))
    assert inbox_ids("tape") == []


def drain_together(actor_id: str, drains: list[Callable[[], object]]) -> None:
    """Each of ``drains`` on a thread of its own, all at once, each over and over until the
    inbox of ``actor_id`` is empty; raises what one of them raised."""
    errors: list[BaseException] = []

    def drain(once: Callable[[], object]) -> None:
        try:
            deadline = time.monotonic() + 120
            for _ in range(100):  # bounded: a few rounds of up to 256 events each suffice
                once()
                if not inbox_ids(actor_id) or time.monotonic() > deadline:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(once,)) for once in drains]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)  # (a drain started before the 120 s deadline ends within 120 s)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


# -- vactor events ls on a backlog -------------------------------------------------------------------
async def _ls_rows(actors: list[str]) -> tuple[list[Any], list[str]]:
    """Every row ``vactor events ls`` prints for ``actors`` (read a page at a time), and its errors."""
    rows: list[Any] = []
    errors: list[str] = []
    async with contextlib.aclosing(events_cli._event_rows(actors)) as pages:
        async for some, failed in pages:
            rows += some
            errors += failed
    return rows, errors


@pytest.mark.vactor_lanes("memory", "local")
def test_events_ls_holds_no_backlogs_payloads(spec: StoreSpec) -> None:
    """The inbox of a process holds payloads for one commit's worth of events only (bf6f091); the
    operator's ``vactor events ls`` read every pending event whole, at once, and kept them all
    while it looked each one up (1,000 events of 10 KB: 10 MB; 100,000: a gigabyte) though it
    prints their ids, names and times only."""
    size, count = 10_000, 1_000
    Tape.get_or_create("listed")
    for n in range(count):
        send_event("listed", "n", {"n": n, "pad": "x" * size}, event_id=f"n{n:04d}")
    tracemalloc.start()
    try:
        rows, errors = _sync.sync(_ls_rows(["listed"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == []
    assert [row.event_id for row in rows] == [f"n{n:04d}" for n in range(count)]
    assert {row.status for row in rows} == {"pending"}
    assert peak < size * count / 2, f"peak {peak / 1e6:.1f} MB"


# -- process_events applies every pending event --------------------------------------------------------
def test_process_events_goes_on_past_a_commit_that_applied_fewer_than_it_chose(spec: StoreSpec) -> None:
    """``process_events()`` "commits until none is left": it stopped after any commit that
    applied fewer than 256 events, taking that for the end of the inbox. A commit applies fewer
    than it chose when a handler raises SystemExit (excluded: the event stays, docs/events.md)
    or an event held without its payload is gone when read again: with such an event first,
    299 pending, it applied 255 and left 44 in the inbox. So 300 events, the stop first (400
    until h162: the sends, one request each, were most of the time on S3).

    (h162 found that this case no longer fails with that rule put back: an excluded event asks
    for another fold by itself since, which carries ``process_events`` on. What it holds now is
    that an excluded handler does not end the drain; the rule's other case, a held event gone
    when read again in a full commit, has no test.)"""
    count = 300
    assert count - 1 > inbox.MAX_EVENTS_PER_COMMIT
    Tape.get_or_create("long")
    send_event("long", "stop", None, event_id="a-stop")
    for n in range(1, count):
        send_event("long", "n", {"n": n}, event_id=f"n{n:04d}")
    assert process_events("long") == count - 1
    assert vc.get_actor("long").view.run() == list(range(1, count))
    assert inbox_ids("long") == ["a-stop"]  # excluded, kept: tried again by the next fold


# -- sub-tasks of events ------------------------------------------------------------------------------
_notified: list[str] = []


def notify(customer: str) -> str:
    _notified.append(customer)  # a side effect a subtask makes once per event
    return f"notified {customer}"


@vc.virtual_actor
class Notifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, customer: str) -> str:
        self.sent.append("paid: " + vc.subtask(notify).run(customer))
        return self.sent[-1]

    @vc.virtual_actor.on_event("refunded")
    def on_refunded(self, customer: str) -> str:
        self.sent.append("refunded: " + vc.subtask(notify).run(customer))
        return self.sent[-1]

    @vc.virtual_actor.readonly
    def view(self) -> list[str]:
        return self.sent


def test_two_events_under_one_id_do_not_share_their_sub_tasks(spec: StoreSpec) -> None:
    """An event's call id (under which its handler's sub-tasks are checkpointed, so that a
    drainer dying mid-handler does not run them twice) came from its inbox key alone. Another
    event under the same id (another name; or the same name sent again past the dedup window:
    a new event) had the same call id, found the first's checkpoint and got its result without
    running: the refund's notification was never sent."""
    _notified.clear()
    Notifier.get_or_create("notifier")
    send_event("notifier", "paid", "ann", event_id="evt-7")
    assert process_events("notifier") == 1
    send_event("notifier", "refunded", "ann", event_id="evt-7")
    assert process_events("notifier") == 1
    assert vc.get_actor("notifier").view.run() == ["paid: notified ann", "refunded: notified ann"]
    assert _notified == ["ann", "ann"]


@pytest.mark.usefixtures("runtime_off")
def test_an_event_read_damaged_once_is_still_applied_in_send_order(store_spec: StoreSpec) -> None:
    """A read that arrives damaged (cut short in transit; the object is intact) was skipped and
    the events after it applied: events from one sender came out of send order ([1, 0]). The
    fold now waits for it (read again by the next listings, a few times) before applying what
    comes after it."""
    from vactor_cloud.testing.faults import FaultConfig, FaultRule, install

    store_spec.init()
    faulty = install(
        FaultConfig(
            rules=(
                FaultRule("truncate_read", operations=frozenset({"get"}), key_contains="/inbox/e0", at=(1,)),
            )
        )
    )
    actor = _OrderKeeper.get_or_create("damaged-once")
    vc.events.send_event("damaged-once", "ping", 0, event_id="e0")
    vc.events.send_event("damaged-once", "ping", 1, event_id="e1")
    applied = 0
    for _ in range(10):
        applied += vc.events.process_events("damaged-once")
        if applied == 2:
            break
    assert faulty.injected["truncate_read"] == 1
    assert actor.order.run() == [0, 1]


@vc.virtual_actor
class _OrderKeeper:
    def __init__(self) -> None:
        self.seen: list[int] = []

    @vc.virtual_actor.on_event("ping")
    def on_ping(self, payload: int) -> None:
        self.seen.append(payload)

    @vc.virtual_actor.readonly
    def order(self) -> list[int]:
        return self.seen


@pytest.mark.usefixtures("runtime_off")
def test_an_object_always_read_damaged_is_skipped_after_a_few_reads_not_read_by_every_listing(
    store_spec: StoreSpec,
) -> None:
    """An inbox object that is damaged at rest (or forged) cannot be applied, and its place in
    the order is unknown: the fold waits for it a few reads, then applies the events after it;
    listings then read it again only once in a while (every listing read it, and logged it)."""
    from vactor_cloud.keys import inbox_key
    from vactor_cloud.testing.faults import FaultConfig, FaultRule, install

    store_spec.init()
    # A rule that never fires counts the reads of the damaged object.
    faulty = install(
        FaultConfig(rules=(FaultRule("delay", operations=frozenset({"get"}), key_contains="/inbox/bad"),))
    )
    actor = _OrderKeeper.get_or_create("damaged-for-good")
    _sync.sync(
        vc.get_runtime().store.put(inbox_key("damaged-for-good", "bad"), b"not an event", mode="create")
    )
    send_event("damaged-for-good", "ping", 0, event_id="e0")
    send_event("damaged-for-good", "ping", 1, event_id="e1")
    applied = 0
    for _ in range(10):
        applied += process_events("damaged-for-good")
        if applied == 2:
            break
    assert actor.order.run() == [0, 1]
    reads = faulty._matched[0]
    assert reads == inbox._DAMAGED_READS
    for _ in range(5):
        assert process_events("damaged-for-good") == 0
    assert faulty._matched[0] == reads  # not read again by each listing


@pytest.mark.usefixtures("runtime_off")
def test_events_ls_lists_an_inbox_object_that_cannot_be_read(store_spec: StoreSpec) -> None:
    """``vactor events ls`` left a damaged inbox object out (it was logged only): the operator saw
    no trace of what the fold skipped. It is a row now, status ``damaged``, beside the others."""
    from vactor_cloud.keys import inbox_key

    store_spec.init()
    _OrderKeeper.get_or_create("ls-damaged")
    _sync.sync(vc.get_runtime().store.put(inbox_key("ls-damaged", "bad"), b"not an event", mode="create"))
    send_event("ls-damaged", "ping", 0, event_id="e0")
    rows, errors = _sync.sync(_ls_rows(["ls-damaged"]))
    assert errors == []
    by_id = {row.event_id: row for row in rows}
    assert by_id["e0"].status == "pending"
    assert by_id["bad"].status.startswith("damaged") and by_id["bad"].sent is None
    assert by_id["bad"].cells()[3] == "-"


class _PagedListings(FaultyStore):
    """Listings of several pages: the first inbox listing that could see ``hidden`` misses it
    (it landed behind the page cursor while the listing ran) and sees what landed after it."""

    def __init__(self, inner: Any, hidden: str) -> None:
        super().__init__(inner, FaultConfig())
        self.hidden: str | None = hidden
        self.inbox_listings = 0

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        return not keys  # every listing that found anything took pages

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        result = await super()._around(operation, key, run, batch=batch)
        if operation == "list" and key.endswith("/inbox/"):
            self.inbox_listings += 1
            kept = [k for k in result if self.hidden is None or not k.endswith("/" + self.hidden)]
            if len(kept) < len(result):
                self.hidden = None  # once
            result = kept
        return result


def test_one_senders_events_apply_in_order_when_a_paged_listing_missed_the_first(spec: StoreSpec) -> None:
    # A listing of several pages is no single moment: the first of two events a process sent
    # one after the other can land behind the page being read (unseen) while the second is
    # seen. That listing applied the second first ([2, 1]). Events first seen by such a
    # listing now wait for a second listing, and their sender's later events behind them.
    runtime = vc.get_runtime()
    paged = _PagedListings(runtime.store, hidden="b-first")
    runtime.store = paged
    Till.get_or_create("t")
    send_event("t", "paid", 1, event_id="b-first")
    send_event("t", "paid", 2, event_id="y-second")  # sent after the first send returned
    for _ in range(5):
        if process_events("t") == 0 and not inbox_ids("t"):
            break
    assert vc.get_actor("t").view.run() == [("paid", 1), ("paid", 2)]
    assert paged.inbox_listings >= 3  # the listing that missed it, and those that confirmed


# -- one id, two payloads ---------------------------------------------------------------------------
def test_a_second_send_of_an_id_with_another_payload_is_the_first_event_waiting_or_applied(
    spec: StoreSpec,
) -> None:
    """(Pin.) An event id names one event: a send under an id already waiting, same name, is
    that event (the payload is not compared: the first one is applied, once); after it was
    applied, the dedup table still knows the id. Breaking the create-only put (an overwrite)
    applies the second payload instead."""
    till = Till.get_or_create("t2")
    assert send_event("t2", "paid", 30, event_id="evt-p") == "evt-p"
    assert send_event("t2", "paid", 99, event_id="evt-p") == "evt-p"
    assert process_events("t2") == 1
    assert send_event("t2", "paid", 77, event_id="evt-p") == "evt-p"
    assert process_events("t2") == 0
    assert till.view.run() == [("paid", 30)]
    assert inbox_ids("t2") == []

"""Review h154: the inbox listings of one process take turns (``ActorInbox._listing``, h147's
change): a fold that must list waits for the periodic listing in flight. Each test here failed
on the code it was written against, or pins what the review found held."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
import uuid
from typing import Any

import pytest
from store_helpers import other_process
from test_review_events import Till

import vactor_cloud as vc
from vactor_cloud import _sync, inbox
from vactor_cloud.batch import PendingCall
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.events import process_events, send_event
from vactor_cloud.future import ActorFuture
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


class _HeldEventRead(FaultyStore):
    """The next read of an inbox object, once ``hold`` is set, reads it and then waits until
    ``release`` (2 s at most: a listing that another waits for ends by itself) before answering
    what it read."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, FaultConfig())
        self.hold = False
        self.holding = threading.Event()
        self.release = threading.Event()

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if operation != "get" or "/inbox/" not in key or not self.hold:
            return await super()._around(operation, key, run, batch=batch)
        self.hold = False
        answer = await super()._around(operation, key, run, batch=batch)
        self.holding.set()
        give_up = time.monotonic() + 2.0
        while not self.release.is_set() and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        return answer


def test_an_event_the_periodic_listing_read_before_it_was_applied_elsewhere_is_not_taken_for_fresh(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect (failed before the fix: ``refunded`` deleted unapplied, ``process_events`` said 0).
    The periodic listing reads ``paid`` (id evt-1); before it ends, another process applies
    ``paid`` and deletes its object, and ``refunded`` is sent under the same id (a new event:
    an id is remembered with its name). ``process_events`` then waits for the periodic listing
    (listings take turns); that listing ends, caching the ``paid`` it read. The fold took it
    for one its own listing read (it was not held when the fold began) and, finding ``paid``
    in the idempotency table, deleted the object at its key: ``refunded``, never applied. A
    listing that began before the fold is no listing of the fold's: what it read is forgotten
    and read again, as for an event held before the fold (test_review_events'
    ..._key_of_an_applied_event_this_process_had_listed_is_applied_not_deleted)."""
    Till.get_or_create("t")
    send_event("t", "paid", 30, event_id="evt-1")
    vc.shutdown()
    actor_store.init()
    here = vc.get_runtime()
    held = _HeldEventRead(here.store)
    here.store = held
    box = here.core("t").inbox
    held.hold = True
    periodic = _sync.submit(box._refresh())  # type: ignore[attr-defined]  # (as _list_in_background)
    assert held.holding.wait(30)  # it read paid/evt-1, and has not ended
    other = other_process(actor_store)
    try:
        assert process_on(other, "t") == 1  # another process applies it and deletes its object
    finally:
        other.close()
    send_event("t", "refunded", 40, event_id="evt-1")  # the same id, another event
    refresh = inbox.ActorInbox._refresh

    async def release_then_refresh(self: inbox.ActorInbox) -> None:
        held.release.set()  # the periodic listing ends while the fold waits for its turn
        await refresh(self)

    monkeypatch.setattr(inbox.ActorInbox, "_refresh", release_then_refresh)
    applied = process_events("t")
    periodic.result(30)
    monkeypatch.undo()
    applied += process_events("t")
    assert applied == 1
    assert vc.get_actor("t").view.run() == [("paid", 30), ("refunded", 40)]


def test_an_applied_event_left_in_the_inbox_and_listed_before_the_fold_is_still_deleted(
    actor_store: StoreSpec,
) -> None:
    """The fix above forgets an applied event a listing read before the fold began, rather
    than deleting its key; the next commit then lists again, reads it as its own and deletes
    it. Defect (failed before the fix, where an event held before the fold was forgotten too:
    the applied object stayed for good, each periodic listing read it again and its follow-up
    fold forgot it, and commits never listed)."""
    till = Till.get_or_create("t")
    send_event("t", "paid", 30, event_id="evt-1")
    key = _sync.sync(inbox.list_inbox(vc.get_runtime().store, "t"))[0]
    data = _sync.sync(vc.get_runtime().store.get(key)).data
    assert process_events("t") == 1
    _sync.sync(vc.get_runtime().store.put(key, data))  # as if its writer died before deleting it
    vc.shutdown()
    actor_store.init()
    box = vc.get_runtime().core("t").inbox
    _sync.sync(box._refresh())  # type: ignore[attr-defined]  # a listing before any fold
    till.add.run(1)
    till.add.run(2)
    _sync.sync(box.wait_deleted())  # type: ignore[attr-defined]
    assert _sync.sync(inbox.list_inbox(vc.get_runtime().store, "t")) == []
    assert till.view.run() == [("paid", 30), ("add", 1), ("add", 2)]


def process_on(runtime: Any, actor_id: str) -> int:
    """``process_events`` through ``runtime`` (not the global one); waits for its inbox cleanup."""
    future: ActorFuture[int] = ActorFuture()
    runtime.core(actor_id).submit(PendingCall(inbox.PROCESS_EVENTS, (), {}, False, future, uuid.uuid4().hex))
    applied = future.result(60)
    _sync.sync(runtime.core(actor_id).inbox.wait_deleted())
    return applied


class _HeldListing(FaultyStore):
    """The next inbox listing, once ``hold`` is set, waits until ``release`` (2 s at most),
    then fails (``fail``) or answers."""

    def __init__(self, inner: Any, fail: bool) -> None:
        super().__init__(inner, FaultConfig())
        self.fail = fail
        self.hold = False
        self.holding = threading.Event()
        self.release = threading.Event()

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if operation != "list" or not key.endswith("/inbox/") or not self.hold:
            return await super()._around(operation, key, run, batch=batch)
        self.hold = False
        self.holding.set()
        give_up = time.monotonic() + 2.0
        while not self.release.is_set() and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        if self.fail:
            raise RetryableStorageError("the periodic listing failed (injected)")
        return await super()._around(operation, key, run, batch=batch)


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_a_fold_waiting_for_a_periodic_listing_that_fails_or_is_cancelled_lists_and_applies(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """Pins what the review found held: the periodic listing a fold waits for (listings take
    turns) ends in a storage error, or is cancelled (shutdown, eviction) while the fold waits:
    the turn passes on, the fold lists itself, and ``process_events`` applies the event (the
    periodic listing's error is its own: logged, not the caller's)."""
    Till.get_or_create("t")
    vc.shutdown()
    actor_store.init()
    runtime = vc.get_runtime()
    held = _HeldListing(runtime.store, fail=ending == "failed")
    runtime.store = held
    box = runtime.core("t").inbox
    send_event("t", "paid", 30, event_id="evt-1")
    held.hold = True
    periodic = _sync.submit(box._quiet_refresh())  # type: ignore[attr-defined]  # (as _list_in_background)
    assert held.holding.wait(30)
    refresh = inbox.ActorInbox._refresh

    async def end_it_then_refresh(self: inbox.ActorInbox) -> None:
        if ending == "cancelled":
            periodic.cancel()
        held.release.set()
        await refresh(self)

    monkeypatch.setattr(inbox.ActorInbox, "_refresh", end_it_then_refresh)
    assert process_events("t") == 1
    monkeypatch.undo()
    with contextlib.suppress(concurrent.futures.CancelledError):
        periodic.result(30)
    assert vc.get_actor("t").view.run() == [("paid", 30)]


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.total


def test_a_commit_that_lists_the_inbox_itself_starts_no_periodic_listing_beside_it(
    actor_store: StoreSpec,
) -> None:
    """Defect (failed before the fix: 2 LISTs, and a follow-up commit's GET). A commit whose
    listing was stale and whose cached events were untrusted (another process committed since
    the listing) started the periodic listing beside itself, then listed itself: since
    listings take turns, it waited for the periodic one to end before making its own, two
    LISTs one after the other on the commit's path. Its own listing is the fresh one: it
    starts no other."""
    quiet = vc.Settings(
        storage=actor_store.url, head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0
    )
    vc.shutdown()
    vc.init(actor_store.url, settings=quiet, **actor_store.options)
    runtime = vc.get_runtime()
    counting = FaultyStore(runtime.store, FaultConfig())
    runtime.store = counting
    counter = Counter.get_or_create("c")
    send_event("c", "nobody-handles-this", 1, event_id="kept")  # stays cached, and in the inbox
    assert counter.add.run(1) == 1  # lists: the event is cached
    other = other_process(actor_store, inbox_interval=3600.0)
    try:
        future: ActorFuture[int] = ActorFuture()
        other.core("c").submit(PendingCall("add", (5,), {}, False, future, uuid.uuid4().hex))
        assert future.result(30) == 6  # another process commits: the cache is not trusted now
    finally:
        other.close()
    assert counter.get.run() == 6  # (this process learns of that step)
    box = runtime.core("c").inbox
    box._listed_at = -math.inf  # type: ignore[attr-defined]  # the listing is stale now
    lists = counting.seen["list"]
    assert counter.add.run(1) == 7
    _sync.sync(box.finish())  # type: ignore[attr-defined]  # (a periodic listing started ends)
    assert counting.seen["list"] - lists == 1


class _PagedHeldListing(_HeldListing):
    """Every listing is one of several pages (as the local store's, and S3's past 1,000 keys)."""

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        return not keys


def test_a_fold_waits_for_one_periodic_listing_not_for_its_confirming_one_too(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins the bound docs/events.md gives (a commit that must list waits for one listing at
    most). The periodic listing is of several pages and finds an event: it lists again at once
    to confirm it (``_list_confirmed``). A fold that asked for its turn meanwhile lists before
    that second one (turns go in the order asked for), and its listing confirms the event."""
    Till.get_or_create("t")
    vc.shutdown()
    actor_store.init()
    runtime = vc.get_runtime()
    held = _PagedHeldListing(runtime.store, fail=False)
    runtime.store = held
    box = runtime.core("t").inbox
    held.hold = True
    tasks: list[asyncio.Task[Any] | None] = []

    async def periodic_listing() -> None:
        tasks.append(asyncio.current_task())
        await box._list_confirmed()  # type: ignore[attr-defined]  # (as _list_in_background)

    periodic = _sync.submit(periodic_listing())
    assert held.holding.wait(30)
    send_event("t", "paid", 30, event_id="evt-1")  # (the held listing, still to answer, finds it)
    turns: list[str] = []
    refresh, refresh_now = inbox.ActorInbox._refresh, inbox.ActorInbox._refresh_now

    async def release_then_refresh(self: inbox.ActorInbox) -> None:
        held.release.set()
        await refresh(self)

    async def note_the_turn(self: inbox.ActorInbox) -> None:
        turns.append("periodic" if asyncio.current_task() is tasks[0] else "fold")
        await refresh_now(self)

    monkeypatch.setattr(inbox.ActorInbox, "_refresh", release_then_refresh)
    monkeypatch.setattr(inbox.ActorInbox, "_refresh_now", note_the_turn)
    assert process_events("t") == 1
    periodic.result(30)
    monkeypatch.undo()
    assert turns == ["fold", "periodic"]
    assert vc.get_actor("t").view.run() == [("paid", 30)]

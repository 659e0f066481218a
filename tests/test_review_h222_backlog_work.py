"""Hostile review h222: what a commit of an actor with a backlog of events it does not apply
does per backlog event.

A warm commit of such an actor looks at none of the backlog: the work it does on the runtime's
IO thread (which every actor of the process shares) does not grow with the backlog, counted as
the events whose order, dedup key or refusal a commit looks at, and the idempotency tables it
reads for them: none, with a backlog of 40 as of 400. The events it sets aside still count in
the inbox order (``fold_order``'s ``floors``), a new event behind the backlog is applied at its
turn (also one found by a listing that ran while a commit set the backlog aside), and the
events set aside are looked at again once the class (defined again) handles them or one of them
is found replaced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync, inbox_events
from vactor_cloud import inbox as inbox_module
from vactor_cloud.dedup import StepDedup
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.inbox_events import InboxEvent, aside_floors, fold_order
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Backlogged:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def add(self, k: int) -> int:
        return k

    def got(self) -> list[object]:
        return self.seen

    @vc.virtual_actor.on_event("handled")
    def handled(self, payload: object) -> None:
        self.seen.append(payload)


class _Looks:
    """How many times the fold and its settling looked at an inbox event (its place in the
    order, its dedup key, whether the class refuses it) or read the idempotency table."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("order", "dedup_key"):
            prop = getattr(InboxEvent, name)
            monkeypatch.setattr(InboxEvent, name, property(self._counted(prop.fget)))
        monkeypatch.setattr(inbox_module, "refusal", self._counted(inbox_events.refusal))
        ordered = inbox_events.fold_order

        def counted_order(events: Iterable[InboxEvent], *args: object, **kwargs: object) -> list[InboxEvent]:
            events = list(events)
            self.count += len(events)
            return ordered(events, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(inbox_module, "fold_order", counted_order)
        # (the idempotency table, read for the events to look at: none)
        monkeypatch.setattr(StepDedup, "load", self._counted(StepDedup.load))

    def _counted(self, fn):  # type: ignore[no-untyped-def]
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return fn(*args, **kwargs)

        return counted


def _backlog(actor_id: str, size: int) -> Backlogged:
    actor = Backlogged.get_or_create(actor_id)
    for i in range(size):
        vc.send_event(actor_id, "nobody", {"i": i}, event_id=f"e{i:04}")
    assert actor.process_events() == 0
    actor.add.run(1)  # (the first commit after the listing)
    return actor


@pytest.mark.vactor_lanes("memory", "local")
def test_a_warm_commit_looks_at_no_event_of_a_backlog_it_does_not_apply(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    init(actor_store, inbox_interval=3600.0)  # (no periodic listing during the calls)
    small, large = _backlog("small", 40), _backlog("large", 400)
    looks = _Looks(monkeypatch)
    per_backlog = {}
    for size, actor in ((40, small), (400, large)):
        looks.count = 0
        for _ in range(10):
            assert actor.add.run(1) == 1
        per_backlog[size] = looks.count
    assert per_backlog == {40: 0, 400: 0}
    # A new event behind the backlog is applied at its turn, the backlog still kept.
    vc.send_event("large", "handled", 7, event_id="late")
    assert large.process_events() == 1
    assert large.got.run() == [7]
    inbox = vc.get_runtime().core("large").inbox
    assert len(inbox._known) == 400


@pytest.mark.vactor_lanes("memory", "local")
def test_an_event_set_aside_still_holds_back_its_senders_later_ones(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sender x, whose clock runs ahead, sent a refused event, then ``b``; sender y sent ``e``
    in between (by the clocks of this process). A listing of several pages saw ``b`` long
    before the refused one (so ``b`` alone would count as sent then): ``e`` still goes first,
    ``b`` after, as its sender's refused event, set aside, counts where it stands."""
    init(actor_store, inbox_interval=3600.0)
    actor = Backlogged.get_or_create("floors")
    now = time.time()
    stamps = iter([(now + 1000.0, "x", 0), (now - 100.0, "y", 0), (now + 1001.0, "x", 1)])
    monkeypatch.setattr(inbox_events._clock, "stamp", lambda: next(stamps))
    vc.send_event("floors", "nobody", "refused", event_id="p")
    vc.send_event("floors", "handled", "e", event_id="e")
    vc.send_event("floors", "handled", "b", event_id="b")
    refresh = ActorInbox._refresh_now

    async def saw_b_early(inbox: ActorInbox) -> None:
        await refresh(inbox)
        b = next((e for e in inbox._known.values() if e.event_id == "b"), None)
        if b is not None:
            inbox._known[b.key] = dataclasses.replace(b, seen=min(b.seen, now - 500.0))

    monkeypatch.setattr(ActorInbox, "_refresh_now", saw_b_early)
    assert actor.process_events() == 2
    assert actor.got.run() == ["e", "b"]


@pytest.mark.vactor_lanes("memory", "local")
def test_an_event_found_replaced_by_one_the_class_refuses_is_set_aside_by_the_next_commit(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The third of three events, held without its payload (two a commit), is chosen by a
    fold whose read of it finds another event under its key (deleted unapplied, its id sent
    again under a name the class has no handler for). The next commit, which lists nothing,
    sets that one aside rather than apply it."""
    init(actor_store, inbox_interval=3600.0)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 2)
    actor = Backlogged.get_or_create("replaced")
    for name in "abc":
        vc.send_event("replaced", "handled", name, event_id=name)
    reread = ActorInbox._reread

    async def replaced_before_read(inbox: ActorInbox, chosen: list[InboxEvent]) -> Any:
        for event in chosen:
            if event.event_id == "c" and event.stripped:
                key, data = inbox_events.encode_event(
                    "replaced", "c", "nobody", b'"x"', "json", inbox.settings.signing_key
                )
                await inbox.store.delete(key)
                await inbox_events.put_event(
                    inbox.store, key, data, name="nobody", signing_key=inbox.settings.signing_key
                )
        return await reread(inbox, chosen)

    monkeypatch.setattr(ActorInbox, "_reread", replaced_before_read)
    assert actor.add.run(1) == 1  # (a and b)
    assert actor.add.run(1) == 1  # (c, found replaced)
    assert actor.add.run(1) == 1
    assert actor.got.run() == ["a", "b"]
    known = vc.get_runtime().core("replaced").inbox._known
    assert [(e.event_id, e.name) for e in known.values()] == [("c", "nobody")]


@pytest.mark.vactor_lanes("memory", "local")
def test_an_event_a_listing_finds_while_a_commit_set_the_backlog_aside_is_applied_after_it(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A periodic listing, run beside commits, is slow; a commit made meanwhile sets the
    backlog aside from what the cache held before that listing. The event the listing then
    finds (sent by another process) is applied by the commits after it, not left aside with
    the backlog until the next listing."""
    runtime = init(actor_store, inbox_interval=3600.0)
    actor = _backlog("race", 5)
    key, data = inbox_events.encode_event("race", "x", "handled", b"7", "json", runtime.settings.signing_key)
    _sync.sync(
        inbox_events.put_event(
            runtime.store, key, data, name="handled", signing_key=runtime.settings.signing_key
        )
    )
    inbox = runtime.core("race").inbox
    started, gate = threading.Event(), threading.Event()
    listing = inbox.store.list

    async def slow_list(prefix: str) -> object:
        if "/inbox/" in prefix:
            started.set()
            for _ in range(1000):
                if gate.is_set():
                    break
                await asyncio.sleep(0.01)
        return await listing(prefix)

    monkeypatch.setattr(inbox.store, "list", slow_list)
    inbox._listed_at = -math.inf  # (as if inbox_interval had passed)
    assert actor.add.run(1) == 1  # (the listing begins beside this commit)
    assert started.wait(30)
    assert actor.add.run(1) == 1  # (during the listing)
    gate.set()
    for _ in range(1000):
        if inbox._background is None:
            break
        time.sleep(0.01)
    assert inbox._background is None
    assert actor.add.run(1) == 1
    assert actor.got.run() == [7]


def _keeper(handles: bool) -> type:
    @vc.virtual_actor
    class Redefined:
        def __init__(self) -> None:
            self.got = 0

        def count(self) -> int:
            return self.got

        if handles:

            @vc.virtual_actor.on_event("later")
            def later(self, payload: object) -> None:
                self.got += 1

    return Redefined


@pytest.mark.vactor_lanes("memory", "local")
def test_events_set_aside_are_applied_by_a_warm_commit_once_the_class_handles_them(
    actor_store: StoreSpec,
) -> None:
    """The class defined again with a handler for the events set aside (a notebook's cell run
    again): the next commit applies them, without a listing between."""
    init(actor_store, inbox_interval=3600.0)
    actor = _keeper(False).get_or_create("later")
    for i in range(5):
        vc.send_event("later", "later", i, event_id=f"l{i}")
    assert actor.process_events() == 0
    assert actor.count.run() == 0
    handles = _keeper(True).get_or_create("later")
    assert handles.count.run() == 5


def _events(rng: random.Random) -> Iterator[InboxEvent]:
    for i in range(rng.randrange(1, 40)):
        time = float(rng.randrange(10))
        yield InboxEvent(
            key=f"k{i}",
            event_id=f"k{i}",
            name="n",
            payload=b"",
            serializer="json",
            time=time,
            sender=rng.choice("abc"),
            seq=i,
            seen=time + rng.choice((-5.0, 0.0, 5.0)),
        )


def test_an_order_without_the_events_set_aside_keeps_their_floors() -> None:
    """``fold_order`` of the events looked at, each with the floor its sender's events set
    aside before it leave (``aside_floors``), is the order of every event, those set aside
    left out."""
    rng = random.Random(222)
    for _ in range(300):
        every = list(_events(rng))
        aside = {e.key for e in every if rng.random() < 0.5}
        floors = aside_floors(every, aside)
        looked = [e for e in every if e.key not in aside]
        expected = [e.key for e in fold_order(every) if e.key not in aside]
        assert [e.key for e in fold_order(looked, floors)] == expected

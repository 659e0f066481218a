"""Post deletes where one request deletes many (S3 DeleteObjects), from a hostile review
(review-h38) of 9aa969b: a fold's applied posts are deleted at once, one request in flight per
folder (``PostBox._sender``), the keys of folds ending meanwhile queued (``PostBox._doomed``)
for the next request, ``PostBox.flush`` at shutdown. Each test attacks one promise: a request
lost or failed, a stalled endpoint, the sender cancelled by shutdown, an actor evicted while its
request is in flight, many actors folding at once. Three failed on the code they were written
against (fixed since): a shutdown whose post-delete flush hung never closed the store; a sender
kept busy added a done-callback per request to its task; keys queued past one request's worth
went as several requests at once. The others pin what held (each fails with the code it guards
broken).

No timing assertions: requests are held by :class:`StalledDeletes` until the test releases
them; what may hang is bounded by ``HANG``. On memory and local the store is told it deletes
1000 keys per request (as S3's DeleteObjects), so that the queueing path runs; moto runs the
real DeleteObjects. Helpers come from test_combining (imported by name, no tests)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from actors import OrderLog
from garbage import full_collection
from test_combining import (
    Switchable,
    commit_behind_its_back,
    foreign_box,
    init_switchable,
    pending_posts,
    post_adds,
)

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import RetryableStorageError, StorageError, StorageTimeoutError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.log import ActorLog, StepTakenError
from vactor_cloud.posting import PostBox, PostedCall
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import FaultConfig
from vactor_cloud.testing.lanes import Lane, StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: the longest anything here may take before the test calls it a hang
HANG = 60.0
_DELETE = frozenset({"delete"})


# -- helpers ------------------------------------------------------------------------------------
class StalledDeletes(Switchable):
    """Records each delete request (its keys) and how many are in flight; while ``stalled`` is
    set, holds each delete request until ``release`` is set, then answers it with
    ``release_with`` (an error: the request timed out, nothing deleted) or applies it (None).

    The hold is an asyncio sleep loop, not a thread: a cancelled request ends at once, as a
    real one cancelled by shutdown does, and leaves nothing behind. A request held ``timeout``
    seconds unreleased ends the hold for all (``timed_out`` set, ``release`` set: it and every
    later one goes on), and the module's autouse fixture fails the test naming it: code under
    test that waits for a held request fails after one ``timeout``, not at pytest's."""

    #: every instance made during the current test (checked by ``_held_requests_checked``)
    made: list[StalledDeletes] = []

    def __init__(
        self, inner: ObjectStore, config: FaultConfig | None = None, *, timeout: float = HANG
    ) -> None:
        super().__init__(inner, config)
        self.timeout = timeout
        self.timed_out = threading.Event()
        StalledDeletes.made.append(self)
        self.sent: list[tuple[str, ...]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.stalled = threading.Event()
        self.held = threading.Event()  # set once a request is being held
        self.release = threading.Event()
        self.release_with: Callable[[str], Exception] | None = None
        self.closed = threading.Event()
        #: when not None, held requests go one at a time: each takes one of these passes
        self.passes: int | None = None
        self._passes_lock = threading.Lock()
        #: the next delete request (once): "lost" (applied, its answer lost), "failed" (nothing
        #: applied) or "partial" (every key but the last deleted, then the error S3 gives for
        #: the keys a DeleteObjects left in place)
        self.fault: str | None = None

    def let_one_go(self) -> None:
        """(``passes`` mode) the held request, or the next one, goes."""
        with self._passes_lock:
            assert self.passes is not None
            self.passes += 1

    def _take_pass(self) -> bool:
        with self._passes_lock:
            if not self.passes:
                return False
            self.passes -= 1
            return True

    def check(self) -> None:
        """``AssertionError`` if a request was held ``timeout`` seconds and nobody released it."""
        if self.timed_out.is_set():
            raise AssertionError(
                f"a delete request was held {self.timeout} s and nobody released it (sent: "
                f"{self.sent}): the code under test waited for a held request, or the test never "
                "set release"
            )

    async def close(self) -> None:
        self.closed.set()
        await super().close()

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        if operation != "delete" or "/mail/" not in key:
            return await super()._around(operation, key, run, **batch)
        keys = batch.get("batch", (key,))
        self.sent.append(keys)
        fault, self.fault = self.fault, None  # (the requests sent from now on)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.stalled.is_set():
                self.held.set()
                until = time.monotonic() + self.timeout
                while not self.release.is_set() and not self._take_pass():
                    if time.monotonic() >= until:
                        self.timed_out.set()
                        self.release.set()
                        break
                    await asyncio.sleep(0.005)
                if self.release_with is not None:
                    raise self.release_with(key)
            if fault == "failed":
                raise StorageError(f"DeleteObjects of {len(keys)} keys: 500 InternalError (injected)", key)
            if fault == "partial":
                await self.inner.delete_many(keys[:-1])
                raise StorageError(
                    f"delete objects left 1 of {len(keys)} keys in place ({keys[-1]!r})", keys[-1]
                )
            result = await super()._around(operation, key, run, **batch)
            if fault == "lost":
                raise RetryableStorageError(f"DeleteObjects of {len(keys)} keys: applied, answer lost", key)
            return result
        finally:
            self.in_flight -= 1


@pytest.fixture(autouse=True)
def _held_requests_checked() -> Iterator[None]:
    """Fails the test if a :class:`StalledDeletes` request waited out its timeout unreleased."""
    StalledDeletes.made.clear()
    yield
    made, StalledDeletes.made = StalledDeletes.made, []
    for store in made:
        store.check()


def batched_folder(
    store_spec: StoreSpec, config: FaultConfig | None = None, **settings: Any
) -> StalledDeletes:
    """This process folds actor "a" (``OrderLog``) on a store that deletes up to 1000 keys per
    request: its first call loses a race, posts, takes the lease and folds another
    process's post ("other/0", at step 2). Returns the store, its first delete done."""
    settings.setdefault("combine_window", 60.0)
    spec_store = init_switchable(store_spec, **settings)
    runtime = vc.get_runtime()
    store = StalledDeletes(spec_store.inner, config)
    runtime.store = store
    store.delete_batch = 1000  # as S3's DeleteObjects (moto: it is)
    store.inner.delete_batch = 1000
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["other/0"])
    commit_behind_its_back("a")  # our next commit loses the race, posts, takes the lease, folds
    log.add.run("me/1")
    return store


def box_of(actor_id: str) -> PostBox:
    box = vc.get_runtime().core(actor_id)._postbox
    assert box is not None, "this process never folded nor posted"
    return box


def wait_until(what: Callable[[], bool], message: str) -> None:
    """Wait (bounded by HANG) for ``what`` to hold."""
    deadline = time.monotonic() + HANG
    while not what():
        assert time.monotonic() < deadline, f"{message} {_state()}"
        time.sleep(0.01)


def _state() -> str:
    with contextlib.suppress(Exception):
        box = box_of("a")
        return f"sender={box._sender} doomed={box._doomed} deleting={box._deleting}"
    return ""


def deletes_idle(box: PostBox) -> bool:
    """No delete request of ``box`` in flight nor queued."""
    return box._sender is None and not box._doomed and not box._deleting


def post_add(token: str) -> str:
    """Another process posts ``add(token)``; the post's key."""
    box = foreign_box("a")
    call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex)
    post = _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # the next post gets a later millisecond: post order is key order
    return post.key


def fold_one(i: int) -> str:
    """Another process posts ``other/<i>``; our call ``me/<i+1>`` (we hold the lease) folds it
    and must get its result (bounded). Returns the post's key."""
    key = post_add(f"other/{i}")
    assert vc.get(OrderLog.get_or_create("a").add.run_async(f"me/{i + 1}"), timeout=HANG) > 0
    return key


def applied() -> list[str]:
    result: list[str] = OrderLog.get_or_create("a").applied.run()
    return result


def in_order(folds: int) -> list[str]:
    """What ``batched_folder`` and ``folds`` calls of ``fold_one`` (1, 2, ...) applied, each once."""
    return ["me/0"] + [t for i in range(folds + 1) for t in (f"other/{i}", f"me/{i + 1}")]


def in_store() -> set[str]:
    """The posts in the store (read past this process's view)."""
    return set(_sync.sync(vc.get_runtime().store.inner.list(posts_prefix("a"))))


# -- the helper's own bound -----------------------------------------------------------------------
@pytest.mark.vactor_lanes("memory")
def test_a_held_delete_request_nobody_releases_ends_after_its_timeout_and_fails_the_test(
    store_spec: StoreSpec,
) -> None:
    """A stalled delete that nobody releases waits ``timeout``, not forever: it then goes on
    (and so does every later one), and ``check`` fails naming it. Without the bound a test
    whose code waits for a held request hung until pytest's timeout, saying nothing."""

    async def delete_held(store: StalledDeletes) -> None:
        await store.inner.put("a/mail/p1", b"x")
        store.stalled.set()
        await asyncio.wait_for(store.delete("a/mail/p1"), HANG)  # the bound is the store's own
        assert await store.inner.head("a/mail/p1") is None  # it went on: applied
        await asyncio.wait_for(store.delete("a/mail/p2"), HANG)  # the hold is over for all

    store = StalledDeletes(store_spec.open(), timeout=0.05)
    asyncio.run(delete_held(store))
    assert store.timed_out.is_set() and store.release.is_set()
    with pytest.raises(AssertionError, match=r"held 0\.05 s and nobody released it"):
        store.check()
    StalledDeletes.made.remove(store)  # (checked here: the autouse fixture need not)


# -- (a) a request lost or failed ---------------------------------------------------------------
@pytest.mark.parametrize("fault", ["lost", "failed", "partial"])
@pytest.mark.usefixtures("runtime_off")
def test_a_delete_request_lost_or_failed_raises_to_no_caller_and_a_later_fold_deletes_what_it_left(
    store_spec: StoreSpec, fault: str
) -> None:
    """One fold applies two posts; their DeleteObjects is applied with its answer lost, fails
    (nothing deleted) or deletes one and answers an error for the other. No caller hears of
    it; what it left is listed again (not hidden for good as "being deleted"), found stale by
    the cursor (never applied again) and deleted by the next fold."""
    store = batched_folder(store_spec)
    box = box_of("a")
    wait_until(lambda: deletes_idle(box), "the first fold's delete never ended")
    store.stalled.set()  # the next request is held: the two folds after it share one
    fold_one(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    store.stalled.clear()
    two = [fold_one(2), fold_one(3)]
    store.fault = fault  # (the next request: theirs)
    store.release.set()
    wait_until(
        lambda: store.fault is None and deletes_idle(box), "the faulty delete was never sent, or never ended"
    )
    faulty = store.sent.index(tuple(two))  # one request for both
    key = fold_one(4)
    wait_until(lambda: not in_store(), f"posts left behind: {in_store()}")
    assert applied() == in_order(4)
    # What the faulty request left was deleted by a later request (a later fold's), never applied.
    later = {k for sent in store.sent[faulty + 1 :] for k in sent}
    assert {"lost": set(), "failed": set(two), "partial": {two[1]}}[fault] <= later, store.sent
    assert key in {k for sent in store.sent for k in sent}
    wait_until(lambda: deletes_idle(box), "deletes never ended")
    _sync.sync(box.keys())
    assert not box._deleted, box._deleted  # the bookkeeping of finished deletes is dropped


@pytest.mark.usefixtures("runtime_off")
def test_a_delete_objects_answering_errors_for_some_keys_leaves_them_for_a_later_fold_on_s3(
    store_spec: StoreSpec, store_lane: Lane
) -> None:
    """The real S3 path: a DeleteObjects answered 200 with per-key ``Errors`` (S3 deletes the
    others) is a StorageError to the folder, swallowed there; the keys left are deleted by the
    next fold, never applied again."""
    if store_lane.name != "moto":
        pytest.skip("S3's DeleteObjects answer (moto)")
    store = batched_folder(store_spec)
    box = box_of("a")
    wait_until(lambda: deletes_idle(box), "the first fold's delete never ended")
    s3 = store.inner
    real_call = s3._call
    refused: list[str] = []

    async def refuse_the_last(method: str, key: str, mode: Any = None, **params: Any) -> Any:
        if method != "delete_objects" or refused or len(params["Delete"]["Objects"]) < 2:
            return await real_call(method, key, mode, **params)
        *others, last = params["Delete"]["Objects"]
        refused.append(last["Key"])
        await real_call(method, key, mode, Delete={**params["Delete"], "Objects": others})
        return {"Errors": [{"Key": last["Key"], "Code": "InternalError", "Message": "injected"}]}

    store.stalled.set()  # the next request is held: the two folds after it share one
    fold_one(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    store.stalled.clear()
    two = [fold_one(2), fold_one(3)]
    s3._call = refuse_the_last
    store.release.set()
    wait_until(lambda: bool(refused) and deletes_idle(box), "no DeleteObjects was sent, or it never ended")
    faulty = store.sent.index(tuple(two))
    fold_one(4)
    wait_until(lambda: not in_store(), f"posts left behind: {in_store()}")
    assert applied() == in_order(4)
    assert len(refused) == 1, refused
    assert two[1] in {k for sent in store.sent[faulty + 1 :] for k in sent}, store.sent


# -- (b) a stalled endpoint ---------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_stalled_delete_request_holds_back_no_fold_and_the_next_request_carries_every_key_queued_meanwhile(
    store_spec: StoreSpec,
) -> None:
    """The one delete request in flight hangs (until the store's request timeout, here until
    released with ``StorageTimeoutError``: nothing deleted). Meanwhile folds go on and their
    callers get their results; no second request goes; the queue holds each applied post
    once. Once the request times out, the next one carries every key queued meanwhile, and
    the timed-out request's posts are deleted by a later fold, never applied again."""
    store = batched_folder(store_spec)
    box = box_of("a")
    wait_until(lambda: deletes_idle(box), "the first fold's delete never ended")
    before = len(store.sent)
    store.release_with = lambda key: StorageTimeoutError(f"DELETE {key}: no answer (held)", key, True)
    store.stalled.set()
    first = fold_one(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    store.stalled.clear()  # (later requests go through: the next one must wait for this one)
    queued = [fold_one(i) for i in range(2, 7)]  # each caller gets its result meanwhile
    assert len(store.sent) == before + 1, store.sent[before:]
    assert box._doomed == queued  # each applied post once, in fold order
    assert in_store() == {first, *queued}
    store.release.set()
    wait_until(lambda: deletes_idle(box), "the queued deletes were never sent")
    # One request for them all; after it, only the timed-out request's post, found stale by a
    # later fold (the lease holder's, maybe before the next call).
    assert store.sent[before + 1] == tuple(queued), store.sent[before:]
    assert all(sent == (first,) for sent in store.sent[before + 2 :]), store.sent[before:]
    fold_one(7)
    wait_until(lambda: not in_store(), f"posts left behind: {in_store()}")
    assert applied() == in_order(7)
    assert store.most_in_flight == 1


@pytest.mark.usefixtures("runtime_off")
def test_more_keys_queued_than_one_request_takes_go_one_request_after_the_other(
    store_spec: StoreSpec,
) -> None:
    """A stall long enough for more keys to queue than one request carries (1000 on S3; 3
    here, as the conformance suite lowers it): once it ends they went as several requests at
    once (``delete_many`` sends up to 16 in parallel), past the bound of one in flight per
    folder, just when the endpoint is recovering. One after the other, each full."""
    store = batched_folder(store_spec)
    box = box_of("a")
    wait_until(lambda: deletes_idle(box), "the first fold's delete never ended")
    store.delete_batch = store.inner.delete_batch = 3
    before = len(store.sent)
    store.stalled.set()
    first = fold_one(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    store.stalled.clear()
    queued = [fold_one(i) for i in range(2, 9)]
    store.release.set()
    wait_until(lambda: deletes_idle(box) and not in_store(), f"posts left behind: {in_store()}")
    assert store.sent[before:] == [(first,), tuple(queued[:3]), tuple(queued[3:6]), tuple(queued[6:])]
    assert store.most_in_flight == 1
    assert applied() == in_order(8)


@pytest.mark.usefixtures("runtime_off")
def test_a_sender_kept_busy_by_folds_for_many_requests_holds_no_more_memory_than_for_one(
    store_spec: StoreSpec,
) -> None:
    """Folds keep ending while the request in flight lasts (a hot actor): the one sender task
    sends request after request and never ends. Each request registered its task again in
    ``_deleting`` with one more done-callback on that same task: a list growing by one entry
    per request for as long as the load lasts (a leak, one entry per DeleteObjects: 11 after
    10 requests, past the bound of 3 here)."""
    store = batched_folder(store_spec)
    box = box_of("a")
    wait_until(lambda: deletes_idle(box), "the first fold's delete never ended")
    store.passes = 0
    store.stalled.set()
    fold_one(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    sender = box._sender
    assert sender is not None
    for i in range(2, 11):
        key = fold_one(i)  # queued behind the request in flight
        sent = len(store.sent)
        store.let_one_go()  # the request in flight ends: the same sender sends the queued key
        wait_until(lambda n=sent: len(store.sent) > n, "the queued key was never sent")
        assert store.sent[-1] == (key,) and box._sender is sender
    assert len(sender._callbacks or ()) <= 3, len(sender._callbacks or ())  # type: ignore[attr-defined]
    store.release.set()
    wait_until(lambda: deletes_idle(box), "deletes never ended")
    assert applied() == in_order(10)


# -- (c) the sender cancelled by shutdown --------------------------------------------------------
async def _post_delete_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "").startswith("PostBox.")
    ]


@pytest.mark.parametrize("stall", ["the one in flight", "every request"])
@pytest.mark.usefixtures("runtime_off")
def test_shutdown_past_its_timeout_with_a_delete_request_stalled_returns_and_leaves_no_task(
    store_spec: StoreSpec, stall: str
) -> None:
    """``close(timeout=...)`` runs out while the delete request in flight hangs, keys queued
    behind it: the sender is cancelled and gives up its slot; ``flush`` sends the queued keys
    (or, the endpoint stalled for every request, gives up with ``close``); ``close`` returns
    (bounded), the connections are released, no delete task is left; whatever was not deleted
    is deleted by the next folder (another runtime), never applied again."""
    store = batched_folder(store_spec)
    box = box_of("a")
    wait_until(lambda: deletes_idle(box), "the first fold's delete never ended")
    store.stalled.set()
    first = fold_one(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    if stall == "the one in flight":
        store.stalled.clear()
    queued = [fold_one(2), fold_one(3)]
    assert box._doomed == queued
    runtime = vc.get_runtime()
    newest = runtime.core("a").record
    assert newest is not None
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": 0.2}, daemon=True)
    closer.start()
    closer.join(HANG)
    assert not closer.is_alive(), "close() hangs on a stalled delete"
    assert box._sender is None
    assert _sync.sync(_post_delete_tasks()) == []
    assert store.closed.is_set(), "the store's connections were not released"
    head = _sync.sync(ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key).read_head())
    assert head is not None and head.step == newest.step, "HEAD pointers were not flushed"
    left = set(_sync.sync(store.inner.list(posts_prefix("a"))))
    assert left == ({first} if stall == "the one in flight" else {first, *queued}), left
    store.stalled.clear()
    store.release.set()
    vc.shutdown()
    # Another folder: this process again, with a new runtime (no memory of the deletes).
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    assert applied() == in_order(3)
    post_add("other/4")
    commit_behind_its_back("a")
    assert vc.get(log.add.run_async("me/5"), timeout=HANG) > 0
    wait_until(lambda: not pending_posts("a"), f"posts left behind: {pending_posts('a')}")
    assert applied() == [*in_order(3), "other/4", "me/5"]


# -- (d) eviction, many folders -----------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_many_actors_each_have_at_most_one_delete_request_in_flight_one_per_folder_in_the_process(
    store_spec: StoreSpec,
) -> None:
    """The bound is per folder (per actor this process folds), not per process: with every
    delete stalled, three folding actors have three requests in flight, never more, each
    actor's later folds queued behind its own."""
    spec_store = init_switchable(store_spec, combine_window=60.0)
    runtime = vc.get_runtime()
    store = StalledDeletes(spec_store.inner)
    runtime.store = store
    store.delete_batch = store.inner.delete_batch = 1000
    actors = ["a", "b", "c"]
    for actor in actors:
        log = OrderLog.get_or_create(actor)
        log.add.run("me/0")
    store.stalled.set()
    per_actor: dict[str, int] = {}
    for round_ in range(3):
        for actor in actors:
            post_adds(foreign_box(actor), [f"other/{round_}"])
            if round_ == 0:
                commit_behind_its_back(actor)  # loses a race: posts, takes the lease, folds
            assert vc.get(OrderLog.get_or_create(actor).add.run_async(f"me/{round_ + 1}"), timeout=HANG) > 0
    assert store.held.wait(HANG)
    wait_until(lambda: store.in_flight == len(actors), f"{store.in_flight} delete requests in flight")
    for sent in store.sent:
        actor = sent[0].split("/")[1]
        per_actor[actor] = per_actor.get(actor, 0) + 1
    assert per_actor == dict.fromkeys(actors, 1), store.sent
    store.release.set()
    for actor in actors:
        wait_until(lambda a=actor: not pending_posts(a), f"{actor}: posts left behind")
    assert store.most_in_flight == len(actors)
    assert len(store.sent) == 2 * len(actors), store.sent  # each actor's later folds share one


@pytest.mark.usefixtures("runtime_off")
def test_an_actor_evicted_while_its_delete_request_is_held_folds_again_and_nothing_is_applied_twice(
    store_spec: StoreSpec,
) -> None:
    """The folding actor is evicted from the cache while its delete request hangs, a later
    fold's keys queued behind it. Its sender still sends them once the request ends (the
    evicted core's PostBox lives on in its task); the actor, loaded again, folds the next
    posts without waiting for the old request, finds whatever is left stale by the cursor,
    applies nothing twice; shutdown leaves no delete task."""
    # (combine_window: the holder's lease goes idle soon after its last fold, so that it can be
    # evicted; every call below loses a race and folds.)
    store = batched_folder(store_spec, max_cached_actors=1, combine_window=0.5)
    runtime = vc.get_runtime()
    old = box_of("a")
    wait_until(lambda: deletes_idle(old), "the first fold's delete never ended")

    def fold_raced(i: int) -> str:
        key = post_add(f"other/{i}")
        core = runtime.core("a")
        for _ in range(100):  # (the holder's own folds may take the step first)
            mine = _sync.sync(core.revalidate())
            theirs = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
            with contextlib.suppress(StepTakenError):
                _sync.sync(core.log.put_step(theirs))
                break
        assert vc.get(OrderLog.get_or_create("a").add.run_async(f"me/{i + 1}"), timeout=HANG) > 0
        return key

    store.stalled.set()
    first = fold_raced(1)
    assert store.held.wait(HANG), "the fold's posts were not deleted"
    store.stalled.clear()
    queued = fold_raced(2)
    assert old._doomed == [queued]
    wait_until(lambda: runtime._cores["a"].idle, "the folder never went idle")
    OrderLog.get_or_create("b").add.run("b/0")  # the cache holds one actor: "a" goes
    assert "a" not in runtime._cores
    full_collection()
    fold_raced(3)
    assert applied() == in_order(3)
    new = box_of("a")
    if new is not old:
        # The actor loaded again lists the posts the old request holds and queues, finds them
        # stale and deletes them itself: two requests in flight for one actor (one per PostBox).
        assert old._doomed == [queued], old._doomed
        wait_until(lambda: not in_store(), f"posts left behind: {in_store()}")
        assert store.most_in_flight == 2
        assert sum(first in sent for sent in store.sent) == 2, store.sent  # the old request's, the new one's
    # else: the evicted core was still referenced (by its last fold's work, on a loaded host)
    # and the cache took it back (never two live cores of one actor, test_review_actor_cache):
    # its one sender sends the queued keys after the held request, checked below.
    store.release.set()
    wait_until(lambda: deletes_idle(old), "the evicted actor's queued deletes were never sent")
    fold_raced(4)
    wait_until(lambda: not in_store(), f"posts left behind: {in_store()}")
    assert applied() == in_order(4)
    vc.shutdown()
    assert _sync.sync(_post_delete_tasks()) == []

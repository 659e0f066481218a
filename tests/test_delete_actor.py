"""Deleting an actor (``vc.delete_actor``): a tombstone step committed like any step, so it
serializes with every writer, poster and compaction.

Each test attacks one promise: a writer holding a cached step loses to the tombstone and
hears "deleted" (its old state never comes back); posts pending at the delete fail, never
apply; two deletes commit one tombstone; a compaction beside a delete keeps the tombstone;
``get_or_create`` after a delete makes a fresh actor; an id never used is not found."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import pickle
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest
from cli_harness import Vactor, one_line_error
from delete_helpers import LosesFirstTombstoneRace, newest, steps, tombstones
from store_helpers import init, other_process

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from vactor_cloud.compaction import compact
from vactor_cloud.deletion import delete, is_deleted
from vactor_cloud.errors import ActorDeletedError, ActorNotFoundError
from vactor_cloud.future import ActorFuture
from vactor_cloud.keys import actor_prefix, posts_prefix
from vactor_cloud.lease import LeaseStore
from vactor_cloud.posting import PostBox, PostedCall, applied, decode_outcomes
from vactor_cloud.runtime import Runtime
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Account:
    def __init__(self, opening: int = 0) -> None:
        self.balance = opening
        self.tokens: list[str] = []

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.balance

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


@vc.virtual_actor
class Note:
    def __init__(self, text: str) -> None:
        self.text = text

    @vc.virtual_actor.readonly
    def read(self) -> str:
        return self.text


@vc.virtual_actor
class Journal:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    @vc.virtual_actor.on_event("entry")
    def entry(self, payload: Any) -> int:
        self.entries.append(payload)
        return len(self.entries)


def call_on(runtime: Runtime, actor_id: str, method: str, *args: Any, readonly: bool = False) -> Any:
    future = submit_on(runtime, actor_id, method, *args, readonly=readonly)
    return future.result(60)


def submit_on(
    runtime: Runtime, actor_id: str, method: str, *args: Any, readonly: bool = False
) -> ActorFuture[Any]:
    future: ActorFuture[Any] = ActorFuture()
    call = PendingCall.by_value(method, args, {}, readonly=readonly, future=future, call_id=uuid.uuid4().hex)
    core = runtime.core(actor_id)
    if readonly:
        runtime.spawn(lambda: core.read(call))
    else:
        core.submit(call)
    return future


# -- the error, loads, reads, calls --------------------------------------------------------------
def test_a_deleted_actor_refuses_loads_reads_and_calls_with_an_error_naming_it(spec: StoreSpec) -> None:
    init(spec)
    handle = Account.get_or_create("acct-1", 10)
    handle.deposit.run(5)
    assert vc.delete_actor("acct-1") is True
    for attempt in (
        lambda: vc.get_actor("acct-1"),
        lambda: handle.deposit.run(1),
        lambda: handle.get.run(),  # noqa: PLW0108 (the attribute lookup loads the actor: inside)
    ):
        with pytest.raises(ActorDeletedError) as caught:
            attempt()
        error = caught.value
        assert isinstance(error, ActorNotFoundError) and isinstance(error, LookupError)
        assert "'acct-1'" in str(error) and "deleted" in str(error)
        assert "get_or_create" in str(error)  # what to do to use the id again
        assert pickle.loads(pickle.dumps(error)).actor_id == "acct-1"
    # Its past stays readable until a compaction deletes it; the tombstone holds no state.
    assert handle.state_at(1).balance == 15
    with pytest.raises(ActorDeletedError):
        handle.state_at(2)
    assert [e.step for e in handle.history()] == [2, 1, 0]
    assert "acct-1" not in [info.actor_id for info in vc.list_actors()]
    # A cold process sees the same: it loads the log and finds the tombstone.
    other = other_process(spec)
    try:
        with pytest.raises(ActorDeletedError):
            other.load("acct-1")
        with pytest.raises(ActorDeletedError):
            call_on(other, "acct-1", "get", readonly=True)
        with pytest.raises(ActorDeletedError):
            call_on(other, "acct-1", "deposit", 1)
    finally:
        other.close()
    # Nothing was committed on the tombstone by the refused calls.
    assert steps(vc.get_runtime(), "acct-1") == [0, 1, 2] and tombstones(vc.get_runtime(), "acct-1") == [2]


def test_a_read_from_a_process_whose_cache_is_fresh_still_sees_the_delete(spec: StoreSpec) -> None:
    """A read probes past its cached step: a process that read a moment ago hears "deleted"."""
    init(spec)
    Account.get_or_create("acct-2", 3)
    other = other_process(spec, fresh_window=3600.0)
    try:
        assert call_on(other, "acct-2", "get", readonly=True) == 3
        assert vc.delete_actor("acct-2") is True
        with pytest.raises(ActorDeletedError):
            call_on(other, "acct-2", "get", readonly=True)
    finally:
        other.close()


def test_deleting_an_id_never_used_is_not_found_and_writes_nothing(spec: StoreSpec) -> None:
    runtime = init(spec)
    with pytest.raises(ActorNotFoundError) as caught:
        vc.delete_actor("never-made")
    assert not isinstance(caught.value, ActorDeletedError)
    assert _sync.sync(runtime.store.list(actor_prefix("never-made"))) == []


def test_deleting_a_deleted_actor_again_says_so_and_writes_nothing(spec: StoreSpec) -> None:
    runtime = init(spec)
    Account.get_or_create("acct-3")
    assert vc.delete_actor("acct-3") is True
    assert vc.delete_actor("acct-3") is False
    assert steps(runtime, "acct-3") == [0, 1]


# -- races ----------------------------------------------------------------------------------------
class HeldStepPut(HoldOne):
    """Holds the next step put of the wrapped runtime once armed."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, "put", "/steps/", timeout=60.0)


def test_a_writer_with_a_cached_step_loses_to_the_delete_and_its_old_state_never_returns(
    spec: StoreSpec,
) -> None:
    """The writer's put of step N+1 is held while another process deletes (tombstone at N+1):
    released, the put meets the tombstone, and the call fails "deleted", committing nothing."""
    runtime = init(spec, fresh_window=3600.0)
    held = HeldStepPut(runtime.store)
    runtime.store = held  # before any core exists: this runtime's logs use it
    handle = Account.get_or_create("acct-4", 100)
    handle.deposit.run(1)  # cached: step 1
    held.hold()
    future = handle.deposit.run_async(1000)
    assert held.held.wait(30), "the writer never reached its put"
    other = other_process(spec)
    try:
        assert _sync.sync(delete(other.log("acct-4"), other.settings, keep=other.keep)) is not None
    finally:
        other.close()
    held.release.set()
    with pytest.raises(ActorDeletedError):
        future.result(60)
    assert steps(runtime, "acct-4") == [0, 1, 2] and tombstones(runtime, "acct-4") == [2]
    # The id is free; the old balance (101, or 1101) is gone for good.
    assert Account.get_or_create("acct-4", 7).get.run() == 7


def test_two_deletes_racing_commit_one_tombstone(spec: StoreSpec) -> None:
    runtime = init(spec)
    held = HeldStepPut(runtime.store)
    runtime.store = held
    Account.get_or_create("acct-5")
    held.hold()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(vc.delete_actor, "acct-5")
        assert held.held.wait(30), "the first delete never reached its put"
        other = other_process(spec)
        try:
            assert _sync.sync(delete(other.log("acct-5"), other.settings, keep=other.keep)) is not None
        finally:
            other.close()
        held.release.set()
        assert first.result(60) is False  # it lost to the other delete: already deleted
    assert steps(runtime, "acct-5") == [0, 1] and tombstones(runtime, "acct-5") == [1]


# -- posts ------------------------------------------------------------------------------------------
def foreign_post(runtime: Runtime, actor_id: str, token: str) -> str:
    """Another process's posted ``add(token)`` (its own sender id); the call id."""
    box = PostBox(runtime.store, actor_id, runtime.settings.signing_key)
    call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex)
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # the next post gets a later millisecond
    return call.call_id


def test_posts_pending_at_the_delete_fail_with_deleted_and_never_apply(spec: StoreSpec) -> None:
    """Posted calls waiting for a fold when the actor is deleted are folded into the tombstone
    as failures (their posters read "deleted" there); none is applied, not to a later actor of
    the same id either, and their posts are removed."""
    runtime = init(spec, combine_after=1, combine_window=60.0)
    Account.get_or_create("acct-6").add.run("me/0")
    ids = [foreign_post(runtime, "acct-6", f"other/{i}") for i in range(2)]
    assert vc.delete_actor("acct-6") is True
    tomb = newest(runtime, "acct-6")
    assert is_deleted(tomb)
    outcomes = decode_outcomes(tomb.posted)
    for call_id in ids:
        outcome = outcomes[call_id]
        assert not outcome.ok and isinstance(outcome.value, ActorDeletedError)
    deadline = time.monotonic() + 60
    while _sync.sync(runtime.store.list(posts_prefix("acct-6"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sync.sync(runtime.store.list(posts_prefix("acct-6"))) == []
    # A new actor under the id never runs them (the cursor the tombstone advanced carries on).
    fresh = Account.get_or_create("acct-6")
    fresh.add.run("new/0")
    assert fresh.applied.run() == ["new/0"]


def test_a_post_written_after_the_delete_fails_at_the_next_fold_on_the_tombstone(spec: StoreSpec) -> None:
    """A process that posts to the actor after it was deleted (it had not heard) and then
    folds, as the lease holder or a poster taking over does, fails its calls and every
    post pending with "deleted": the fold commits another tombstone recording them."""
    runtime = init(spec, combine_after=1, combine_window=60.0)
    Account.get_or_create("acct-7").add.run("me/0")
    assert vc.delete_actor("acct-7") is True
    late = foreign_post(runtime, "acct-7", "late/0")
    before = newest(runtime, "acct-7")
    core = runtime.core("acct-7")
    # Fold as a lease holder does (a fold-only commit: no calls of its own).
    assert core._lease_for_fold()
    core._commit([])
    after = newest(runtime, "acct-7")
    assert after.step == before.step + 1 and is_deleted(after)
    sender = next(iter(after.extra["post_cursor"]))
    assert applied(after.extra, sender, 0)
    outcome = decode_outcomes(after.posted)[late]
    assert not outcome.ok and isinstance(outcome.value, ActorDeletedError)
    fresh = Account.get_or_create("acct-7")
    fresh.add.run("new/0")
    assert fresh.applied.run() == ["new/0"]


def test_a_poster_waiting_for_a_fold_when_the_actor_is_deleted_hears_deleted(spec: StoreSpec) -> None:
    """Another process posted its call (it lost a race, and a third process holds the folder
    lease and folds nothing): the delete fails the post in the tombstone, and the poster's
    wait ends with ActorDeletedError, read there, long before its lease or commit_timeout."""
    runtime = init(spec, combine_after=1, combine_window=60.0)
    handle = Account.get_or_create("acct-12")
    handle.add.run("me/0")
    poster = other_process(spec, combine_after=1, combine_window=60.0, commit_timeout=60.0)
    try:
        assert call_on(poster, "acct-12", "add", "b/0") == 2  # its cache: step 2
        leases = LeaseStore(runtime.store, "acct-12", runtime.settings.signing_key)
        assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 60.0, 2)) is not None
        # A step behind the poster's back: its next put loses the race, and it posts.
        core = poster.core("acct-12")
        mine = core.record
        assert mine is not None
        behind = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
        _sync.sync(core.log.put_step(behind))
        waiting = submit_on(poster, "acct-12", "add", "b/1")
        deadline = time.monotonic() + 30
        while not _sync.sync(runtime.store.list(posts_prefix("acct-12"))) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _sync.sync(runtime.store.list(posts_prefix("acct-12"))), "the call was never posted"
        assert vc.delete_actor("acct-12") is True
        with pytest.raises(ActorDeletedError):
            waiting.result(30)
    finally:
        poster.close()
    fresh = Account.get_or_create("acct-12")
    fresh.add.run("new/0")
    assert fresh.applied.run() == ["new/0"]


@pytest.mark.parametrize("then", ["unknown", "hang"], ids=["unknown", "cancelled"])
def test_a_delete_that_ends_in_an_error_gives_back_the_folder_lease_it_took_over(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """A delete that lost a race takes the folder lease over (so a folder stops winning); if
    its next put then ends in an error (an outcome it cannot learn, or the caller gives up and
    cancels it), the lease is given back: posters would otherwise wait out ``lease_seconds``
    before anyone folds their calls."""
    runtime = init(spec, lease_seconds=600.0)
    Account.get_or_create("acct-15").add.run("me/0")
    puts = LosesFirstTombstoneRace(then).install(monkeypatch)
    deleting = delete(runtime.log("acct-15"), runtime.settings, keep=runtime.keep)
    if then == "unknown":
        with pytest.raises(vc.CommitOutcomeUnknownError):
            _sync.sync(deleting, 60)
    else:
        _sync.sync(_given_up_once_retried(deleting, puts), 120)
    assert puts.tombstone_puts == 2, "the delete never took the lease and tried again"
    leases = LeaseStore(runtime.store, "acct-15", runtime.settings.signing_key)
    deadline = time.monotonic() + 30
    lease = _sync.sync(leases.read())
    while lease.valid() and time.monotonic() < deadline:  # (a cancelled delete releases on its loop)
        time.sleep(0.02)
        lease = _sync.sync(leases.read())
    assert lease.holder, "the delete never took the lease over"
    assert not lease.valid(), (
        f"the lease is still held, by {lease.holder}, for {lease.expires - time.time():.0f} s"
    )
    monkeypatch.undo()
    assert vc.delete_actor("acct-15") is True  # (the first made no tombstone: the racer won)


async def _given_up_once_retried(deleting: Coroutine[Any, Any, bool], puts: LosesFirstTombstoneRace) -> None:
    """Run ``deleting`` until its second tombstone put hangs, then cancel it, as a caller that
    gave up does (``_sync.sync``'s timeout: the task cancelled, its clean-up left to the loop).
    (It was ``_sync.sync(deleting, 5)``: 5 s of waiting for a put that had hung since about
    0.1 s.)"""
    task = asyncio.ensure_future(deleting)
    try:
        assert await asyncio.to_thread(puts.retried.wait, 60), "the delete never tried again"
    finally:
        task.cancel()


# -- beside compaction, and after -----------------------------------------------------------------
def test_a_compaction_after_a_delete_leaves_the_tombstone_alone_and_the_actor_deleted(
    spec: StoreSpec,
) -> None:
    runtime = init(spec, fresh_window=0.0)
    handle = Account.get_or_create("acct-8", 1)
    for _ in range(4):
        handle.deposit.run(1)
    assert vc.delete_actor("acct-8") is True
    report = _sync.sync(compact(runtime.log("acct-8"), keep_last=1, min_age=0, fresh_window=0.0))
    assert report.newest == 5 and steps(runtime, "acct-8") == [5] == tombstones(runtime, "acct-8")
    with pytest.raises(ActorDeletedError):
        handle.get.run()
    other = other_process(spec)
    try:
        with pytest.raises(ActorDeletedError):
            other.load("acct-8")
    finally:
        other.close()
    assert Account.get_or_create("acct-8", 50).deposit.run(1) == 51
    assert steps(runtime, "acct-8") == [5, 6, 7]


def test_a_delete_whose_put_is_held_across_a_compaction_still_commits_after_the_newest(
    spec: StoreSpec,
) -> None:
    """A compaction deletes every step but the newest while the tombstone's put is held:
    released, the put lands above the watermark and the actor is deleted."""
    runtime = init(spec, fresh_window=0.0)
    held = HeldStepPut(runtime.store)
    runtime.store = held
    handle = Account.get_or_create("acct-9", 1)
    handle.deposit.run(1)
    handle.deposit.run(1)
    held.hold()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        deleting = pool.submit(vc.delete_actor, "acct-9")
        assert held.held.wait(30)
        other = other_process(spec, fresh_window=0.0)
        try:
            report = _sync.sync(compact(other.log("acct-9"), keep_last=1, min_age=0, fresh_window=0.0))
            assert (report.newest, report.watermark) == (2, 2)
        finally:
            other.close()
        held.release.set()
        assert deleting.result(60) is True
    assert steps(runtime, "acct-9") == [2, 3] and tombstones(runtime, "acct-9") == [3]
    with pytest.raises(ActorDeletedError):
        handle.get.run()


def test_get_or_create_after_a_delete_makes_a_fresh_actor_of_any_class(spec: StoreSpec) -> None:
    runtime = init(spec)
    old = Account.get_or_create("acct-10", 500)
    old.deposit.run(1)
    other = other_process(spec, fresh_window=3600.0)
    try:
        assert call_on(other, "acct-10", "get", readonly=True) == 501  # other caches step 1
        assert vc.delete_actor("acct-10") is True
        fresh = Account.get_or_create("acct-10", 5)
        assert fresh.get.run() == 5
        assert fresh.deposit.run(1) == 6
        assert steps(runtime, "acct-10") == [0, 1, 2, 3, 4]
        assert tombstones(runtime, "acct-10") == [2]
        # The process that cached the old actor calls the new one.
        assert call_on(other, "acct-10", "deposit", 10) == 16
        assert fresh.history()[0].step == 5
        # Deleted again, the id can become an actor of another class.
        assert vc.delete_actor("acct-10") is True
        assert Note.get_or_create("acct-10", "hello").read.run() == "hello"
        assert call_on(other, "acct-10", "read", readonly=True) == "hello"
    finally:
        other.close()


def test_a_process_that_heard_deleted_calls_the_actor_created_again_since(spec: StoreSpec) -> None:
    """A cached tombstone is never taken for the newest step without a probe: a process that
    heard "deleted" a moment ago (its cache fresh) calls the actor created under the id since."""
    init(spec)
    Account.get_or_create("acct-11", 1)
    assert vc.delete_actor("acct-11") is True
    other = other_process(spec, fresh_window=3600.0)
    try:
        with pytest.raises(ActorDeletedError):
            call_on(other, "acct-11", "deposit", 1)  # other now caches the tombstone
        Account.get_or_create("acct-11", 40)
        assert call_on(other, "acct-11", "deposit", 2) == 42
        assert other.load("acct-11").record is not None
    finally:
        other.close()


# -- the command ------------------------------------------------------------------------------------
def _seed_cli(url: str, actor_id: str) -> None:
    vc.init(url)
    try:
        Account.get_or_create(actor_id, 1).deposit.run(1)
    finally:
        vc.shutdown()


def test_vactor_delete_asks_unless_yes_and_then_the_actor_is_deleted(vactor: Vactor, store: str) -> None:
    _seed_cli(store, "cli-1")
    refused = vactor("delete", "cli-1")  # stdin is no terminal here: no one to ask
    assert refused.code == EXIT_USAGE
    line = one_line_error(refused)
    assert "'cli-1'" in line and "--yes" in line and "newest step 1" in line
    done = vactor("delete", "cli-1", "--yes")
    assert done.code == EXIT_OK, done.err
    assert "deleted actor 'cli-1'" in done.out and "vactor compact cli-1 --keep-last 1" in done.out
    again = vactor("--json", "delete", "cli-1", "--yes")
    assert again.code == EXIT_OK and '"already_deleted": true' in again.out
    shown = vactor("show", "cli-1")
    assert shown.code == EXIT_NOT_FOUND and "was deleted" in shown.err
    compacted = vactor("compact", "cli-1", "--keep-last", "1", "--min-age", "0", "--force")
    assert compacted.code == EXIT_OK, compacted.err
    history = vactor("--json", "history", "cli-1")
    assert history.code == EXIT_OK and '"step": 2' in history.out and '"step": 1' not in history.out
    _seed_cli(store, "cli-2")  # compact --all takes deleted actors too (ls leaves them out)
    assert vactor("delete", "cli-2", "--yes").code == EXIT_OK
    assert vactor("compact", "--all", "--keep-last", "1", "--min-age", "0", "--force").code == EXIT_OK
    history = vactor("--json", "history", "cli-2")
    assert history.code == EXIT_OK and '"step": 2' in history.out and '"step": 1' not in history.out
    listed = vactor("--json", "ls")
    assert listed.code == EXIT_OK and "cli-1" not in listed.out and "cli-2" not in listed.out
    never = vactor("delete", "never-made", "--yes")
    assert never.code == EXIT_NOT_FOUND and "no actor 'never-made'" in never.err


def test_a_wait_for_an_event_of_a_deleted_actor_ends_with_deleted(spec: StoreSpec) -> None:
    """A waiter drives the inbox and treats "not found" as "not created yet": for a deleted
    actor that would be a wait without end (timeout=None). It ends with ActorDeletedError."""
    init(spec)
    handle = Journal.get_or_create("journal-1")
    vc.send_event("journal-1", "entry", "before")
    assert handle.wait_for_event("entry", timeout=30) == 1
    assert vc.delete_actor("journal-1") is True
    with pytest.raises(ActorDeletedError):  # (a deleted actor takes events for the next one only)
        vc.send_event("journal-1", "entry", "after", event_id="e-after")
    vc.send_event("journal-1", "entry", "after", event_id="e-after", create=True)
    for wait in (
        lambda: handle.wait_for_event("entry", timeout=20, event_id="e-after"),
        lambda: _sync.sync(handle.wait_for_event_async("entry", timeout=20, event_id="e-after")),
    ):
        with pytest.raises(ActorDeletedError) as caught:
            wait()
        assert "applies no events" in "".join(getattr(caught.value, "__notes__", []))
    # The event stayed in the inbox: the next actor created under the id applies it.
    fresh = Journal.get_or_create("journal-1")
    assert fresh.wait_for_event("entry", timeout=30, event_id="e-after") == 1


def test_a_delete_amid_contended_writers_loses_no_acknowledged_call_and_applies_no_failed_one(
    spec: StoreSpec,
) -> None:
    """Two processes, two threads each, race and post for one actor (posting and folding under
    the lease); a third deletes it half way. Every call acknowledged is in the state the
    tombstone ended (the step before it); none that failed "deleted" is, and none applies
    after the tombstone."""
    runtime = init(spec, combine_after=1)
    Account.get_or_create("acct-13")
    procs = [other_process(spec, combine_after=1, commit_timeout=30.0) for _ in range(2)]
    outcomes: dict[str, BaseException | None] = {}
    started = concurrent.futures.ThreadPoolExecutor(4)

    def hammer(proc: Runtime, who: str) -> None:
        until = time.monotonic() + 90
        for i in range(5000):  # until the delete stops it (bounded in count and time)
            if time.monotonic() > until:
                return
            token = f"{who}/{i}"
            try:
                call_on(proc, "acct-13", "add", token)
                outcomes[token] = None
            except BaseException as exc:  # (recorded, checked below)
                outcomes[token] = exc
                if isinstance(exc, ActorDeletedError):
                    return

    try:
        running = [
            started.submit(hammer, proc, f"p{n}t{t}") for n, proc in enumerate(procs) for t in range(2)
        ]
        deadline = time.monotonic() + 60
        while len(outcomes) < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert vc.delete_actor("acct-13") is True
        for future in running:
            future.result(120)
    finally:
        started.shutdown()
        for proc in procs:
            proc.close()
    found = tombstones(runtime, "acct-13")
    assert found and steps(runtime, "acct-13")[-1] == found[-1]  # nothing after the tombstones
    before = _sync.sync(runtime.log("acct-13").read_step(found[0] - 1))
    assert before is not None
    kept = pickle.loads(before.state)["tokens"]
    acked = {t for t, e in outcomes.items() if e is None}
    deleted = {t for t, e in outcomes.items() if isinstance(e, ActorDeletedError)}
    others = {t: e for t, e in outcomes.items() if e is not None and t not in deleted}
    assert acked <= set(kept), sorted(acked - set(kept))
    assert not deleted & set(kept), sorted(deleted & set(kept))
    assert len(kept) == len(set(kept))  # none applied twice
    assert deleted, "no call met the delete"
    assert all(
        isinstance(e, vc.CommitOutcomeUnknownError | vc.CommitConflictError) for e in others.values()
    ), others


@vc.virtual_actor
class Session:
    def __init__(self) -> None:
        self.expired: list[str] = []

    def touch(self) -> None:
        vc.current_call().schedule("expire", after=0, key="idle", args=("idle",))

    def expire(self, reason: str) -> None:
        self.expired.append(reason)

    @vc.virtual_actor.readonly
    def seen(self) -> list[str]:
        return list(self.expired)


def test_a_deleted_actors_due_timers_never_fire_and_their_entries_go(spec: StoreSpec) -> None:
    """The tombstone carries no timers: a runner finds the actor deleted, fires nothing (no
    step after the tombstone) and deletes the due entries."""
    runtime = init(spec)
    Session.get_or_create("sess-1").touch.run()
    assert _sync.sync(runtime.store.list("timers/")), "the timer was not indexed"
    assert vc.delete_actor("sess-1") is True
    report = vc.fire_due_timers()
    assert report.fired == 0 and not report.errors, report
    assert _sync.sync(runtime.store.list("timers/")) == []
    assert steps(runtime, "sess-1") == [0, 1, 2] and tombstones(runtime, "sess-1") == [2]
    assert Session.get_or_create("sess-1").seen.run() == []

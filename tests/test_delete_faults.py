"""Deleting an actor (``vc.delete_actor``) under faults: a caller that gives up (a cancelled
``delete_actor_async``, Ctrl-C), requests whose answers are lost, a stalled endpoint, and a
deleting process killed at each point of the delete.

Each test attacks one promise: a delete reports what happened (True, False, or an error that
says it may have committed and what to do), ends by its deadline, writes one tombstone, gives
back a folder lease it took over, and a delete its caller gave up on writes nothing after."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from actors import OrderLog
from child_processes import run_to_end
from delete_fault_workers import delete_killed_at
from delete_helpers import LosesFirstTombstoneRace, newest, tombstones
from interrupts import Interrupted
from store_helpers import init, other_process, retune

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud import actor as actor_module
from vactor_cloud.deletion import _pending_posts
from vactor_cloud.errors import RetryableStorageError, StorageTimeoutError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.lease import LeaseStore
from vactor_cloud.posting import PostBox, PostedCall, decode_outcomes
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore, HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(60), f"{what} never happened"


# -- a caller that gives up ---------------------------------------------------------------------
@pytest.mark.parametrize("lost_race", [False, True], ids=["first-put", "holding-the-lease"])
def test_a_cancelled_delete_actor_async_writes_no_tombstone_after_its_cancel(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, lost_race: bool
) -> None:
    """The awaiting task cancels ``delete_actor_async`` while its tombstone put is held (after
    a lost race: holding the folder lease it took over): the delete stops there, and has given
    the lease back by the time the awaiter hears the cancel. It went on on a thread of its own,
    its put landed after the caller had heard "cancelled", and the actor the caller went on
    using was deleted under it."""
    init(spec)
    OrderLog.get_or_create("log-1").add.run("a")
    vc.shutdown()
    runtime = init(spec, lease_seconds=600.0)
    store = HoldOne(runtime.store, "put", "/steps/", skip=2 if lost_race else 0)
    runtime.store = store
    if lost_race:
        LosesFirstTombstoneRace().install(monkeypatch)
    leases = LeaseStore(runtime.store, "log-1", runtime.settings.signing_key)
    store.hold()

    async def cancel_it() -> None:
        task = asyncio.ensure_future(vc.delete_actor_async("log-1"))
        held = await asyncio.to_thread(store.held.wait, 60)
        assert held, "the tombstone put was never sent"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        lease = await asyncio.wrap_future(_sync.submit(leases.read()))
        assert lease.holder or not lost_race, "the delete never took the lease over"
        assert not lease.valid(), (
            f"the lease is still held, by {lease.holder}, as the cancel reached its caller"
        )
        store.release.set()  # the caller heard "cancelled": the endpoint answers again

    asyncio.run(cancel_it())
    wait_for(store.ended, "the end of the hold")
    vc.shutdown()  # (waits for what still runs: a delete that went on after its cancel)
    monkeypatch.undo()
    observer = other_process(spec)
    try:
        assert tombstones(observer, "log-1") == [], "the cancelled delete committed after its cancel"
    finally:
        observer.close()
    init(spec)
    assert OrderLog.get_or_create("log-1").add.run("b") >= 2


def test_ctrl_c_during_delete_actor_reaches_the_caller_and_writes_nothing(
    spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """Ctrl-C while the tombstone put is held: the interrupt reaches the caller at once, the
    put is never sent (the delete stops with its caller), and a second delete deletes."""
    runtime = init(spec)
    store = HoldOne(runtime.store, "put", "/steps/")
    runtime.store = store
    OrderLog.get_or_create("log-2").add.run("a")
    store.hold()
    ctrl_c(store.held)
    with pytest.raises(Interrupted):
        vc.delete_actor("log-2")
    wait_for(store.ended, "the end of the hold (cancelled with the delete)")
    assert not store.release.is_set()
    assert tombstones(runtime, "log-2") == []
    assert OrderLog.get_or_create("log-2").add.run("b") == 2
    assert vc.delete_actor("log-2") is True
    assert vc.delete_actor("log-2") is False
    assert len(tombstones(runtime, "log-2")) == 1


def test_delete_actor_async_deletes_and_then_says_deleted_already(spec: StoreSpec) -> None:
    init(spec)
    OrderLog.get_or_create("log-3").add.run("a")

    async def twice() -> tuple[bool, bool]:
        return await vc.delete_actor_async("log-3"), await vc.delete_actor_async("log-3")

    assert asyncio.run(twice()) == (True, False)
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("log-3")


# -- answers lost -------------------------------------------------------------------------------
#: faults on the lease object (``actors/<id>/lease``) during a delete that takes it over once:
#: its gets are the read before the take (1) and a read back after a lost answer (2, ...)
LEASE_FAULTS = {
    # the take landed, its answer was lost, and reading it back failed as well
    "take-answer-lost-unread": (
        FaultRule("timeout_after", frozenset({"put"}), "/lease", at=(1,)),
        FaultRule("fail_before", frozenset({"get"}), "/lease", at=(2,)),
    ),
    # the release failed before it was sent, once (a transient error)
    "release-failed-once": (FaultRule("fail_before", frozenset({"put"}), "/lease", at=(2,)),),
}


@pytest.mark.parametrize("faults", sorted(LEASE_FAULTS))
def test_a_delete_whose_lease_writes_lost_their_answers_still_gives_the_lease_back(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, faults: str
) -> None:
    """The delete loses a race and takes the folder lease over; the answer of that write (or
    of the release) is lost. The delete commits one tombstone, says True, and the lease is
    released: a take whose outcome it never learned was left held for ``lease_seconds``, and
    posters waited that long before anyone folded their calls."""
    runtime = init(spec, lease_seconds=600.0)
    store = FaultyStore(runtime.store, FaultConfig(rules=LEASE_FAULTS[faults]))
    runtime.store = store
    OrderLog.get_or_create("log-4").add.run("a")
    puts = LosesFirstTombstoneRace().install(monkeypatch)
    assert vc.delete_actor("log-4") is True
    assert puts.tombstone_puts == 2, "the delete never lost its first race"
    assert sum(store.injected.values()) == len(LEASE_FAULTS[faults]), store.injected
    monkeypatch.undo()
    assert tombstones(runtime, "log-4") == [3]
    lease = _sync.sync(LeaseStore(runtime.store, "log-4", runtime.settings.signing_key).read())
    assert lease.holder, "the delete never took the lease over"
    assert not lease.valid(), (
        f"the lease is still held, by {lease.holder}, for {lease.expires - time.time():.0f} s"
    )


class TombstoneAnswerLost(FaultyStore):
    """The first tombstone-sized step put lands and its answer is lost; then every read of a
    step fails, until ``heal``: the delete cannot learn whether its tombstone landed."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, FaultConfig())
        self.tripped = False
        self.healed = False

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if self.healed or "/steps/" not in key:
            return await run()
        if operation == "put" and not self.tripped:
            await run()
            self.tripped = True
            raise StorageTimeoutError(f"{key}: put got no answer (injected)", key, write_in_flight=True)
        if operation == "get" and self.tripped:
            raise RetryableStorageError(f"{key}: get failed (injected)", key)
        return await run()


def test_a_delete_that_cannot_learn_whether_its_tombstone_landed_says_so_and_what_to_do(
    spec: StoreSpec,
) -> None:
    """The tombstone put's answer is lost and reading the step back keeps failing: the delete
    raised the last read's StorageError ("get failed"), as if nothing had been tried. It must
    say the outcome is unknown and what to do; the delete again then says False (deleted
    already), and there is one tombstone."""
    init(spec)
    assert OrderLog.get_or_create("log-5").add.run("a") == 1
    vc.shutdown()
    runtime = init(spec)  # (a new runtime: its core of the actor reads through the faults)
    store = TombstoneAnswerLost(runtime.store)
    runtime.store = store
    with pytest.raises(vc.CommitOutcomeUnknownError, match="delete_actor again") as unknown:
        vc.delete_actor("log-5")
    assert store.tripped
    assert unknown.value.step == 2
    store.healed = True
    assert vc.delete_actor("log-5") is False
    assert tombstones(runtime, "log-5") == [2]


# -- a stalled endpoint ---------------------------------------------------------------------------
#: phase -> (operation, key fragment held, the request applied before its answer is held,
#: whether the delete committed before the stall)
STALLS = {
    "reading HEAD": ("get", "/HEAD", False, False),
    "listing the posts": ("list", "/mail/", False, False),
    "taking the lease over": ("put", "/lease", False, False),
    "putting the tombstone": ("put", "/steps/", False, False),
    "the tombstone put's answer": ("put", "/steps/", True, True),
    "deleting the posts": ("delete", "/mail/", False, True),
    "moving HEAD": ("put", "/HEAD", False, True),
    "listing its failed calls": ("list", "/tasks/", False, True),
}


@pytest.mark.parametrize("phase", list(STALLS))
def test_a_delete_on_a_stalled_endpoint_ends_by_its_deadline_and_a_second_one_tells(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    """One request of the delete never answers: ``delete_actor`` ends by ``Settings.deadline``
    with a StorageTimeoutError that says what to do (delete again), never hangs; once the
    endpoint answers again, a second delete says True (the first committed nothing) or False
    (it had), and there is one tombstone. A stall in the clean-up after the commit (the
    posts' deletes, the HEAD move) does not make a committed delete a timeout: it says True,
    by its deadline, and the clean-up ends on its own."""
    operation, fragment, answer_first, committed = STALLS[phase]
    init(spec)
    OrderLog.get_or_create("log-6").add.run("a")
    vc.shutdown()
    # (deadline 2 s: at 1.5 s a CI run's loaded moto lane took the whole deadline for the
    # delete's own requests, and the committed delete said StorageTimeoutError; 3 s then. The
    # module runs on memory and local only now, whose requests cost a fraction of moto's.)
    runtime = init(spec, deadline=2.0, lease_seconds=600.0)
    store = HoldOne(runtime.store, operation, fragment, answer_first=answer_first, timeout=120.0)
    runtime.store = store
    if fragment == "/mail/":
        post(runtime, "log-6", "other/0")
    if fragment == "/lease":
        LosesFirstTombstoneRace().install(monkeypatch)
    store.hold()
    if committed and not answer_first:  # (the clean-up after its commit stalls: it is done)
        assert vc.delete_actor("log-6") is True
    else:
        with pytest.raises(vc.StorageTimeoutError, match="delete_actor again"):
            vc.delete_actor("log-6")
    assert store.held.is_set(), f"the delete never sent the {operation} of {fragment}"
    store.release.set()
    wait_for(store.ended, "the end of the hold")
    monkeypatch.undo()
    retune(deadline=vc.Settings.deadline)  # the 3 s were the stalled delete's: not the checks'
    assert vc.delete_actor("log-6") is (not committed)
    assert len(tombstones(runtime, "log-6")) == 1
    lease = _sync.sync(LeaseStore(runtime.store, "log-6", runtime.settings.signing_key).read())
    assert not lease.valid(), f"the lease is still held, by {lease.holder}"
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("log-6")


def post(runtime: Runtime, actor_id: str, token: str) -> str:
    """Another process's posted ``add(token)`` (its own sender id); the call id."""
    box = PostBox(runtime.store, actor_id, runtime.settings.signing_key)
    call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex)
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # a later post gets a later millisecond: post order is key order
    return call.call_id


# -- a deleting process killed --------------------------------------------------------------------
_PUT = frozenset({"put"})
#: point -> (the kill, whether the tombstone landed before it). The child loses its first race
#: (a racer's step put first: step 2), so it holds the folder lease when it is killed.
KILLS = {
    "after taking the lease over, before the tombstone put": (
        FaultRule("crash_after", _PUT, "/lease", at=(1,)),
        False,
    ),
    "after the tombstone landed, before the posts, the lease and HEAD": (
        FaultRule("crash_after", _PUT, "/steps/", at=(3,)),  # (1: the racer's, 2: the lost one)
        True,
    ),
}


@pytest.mark.parametrize("point", list(KILLS))
@pytest.mark.usefixtures("runtime_off")
def test_a_deleting_process_killed_at_each_point_leaves_a_delete_or_none_and_nothing_applied_twice(
    shared: StoreSpec, point: str
) -> None:
    """SIGKILL of a deleting process at each point; then other processes call, post and delete.
    The actor is deleted or not, as the kill point says; the post pending at the delete is
    applied at most once, and never after the tombstone nor to the actor created again; the
    lease the dead deleter held delays nobody past its ``lease_seconds``."""
    kill, landed = KILLS[point]
    lease_seconds = 4.0
    actor_id = f"ledger-{uuid.uuid4().hex[:8]}"
    OrderLog.get_or_create(actor_id).add.run("a")
    pending = post(vc.get_runtime(), actor_id, "other/0")
    child = multiprocessing.get_context("spawn").Process(
        target=delete_killed_at,
        args=(shared, actor_id, FaultConfig((kill,), name=point).to_json(), lease_seconds),
    )
    assert run_to_end([child], 120) == [-9], f"{point}: the kill did not land"
    runtime = vc.get_runtime()
    runtime.core(actor_id).forget()
    lease = _sync.sync(LeaseStore(runtime.store, actor_id, runtime.settings.signing_key).read())
    # The dead deleter's, not released (expired by now, maybe: this process read it only once
    # the child's exit was seen, on a loaded host more than lease_seconds after it wrote it):
    assert lease.holder and lease.expires > 0 and lease.expires - time.time() <= lease_seconds, lease
    assert tombstones(runtime, actor_id) == ([3] if landed else [])
    if landed:
        with pytest.raises(vc.ActorDeletedError):
            vc.get_actor(actor_id)
        assert vc.delete_actor(actor_id) is False
    else:
        assert OrderLog.get_or_create(actor_id).add.run("b") >= 2  # (waits out the lease, at most)
        assert vc.delete_actor(actor_id) is True
    [tomb] = tombstones(runtime, actor_id)
    log = runtime.log(actor_id)
    applied_in = []
    for step in _sync.sync(log.list_steps()):
        record = _sync.sync(log.read_step(step))
        assert record is not None
        applied_in += [step for call in record.calls if call.call_id == pending and call.ok]
    assert len(applied_in) <= 1 and all(step < tomb for step in applied_in), applied_in
    if not applied_in:  # pending at the delete: failed in the tombstone
        outcome = decode_outcomes(_sync.sync(log.read_step(tomb)).posted)[pending]  # type: ignore[union-attr]
        assert not outcome.ok and isinstance(outcome.value, vc.ActorDeletedError)
    fresh = OrderLog.get_or_create(actor_id)
    assert fresh.add.run("new/0") == 1
    assert fresh.applied.run() == ["new/0"]
    # A post left behind (the deleter died before deleting it) is stale for every later fold.
    box = PostBox(runtime.store, actor_id, runtime.settings.signing_key)
    left, _ = _sync.sync(_pending_posts(box, newest(runtime, actor_id), time.time()))
    assert left == [], "a post pending at the delete would be applied to the actor created again"


class _SlowRelease(HoldOne):
    """:class:`HoldOne`; and a lease write after the held request (the release) waits until
    ``order`` says the caller has its interrupt, 1 s at most, then says ``released`` there."""

    def __init__(self, inner: Any, order: list[str], operation: str, fragment: str, **kwargs: Any) -> None:
        super().__init__(inner, operation, fragment, **kwargs)
        self.order = order

    async def _put(self, key: str, data: bytes, mode: Any) -> str:
        if "/lease" not in key or not self.held.is_set():
            return await super()._put(key, data, mode)
        # (1 s by the clock, not 1,000 sleeps of 1 ms: on a loaded host those took longer than
        # delete_actor's wait for its stop, 5 s, and the caller went on: a failure of the test)
        deadline = time.monotonic() + 1.0
        while "interrupted" not in self.order and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        version = await super()._put(key, data, mode)
        self.order.append("released")
        return version


def test_ctrl_c_during_a_delete_holding_the_lease_then_exit_gives_the_lease_back(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """The delete lost a race and took the folder lease over; Ctrl-C lands while its next
    tombstone put is held, and the program shuts down at once (what Ctrl-C usually ends in).
    The interrupt reaches the caller, no tombstone is written, and the lease is given back
    before the runtime is gone: posters would otherwise wait out ``lease_seconds``. (h91: on the
    memory lane this passed also when ``delete_actor`` did not wait for the release; a release
    slower than the caller now shows that.)"""
    init(spec)
    OrderLog.get_or_create("log-7").add.run("a")
    vc.shutdown()
    runtime = init(spec, lease_seconds=600.0)
    order: list[str] = []
    # (the held put: 1, the racer's step; 2, the lost tombstone; then the one held)
    store = _SlowRelease(runtime.store, order, "put", "/steps/", skip=2)
    runtime.store = store
    LosesFirstTombstoneRace().install(monkeypatch)
    store.hold()
    ctrl_c(store.held)
    with pytest.raises(Interrupted):
        vc.delete_actor("log-7")
    order.append("interrupted")
    assert order == ["released", "interrupted"], "the interrupt reached the caller before the release"
    vc.shutdown()
    monkeypatch.undo()
    observer = other_process(spec)
    try:
        lease = _sync.sync(LeaseStore(observer.store, "log-7", observer.settings.signing_key).read())
        assert lease.holder, "the delete never took the lease over"
        assert not lease.valid(), (
            f"the lease is still held, by {lease.holder}, for {lease.expires - time.time():.0f} s"
        )
        assert tombstones(observer, "log-7") == []
    finally:
        observer.close()


#: a request of the delete applied, its answer lost
ANSWERS_LOST = {
    "the tombstone put": FaultRule("lost_response", _PUT, "/steps/", at=(1,)),
    "the post delete": FaultRule("lost_response", frozenset({"delete"}), "/mail/", at=(1,)),
}


@pytest.mark.parametrize("request_", list(ANSWERS_LOST))
def test_a_delete_whose_answer_was_lost_says_true_once_with_one_tombstone(
    spec: StoreSpec, request_: str
) -> None:
    """The tombstone put (or the delete of the post it failed) lands and its answer is lost:
    the delete says True (it committed), a second says False, there is one tombstone, and the
    post pending at the delete is failed in it and gone."""
    runtime = init(spec)
    OrderLog.get_or_create("log-8").add.run("a")
    vc.shutdown()
    runtime = init(spec)
    store = FaultyStore(runtime.store, FaultConfig(rules=(ANSWERS_LOST[request_],)))
    runtime.store = store
    pending = post(runtime, "log-8", "other/0")
    assert vc.delete_actor("log-8") is True
    assert store.injected["lost_response"] == 1
    assert vc.delete_actor("log-8") is False
    assert len(tombstones(runtime, "log-8")) == 1
    outcome = decode_outcomes(newest(runtime, "log-8").posted)[pending]
    assert not outcome.ok and isinstance(outcome.value, vc.ActorDeletedError)
    assert _sync.sync(runtime.store.list(posts_prefix("log-8"))) == []


def test_a_cancelled_delete_actor_async_whose_lease_release_stalls_still_ends_soon(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while it holds the folder lease, the delete gives the lease back; when that
    release never answers, the cancel reaches the awaiter all the same, without waiting for
    it (nor for ``Settings.deadline``, which ends it later)."""
    # The cancel waits for the delete to stop at most this long (actor._SETTLE, 5 s): the stalled
    # release never ends within it, so the test waited all of it.
    monkeypatch.setattr(actor_module, "_SETTLE", 1.0)
    init(spec)
    OrderLog.get_or_create("log-9").add.run("a")
    vc.shutdown()
    runtime = init(spec, lease_seconds=600.0, deadline=120.0)
    store = HoldOne(runtime.store, "put", "/lease", skip=1, timeout=120.0)  # (the release)
    runtime.store = store
    puts = LosesFirstTombstoneRace(then="hang").install(monkeypatch)
    store.hold()

    async def cancel_it() -> None:
        task = asyncio.ensure_future(vc.delete_actor_async("log-9"))
        assert await asyncio.to_thread(puts.retried.wait, 60), "the delete never tried again"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert store.held.is_set(), "the delete never released the lease"
        assert not store.ended.is_set(), "the cancel waited for the stalled release to end"

    try:
        asyncio.run(cancel_it())
    finally:
        store.release.set()


def test_ctrl_c_while_the_lease_take_is_answered_still_gives_the_lease_back(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """Ctrl-C lands while the delete's take of the folder lease has landed and its answer is
    on its way: the delete never learns it holds the lease, and left it held for
    ``lease_seconds``. The release at its end reads the lease back and gives it up, before the
    interrupt reaches the caller (whose program shuts the runtime down next). (h91: on the
    memory lane, the release landed before the test looked also when ``delete_actor`` did not
    wait for it; a release slower than the caller now shows that.)"""
    init(spec)
    OrderLog.get_or_create("log-10").add.run("a")
    vc.shutdown()
    runtime = init(spec, lease_seconds=600.0)
    order: list[str] = []
    store = _SlowRelease(runtime.store, order, "put", "/lease", answer_first=True)
    runtime.store = store
    LosesFirstTombstoneRace().install(monkeypatch)
    store.hold()
    ctrl_c(store.held)
    with pytest.raises(Interrupted):
        vc.delete_actor("log-10")
    order.append("interrupted")
    assert order == ["released", "interrupted"], "the interrupt reached the caller before the release"
    store.release.set()
    monkeypatch.undo()
    lease = _sync.sync(LeaseStore(runtime.store, "log-10", runtime.settings.signing_key).read())
    assert lease.holder, "the delete never took the lease over"
    assert not lease.valid(), (
        f"the lease is still held, by {lease.holder}, for {lease.expires - time.time():.0f} s"
    )
    assert tombstones(runtime, "log-10") == []
    assert vc.delete_actor("log-10") is True

"""Deleting an actor under concurrency and faults, attacked: two deletes at once, a delete again
after its first clean-up died (and after a fold on the tombstone or a compaction came between),
lost answers and foreign objects on the clean-up's path, and a delete racing a creation under
the same id. After each, the clean-up (failed-call records, timers' due-index entries, applied
events' inbox objects) must be complete, and the next actor under the id must start from
nothing: no old event applied again, no old timer listed. Each test names what it attacks;
those whose docstring begins "Held" passed on the code they were written against (they pin
what the attack found holding)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import pickle
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from delete_helpers import steps, tombstones
from store_helpers import init, other_process, raw_put
from test_delete_faults import TombstoneAnswerLost

import vactor_cloud as vc
from vactor_cloud import _sync, codec, deletion, workflow
from vactor_cloud.batch import PendingCall
from vactor_cloud.compaction import compact
from vactor_cloud.deletion import delete
from vactor_cloud.future import ActorFuture
from vactor_cloud.posting import PostBox, PostedCall
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore, HoldOne
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


@workflow.step(max_retries=0)
def _down(value: int) -> int:
    raise RuntimeError(f"payout {value} is down")


@workflow.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.paid = 0
        self.tokens: list[str] = []

    @vc.virtual_actor.on_event("pay")
    def on_pay(self, payload: dict[str, int]) -> int:
        self.paid += payload["amount"]
        return self.paid

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    def arm(self, key: str, after: float) -> None:
        vc.current_call().schedule("add", after=after, key=key, args=(key,))

    def payout(self, value: int) -> Any:
        return self.add.step(_down.step(value))

    @vc.virtual_actor.readonly
    def total(self) -> int:
        return self.paid


def leftovers(runtime: Runtime, actor_id: str) -> dict[str, list[str]]:
    """What the deleted actor ``actor_id`` may leave beside its steps: inbox objects, due-index
    entries, failed-call records (keys)."""
    store = runtime.store
    inbox = _sync.sync(store.list(f"actors/{actor_id}/inbox/"))
    entries = [e.key for e in _sync.sync(list_index(store)) if e.actor_id == actor_id]
    failed = [k for k in _sync.sync(store.list(f"actors/{actor_id}/tasks/")) if k.endswith("/failed")]
    return {"inbox": inbox, "timers": entries, "failed": failed}


def paid_30_with_leftovers(actor_id: str, monkeypatch: pytest.MonkeyPatch) -> vc.ActorHandle[Ledger]:
    """``actor_id``, a Ledger that applied a payment of 30 (event ``e1``) whose inbox object
    its writer left (it died between its commit and the deletes), with a timer due in a day
    and a failed call (its record)."""
    store = vc.get_runtime().store
    delete_many = store.delete_many
    delete_unchanged = store.delete_unchanged

    async def inbox_deletes_lost(keys: list[str], *args: Any, **kwargs: Any) -> Any:
        return await delete_many([k for k in keys if "/inbox/" not in k], *args, **kwargs)

    async def inbox_unchanged_deletes_lost(versions: dict[str, str]) -> Any:
        return await delete_unchanged({k: v for k, v in versions.items() if "/inbox/" not in k})

    handle = Ledger.get_or_create(actor_id)
    handle.arm.run("renewal", 86400.0)
    vc.send_event(actor_id, "pay", {"amount": 30}, event_id="e1")
    with monkeypatch.context() as patch:
        patch.setattr(store, "delete_many", inbox_deletes_lost)
        patch.setattr(store, "delete_unchanged", inbox_unchanged_deletes_lost)
        handle.process_events()
    assert handle.total.run() == 30
    with pytest.raises(RuntimeError, match="payout 1 is down"):
        handle.payout.run(1)
    assert all(leftovers(vc.get_runtime(), actor_id).values())
    return handle


def delete_dying_after_the_tombstone(actor_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Delete ``actor_id`` as a process that died right after its tombstone landed: none of
    the clean-up ran."""

    async def died(*args: Any) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(deletion, "_after_commit", died)
        assert vc.delete_actor(actor_id) is True


def foreign_post(runtime: Runtime, actor_id: str, token: str) -> None:
    """Another process's posted ``add(token)`` (its own sender id)."""
    box = PostBox(runtime.store, actor_id, runtime.settings.signing_key)
    call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex)
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # a later post gets a later millisecond: post order is key order


def assert_next_actor_starts_from_nothing(runtime: Runtime, actor_id: str) -> None:
    assert leftovers(runtime, actor_id) == {"inbox": [], "timers": [], "failed": []}
    vc.send_event(actor_id, "pay", {"amount": 5}, event_id="e2", create=True)
    new = Ledger.get_or_create(actor_id)
    new.process_events()
    assert new.total.run() == 5  # (35: the old actor's payment applied again)
    assert new.timers() == []


# -- a delete again, after its first clean-up died ------------------------------------------------
def test_a_delete_again_after_a_fold_on_the_tombstone_still_cleans_up(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deleting process died right after its tombstone T landed. A post that landed after
    its listing was folded on T (a lease holder's fold): another tombstone T+1, whose parent is
    T. A delete again read the step before the newest tombstone, T, to judge the clean-up by:
    no timers, no idempotency table; the old actor's payment and its timer's entry stayed, and
    the next actor applied the payment again (35)."""
    runtime = init(spec, combine_after=1, combine_window=60.0)
    paid_30_with_leftovers("ledger-1", monkeypatch)
    delete_dying_after_the_tombstone("ledger-1", monkeypatch)
    foreign_post(runtime, "ledger-1", "late/0")
    core = runtime.core("ledger-1")
    assert core._lease_for_fold()
    core._commit([])  # (a fold on the tombstone: another tombstone)
    assert tombstones(runtime, "ledger-1") == [3, 4]
    assert vc.delete_actor("ledger-1") is False
    assert_next_actor_starts_from_nothing(runtime, "ledger-1")


def test_a_compaction_of_a_deleted_actor_whose_clean_up_died_keeps_it_possible(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deleting process died right after its tombstone landed; a compaction (keep_last=1)
    then deleted every step below it, the deleted actor's last step with its idempotency table
    and timers among them. A delete again found nothing to judge the clean-up by: the old
    payment's inbox object and the timer's entry stayed, and the next actor applied the payment
    again (35)."""
    runtime = init(spec, fresh_window=0.0)
    paid_30_with_leftovers("ledger-2", monkeypatch)
    delete_dying_after_the_tombstone("ledger-2", monkeypatch)
    _sync.sync(compact(runtime.log("ledger-2"), keep_last=1, min_age=0, fresh_window=0.0))
    assert steps(runtime, "ledger-2") == tombstones(runtime, "ledger-2") == [3]
    assert vc.delete_actor("ledger-2") is False
    assert_next_actor_starts_from_nothing(runtime, "ledger-2")


def test_a_compaction_that_cannot_do_the_clean_up_keeps_the_deleted_actors_last_step(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As above, in a process that does not define the class (its pickled table is not read
    here): the compaction keeps the deleted actor's last step, says so, and a compaction in a
    process that defines it finishes the clean-up and deletes it."""
    from vactor_cloud import inbox_leftovers

    runtime = init(spec, fresh_window=0.0)
    paid_30_with_leftovers("ledger-3", monkeypatch)
    delete_dying_after_the_tombstone("ledger-3", monkeypatch)
    with monkeypatch.context() as patch, caplog.at_level("WARNING", logger="vactor_cloud"):
        patch.setattr(inbox_leftovers, "lookup_local_class", lambda name: None)
        report = _sync.sync(compact(runtime.log("ledger-3"), keep_last=1, min_age=0, fresh_window=0.0))
    assert "compaction keeps step 2, the deleted actor's last" in caplog.text
    assert report.watermark == 2 and steps(runtime, "ledger-3") == [2, 3]
    assert leftovers(runtime, "ledger-3")["inbox"] == ["actors/ledger-3/inbox/e1"]
    _sync.sync(compact(runtime.log("ledger-3"), keep_last=1, min_age=0, fresh_window=0.0))
    assert steps(runtime, "ledger-3") == [3]
    assert_next_actor_starts_from_nothing(runtime, "ledger-3")


def test_a_compaction_whose_clean_up_meets_a_storage_error_deletes_nothing(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction's clean-up of a deleted actor's last step fails to list the inbox: the
    compaction fails with that error before the watermark moves, nothing is deleted, and the
    next compaction does it all."""
    init(spec, fresh_window=0.0)
    paid_30_with_leftovers("ledger-11", monkeypatch)
    delete_dying_after_the_tombstone("ledger-11", monkeypatch)
    vc.shutdown()
    runtime = init(spec, fresh_window=0.0)
    rule = FaultRule("fail_before", frozenset({"list"}), "/inbox/", at=(1,), retryable=False)
    runtime.store = FaultyStore(runtime.store, FaultConfig(rules=(rule,)))
    log = runtime.log("ledger-11")
    with pytest.raises(vc.StorageError):
        _sync.sync(compact(log, keep_last=1, min_age=0, fresh_window=0.0))
    assert steps(runtime, "ledger-11") == [0, 1, 2, 3] and _sync.sync(log.read_gc()) == 0
    _sync.sync(compact(log, keep_last=1, min_age=0, fresh_window=0.0))
    assert steps(runtime, "ledger-11") == [3]
    assert_next_actor_starts_from_nothing(runtime, "ledger-11")


# -- two deletes at once ---------------------------------------------------------------------------
def test_two_deletes_at_once_one_says_deleted_and_the_clean_up_is_complete(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held. Two runtimes delete the actor at once: this one's tombstone put is held until the
    other's landed, and the other's clean-up is held with its inbox listing answered while this
    one, having lost, finds the actor deleted and cleans up beside it (the event the other listed
    is gone when it reads it). Exactly one says it deleted, no error
    leaks, nothing is left, and the next actor starts from nothing."""
    runtime = init(spec)
    held = HoldOne(runtime.store, "put", "/steps/", timeout=60.0)
    runtime.store = held  # (before any core exists: this runtime's logs use it)
    paid_30_with_leftovers("ledger-4", monkeypatch)
    other = other_process(spec)
    other_store = HoldOne(other.store, "list", "/inbox/", answer_first=True, timeout=60.0)
    other.store = other_store
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            held.hold()
            mine = pool.submit(vc.delete_actor, "ledger-4")
            assert held.held.wait(30), "this delete never reached its tombstone put"
            other_store.hold()
            theirs = pool.submit(_sync.sync, delete(other.log("ledger-4"), other.settings, keep=other.keep))
            assert other_store.held.wait(30), "the other delete's clean-up never listed the inbox"
            held.release.set()
            assert mine.result(60) is False
            other_store.release.set()
            assert theirs.result(60) is not None
    finally:
        other.close()
    assert tombstones(runtime, "ledger-4") == [3]
    assert_next_actor_starts_from_nothing(runtime, "ledger-4")


def test_a_delete_that_lost_its_only_attempt_to_another_delete_says_false(spec: StoreSpec) -> None:
    """This runtime allows one commit attempt (``max_commit_attempts=1``); its tombstone put is
    held until another runtime's delete landed. It lost the race to a tombstone: the actor is
    deleted, and the answer is False. It raised CommitConflictError ("nothing committed", as if
    writers had kept winning), and first took the folder lease of the deleted actor over."""
    runtime = init(spec, max_commit_attempts=1)
    held = HoldOne(runtime.store, "put", "/steps/", timeout=60.0)
    runtime.store = held
    Ledger.get_or_create("ledger-10").add.run("a")
    other = other_process(spec)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held.hold()
            mine = pool.submit(vc.delete_actor, "ledger-10")
            assert held.held.wait(30), "this delete never reached its tombstone put"
            assert _sync.sync(delete(other.log("ledger-10"), other.settings, keep=other.keep)) is not None
            held.release.set()
            assert mine.result(60) is False
    finally:
        held.release.set()
        other.close()
    assert _sync.sync(runtime.store.list("actors/ledger-10/lease")) == []
    assert tombstones(runtime, "ledger-10") == [2]


def deleting(start: threading.Barrier) -> bool:
    start.wait()
    return vc.delete_actor("ledger-5")


def test_two_threads_deleting_at_once_one_says_deleted(spec: StoreSpec) -> None:
    """Held. Two threads of one runtime delete the same actor at once, a few rounds (each a new
    actor under the id): each round exactly one says True, and the id holds one tombstone more."""
    runtime = init(spec)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for round_ in range(5):
            Ledger.get_or_create("ledger-5").add.run(f"round/{round_}")
            start = threading.Barrier(2, timeout=30)
            answers = [f.result(60) for f in [pool.submit(deleting, start), pool.submit(deleting, start)]]
            assert sorted(answers) == [False, True], answers
    assert len(tombstones(runtime, "ledger-5")) == 5


# -- lost answers, vanishing and foreign objects on the repeated clean-up ---------------------------
def newer_format_copy(key: str, of: str) -> bytes:
    """A record at ``key`` as a newer release would write it: ``of``'s content, re-encoded, its
    header naming the next format (it verifies: only its version is unknown here)."""
    runtime = vc.get_runtime()
    found = codec.decode(of, _sync.sync(runtime.store.get(of)).data, signing_key=runtime.settings.signing_key)
    data = bytearray(codec.encode(key, dict(found.meta), dict(found.parts), signing_key=None))
    struct.pack_into(">H", data, 4, codec.FORMAT_VERSION + 1)
    body = bytes(data[: -hashlib.sha256().digest_size])
    return body + codec.digest(key, body, None)


def test_a_delete_again_with_lost_answers_cleans_up_and_leaves_what_is_not_its_own(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first clean-up died; a delete again meets a lost answer on a delete of each kind
    (applied, reported failed) and foreign objects: garbage bytes under the inbox, an object
    of another kind at an applied event's key, and a failed-call record in a newer release's
    format (a process of that release made the next actor, whose call failed). It says False,
    raises nothing, and deletes all that is the deleted actor's and nothing else. Before, the
    newer-format record was deleted with the old actor's (its meta unread: taken for a damaged
    record): the next actor's failed call lost its record."""
    runtime = init(spec)
    paid_30_with_leftovers("ledger-6", monkeypatch)
    vc.send_event("ledger-6", "pay", {"amount": 1}, event_id="e3")
    with monkeypatch.context() as patch:  # (its inbox object left too, then replaced)
        delete_many = runtime.store.delete_many
        delete_unchanged = runtime.store.delete_unchanged

        async def inbox_deletes_lost(keys: list[str], *args: Any, **kwargs: Any) -> Any:
            return await delete_many([k for k in keys if "/inbox/" not in k], *args, **kwargs)

        async def inbox_unchanged_deletes_lost(versions: dict[str, str]) -> Any:
            return await delete_unchanged({k: v for k, v in versions.items() if "/inbox/" not in k})

        patch.setattr(runtime.store, "delete_many", inbox_deletes_lost)
        patch.setattr(runtime.store, "delete_unchanged", inbox_unchanged_deletes_lost)
        vc.get_actor("ledger-6").process_events()
    delete_dying_after_the_tombstone("ledger-6", monkeypatch)
    (failed,) = leftovers(runtime, "ledger-6")["failed"]
    newer = "actors/ledger-6/tasks/newer-call/failed"
    foreign = {
        "actors/ledger-6/inbox/junk": b"not an object of ours",
        "actors/ledger-6/inbox/e3": codec.encode("actors/ledger-6/inbox/e3", {"kind": "note"}, {}),
        newer: newer_format_copy(newer, of=failed),
    }
    for key, data in foreign.items():
        raw_put(key, data)
    vc.shutdown()
    runtime = init(spec)
    rules = tuple(
        FaultRule("lost_response", frozenset({"delete"}), where, at=(1,))
        for where in ("/tasks/", "timers/", "/inbox/")
    )
    store = FaultyStore(runtime.store, FaultConfig(rules=rules))
    runtime.store = store  # (before any core exists: this runtime's logs use it)
    assert vc.delete_actor("ledger-6") is False
    vc.shutdown()  # (waits for the clean-up)
    assert store.injected["lost_response"] == 3
    runtime = init(spec)
    assert leftovers(runtime, "ledger-6") == {
        "inbox": ["actors/ledger-6/inbox/e3", "actors/ledger-6/inbox/junk"],
        "timers": [],
        "failed": [newer],
    }
    _sync.sync(runtime.store.delete_many(list(foreign)))
    assert_next_actor_starts_from_nothing(runtime, "ledger-6")


def test_a_delete_again_whose_walk_to_the_last_step_stalls_ends_by_its_deadline(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held. The first clean-up died, and a fold on the tombstone followed it: a delete again
    reads its way down to the deleted actor's last step, and that read never answers. The
    delete says False while the read is still held (its clean-up left to end on its own),
    and the clean-up, once the read answers, is complete."""
    runtime = init(spec, combine_after=1, combine_window=60.0)
    paid_30_with_leftovers("ledger-7", monkeypatch)
    delete_dying_after_the_tombstone("ledger-7", monkeypatch)
    foreign_post(runtime, "ledger-7", "late/0")
    core = runtime.core("ledger-7")
    assert core._lease_for_fold()
    core._commit([])
    vc.shutdown()
    # 3 s, not 1.5: a clean-clone check under load (load average 17-22) spent the 1.5 s on
    # the delete's own requests on moto, and it said False before its walk reached the held read
    runtime = init(spec, deadline=3.0)
    store = HoldOne(runtime.store, "get", "/steps/00000000000000000002", timeout=120.0)
    runtime.store = store
    store.hold()
    assert vc.delete_actor("ledger-7") is False
    assert store.held.is_set() and not store.ended.is_set()
    store.release.set()
    vc.shutdown()  # (waits for the clean-up)
    assert_next_actor_starts_from_nothing(init(spec), "ledger-7")


# -- a delete racing a creation under the id -------------------------------------------------------
def test_a_creation_while_the_deletes_clean_up_runs_loses_no_commit_and_applies_no_old_event(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another runtime deletes the actor, and its clean-up is held at its first request (the
    HEAD move) while this one creates the actor again under the id and calls it: a call, a
    timer, an event sent again under the id the old actor applied, a failed call. Released,
    the clean-up takes nothing of the new actor's, and no acknowledged commit is lost; the
    old actor's payment (its inbox object left by a writer that died) is not applied to it."""
    init(spec)
    paid_30_with_leftovers("ledger-8", monkeypatch)
    vc.shutdown()
    init(spec)  # (no cache of the old actor here)
    deleter = other_process(spec)
    held = HoldOne(deleter.store, "put", "/HEAD", timeout=60.0)
    deleter.store = held
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held.hold()
            deleting = pool.submit(
                _sync.sync, delete(deleter.log("ledger-8"), deleter.settings, keep=deleter.keep)
            )
            assert held.held.wait(30), "the delete's clean-up never moved HEAD"
            new = Ledger.get_or_create("ledger-8")
            assert new.add.run("new/0") == 1
            new.arm.run("renewal", 86400.0)
            vc.send_event("ledger-8", "pay", {"amount": 7}, event_id="e1")
            new.process_events()
            with pytest.raises(RuntimeError, match="payout 2 is down"):
                new.payout.run(2)
            held.release.set()
            assert deleting.result(60) is not None
    finally:
        held.release.set()
        deleter.close()
    vc.shutdown()
    runtime = init(spec)
    again = Ledger.get_or_create("ledger-8")
    again.process_events()
    assert again.total.run() == 7  # (37: the old actor's payment applied again)
    assert again.add.run("new/1") == 2
    assert [t["key"] for t in again.timers()] == ["renewal"]
    found = leftovers(runtime, "ledger-8")
    assert found["timers"] == ["renewal"] and len(found["failed"]) == 1 and found["inbox"] == []


def test_a_creation_after_a_delete_whose_clean_up_died_applies_no_old_event(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deleting process died right after its tombstone landed, and nobody deleted again:
    ``get_or_create`` made the next actor, whose first fold applied the old actor's payment
    (its inbox object left by a writer that died) again: 35, not 5. A creation after a
    tombstone now deletes the inbox objects of events the deleted actor applied first."""
    init(spec)
    paid_30_with_leftovers("ledger-9", monkeypatch)
    vc.send_event("ledger-9", "pay", {"amount": 5}, event_id="e2")  # (waits: for the next actor)
    delete_dying_after_the_tombstone("ledger-9", monkeypatch)
    new = Ledger.get_or_create("ledger-9")
    new.process_events()
    assert new.total.run() == 5


def test_two_processes_deleting_at_once_one_says_deleted_and_the_clean_up_is_complete(
    shared: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held. Two OS processes delete each of three actors at once (a barrier before each):
    each actor is deleted by exactly one of them, neither fails, nothing is left, and the next
    actor under each id starts from nothing."""
    from child_processes import run_to_end
    from delete_race_workers import DONE, delete_each_at_the_barrier

    ids = [f"ledger-p{i}" for i in range(3)]
    for actor_id in ids:
        paid_30_with_leftovers(actor_id, monkeypatch)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    children = [context.Process(target=delete_each_at_the_barrier, args=(shared, ids, barrier)) for _ in "ab"]
    codes = run_to_end(children, 180)
    masks = [code - DONE for code in codes if code is not None and code >= DONE]
    assert len(masks) == 2, f"a child failed: exit codes {codes}"
    first, second = masks
    assert first & second == 0 and first | second == 0b111, (first, second)
    vc.shutdown()
    runtime = init(shared)
    for actor_id in ids:
        assert tombstones(runtime, actor_id) == [3]
        assert_next_actor_starts_from_nothing(runtime, actor_id)


def test_a_delete_again_after_an_unknown_outcome_leaves_the_actor_created_since(spec: StoreSpec) -> None:
    """The tombstone landed and its answer was lost: ``CommitOutcomeUnknownError`` says "call
    delete_actor again: it returns False if this delete committed". Before that, another
    runtime created the actor again under the id and a call on it was acknowledged. The delete
    again deleted that new actor (True): its acknowledged state was gone. It says False now
    (its tombstone is there, followed by the creation), and the new actor stays."""
    init(spec)
    Ledger.get_or_create("ledger-12").add.run("a")
    vc.shutdown()
    runtime = init(spec)
    store = TombstoneAnswerLost(runtime.store)
    runtime.store = store
    with pytest.raises(vc.CommitOutcomeUnknownError, match="delete_actor again"):
        vc.delete_actor("ledger-12")
    store.healed = True
    other = other_process(spec)
    try:
        other.create(Ledger.definition, "ledger-12", (), {})
        future: ActorFuture[Any] = ActorFuture()
        call = PendingCall.by_value(
            "add", ("new/0",), {}, readonly=False, future=future, call_id=uuid.uuid4().hex
        )
        other.core("ledger-12").submit(call)
        assert future.result(60) == 1
    finally:
        other.close()
    assert vc.delete_actor("ledger-12") is False
    assert tombstones(runtime, "ledger-12") == [2]
    assert vc.get_actor("ledger-12").add.run("new/1") == 2

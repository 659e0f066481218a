"""What a deleted actor leaves behind (``vc.delete_actor``), attacked from the next actor under
its id and from the surfaces a user reads: its timers' due-index entries (``vactor timers ls``,
runners), its failed-call records (``workflow.get_status``, ``workflow.resume``), its keyed
calls' sub-task checkpoints, and a forged or damaged tombstone. Each test names the promise it
checks; each failed on the code before its fix, but those whose docstring begins "Pin (held)"
(they failed when the check they pin was broken on purpose)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from actors import Orders, order_children
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import _sync, deletion, workflow
from vactor_cloud.cli import EXIT_ERROR, main
from vactor_cloud.deletion import DELETED, delete
from vactor_cloud.errors import ActorNotFoundError, IntegrityError
from vactor_cloud.log import StepRecord
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    store_spec.init(settings=vc.Settings(storage=""))
    yield store_spec
    vc.shutdown()


def indexed(actor_id: str) -> list[tuple[str, int | None]]:
    """The due-index entries of ``actor_id``: (timer key, generation)."""
    entries = _sync.sync(list_index(vc.get_runtime().store))
    return [(e.key, e.gen) for e in entries if e.actor_id == actor_id]


# -- timers ----------------------------------------------------------------------------------------
@vc.virtual_actor
class Reminder:
    def __init__(self) -> None:
        self.fired: list[str] = []

    def arm(self, key: str, after: float) -> None:
        vc.current_call().schedule("ring", after=after, key=key, args=(key,))

    def ring(self, key: str) -> None:
        self.fired.append(key)

    @vc.virtual_actor.readonly
    def rung(self) -> list[str]:
        return list(self.fired)


def test_a_deleted_actors_far_timers_leave_the_due_index_with_it(spec: StoreSpec) -> None:
    """``vactor timers ls`` lists the due index. A deleted actor's timers due in a day stayed
    listed for that day (a runner removes an entry only once it is due): the delete's clean-up
    now deletes the entries of the timers its tombstone dropped."""
    handle = Reminder.get_or_create("rem-1")
    handle.arm.run("renewal", 86400.0)
    handle.arm.run("yearly", 365 * 86400.0)
    assert sorted(k for k, _ in indexed("rem-1")) == ["renewal", "yearly"]
    assert vc.delete_actor("rem-1") is True
    assert indexed("rem-1") == []
    # and the next actor under the id has none of them, and indexes its own
    new = Reminder.get_or_create("rem-1")
    assert new.timers() == []
    new.arm.run("renewal", 86400.0)
    assert [k for k, _ in indexed("rem-1")] == ["renewal"]


@vc.virtual_actor
class Labelled:
    def __init__(self) -> None:
        self.fired: list[str] = []

    def arm(self, key: str, after: float, label: str) -> None:
        vc.current_call().schedule("ring", after=after, key=key, args=(label,))

    def ring(self, label: str) -> None:
        self.fired.append(label)

    @vc.virtual_actor.readonly
    def rung(self) -> list[str]:
        return list(self.fired)


def test_a_runner_holding_the_deleted_actors_due_entry_fires_nothing_on_the_next_actor(
    spec: StoreSpec,
) -> None:
    """Pin (held): a runner in another process listed the old actor's due entry and holds the
    old actor in its cache; the actor is deleted and a new one made under the id, with a timer
    of the same key not yet due. The runner's firing finds the new actor's table (its put of
    the old step's successor loses to the tombstone): the old timer's method never runs there,
    the new timer stays pending, and the stale entry goes."""
    from vactor_cloud.timer_firing import fire_actor

    old = Labelled.get_or_create("lab-1")
    old.arm.run("k", 0.0, "old")
    (entry,) = [e for e in _sync.sync(list_index(vc.get_runtime().store)) if e.actor_id == "lab-1"]
    runner = Runtime(Settings(storage=spec.url, storage_options=spec.options))
    try:
        runner.load("lab-1")  # its cache holds the old actor, due timer included
        assert vc.delete_actor("lab-1") is True
        new = Labelled.get_or_create("lab-1")
        new.arm.run("k", 3600.0, "new")
        report, done = fire_actor(runner, "runner-1", None, "lab-1", [entry])
    finally:
        runner.close()
    assert report.fired == 0 and not report.errors, report
    assert done == [entry]
    assert new.rung.run() == []
    assert [t["key"] for t in new.timers()] == ["k"]


# -- failed-call records ---------------------------------------------------------------------------
_gate = {"reached": threading.Event(), "go": threading.Event()}


@workflow.step(max_retries=0)
def _late_failure(value: int) -> int:
    _gate["reached"].set()
    assert _gate["go"].wait(60), "the test never let the step go on"
    raise RuntimeError(f"publish {value} is down")


@workflow.virtual_actor
class Publisher:
    def __init__(self) -> None:
        self.done: list[int] = []

    def run(self, x: int) -> Any:
        return self.record.step(_late_failure.step(x))

    def record(self, value: int) -> int:
        self.done.append(value)
        return value


def test_a_failure_recorded_by_a_call_that_raced_the_delete_is_not_the_next_actors(spec: StoreSpec) -> None:
    """A call of the old actor whose sub-workflow fails after the delete (and its clean-up,
    which forgets the failed calls it finds) records its failure then. That record made the
    next actor under the id FAILED, and ``resume`` ran the old actor's call on it. Records
    now name the actor's incarnation: one of an earlier actor under the id is not this one's."""
    _gate["reached"].clear()
    _gate["go"].clear()
    old = Publisher.get_or_create("pub-1")
    running = old.run.run_async(7)
    assert _gate["reached"].wait(60), "the call never reached its step"
    assert vc.delete_actor("pub-1") is True  # its clean-up found no failed call yet
    _gate["go"].set()
    with pytest.raises((RuntimeError, vc.ActorDeletedError)):
        running.result(60)
    failed = [
        k for k in _sync.sync(vc.get_runtime().store.list("actors/pub-1/tasks/")) if k.endswith("/failed")
    ]
    assert failed, "the racing call recorded no failure: the race was not reproduced"
    new = Publisher.get_or_create("pub-1")
    assert workflow.get_status("pub-1") == workflow.SUCCESSFUL
    assert dict(workflow.list_all()).get("pub-1") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("pub-1")) == []
    assert new.record.run(1) == 1  # (it works, and holds only its own)
    # and its own failed call is its own: FAILED, and resumed (failing again, as it would)
    with pytest.raises(RuntimeError, match="publish 8 is down"):
        new.run.run(8)
    assert workflow.get_status("pub-1") == workflow.FAILED
    assert dict(workflow.list_all()).get("pub-1") == workflow.FAILED
    with pytest.raises(RuntimeError, match="publish 8 is down"):
        vc.get(workflow.resume("pub-1"))


# -- a forged or damaged tombstone -----------------------------------------------------------------
_KEY = b"k" * 32


@vc.virtual_actor
class Box:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.on_event("poke")
    def poke(self, payload: Any) -> None:
        self.n += 1

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n


def _forged(record: StepRecord, key: str) -> bytes:
    """Step 2 as a tombstone (no state, ``deleted`` in ``extra``), signed with another key."""
    tombstone = dataclasses.replace(
        record, step=2, parent=1, state=b"", extra={**record.extra, DELETED: {"time": 1.0}}
    )
    return tombstone.encode(key, b"not the store's signing key")


@pytest.mark.parametrize("damage", ["signed-with-another-key", "a-real-tombstone-truncated"])
def test_a_forged_or_damaged_tombstone_is_refused_never_taken_for_deleted(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """Pin (held): a step object with ``extra["deleted"]`` whose signature does not verify, or
    a real tombstone cut short, raises ``IntegrityError`` on every surface that meets it (a
    load, a call, ``send_event``, ``delete_actor`` again, history, ``list_actors``, ``vactor
    show``); none of
    them says "deleted" (``ActorDeletedError``) or writes past it."""
    vc.shutdown()
    settings = vc.Settings(storage="", signing_key=_KEY)
    store_spec.init(settings=settings)
    Box.get_or_create("box-1").bump.run()
    runtime = vc.get_runtime()
    log = runtime.log("box-1")
    if damage == "a-real-tombstone-truncated":
        assert vc.delete_actor("box-1") is True
        data = _sync.sync(runtime.store.get(log.step_key(2))).data
        bad = data[: len(data) - 7]
    else:
        one = StepRecord.decode(log.step_key(1), _sync.sync(runtime.store.get(log.step_key(1))).data, _KEY)
        bad = _forged(one, log.step_key(2))
    _sync.sync(runtime.store.put(log.step_key(2), bad))
    surfaces = {
        "load": lambda: vc.get_actor("box-1").get.run(),  # noqa: PLW0108 (lazy: it raises)
        "call": lambda: vc.get_actor("box-1").bump.run(),  # noqa: PLW0108
        "send_event": lambda: vc.send_event("box-1", "poke", 1),
        "delete_actor": lambda: vc.delete_actor("box-1"),
        "history": lambda: vc.get_actor("box-1").history(),
        "list_actors": lambda: vc.list_actors(),  # noqa: PLW0108 (not left out as deleted)
    }
    for name, surface in surfaces.items():
        vc.shutdown()
        store_spec.init(settings=settings)  # (a fresh process: nothing cached)
        with pytest.raises(IntegrityError) as caught:
            surface()
        assert not isinstance(caught.value, ActorNotFoundError), name
    assert _sync.sync(vc.get_runtime().log("box-1").list_steps()) == [0, 1, 2]
    vc.shutdown()
    if "://" in store_spec.url:
        return  # (``vactor show``: on the local lane, a directory another process opens alike)
    monkeypatch.setenv("VACTOR_STORAGE", store_spec.url)
    monkeypatch.setenv("VACTOR_SIGNING_KEY", _KEY.decode())
    capsys.readouterr()
    try:
        code = main(["show", "box-1"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        vc.shutdown()
    err = capsys.readouterr().err
    assert code == EXIT_ERROR, err
    assert "steps/00000000000000000002" in err and "deleted" not in err, err


# -- sub-task checkpoints of a keyed call ----------------------------------------------------------
def test_a_keyed_call_on_the_next_actor_runs_its_children_again(spec: StoreSpec) -> None:
    """A keyed call's sub-task checkpoints live under a call id derived from the actor id and
    the key (``tasks/<call id>/``), and a delete leaves them. The next actor under the id runs
    a call with that key again (it has no idempotency table) but got the old actor's children's
    results back from those checkpoints, the children never run: the old actor's ticket in the
    new actor. Checkpoints now name the incarnation; an earlier actor's is not used (and is
    replaced by the new run's)."""
    order_children.reset()
    old = Orders.get_or_create("ord-1")
    assert old.place.options(idempotency_key="k1").run("o") == "o#1"
    assert vc.delete_actor("ord-1") is True
    new = Orders.get_or_create("ord-1")
    assert new.place.options(idempotency_key="k1").run("o") == "o#2"
    assert order_children.run == ["o", "o"]
    # and the key again is answered by the new actor's own idempotency table
    assert new.place.options(idempotency_key="k1").run("o") == "o#2"
    assert order_children.run == ["o", "o"]


def test_a_late_clean_up_of_a_delete_leaves_the_next_actors_failed_calls(spec: StoreSpec) -> None:
    """The clean-up after a tombstone goes on by itself once the delete has returned (a stalled
    store). Its listing of ``tasks/`` answered after the next actor under the id recorded a
    failed call deleted that record too: the new actor's call could no longer be resumed and
    its status said SUCCESSFUL. The clean-up now deletes only the records of actors up to the
    one it deleted."""
    _gate["go"].set()  # (every run of the step fails at once)
    Publisher.get_or_create("pub-2")
    vc.shutdown()
    spec.init(settings=vc.Settings(storage="", deadline=1.5))
    runtime = vc.get_runtime()
    store = HoldOne(runtime.store, "list", "/tasks/", timeout=120.0)
    runtime.store = store
    store.hold()
    assert vc.delete_actor("pub-2") is True  # (returned with its clean-up held at the listing)
    assert store.held.is_set(), "the clean-up never listed the failed calls"
    retune(deadline=Settings.deadline)  # (1.5 s was the delete's: not the next actor's setup)
    new = Publisher.get_or_create("pub-2")
    with pytest.raises(RuntimeError, match="publish 9 is down"):
        new.run.run(9)
    assert workflow.get_status("pub-2") == workflow.FAILED
    store.release.set()
    assert store.ended.wait(60)
    vc.shutdown()  # (waits for the clean-up to end)
    spec.init(settings=vc.Settings(storage=""))
    assert workflow.get_status("pub-2") == workflow.FAILED
    with pytest.raises(RuntimeError, match="publish 9 is down"):
        vc.get(workflow.resume("pub-2"))


def test_a_delete_that_finds_the_actor_deleted_already_leaves_the_next_actors_failed_calls(
    spec: StoreSpec,
) -> None:
    """A second delete finds the tombstone (False) and deletes what failed-call records are
    left; its listing answered after the next actor under the id recorded a failed call: it
    deleted that record too (every record it listed), and the new actor's call could no longer
    be resumed. Only the records of actors up to the tombstone it found go."""
    _gate["go"].set()  # (every run of the step fails at once)
    Publisher.get_or_create("pub-5")
    assert vc.delete_actor("pub-5") is True
    vc.shutdown()
    spec.init(settings=vc.Settings(storage=""))
    runtime = vc.get_runtime()
    store = HoldOne(runtime.store, "list", "/tasks/", timeout=120.0)
    runtime.store = store
    store.hold()
    answer: list[bool] = []
    second = threading.Thread(target=lambda: answer.append(vc.delete_actor("pub-5")), daemon=True)
    second.start()
    assert store.held.wait(60), "the second delete never listed the failed calls"
    new = Publisher.get_or_create("pub-5")
    with pytest.raises(RuntimeError, match="publish 7 is down"):
        new.run.run(7)
    store.release.set()
    second.join(60)
    assert answer == [False]
    assert workflow.get_status("pub-5") == workflow.FAILED
    with pytest.raises(RuntimeError, match="publish 7 is down"):
        vc.get(workflow.resume("pub-5"))


def test_a_damaged_failure_record_of_a_recreated_actor_still_says_failed(spec: StoreSpec) -> None:
    """For an actor created after a delete ``get_status`` reads the records it lists (to tell
    whose they are); a damaged one counts, as a LIST counted it, rather than turning the status
    into an ``IntegrityError``; ``resume`` is where it is refused."""
    Publisher.get_or_create("pub-3")
    assert vc.delete_actor("pub-3") is True
    Publisher.get_or_create("pub-3")
    _sync.sync(vc.get_runtime().store.put("actors/pub-3/tasks/c0ffee/failed", b"not a record"))
    assert workflow.get_status("pub-3") == workflow.FAILED
    with pytest.raises(IntegrityError):
        vc.get(workflow.resume("pub-3"))


def test_a_runner_whose_firing_meets_the_tombstone_counts_the_entry_stale_not_an_error(
    spec: StoreSpec,
) -> None:
    """A runner in another process, its cache holding the actor with a due timer, fires it
    just after the actor was deleted: its firing's put loses to the tombstone and the call
    fails with ``ActorDeletedError``. That was reported as an error (``vactor timers tick``
    exits 1, "timers could not be fired (they stay due for the next tick)") for a timer that
    will never fire: it is stale, like an entry whose actor a fresh load finds deleted."""
    from vactor_cloud.timer_firing import fire_actor

    old = Labelled.get_or_create("lab-2")
    old.arm.run("k", 0.0, "old")
    (entry,) = [e for e in _sync.sync(list_index(vc.get_runtime().store)) if e.actor_id == "lab-2"]
    runner = Runtime(Settings(storage=spec.url, storage_options=spec.options))
    try:
        runner.load("lab-2")  # its cache holds the old actor, due timer included
        assert vc.delete_actor("lab-2") is True
        report, done = fire_actor(runner, "runner-1", None, "lab-2", [entry])
    finally:
        runner.close()
    assert report.fired == 0 and not report.errors, report
    assert report.stale == 1 and done == [entry]


def test_an_earlier_actors_checkpoint_gone_while_it_is_replaced_is_created_again(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replace of an earlier actor's checkpoint (by the version read) meets it gone (a
    compaction deleted it between the read and the put): the run creates its checkpoint
    rather than failing the call with the object not found."""
    order_children.reset()
    Orders.get_or_create("ord-2").place.options(idempotency_key="k2").run("p")
    assert vc.delete_actor("ord-2") is True
    new = Orders.get_or_create("ord-2")
    store = vc.get_runtime().store
    put = store.put
    replaced: list[str] = []

    async def compacted_first(key: str, data: bytes, *, mode: Any = "overwrite") -> str:
        if "/tasks/" in key and not isinstance(mode, str) and not replaced:
            replaced.append(key)
            await store.delete(key)  # (what a compaction does meanwhile)
        return await put(key, data, mode=mode)

    monkeypatch.setattr(store, "put", compacted_first)
    assert new.place.options(idempotency_key="k2").run("p") == "p#2"
    assert replaced, "the earlier actor's checkpoint was never replaced"
    monkeypatch.undo()
    tasks = [k for k in _sync.sync(store.list("actors/ord-2/tasks/")) if not k.endswith("/failed")]
    assert len(tasks) == 1
    assert order_children.run == ["p", "p"]


def test_a_process_whose_cache_predates_the_delete_does_not_resume_the_old_actors_call(
    spec: StoreSpec,
) -> None:
    """This process caches the old actor; another deleted it and created a new one, and a
    failure record of the old actor's call stayed (written after the delete's clean-up, as by
    a call that raced it). ``get_status`` and ``resume`` judged the record by the cached step
    (the first actor's incarnation): FAILED, and the old call ran again, on the new actor
    (its put lost to the newer steps, it was applied on the newest). They now judge by the
    newest step when there are records (one probe)."""
    _gate["go"].set()
    old = Publisher.get_or_create("pub-4")
    with pytest.raises(RuntimeError, match="publish 5 is down"):
        old.run.run(5)
    store = vc.get_runtime().store
    (record_key,) = [k for k in _sync.sync(store.list("actors/pub-4/tasks/")) if k.endswith("/failed")]
    record = _sync.sync(store.get(record_key)).data
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options))
    try:
        assert _sync.sync(delete(other.log("pub-4"), other.settings, keep=other.keep)) is not None
        _sync.sync(other.store.put(record_key, record))  # (written after the clean-up: the race)
        other.create(Publisher.definition, "pub-4", (), {})
    finally:
        other.close()
    assert workflow.get_status("pub-4") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("pub-4")) == []


# -- this process's RUNNING ------------------------------------------------------------------------
_held = {"reached": threading.Event(), "go": threading.Event()}


@vc.virtual_actor
class Slow:
    def __init__(self) -> None:
        self.n = 0

    def hold(self) -> int:
        _held["reached"].set()
        assert _held["go"].wait(60), "the test never let the method go on"
        self.n += 1
        return self.n


def test_an_old_actors_method_still_running_does_not_make_the_next_actor_running(spec: StoreSpec) -> None:
    """A writer method of the old actor still runs in this process when the actor is deleted
    and made again. ``RUNNING`` was kept per actor id: the new actor, which runs nothing,
    showed RUNNING (``get_status``, ``list_all``). It is now kept per incarnation: the new
    actor is SUCCESSFUL while the old method runs, and RUNNING while a method of its own does."""
    _held["reached"].clear()
    _held["go"].clear()
    old = Slow.get_or_create("slow-1")
    running = old.hold.run_async()
    try:
        assert _held["reached"].wait(60), "the old actor's method never started"
        assert workflow.get_status("slow-1") == workflow.RUNNING  # (its own method: RUNNING)
        assert vc.delete_actor("slow-1") is True
        new = Slow.get_or_create("slow-1")
        assert workflow.get_status("slow-1") == workflow.SUCCESSFUL
        assert dict(workflow.list_all()).get("slow-1") == workflow.SUCCESSFUL
    finally:
        _held["go"].set()
    # (it raced the delete and the creation: it may be applied to the new actor, as documented)
    with contextlib.suppress(vc.ActorDeletedError):
        running.result(60)
    # and a method of the new actor's own running shows
    _held["reached"].clear()
    _held["go"].clear()
    mine = new.hold.run_async()
    try:
        assert _held["reached"].wait(60), "the new actor's method never started"
        assert workflow.get_status("slow-1") == workflow.RUNNING
    finally:
        _held["go"].set()
    assert mine.result(60) >= 1


# -- an event the old actor applied ----------------------------------------------------------------
@vc.virtual_actor
class Till:
    def __init__(self) -> None:
        self.paid = 0

    @vc.virtual_actor.on_event("pay")
    def on_pay(self, payload: dict[str, int]) -> int:
        self.paid += payload["amount"]
        return self.paid

    @vc.virtual_actor.readonly
    def total(self) -> int:
        return self.paid


def pay_30_leaving_its_inbox_object(actor_id: str, monkeypatch: pytest.MonkeyPatch) -> Till:
    """``actor_id``, a Till that applied a payment of 30 (event ``e1``) whose inbox object its
    writer left: it died between its commit and the deletes of the events it applied."""
    store = vc.get_runtime().store
    delete_many = store.delete_many
    delete_unchanged = store.delete_unchanged

    async def inbox_deletes_lost(keys: list[str], *args: Any, **kwargs: Any) -> Any:
        return await delete_many([k for k in keys if "/inbox/" not in k], *args, **kwargs)

    async def inbox_unchanged_deletes_lost(versions: dict[str, str]) -> Any:
        return await delete_unchanged({k: v for k, v in versions.items() if "/inbox/" not in k})

    old = Till.get_or_create(actor_id)
    vc.send_event(actor_id, "pay", {"amount": 30}, event_id="e1")
    with monkeypatch.context() as patch:
        patch.setattr(store, "delete_many", inbox_deletes_lost)
        patch.setattr(store, "delete_unchanged", inbox_unchanged_deletes_lost)
        old.process_events()
    return old


def test_an_event_the_old_actor_applied_is_not_applied_again_by_the_next_actor(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inbox object is deleted only after the commit that applied its event; a writer that
    died in between leaves it, and the actor's next fold finds it in the idempotency table and
    does not apply it again. The actor deleted and made again, the next actor (no table)
    applied it: the old actor's payment counted on the new one. The delete's clean-up now
    deletes the inbox objects of events the deleted actor applied (by its last step's table);
    events waiting unapplied stay for the next actor."""
    store = vc.get_runtime().store
    old = pay_30_leaving_its_inbox_object("till-1", monkeypatch)
    assert old.total.run() == 30
    assert _sync.sync(store.list("actors/till-1/inbox/")) == ["actors/till-1/inbox/e1"]
    vc.send_event("till-1", "pay", {"amount": 5}, event_id="e2")  # (waits: not applied)
    assert vc.delete_actor("till-1") is True
    new = Till.get_or_create("till-1")
    new.process_events()
    assert new.total.run() == 5


def test_a_delete_that_finds_the_actor_deleted_already_forgets_the_events_it_applied(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deleting process died right after its tombstone landed: none of its clean-up ran,
    and an applied event's inbox object was left (its writer died too). A delete again finds
    the actor deleted and does that clean-up (it did only the failed-call records): the next
    actor does not apply the old actor's event again."""
    store = vc.get_runtime().store

    async def died_after_the_tombstone(*args: Any) -> None:
        return None

    pay_30_leaving_its_inbox_object("till-4", monkeypatch)
    vc.send_event("till-4", "pay", {"amount": 5}, event_id="e2")  # (waits: not applied)
    monkeypatch.setattr(deletion, "_after_commit", died_after_the_tombstone)
    assert vc.delete_actor("till-4") is True
    monkeypatch.undo()
    assert "actors/till-4/inbox/e1" in _sync.sync(store.list("actors/till-4/inbox/"))
    assert vc.delete_actor("till-4") is False
    new = Till.get_or_create("till-4")
    new.process_events()
    assert new.total.run() == 5


def test_the_clean_up_unpickles_no_table_of_a_class_this_process_does_not_define(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pin (held): the serializer comes from the class, never from the step
    (docs/security.md). A process deleting a pickle actor whose class it does not define
    reads no pickled table to find the events it applied: the object stays, and a warning
    says so."""
    from vactor_cloud import inbox_leftovers

    pay_30_leaving_its_inbox_object("till-2", monkeypatch)
    monkeypatch.setattr(inbox_leftovers, "lookup_local_class", lambda name: None)
    with caplog.at_level("WARNING", logger="vactor_cloud"):
        assert vc.delete_actor("till-2") is True
        vc.shutdown()  # (waits for the clean-up)
    assert "inbox objects of events it applied may be left" in caplog.text
    spec.init(settings=vc.Settings(storage=""))
    assert _sync.sync(vc.get_runtime().store.list("actors/till-2/inbox/")) == ["actors/till-2/inbox/e1"]

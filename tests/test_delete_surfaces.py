"""A deleted actor (``vc.delete_actor``) as every other surface shows it.

``test_delete_actor.py`` attacks the delete itself (races, posts, compaction); this file
walks what a user touches afterwards: sending it events, reading its history (in Python and
with ``vactor history``), its waiting events (``vactor events``), and running read-only
methods on the steps before the delete (``run(at_step=)``, ``vactor call --at-step``). Each
test names the promise it checks."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from actors import Total
from cli_harness import Vactor, one_line_error
from delete_surface_workers import use_deleted

import vactor_cloud as vc
from vactor_cloud import _sync, workflow
from vactor_cloud.batch import PendingCall
from vactor_cloud.cli import EXIT_NOT_FOUND, EXIT_OK
from vactor_cloud.compaction import compact
from vactor_cloud.errors import ActorDeletedError
from vactor_cloud.inbox import list_inbox
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import Lane, StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Tally:
    def __init__(self, start: int = 0) -> None:
        self.total = start
        self.seen: list[Any] = []

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.total

    @vc.virtual_actor.on_event("ping")
    def ping(self, payload: Any) -> int:
        self.seen.append(payload)
        return len(self.seen)

    @vc.virtual_actor.readonly
    def pings(self) -> list[Any]:
        return list(self.seen)


def init(spec: StoreSpec) -> None:
    vc.shutdown()
    spec.init(settings=vc.Settings(storage=""))


def inbox_size(actor_id: str) -> int:
    return len(_sync.sync(list_inbox(vc.get_runtime().store, actor_id)))


# -- events --------------------------------------------------------------------------------------
def test_send_event_without_create_to_a_deleted_actor_is_refused_and_stores_nothing(spec: StoreSpec) -> None:
    """``send_event`` promises ``ActorNotFoundError`` for an actor that does not exist unless
    ``create=True``. A deleted actor's steps are still there: the check by "any step listed"
    (and the process's memory that the id once held an actor) took it for alive, stored the
    event, and the next, unrelated, actor created under the id applied it."""
    init(spec)
    Tally.get_or_create("ev-1", 1)
    init(spec)  # a fresh process: it learns that ev-1 exists from a send, then deletes it
    vc.send_event("ev-1", "ping", "before")
    assert vc.delete_actor("ev-1") is True
    with pytest.raises(ActorDeletedError, match="ev-1"):
        vc.send_event("ev-1", "ping", "same process")
    init(spec)  # a process that never saw the actor alive
    with pytest.raises(ActorDeletedError, match="get_or_create"):
        vc.send_event("ev-1", "ping", "cold")
    with pytest.raises(ActorDeletedError):
        _sync.sync(vc.send_event_async("ev-1", "ping", "async"))
    assert inbox_size("ev-1") == 1  # only the event sent before the delete
    vc.send_event("ev-1", "ping", "for the next one", create=True)  # asked for: it waits
    fresh = Tally.get_or_create("ev-1", 100)
    fresh.process_events()
    assert fresh.pings.run() == ["before", "for the next one"]
    vc.send_event("ev-1", "ping", "alive again")  # the id holds an actor again


# -- history -------------------------------------------------------------------------------------
def seed(url: str, actor_id: str) -> None:
    vc.init(url)
    try:
        handle = Tally.get_or_create(actor_id, 1)
        handle.add.run(2)
        handle.add.run(3)
        assert vc.delete_actor(actor_id) is True
    finally:
        vc.shutdown()


def test_history_shows_the_delete_in_words_and_marks_the_tombstone(spec: StoreSpec) -> None:
    """History showed the tombstone as a call of an internal method, ``__vactor_delete__()``,
    and nothing in a ``HistoryEntry`` said which step deleted the actor (short of matching that
    name). It says ``actor deleted``, ``deleted`` is True on that step only, and ``--json``'s
    call carries that as its ``meaning``, as timers' calls do."""
    init(spec)
    Tally.get_or_create("hist-1", 1).add.run(2)
    vc.delete_actor("hist-1")
    newest, *older = vc.ActorHandle("hist-1").history()  # (a handle of a deleted actor still has it)
    assert newest.deleted is True and not any(entry.deleted for entry in older)
    (call,) = newest.calls
    assert newest.call_text(call) == "actor deleted"
    assert "__vactor_delete__" not in newest.call_text(call)
    as_json = newest.to_json()
    assert as_json["deleted"] is True and as_json["calls"][0]["meaning"] == "actor deleted"
    assert "deleted" not in older[0].to_json()


def test_vactor_history_shows_the_delete_in_words(vactor: Vactor, store: str) -> None:
    seed(store, "hist-cli")
    shown = vactor("history", "hist-cli")
    assert shown.code == EXIT_OK, shown.err
    first = shown.out.splitlines()[1].split(None, 3)
    assert first[0] == "3" and first[3] == "actor deleted", shown.out
    assert "__vactor_delete__" not in shown.out
    as_json = vactor("--json", "history", "hist-cli").json()
    assert isinstance(as_json, list) and as_json[0]["deleted"] is True


# -- vactor events -------------------------------------------------------------------------------
def test_vactor_events_says_a_deleted_actors_events_wait_for_the_next_actor(
    vactor: Vactor, store: str
) -> None:
    """Events sent before a delete stay in the inbox for the next actor created under the id.
    ``vactor events ls`` called them ``pending`` (as if the actor would apply them) and
    ``drain`` said the actor was ``not created yet``: both now say it was deleted."""
    vc.init(store)
    try:
        Tally.get_or_create("ev-cli", 1)
        vc.send_event("ev-cli", "ping", "before")
        vc.delete_actor("ev-cli")
    finally:
        vc.shutdown()
    listed = vactor("events", "ls", "--actor", "ev-cli")
    assert listed.code == EXIT_OK, listed.err
    (row,) = listed.out.splitlines()[1:]
    assert row.split(None, 4)[4] == "waiting: actor deleted, for the next actor created under its id"
    drained = vactor("events", "drain")
    assert drained.code == EXIT_OK, drained.err
    assert "ev-cli: deleted, 1 event waits for the next actor created under its id" in drained.out
    as_json = vactor("--json", "events", "drain", "--actor", "ev-cli").json()
    assert isinstance(as_json, list) and as_json[0]["deleted"] is True and as_json[0]["left"] == 1


# -- the steps before the delete -----------------------------------------------------------------
def test_read_only_methods_still_run_on_the_steps_before_the_delete(spec: StoreSpec) -> None:
    """``state_at(N)`` of a step before the tombstone works (its past is history), and its
    docstring points to ``handle.method.run(at_step=N)`` as the way to call read-only methods
    there: that raised ``ActorDeletedError`` (looking the method up loaded the actor). Every
    call on the actor's present still fails, with the error naming it."""
    init(spec)
    handle = Tally.get_or_create("past-1", 1)
    handle.add.run(2)
    blob = pickle.dumps(handle)
    vc.delete_actor("past-1")
    assert handle.state_at(1).total == 3
    assert handle.get.run(at_step=1) == 3
    assert handle.get.options(at_step=0).run() == 1
    assert _sync.sync(_awaited(handle.get.options(at_step=1).run_async())) == 3
    init(spec)  # another process, from a pickled handle
    again = pickle.loads(blob)
    assert again.get.run(at_step=1) == 3
    present = r"past-1.*step 2 is a tombstone"
    with pytest.raises(ActorDeletedError, match=present):
        again.get.run()
    with pytest.raises(ActorDeletedError, match=present):
        again.add.run(1)
    with pytest.raises(ActorDeletedError, match=present):
        again.get.run(at_step=2)
    with pytest.raises(ActorDeletedError):
        vc.get_actor("past-1")


async def _awaited(future: Any) -> Any:
    return await future


def test_vactor_call_at_step_runs_on_a_deleted_actors_past(vactor: Vactor, store: str) -> None:
    seed(store, "past-cli")  # steps 0..2, the tombstone 3
    past = vactor("--json", "call", "past-cli", "get", "--at-step", "1")
    assert past.code == EXIT_OK, past.err
    assert past.json() == {"result": 3}
    now = vactor("call", "past-cli", "get")
    assert now.code == EXIT_NOT_FOUND and "was deleted" in one_line_error(now)


# -- timers --------------------------------------------------------------------------------------
def test_cancelling_a_timer_of_a_deleted_actor_says_it_was_deleted(spec: StoreSpec) -> None:
    """``cancel_timer`` on an id that never held an actor raises ``ActorNotFoundError`` and
    ``timers()`` on a deleted one ``ActorDeletedError``; ``cancel_timer`` on a deleted actor
    answered False ("there was no such timer"), as if the actor were alive without it."""
    init(spec)
    handle = Tally.get_or_create("timer-1", 1)
    assert handle.add.options(delay=3600, timer_key="renewal").run(1) == "renewal"
    vc.delete_actor("timer-1")
    with pytest.raises(ActorDeletedError, match="timer-1"):
        handle.cancel_timer("renewal")
    with pytest.raises(ActorDeletedError, match="timer-1"):
        handle.timers()
    with pytest.raises(ActorDeletedError, match="timer-1"):
        handle.add.options(delay=60).run(1)


# -- deleting from inside the actor ----------------------------------------------------------------
@vc.virtual_actor
class SelfDeleting:
    def __init__(self) -> None:
        self.calls = 0

    def delete_me(self, actor_id: str) -> bool:
        self.calls += 1
        return vc.delete_actor(actor_id)

    @vc.virtual_actor.readonly
    def delete_me_reading(self, actor_id: str) -> bool:
        return vc.delete_actor(actor_id)


def test_a_writer_method_deleting_its_own_actor_is_refused_and_nothing_is_deleted(spec: StoreSpec) -> None:
    """A writer method that deleted its own actor committed the tombstone before its own step:
    the method's call then failed with ``ActorDeletedError`` (the delete it asked for done, its
    own effects lost, and an error telling to ``get_or_create``). It is refused, as the other
    calls that would wait for the running method are (``ReentrantCallError``, saying what to
    do); a read-only method, which commits nothing, may delete its actor."""
    init(spec)
    handle = SelfDeleting.get_or_create("self-1")
    with pytest.raises(vc.ReentrantCallError, match=r"delete_actor\(\) of actor 'self-1'.*after the method"):
        handle.delete_me.run("self-1")
    assert [entry.deleted for entry in handle.history()] == [False]  # nothing committed
    assert handle.delete_me_reading.run("self-1") is True
    with pytest.raises(ActorDeletedError):
        vc.get_actor("self-1")
    SelfDeleting.get_or_create("self-3")
    assert SelfDeleting.get_or_create("self-2").delete_me.run("self-3") is True  # another actor: allowed


@vc.virtual_actor
class DeletesItselfAtBirth:
    """Its ``__init__`` deletes the actor being created (``how``: with the blocking call, or the
    async twin run to its end on the creating thread)."""

    def __init__(self, actor_id: str, how: str) -> None:
        self.outcome = "deleted"
        try:
            if how == "sync":
                vc.delete_actor(actor_id)
            else:
                asyncio.run(vc.delete_actor_async(actor_id))
        except vc.ReentrantCallError as refused:
            self.outcome = str(refused)

    def said(self) -> str:  # (a writer: the call that runs the pending creation first)
        return self.outcome


@pytest.mark.parametrize("how", ["sync", "async"])
def test_an_init_deleting_its_own_actor_not_waited_for_is_refused_and_never_hangs(
    spec: StoreSpec, how: str
) -> None:
    """With ``wait_for_init=False`` the creation runs at the first call, and a delete waits for
    this process's pending creation of the actor first: from inside that creation's own
    ``__init__`` it waited for itself, for good (the calling thread never returned). It is
    refused with ``ReentrantCallError``, saying to delete after the creation, and the creation
    commits."""
    vc.shutdown()
    spec.init(settings=vc.Settings(storage="", wait_for_init=False))
    actor_id = f"born-{how}"
    said: list[str] = []
    caller = threading.Thread(
        target=lambda: said.append(DeletesItselfAtBirth.get_or_create(actor_id, actor_id, how).said.run()),
        daemon=True,
    )
    caller.start()
    caller.join(60)
    assert not caller.is_alive(), "the delete inside __init__ waited for its own creation: hung"
    assert said and "__init__" in said[0] and "after" in said[0], said
    assert vc.get_actor(actor_id).said.run() == said[0]  # created, not deleted


# -- another process -----------------------------------------------------------------------------
def test_a_handle_sent_to_a_worker_before_the_delete_sees_it_deleted_there(
    spec: StoreSpec, store_lane: Lane
) -> None:
    """A handle pickled before the delete (a Dask or Ray task's argument) used in a worker
    process after it: the present refused with the error naming the actor (pickled back
    intact), its past readable, its history marked."""
    if not store_lane.multiprocess:
        pytest.skip(f"lane {store_lane.name!r} stores are not shared between processes")
    init(spec)
    handle = Total.get_or_create("worker-1", 1)
    handle.add.run(2)
    vc.delete_actor("worker-1")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=spec.init) as pool:
        seen = pool.submit(use_deleted, handle).result(timeout=240)
    assert seen["past"] == ("ok", 3)
    for what in ("read", "write", "event"):
        kind, message = seen[what]
        assert kind == "ActorDeletedError" and "'worker-1'" in message and "step 2" in message, seen
    assert seen["history"] == ("ok", [True, False, False])


# -- the Ray-spelled workflow facade ---------------------------------------------------------------
_broken = {"publish": True}
_published: list[int] = []


@workflow.step(max_retries=0)
def _publish(value: int) -> int:
    if _broken["publish"]:
        raise RuntimeError("publish is down")
    _published.append(value)
    return value


@workflow.virtual_actor
class Job:
    def __init__(self) -> None:
        self.done: list[int] = []

    def run(self, x: int) -> Any:
        return self.record.step(_publish.step(x))

    def record(self, value: int) -> int:
        self.done.append(value)
        return value

    @workflow.virtual_actor.readonly
    def results(self) -> list[int]:
        return list(self.done)


def test_a_new_actor_under_a_deleted_id_inherits_no_failed_calls_to_resume(spec: StoreSpec) -> None:
    """A new actor under the id starts with no keys and no timers; it also started with the old
    actor's failed sub-workflow calls: ``get_status`` said FAILED and ``resume`` ran the old
    actor's call (its method, its arguments) on the new one. The delete forgets them."""
    init(spec)
    _broken["publish"], _published[:] = True, []
    old = Job.get_or_create("job-1")
    with pytest.raises(RuntimeError, match="publish is down"):
        old.run.run(4)
    assert workflow.get_status("job-1") == workflow.FAILED
    assert vc.delete_actor("job-1") is True
    with pytest.raises(ActorDeletedError):
        workflow.get_status("job-1")
    _broken["publish"] = False
    new = Job.get_or_create("job-1")
    assert workflow.get_status("job-1") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("job-1")) == []
    assert new.results.run() == [] and _published == []


def test_vactor_show_of_a_deleted_actor_points_to_its_history_and_last_state(
    vactor: Vactor, store: str
) -> None:
    """``vactor show`` of a deleted actor said to create a new one with ``Cls.get_or_create``
    (Python, and not what looking at it asks for); it says where its past is."""
    seed(store, "show-1")  # steps 0..2, the tombstone 3
    shown = vactor("show", "show-1")
    assert shown.code == EXIT_NOT_FOUND
    line = one_line_error(shown)
    assert "'show-1' was deleted" in line and "step 3" in line
    assert "vactor show show-1 --step 2" in line and "vactor history show-1" in line
    before = vactor("--json", "show", "show-1", "--step", "2")
    assert before.code == EXIT_OK and before.json()["state"] == {"total": 6, "seen": []}  # type: ignore[index]


def test_every_vactor_command_on_a_deleted_actor_says_where_its_history_is(
    vactor: Vactor, store: str
) -> None:
    """``call``, ``timers repair --actor``, ``events ls --actor`` on a deleted actor printed the
    library's advice to call ``Cls.get_or_create`` and nothing a CLI user can run; they say
    ``vactor history ID`` (exit 3, one line, as before)."""
    seed(store, "cli-del")
    for argv in (
        ("call", "cli-del", "get"),
        ("call", "cli-del", "add", "1"),
        ("timers", "repair", "--actor", "cli-del"),
        ("events", "ls", "--actor", "cli-del"),
    ):
        result = vactor(*argv)
        assert result.code == EXIT_NOT_FOUND, (argv, result.err)
        line = one_line_error(result)
        assert "'cli-del'" in line and "was deleted" in line and "vactor history cli-del" in line, line


# -- a creation this process has not finished (wait_for_init=False) ----------------------------------
_gate = threading.Event()


@vc.virtual_actor
class SlowStart:
    def __init__(self) -> None:
        _gate.wait(120)  # bounded: a test that fails does not hang
        self.ready = True

    @vc.virtual_actor.readonly
    def is_ready(self) -> bool:
        return self.ready


def test_a_delete_after_a_get_or_create_that_did_not_wait_deletes_what_it_created(spec: StoreSpec) -> None:
    """With ``wait_for_init=False`` this process's writer calls wait for its pending creation
    (program order); ``delete_actor`` did not: on an id never used it raised
    ``ActorNotFoundError`` (on a deleted one it answered False), and the actor was then
    created, alive after the delete that followed its creation in the program."""
    spec.init(settings=vc.Settings(storage="", wait_for_init=False))
    _gate.clear()
    handle = SlowStart.get_or_create("slow-1")  # returns at once; __init__ waits for the gate
    outcome: list[object] = []

    def delete() -> None:
        try:
            outcome.append(vc.delete_actor("slow-1"))
        except Exception as exc:
            outcome.append(exc)

    deleter = threading.Thread(target=delete)
    deleter.start()
    deleter.join(1.5)  # (without the fix it is over by now: an id with no step yet, a few requests)
    _gate.set()
    deleter.join(120)
    assert outcome == [True]
    with pytest.raises(ActorDeletedError):
        handle.is_ready.run()


def test_send_event_from_a_process_that_cached_the_tombstone_finds_the_actor_created_since(
    spec: StoreSpec,
) -> None:
    """A process that heard "deleted" (its cache holds the tombstone) sends an event after
    another process created the actor again, wrote and compacted it past the tombstone: the
    new actor exists, and the event is taken (a probe from the cached tombstone would stop at
    the compacted steps and say "deleted"). (``min_age=0``: maintenance only, as a test may.)"""
    init(spec)
    handle = Tally.get_or_create("cached-1", 1)
    vc.delete_actor("cached-1")
    with pytest.raises(ActorDeletedError):
        handle.get.run()  # this process now caches the tombstone
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options))
    try:
        other.create(Tally.definition, "cached-1", (10,), {})
        for _ in range(3):
            future: vc.ActorFuture[Any] = vc.ActorFuture()
            call = PendingCall.by_value(
                "add", (1,), {}, readonly=False, future=future, call_id=uuid.uuid4().hex
            )
            other.core("cached-1").submit(call)
            future.result(60)
        report = _sync.sync(compact(other.log("cached-1"), keep_last=1, min_age=0, fresh_window=0.0))
        assert report.deleted_steps >= 2
    finally:
        other.close()
    assert vc.send_event("cached-1", "ping", "to the new actor")
    assert inbox_size("cached-1") == 1

"""Hostile review of timers, events, workflow steps, sub-tasks and idempotency keys.

Each test here failed before its fix (or is marked xfail with the fix it needs).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_runner import fire_due_timers, repair_timer_index
from vactor_cloud.timers import IndexEntry, list_index, parse_entry

pytestmark = pytest.mark.vactor_lanes("memory", "local")

GATE = threading.Event()
ENTERED = threading.Event()


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.paid = 0

    def hold(self) -> int:
        ENTERED.set()
        GATE.wait(30)
        return self.paid

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: Any) -> int:
        self.paid += int(payload)
        return self.paid


@pytest.fixture
def actors(actor_store: StoreSpec) -> StoreSpec:
    """``actor_store``: vactor_cloud started on a fresh store of the lane, shut down after."""
    return actor_store


# -- events: wait_for_event(timeout=) -----------------------------------------------------------
def test_wait_for_event_times_out_while_a_writer_method_of_the_actor_runs(actors: StoreSpec) -> None:
    # docs/events.md: "polls ... until `timeout` seconds have passed, then raises TimeoutError".
    GATE.clear()
    ENTERED.clear()
    ledger = Ledger.get_or_create("busy-ledger")
    running = ledger.hold.run_async()
    try:
        assert ENTERED.wait(30)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ledger.wait_for_event("paid", timeout=0.3)
        # Waiting for the writer takes 30 s (until the test opens the gate): the bound is that
        # gap, not a speed (2 s, on a loaded host, was close to one).
        assert time.monotonic() - started < 15
        assert not running.done()
    finally:
        GATE.set()
        running.exception(30)


# -- timers: a fired method's sub-tasks ---------------------------------------------------------
CHILD_RUNS: list[str] = []


def _side_effect(tag: str) -> str:
    CHILD_RUNS.append(tag)
    return tag


@vc.virtual_actor
class Chore:
    def __init__(self) -> None:
        self.done: list[str] = []

    def arm(self) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("work", after=0, key="job", args=("job",))

    def work(self, tag: str) -> None:
        self.done.append(vc.subtask(_side_effect).run(tag))

    @vc.virtual_actor.readonly
    def log(self) -> list[str]:
        return list(self.done)


def test_a_timer_fired_again_after_a_failed_commit_reuses_its_finished_sub_tasks(
    store_spec: StoreSpec,
) -> None:
    # docs/subworkflows.md / subtask.py: a re-run of the same call (a retry after a storage fault,
    # a keyed call sent again after a crash) finds the finished children and does not run them
    # again. A timer is such a call: the runner that fires it again after the first firing's
    # commit failed (or the runner died) must not repeat the children's side effects.
    store_spec.init()
    try:
        # puts of steps: 1 create, 2 arm, 3-7 the first firing and its own retries (fail: nothing committed)
        rule = FaultRule(
            "fail_before",
            operations=frozenset({"put"}),
            key_contains="/steps/",
            at=(3, 4, 5, 6, 7),
            retryable=False,
        )
        install(FaultConfig((rule,), name="fire-fails"))
        CHILD_RUNS.clear()
        chore = Chore.get_or_create("chore")
        chore.arm.run()
        time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
        first = vc.fire_due_timers()
        assert first.fired == 0 and first.errors, first
        second = vc.fire_due_timers()
        assert second.fired == 1, second
        assert chore.log.run() == ["job"]
        assert CHILD_RUNS == ["job"]  # the first firing's checkpointed child, not run again
    finally:
        vc.shutdown()


# -- timers: a fired method that raises SystemExit ---------------------------------------------
@vc.virtual_actor
class Quitter:
    def __init__(self) -> None:
        self.fired = 0

    def arm(self) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule("bail", after=0, key="bail")

    def bail(self) -> None:
        self.fired += 1
        raise SystemExit(3)


def test_a_timer_whose_method_raises_system_exit_is_not_left_pending_without_an_index_entry(
    actors: StoreSpec,
) -> None:
    # A call raising a BaseException that is not an Exception is excluded (batch.py): nothing
    # commits, so the timer stays pending. The runner reported it fired and deleted its index
    # entry: a pending timer nothing would ever fire again (docs/timers.md: the index entry is
    # dropped only when its timer was cancelled, fired or rescheduled).
    quitter = Quitter.get_or_create("quitter")
    quitter.arm.run()
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
    report = vc.fire_due_timers()
    assert report.fired == 0 and report.errors, report
    pending = [t["key"] for t in quitter.timers()]
    listed = [e.key for e in _sync.sync(list_index(vc.get_runtime().store))]
    assert pending == listed == ["bail"]


def test_the_error_of_a_timer_whose_method_raises_system_exit_says_what_to_do(actors: StoreSpec) -> None:
    """Before, the runner reported ``quitter2/bail: not committed: SystemExit(3)`` and nothing
    more, at every tick for ever: not that the timer stays due and is fired again, nor how to
    stop that (fix the method, or cancel the timer)."""
    quitter = Quitter.get_or_create("quitter2")
    quitter.arm.run()
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
    report = vc.fire_due_timers(split="none")
    assert report.fired == 0 and len(report.errors) == 1, report
    error = report.errors[0]
    assert "SystemExit(3)" in error and "stays due" in error, error
    assert "cancel_timer('bail')" in error and "'quitter2'" in error, error


# -- timers: what schedule() calls ------------------------------------------------------------
@vc.virtual_actor
class Planner:
    def __init__(self) -> None:
        self.n = 0

    def plan(self, method: str) -> str:
        call = vc.current_call()
        assert call is not None
        return call.schedule(method, after=60)

    def bump(self) -> None:
        self.n += 1

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n


@pytest.mark.parametrize("method", ["bmup", "peek"])
def test_schedule_refuses_a_method_that_is_not_a_writer_of_the_actor_when_it_is_scheduled(
    actors: StoreSpec, method: str
) -> None:
    # The handle refuses a read-only method for options(delay=) ("timers call writer methods"),
    # and TimerEdits.schedule has the check ("the actor has no writer method ... to call from a
    # timer"), but schedule() inside a method never passed it the actor's methods: a typo was
    # committed and surfaced only when the timer fired, as an AttributeError in history.
    planner = Planner.get_or_create(f"planner-{method}")
    with pytest.raises(ValueError, match="no writer method"):
        planner.plan.run(method)
    assert planner.timers() == []
    assert planner.plan.run("bump").startswith("t-")  # a writer method is scheduled


def test_wait_for_event_with_timeout_zero_returns_an_event_already_applied(actors: StoreSpec) -> None:
    # docs/events.md: "If such an event was already applied (within the window) it returns at
    # once". Guards the bound on the wait above: a zero budget still looks once.
    ledger = Ledger.get_or_create("zero-ledger")
    ledger.send_event("paid", 5, event_id="p1")
    assert ledger.process_events() == 1
    assert ledger.wait_for_event("paid", timeout=0, event_id="p1") == 5


# -- timers: the due index when a key is re-armed at the same due time ---------------------------
def test_a_timer_re_armed_at_the_due_time_of_the_one_just_fired_keeps_its_index_entry(
    actors: StoreSpec,
) -> None:
    # The index key timers/<due_ms>/<actor>/<key> named no particular occurrence: re-arming a
    # key at the due time of the occurrence just fired found the fired one's entry (create-only
    # put: already exists, taken as written), which the runner then deleted; the timer never
    # fired until `vactor timers repair`. Entries now hold the step that scheduled them.
    from vactor_cloud.timer_firing import delete_entries, fire_actor

    runtime = vc.get_runtime()
    planner = Planner.get_or_create("re-armed")
    at = float(int(time.time()) - 5)  # a fixed epoch time, as an application re-arming "renewal" uses
    planner.bump.options(at=at, timer_key="renewal").run()
    entries = _sync.sync(list_index(runtime.store))
    report, done = fire_actor(runtime, "runner-a", None, "re-armed", entries, delete=False)
    assert report.fired == 1 and done == entries
    planner.bump.options(at=at, timer_key="renewal").run()  # re-armed before the runner's delete
    _sync.sync(delete_entries(runtime.store, done))
    assert [t["key"] for t in planner.timers()] == ["renewal"]
    assert vc.fire_due_timers().fired == 1
    assert planner.peek.run() == 2


@vc.virtual_actor
class Renewer:
    def __init__(self) -> None:
        self.n = 0

    def renew(self, at: float) -> None:
        self.n += 1
        if self.n < 2:  # re-arms itself at the same fixed time, from the fired call itself
            call = vc.current_call()
            assert call is not None
            call.schedule("renew", at=at, key="renewal", args=(at,))

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n


def test_a_timer_that_re_arms_itself_at_its_own_due_time_keeps_an_index_entry(actors: StoreSpec) -> None:
    # The same defect from inside: the fired call re-arms its key at the same due time, in the
    # step that consumes the fired occurrence. The new occurrence's entry was the fired one's
    # name, which the runner deleted after the commit.
    renewer = Renewer.get_or_create("self-renewing")
    at = float(int(time.time()) - 5)
    renewer.renew.options(at=at, timer_key="renewal").run(at)
    assert vc.fire_due_timers().fired == 1
    assert [t["key"] for t in renewer.timers()] == ["renewal"]
    assert [e.key for e in _sync.sync(list_index(vc.get_runtime().store))] == ["renewal"]
    assert vc.fire_due_timers().fired == 1
    assert renewer.peek.run() == 2
    assert renewer.timers() == [] and _sync.sync(list_index(vc.get_runtime().store)) == []


@pytest.mark.parametrize("shift", [-1.0, 3600.0], ids=["earlier", "later"])
def test_a_timer_re_armed_at_another_due_time_while_the_runner_deletes_keeps_its_entry(
    actors: StoreSpec, shift: float
) -> None:
    from vactor_cloud.timer_firing import delete_entries, fire_actor

    runtime = vc.get_runtime()
    actor_id = f"re-armed-{shift:+.0f}"
    planner = Planner.get_or_create(actor_id)
    at = float(int(time.time()) - 5)
    planner.bump.options(at=at, timer_key="renewal").run()
    entries = _sync.sync(list_index(runtime.store))
    _, done = fire_actor(runtime, "runner-a", None, actor_id, entries, delete=False)
    planner.bump.options(at=at + shift, timer_key="renewal").run()
    _sync.sync(delete_entries(runtime.store, done))
    listed = _sync.sync(list_index(runtime.store))
    assert [(e.key, e.due_ms) for e in listed] == [("renewal", math.ceil((at + shift) * 1000))]
    assert vc.fire_due_timers().fired == (1 if shift < 0 else 0)
    assert planner.peek.run() == (2 if shift < 0 else 1)


def test_index_entries_name_their_occurrence_and_old_names_still_parse() -> None:
    # New entries carry the step that scheduled their occurrence (timers/<due>-<gen>/...);
    # entries written before (timers/<due>/...) still parse, as the legacy form.
    for entry in (IndexEntry(1234, "a", "k"), IndexEntry(1234, "a", "k", 0), IndexEntry(1234, "a", "k", 57)):
        assert parse_entry(entry.object_key) == entry
    assert IndexEntry(1234, "a", "k").object_key == "timers/00000000000000001234/a/k"
    assert IndexEntry(1234, "a", "k", 57).object_key == "timers/00000000000000001234-57/a/k"
    for bad in ("-", "-07", "-x", "-5-6", "-٣"):  # names whose entry would delete another key
        assert parse_entry(f"timers/00000000000000001234{bad}/a/k") is None


def test_each_occurrence_of_a_recurring_timer_has_an_entry_of_its_own(actors: StoreSpec) -> None:
    store = vc.get_runtime().store
    planner = Planner.get_or_create("recurring-entries")
    at = float(int(time.time()) - 5)
    planner.bump.options(at=at, timer_key="hourly", every=3600).run()
    (first,) = _sync.sync(list_index(store))
    assert vc.fire_due_timers().fired == 1
    (second,) = _sync.sync(list_index(store))
    assert (second.key, second.due_ms) == ("hourly", math.ceil((at + 3600) * 1000))
    assert first.gen is not None and second.gen is not None and second.gen > first.gen


def test_a_running_runner_fires_every_re_arm_at_one_fixed_due_time(actors: StoreSpec) -> None:
    # A long-running runner against a client that re-arms the same key at the same (past) due
    # time as soon as each occurrence fired: a re-arm may land before the runner's delete of
    # the entry of the occurrence before it (a guard: the window is narrow, the deterministic
    # cases are the tests above).
    planner = Planner.get_or_create("re-armed-running")
    at = float(int(time.time()) - 5)
    stop = threading.Event()
    runner = threading.Thread(target=vc.run_timers, kwargs={"poll": 0.05, "stop": stop}, daemon=True)
    runner.start()
    try:
        for round_ in range(1, 6):
            planner.bump.options(at=at, timer_key="renewal").run()
            deadline = time.monotonic() + 30
            while planner.peek.run() < round_ and time.monotonic() < deadline:
                time.sleep(0.01)
            assert planner.peek.run() == round_, f"re-arm {round_} never fired"
    finally:
        stop.set()
        runner.join(60)
    assert planner.timers() == []


def _legacy_timer(monkeypatch: pytest.MonkeyPatch, actor: Any, at: float) -> IndexEntry:
    """Schedule ``renewal`` as a version before generations did (no ``g`` in the step), with the
    entry it wrote then (the old name); that entry."""
    from vactor_cloud import keys
    from vactor_cloud.timers import Timer

    store = vc.get_runtime().store
    to_json = Timer.to_json
    with monkeypatch.context() as patch:
        patch.setattr(Timer, "to_json", lambda self: {k: v for k, v in to_json(self).items() if k != "g"})
        actor.bump.options(at=at, timer_key="renewal").run()
    (written,) = _sync.sync(list_index(store))
    _sync.sync(store.delete(written.object_key))
    old = IndexEntry(written.due_ms, written.actor_id, written.key)
    _sync.sync(store.put(keys.timer_index_key(old.due_ms, old.actor_id, old.key), b""))
    return old


def test_a_timer_scheduled_before_generations_fires_from_its_old_entry_and_repair_keeps_its_name(
    actors: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = Planner.get_or_create("legacy")
    old = _legacy_timer(monkeypatch, planner, float(int(time.time()) - 5))
    store = vc.get_runtime().store
    assert repair_timer_index(["legacy"]) == 1  # the old name again: no second entry
    assert _sync.sync(list_index(store)) == [old]
    report = vc.fire_due_timers()
    assert (report.fired, report.stale) == (1, 0)
    assert planner.peek.run() == 1
    assert _sync.sync(list_index(store)) == [] and planner.timers() == []


def test_an_old_entry_beside_the_new_one_of_the_same_timer_fires_it_once_and_both_go(
    actors: StoreSpec,
) -> None:
    from vactor_cloud import keys

    store = vc.get_runtime().store
    planner = Planner.get_or_create("both-forms")
    planner.bump.options(at=float(int(time.time()) - 5), timer_key="renewal").run()
    (new,) = _sync.sync(list_index(store))
    assert new.gen is not None
    _sync.sync(store.put(keys.timer_index_key(new.due_ms, new.actor_id, new.key), b""))  # the old name
    assert len(_sync.sync(list_index(store))) == 2
    report = vc.fire_due_timers()
    assert (report.fired, report.stale) == (1, 1)
    assert planner.peek.run() == 1
    assert _sync.sync(list_index(store)) == []


def test_stale_entries_of_either_form_are_dropped(actors: StoreSpec) -> None:
    from vactor_cloud import keys

    store = vc.get_runtime().store
    planner = Planner.get_or_create("stale-forms")
    at = float(int(time.time()) - 5)
    planner.bump.options(at=at, timer_key="gone").run()
    (new,) = _sync.sync(list_index(store))
    _sync.sync(store.put(keys.timer_index_key(new.due_ms, new.actor_id, new.key), b""))
    _sync.sync(store.put(keys.timer_index_key(new.due_ms, new.actor_id, "never", 1), b""))
    assert planner.cancel_timer("gone")
    report = vc.fire_due_timers()
    assert (report.fired, report.stale) == (0, 3)
    assert _sync.sync(list_index(store)) == [] and planner.peek.run() == 0


# -- timers: call options given with delay=/at= -------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{"max_retries": 2}, {"name": "nightly"}, {"metadata": {"team": "a"}}, {"catch_exceptions": True}],
    ids=lambda o: next(iter(o)),
)
def test_call_options_a_timer_would_drop_are_refused_with_delay(actors: StoreSpec, options: Any) -> None:
    # options(delay=..., max_retries=2) scheduled a timer that fired with none of them: the body
    # ran once and its failure consumed the timer; name/metadata were not in history. Refused.
    planner = Planner.get_or_create("with-options")
    with pytest.raises(ValueError, match="timer"):
        planner.bump.options(delay=0.0, **options).run()
    with pytest.raises(ValueError, match="timer"):
        planner.bump.options(**options).options(at=time.time()).run()
    assert planner.timers() == []


# -- timers: the index memory, far-future times, guards (review h12) -----------------------------
def test_the_index_memory_of_an_actor_re_armed_many_times_holds_only_its_pending_occurrences(
    actors: StoreSpec,
) -> None:
    # _IndexMemory bounded the number of actors, not what it held per actor: every re-arm of a
    # key (each occurrence now has a name of its own) added a name that nothing in the writing
    # process ever dropped (the runner that deletes entries is usually another process). A
    # session-expiry timer re-armed on every call grew the set by one name per call, for good.
    from vactor_cloud.timers import _memory

    store = vc.get_runtime().store
    planner = Planner.get_or_create("re-armed-often")
    at = float(int(time.time()) + 3600)
    for i in range(40):
        planner.bump.options(at=at + (i % 2), timer_key="expire").run()
    planner.bump.options(at=at, timer_key="other").run()
    (pending,) = [t for t in planner.timers() if t["key"] == "expire"]
    known = _memory.known(store, "re-armed-often")
    assert len(known) <= 2, f"{len(known)} names remembered for 2 pending timers"
    # what it still remembers are the pending occurrences' own entries: no rewrite is skipped
    listed = {(e.key, e.due_ms, e.gen) for e in _sync.sync(list_index(store))}
    assert known <= listed
    assert ("expire", math.ceil(pending["due"] * 1000)) in {(k, d) for k, d, _ in known}


def test_a_runner_listing_other_runners_actors_remembers_a_bounded_number_of_their_entries() -> None:
    # A runner remembers every entry it lists (split=runners: also those of actors another runner
    # fires and deletes). A recurring timer listed at each poll added a name per occurrence,
    # never dropped: a long-running runner's memory grew with every occurrence it had seen.
    from vactor_cloud.storage import MemoryStore
    from vactor_cloud.timers import _memory, remember_listed

    store = MemoryStore()
    for n in range(50):
        due = 1_000_000 + n * 1000
        entries = [IndexEntry(due, "elsewhere", "every-second", 10 + n)]
        remember_listed(store, entries, complete_until_ms=due + 500)
    assert _memory.known(store, "elsewhere") == {("every-second", 1_000_000 + 49_000, 59)}


def test_a_timer_due_at_the_latest_due_time_has_an_entry_runners_can_read(actors: StoreSpec) -> None:
    # LATEST_DUE was (10**20 - 1) / 1000, which is 1e17 as a float: its due_ms has 21 digits,
    # an entry name no runner parses (never listed, never fired, never dropped).
    from vactor_cloud.timers import LATEST_DUE

    planner = Planner.get_or_create("latest")
    planner.bump.options(at=LATEST_DUE, timer_key="last").run()
    assert [e.key for e in _sync.sync(list_index(vc.get_runtime().store))] == ["last"]


def test_a_recurring_timer_with_a_huge_period_does_not_break_repair_of_every_actor(
    actors: StoreSpec,
) -> None:
    # every= had no upper bound: the occurrence after the first was due past LATEST_DUE, its
    # entry a name no runner parses (21 digits), or its due_ms infinite (OverflowError on every
    # index write, repair included, which then failed for every actor).
    from vactor_cloud.timers import LATEST_DUE

    huge = Planner.get_or_create("huge-period")
    plain = Planner.get_or_create("plain")
    with pytest.raises(ValueError, match="every"):
        huge.bump.options(at=float(int(time.time()) - 5), timer_key="never", every=1e306).run()
    huge.bump.options(at=float(int(time.time()) - 5), timer_key="once", every=LATEST_DUE).run()
    assert vc.fire_due_timers().fired == 1
    plain.bump.options(at=float(int(time.time()) + 3600), timer_key="later").run()
    store = vc.get_runtime().store
    for entry in _sync.sync(list_index(store)):
        _sync.sync(store.delete(entry.object_key))
    assert repair_timer_index() == 2
    assert {e.key for e in _sync.sync(list_index(store))} == {"once", "later"}


def test_timers_ls_shows_a_far_future_timer_and_each_entry_s_generation(
    actors: StoreSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    # `vactor timers ls` printed due times with datetime.fromtimestamp: a timer due after the
    # year 9999 (accepted up to LATEST_DUE) made the command fail with an OverflowError/ValueError.
    import json

    from vactor_cloud.cli import main

    planner = Planner.get_or_create("far-future")
    planner.bump.options(at=1e15, timer_key="far").run()
    planner.bump.options(at=float(int(time.time()) + 60), timer_key="soon").run()
    (soon,) = [e for e in _sync.sync(list_index(vc.get_runtime().store)) if e.key == "soon"]
    options = [f"-o{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in actors.options.items()]
    assert main(["timers", "ls", "--storage", actors.url, *options]) == 0
    out = capsys.readouterr().out
    assert "far" in out and "soon" in out
    assert main(["timers", "ls", "--storage", actors.url, *options, "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["soon"]["gen"] == soon.gen is not None


def test_a_runner_whose_cache_predates_a_reschedule_keeps_the_rescheduled_timer_s_entry(
    actors: StoreSpec,
) -> None:
    # A batch of FIREs skips the probe of the newest step, and a FIRE that fires nothing commits
    # nothing: what it reports is the runner's cache. A cache from before the timer was moved
    # earlier (by another process) shows it pending at its old due time, and the runner took
    # "pending at another due time" as proof that the entry was stale, without the probe it
    # makes for "gone": it deleted the moved occurrence's own entry, which then never fired.
    from vactor_cloud.runtime import Runtime
    from vactor_cloud.settings import Settings
    from vactor_cloud.timer_firing import fire_actor

    actor_id = "moved-earlier"
    planner = Planner.get_or_create(actor_id)
    planner.bump.options(at=float(int(time.time()) + 3600), timer_key="renewal").run()
    runner = Runtime(Settings(storage=actors.url, storage_options=actors.options))
    try:
        runner.load(actor_id)  # the runner's cache: renewal due in an hour
        planner.bump.options(at=float(int(time.time()) - 5), timer_key="renewal").run()  # now due
        store = vc.get_runtime().store
        due = _sync.sync(list_index(store, due_by_ms=time.time() * 1000))
        assert [e.key for e in due] == ["renewal"]
        report, _ = fire_actor(runner, "runner-a", None, actor_id, due)
        assert report.fired + vc.fire_due_timers().fired == 1, "the moved timer lost its entry"
    finally:
        runner.close()
    assert planner.peek.run() == 1


# -- guards (review h12): these passed on the code as reviewed; each can fail ---------------------
@vc.virtual_actor
class Looper:
    def __init__(self) -> None:
        self.n = 0

    def tick(self, at: float) -> None:
        self.n += 1
        if self.n < 4:  # a recurring timer re-armed by its method at its own (past) due time
            call = vc.current_call()
            assert call is not None
            call.schedule("tick", at=at, key="loop", args=(at,), every=3600)

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n


def test_a_recurring_timer_re_armed_by_each_occurrence_at_its_own_due_time_fires_each_time(
    actors: StoreSpec,
) -> None:
    looper = Looper.get_or_create("looper")
    at = float(int(time.time()) - 5)
    looper.tick.options(at=at, timer_key="loop", every=3600).run(at)
    for n in range(1, 5):
        assert vc.fire_due_timers().fired == 1, f"occurrence {n} did not fire"
        assert looper.peek.run() == n
    assert vc.fire_due_timers().fired == 0
    (pending,) = looper.timers()
    assert pending["due"] == at + 3600
    listed = _sync.sync(list_index(vc.get_runtime().store))
    assert [(e.key, e.due_ms) for e in listed] == [("loop", math.ceil((at + 3600) * 1000))]


@pytest.mark.parametrize("key", ["-", "0-1", "00000000000000001234-5", "ü ñ%+", "a b", "~x", "x" * 200])
def test_timer_keys_with_unusual_characters_fire_once_and_leave_no_entry(actors: StoreSpec, key: str) -> None:
    planner = Planner.get_or_create("odd-keys")
    planner.bump.options(at=float(int(time.time()) - 5), timer_key=key).run()
    (entry,) = _sync.sync(list_index(vc.get_runtime().store))
    assert entry.key == key and parse_entry(entry.object_key) == entry
    assert vc.fire_due_timers().fired == 1
    assert vc.fire_due_timers().fired == 0
    assert planner.peek.run() == 1
    assert _sync.sync(list_index(vc.get_runtime().store)) == []


def test_two_runners_ticking_at_once_fire_each_timer_once(actors: StoreSpec) -> None:
    at = float(int(time.time()) - 5)
    planners = [Planner.get_or_create(f"two-runners-{i}") for i in range(12)]
    for planner in planners:
        planner.bump.options(at=at, timer_key="once").run()
    reports: list[Any] = []
    threads = [
        threading.Thread(target=lambda: reports.append(vc.fire_due_timers(split="none"))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.fired for r in reports) == 12
    assert [p.peek.run() for p in planners] == [1] * 12
    assert _sync.sync(list_index(vc.get_runtime().store)) == []


class _Stalled(FaultyStore):
    """Every request runs out of its time (it yields once first, as a request in flight does)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, FaultConfig())
        self.seen: list[tuple[str, str, str]] = []

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        self.seen.append(("start", operation, key.split("/", maxsplit=1)[0]))
        await asyncio.sleep(0)
        self.seen.append(("end", operation, key.split("/", maxsplit=1)[0]))
        raise StorageTimeoutError(f"{operation} {key}: no answer (injected)", key)


def test_a_tick_on_a_stalled_store_waits_out_two_request_timeouts_not_four(store_spec: StoreSpec) -> None:
    # `vactor timers tick` on a stalled endpoint took four request timeouts in a row (40 s):
    # the heartbeat, the runners' listing, the timers' listing, the heartbeat's delete. The
    # two listings go together, and after they ran out of time the heartbeat is left to expire.
    store_spec.init()
    runtime = vc.get_runtime()
    stalled = _Stalled(runtime.store)
    runtime.store = stalled
    with pytest.raises(StorageTimeoutError):
        fire_due_timers()
    assert stalled.seen[:2] == [("start", "put", "timer-runners"), ("end", "put", "timer-runners")]
    listings = stalled.seen[2:]
    assert sorted(listings[:2]) == [("start", "list", "timer-runners"), ("start", "list", "timers")], listings
    assert [step for step, _, _ in listings] == ["start", "start", "end", "end"]  # one wait, not two
    assert all(operation != "delete" for _, operation, _ in stalled.seen)

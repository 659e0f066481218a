"""Durable timers: guarantees that a mutation sweep (review-h140) found no test holding. Each
test failed with the mutation named in its docstring applied to the library, and passes
without it."""

from __future__ import annotations

import threading
import time
import types
from typing import Any

import pytest
from store_helpers import other_process, retune

import vactor_cloud as vc
from vactor_cloud import _sync, batch_apply, keys
from vactor_cloud.future import ActorFuture
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_hints import encode_hint
from vactor_cloud.timer_membership import owner_of
from vactor_cloud.timer_runner import scheduling_call
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Alarm:
    def __init__(self) -> None:
        self.rang: list[str] = []

    def ring(self, key: str) -> None:
        self.rang.append(key)

    def quit(self, key: str) -> None:
        raise SystemExit(3)

    def touch(self) -> None:
        pass

    @vc.virtual_actor.readonly
    def view(self) -> list[str]:
        return list(self.rang)


def _index_keys() -> list[str]:
    return sorted(e.key for e in _sync.sync(list_index(vc.get_runtime().store)))


def test_a_timer_fires_at_its_due_time_by_the_applying_clock_and_not_a_moment_before(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never early: the step that fires a timer checks ``due <= time.time()`` by the clock of
    the process applying it. Read with a tolerance (``due <= now + 2``), a timer fired up to 2 s
    early; read with ``<``, one was not fired at its due time. The runner lists entries by its
    own clock: only the applying clock is held back here."""
    alarm = Alarm.get_or_create("edge")
    due = time.time() - 5.0  # due by the runner's clock: its entry is listed
    assert alarm.ring.options(at=due, timer_key="edge").run("edge") == "edge"
    [timer] = alarm.timers()
    clock = [timer["due"] - 0.001]
    monkeypatch.setattr(
        batch_apply, "time", types.SimpleNamespace(time=lambda: clock[0], monotonic=time.monotonic)
    )
    early = vc.fire_due_timers()
    assert (early.fired, early.stale, early.errors) == (0, 0, []), early
    assert alarm.view.run() == [] and _index_keys() == ["edge"]  # pending, its entry kept
    clock[0] = timer["due"]
    assert vc.fire_due_timers().fired == 1
    assert alarm.view.run() == ["edge"] and alarm.timers() == [] and _index_keys() == []


def test_a_runner_whose_cache_predates_the_timer_fires_it_in_the_same_tick(actor_store: StoreSpec) -> None:
    """A fire call applied on a cached step older than the step that scheduled the timer finds
    nothing; the newest step (one probe) shows the timer due, and "it is fired again on the
    newest step". Not fired again (the entry only kept), it waited for the next tick."""
    alarm = Alarm.get_or_create("behind")
    alarm.touch.run()  # this process caches the actor at its first step
    other = other_process(actor_store)
    try:
        call = scheduling_call(
            "ring", ("late",), {}, delay=-5.0, at=None, key="late", every=None, idempotency_key=None
        )
        other.call("behind", call)
        assert call.future.result(30) == "late"
    finally:
        other.close()
    report = vc.fire_due_timers()
    assert (report.fired, report.stale, report.errors) == (1, 0, []), report
    assert alarm.view.run() == ["late"] and _index_keys() == []


def test_a_timer_whose_method_raised_system_exit_stays_pending_beside_one_fired_in_that_step(
    actor_store: StoreSpec,
) -> None:
    """Two due timers of one actor fire as one step. The one whose method raised ``SystemExit``
    is excluded and stays pending (with its entry); the other fires. Applying the excluded one's
    edits too (its timer consumed) went unnoticed: alone, it commits no step at all."""
    alarm = Alarm.get_or_create("pair")
    due = time.time() - 5.0
    futures: list[ActorFuture[Any]] = [
        alarm.quit.options(at=due, timer_key="bail").run_async("bail"),
        alarm.ring.options(at=due, timer_key="ring").run_async("ring"),
    ]
    assert [vc.get(f, timeout=30) for f in futures] == ["bail", "ring"]
    report = vc.fire_due_timers()
    assert report.fired == 1 and len(report.errors) == 1, report
    assert alarm.view.run() == ["ring"]
    assert [t["key"] for t in alarm.timers()] == ["bail"] and _index_keys() == ["bail"]


_init_may_end = threading.Event()


@vc.virtual_actor
class SlowToMake:
    def __init__(self) -> None:
        assert _init_may_end.wait(30)
        self.rang = 0

    def ring(self) -> None:
        self.rang += 1


def test_cancel_timer_while_this_process_creates_the_actor_waits_for_the_creation(
    actor_store: StoreSpec,
) -> None:
    """With ``wait_for_init=False`` a writer call made while this process's creation of the
    actor is pending waits for it, and ``cancel_timer`` documents that it then "sends the cancel
    the usual way". It was sent to an actor not created yet, and raised ``ActorNotFoundError``
    (found while checking a mutation of ``_none_to_cancel`` that nothing caught)."""
    retune(wait_for_init=False)
    _init_may_end.clear()
    release = threading.Timer(0.5, _init_may_end.set)
    release.start()
    try:
        handle = SlowToMake.get_or_create("slow")
        assert vc.get_runtime().creating("slow") is not None  # (the case under test)
        assert handle.cancel_timer("none-such") is False
        assert handle.timers() == []
    finally:
        release.cancel()
        _init_may_end.set()


def test_a_runner_whose_heartbeat_expired_moments_ago_owns_no_actor(actor_store: StoreSpec) -> None:
    """A runner killed without a word keeps its share "until its heartbeat expires". Counted
    live until its heartbeat was deleted (expired for longer than its lease), its actors waited
    twice as long: here a heartbeat expired a second ago (lease 30 s) held its actor's timer."""
    store = vc.get_runtime().store
    actor_id = next(
        f"ghosted-{n}" for n in range(1000) if owner_of(f"ghosted-{n}", ["tick", "ghost"]) == "ghost"
    )
    alarm = Alarm.get_or_create(actor_id)
    alarm.ring.options(at=time.time() - 5.0, timer_key="late").run("late")
    key = keys.timer_runner_key("ghost")
    body = {"runner": "ghost", "until": time.time() - 1.0, "lease": 30.0, "group": "all"}
    _sync.sync(store.put(key, encode_hint(key, "timer-runner", body, None)))
    report = vc.fire_due_timers(runner_id="tick")
    assert (report.fired, report.assigned_elsewhere) == (1, 0), report
    assert alarm.view.run() == ["late"]


def test_an_expired_claim_of_a_runner_that_died_is_taken_over(actor_store: StoreSpec) -> None:
    """With ``split="claims"``, "a runner killed after its claim delays that actor until the
    lease expires", and no longer. A claim not taken over once expired (the if-match put
    skipped) held the actor's timers for good, and no test on memory or local noticed."""
    store = vc.get_runtime().store
    alarm = Alarm.get_or_create("claimed")
    alarm.ring.options(at=time.time() - 5.0, timer_key="late").run("late")
    key = keys.timer_claim_key("claimed")
    claim = {"runner": "dead", "until": time.time() - 1.0}
    _sync.sync(store.put(key, encode_hint(key, "timer-claim", claim, None), mode="create"))
    report = vc.fire_due_timers(split="claims")
    assert (report.fired, report.claimed_elsewhere) == (1, 0), report
    assert alarm.view.run() == ["late"]

"""Attacks on a backlog drain (``process_events`` over events the actor applies, a commit's
worth at a time from the inbox's cached order): lost answers of step puts, reads and deletes,
and a compaction running beside the drain. Each event is applied once, in the order sent,
and the inbox ends empty. (docs/concepts.md, "Bounded memory"; docs/events.md.)
"""

from __future__ import annotations

import threading

import pytest
from store_helpers import init
from test_review_events import inbox_ids
from test_review_h222_backlog_work import Backlogged

import vactor_cloud as vc
from vactor_cloud import _sync, compaction
from vactor_cloud import inbox as inbox_module
from vactor_cloud.errors import VactorError
from vactor_cloud.log import ActorLog
from vactor_cloud.testing.faults import ALL_OPERATIONS, FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec

COUNT = 120
_PUT = frozenset({"put"})


def _send_backlog(actor_id: str) -> None:
    for n in range(COUNT):
        vc.send_event(actor_id, "handled", n, event_id=f"e{n:04}")


def _drain(actor: object, rounds: int = 40) -> int:
    """``process_events`` until a call ends without an error (a fault may fail one); bounded."""
    for _ in range(rounds):
        try:
            actor.process_events()  # type: ignore[attr-defined]
        except VactorError:
            continue
        if not inbox_ids(actor.actor_id):  # type: ignore[attr-defined]
            return 0
    return len(inbox_ids(actor.actor_id))  # type: ignore[attr-defined]


@pytest.mark.vactor_lanes("memory", "local")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_drain_with_lost_answers_applies_each_event_once_in_order(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """A third of the step puts land and lose their answer, and one request in ten of any kind
    (the inbox's listings, reads and deletes among them) fails before it is sent or loses its
    answer, while 120 events drain 8 a commit in a process that loaded the actor through the
    faults: each applied once, in order."""
    init(actor_store)
    Backlogged.get_or_create(f"lossy-{seed}")
    _send_backlog(f"lossy-{seed}")
    init(actor_store, inbox_interval=3600.0)  # (a process that has not loaded the actor)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 8)
    store = install(
        FaultConfig(
            rules=(
                FaultRule(
                    "lost_response", operations=frozenset({"put"}), key_contains="/steps/", probability=0.33
                ),
                FaultRule("lost_response", operations=ALL_OPERATIONS, probability=0.05),
                FaultRule("fail_before", operations=ALL_OPERATIONS, probability=0.05),
            ),
            seed=seed,
            name="drain",
        )
    )
    assert _drain(vc.get_actor(f"lossy-{seed}")) == 0
    assert store.injected["lost_response"] >= 5, store.injected  # (the faults did fire)
    init(actor_store)  # (read back without faults)
    assert vc.get_actor(f"lossy-{seed}").got.run() == list(range(COUNT))


@pytest.mark.vactor_lanes("memory", "local")
def test_a_drain_beside_a_compaction_applies_each_event_once_in_order(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction keeping 2 steps runs again and again beside a drain of 120 events, 8 a
    commit (every commit probes: ``fresh_window`` 0): each applied once, in order."""
    runtime = init(actor_store, inbox_interval=3600.0, fresh_window=0.0)
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 8)
    actor = Backlogged.get_or_create("compacted")
    _send_backlog("compacted")
    log = ActorLog(runtime.store, "compacted", signing_key=runtime.settings.signing_key)
    done = threading.Event()
    compactions: list[int] = []

    def compact_again_and_again() -> None:
        while not done.is_set() and len(compactions) < 500:  # bounded
            report = _sync.sync(compaction.compact(log, 2, min_age=0.0, fresh_window=0.0))
            compactions.append(report.watermark)
            done.wait(0.005)

    compactor = threading.Thread(target=compact_again_and_again, daemon=True)
    compactor.start()
    try:
        assert _drain(actor) == 0
    finally:
        done.set()
        compactor.join(60)
    assert max(compactions) > 1, compactions[-5:]  # it did compact beside the drain
    assert actor.got.run() == list(range(COUNT))

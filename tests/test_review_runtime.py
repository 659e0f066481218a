"""Hostile review of the runtime and the in-process execution model (h6).

Each test pins a defect found in review (fixed, or ``xfail(strict=True)`` with the fix
described); see the commit messages.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.core import ActorCore
from vactor_cloud.testing.lanes import StoreSpec

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}
BODY_RUNS: dict[str, int] = {}


@vc.virtual_actor
class Log:
    def __init__(self) -> None:
        self.items: list[int] = []

    def add(self, item: int) -> None:
        self.items.append(item)

    def slow_add(self, item: int, seconds: float) -> None:
        here = sys.modules[__name__]
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        here.BODY_RUNS[actor_id] = here.BODY_RUNS.get(actor_id, 0) + 1
        time.sleep(seconds)
        self.items.append(item)

    def hold(self) -> None:
        here = sys.modules[__name__]
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        here.ENTERED[actor_id].set()
        assert here.GATES[actor_id].wait(30), "the test never released the writer"
        self.items.append(-1)

    @vc.virtual_actor.readonly
    def get(self) -> list[int]:
        return self.items


# -- HEAD after shutdown ------------------------------------------------------------------------
def test_no_head_move_reaches_the_store_after_shutdown_once_every_call_settled(tmp_path: Path) -> None:
    # A call running at shutdown finishes and commits (documented: shutdown waits for it). Its
    # commit asked for a HEAD move, which the background flusher wrote up to head_max_delay
    # later, to the store of a runtime already shut down: a user who waited for the call and
    # then deleted the store found it re-created (actors/<id>/HEAD) a moment later.
    root = tmp_path / "store"
    vc.init(str(root), settings=vc.Settings(head_interval=0.05, head_max_delay=0.0))
    try:
        handle = Log.get_or_create("late-head")
        GATES["late-head"], ENTERED["late-head"] = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def hold() -> None:
            try:
                handle.hold.run()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=hold)
        thread.start()
        assert ENTERED["late-head"].wait(10)
        runtime = vc.get_runtime()
        stopping = threading.Thread(target=vc.shutdown)
        stopping.start()
        deadline = time.monotonic() + 10
        while not runtime.closed and time.monotonic() < deadline:
            time.sleep(0.001)
        assert runtime.closed
        GATES["late-head"].set()  # shutdown waits for the running call, which then commits
        stopping.join(60)
        thread.join(10)
        assert not stopping.is_alive() and not thread.is_alive() and not errors, errors
        shutil.rmtree(root)
        time.sleep(0.5)  # ten flusher intervals
        left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) if root.exists() else []
        assert not root.exists(), f"written to the store after shutdown: {left}"
    finally:
        GATES.get("late-head", threading.Event()).set()
        vc.shutdown()


# -- eviction between a caller taking the core and queueing on it -------------------------------
def test_an_actor_evicted_while_a_caller_queues_on_it_keeps_submission_order_and_runs_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run_async takes the actor's core (Runtime.core), then queues on it. Another thread's access
    # to another actor may evict the core in between (it is idle: nothing queued yet). The next
    # call from the same thread then gets a second core of the same actor, and the two cores race
    # each other through the store: the later call commits first and the earlier one re-runs.
    store_spec.init(settings=vc.Settings(max_cached_actors=1))
    try:
        Log.get_or_create("other")
        handle = Log.get_or_create("evicted")
        original = ActorCore._enqueue
        fired: list[bool] = []

        def enqueue(self: ActorCore, call: Any) -> None:
            if self.actor_id == "evicted" and not fired:
                fired.append(True)
                vc.get_runtime().core("other")  # another thread's access, in the window
            original(self, call)

        monkeypatch.setattr(ActorCore, "_enqueue", enqueue)
        BODY_RUNS.pop("evicted", None)
        first = handle.slow_add.run_async(1, 0.5)
        second = handle.add.run_async(2)
        vc.get([first, second])
        assert fired
        assert handle.get.run() == [1, 2], "calls from one thread applied out of submission order"
        assert BODY_RUNS["evicted"] == 1, "the method body ran again after a race with ourselves"
    finally:
        vc.shutdown()


# -- Settings: switches ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["combine", "post_names", "load_classes_from_storage", "wait_for_init"])
@pytest.mark.parametrize("value", ["False", "no", 0, None])
def test_a_switch_that_is_not_a_bool_is_refused_naming_the_field(name: str, value: Any) -> None:
    # Numbers were checked, switches not: Settings(load_classes_from_storage="False") (a value read
    # from an environment variable or a config file) was accepted and truthy, so class bodies
    # were unpickled from storage by a process whose operator had turned that off.
    with pytest.raises(TypeError, match=rf"Settings\.{name} must be True or False"):
        vc.Settings(**{name: value})


@pytest.mark.parametrize("with_settings", [False, True])
def test_init_refuses_a_load_classes_switch_that_is_not_a_bool(with_settings: bool) -> None:
    # With settings= given, init combined its argument with the settings' by `and`:
    # `"False" and True` is True, so the string slipped past Settings' own check.
    extra: dict[str, Any] = {"settings": vc.Settings()} if with_settings else {}
    try:
        with pytest.raises(TypeError, match="load_classes_from_storage must be True or False"):
            vc.init("memory://switch", load_classes_from_storage="False", **extra)  # type: ignore[arg-type]
    finally:
        vc.shutdown()


def test_an_empty_signing_key_is_refused_not_taken_for_no_signing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # VACTOR_SIGNING_KEY="" (a secret that came through empty) ran unsigned, silently.
    monkeypatch.setenv("VACTOR_SIGNING_KEY", "")
    with pytest.raises(ValueError, match="set but empty"):
        vc.init(f"file://{tmp_path}/s")
    monkeypatch.delenv("VACTOR_SIGNING_KEY")
    for bad in (b"", ""):
        with pytest.raises((ValueError, TypeError), match="signing_key"):
            vc.Settings(storage="", signing_key=bad)  # type: ignore[arg-type]
    # init(signing_key="") said "Settings.signing_key must be non-empty bytes ..., got b''", naming
    # neither the argument the user gave nor the way to run unsigned.
    for bad in (b"", ""):
        with pytest.raises(ValueError, match=r"init\(signing_key=\.\.\.\) is empty.*signing_key=None"):
            vc.init(f"file://{tmp_path}/s", signing_key=bad)

"""Child processes of the timer tests: runners (some SIGKILLed at a chosen point) and a scheduler."""

from __future__ import annotations

import os
import signal
import time

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.faults import FaultConfig, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import list_index

#: a fresh cache on every commit would only add probes; HEAD moves rarely
SETTINGS = vc.Settings(storage="", head_interval=0.5, max_commit_attempts=500)


@vc.virtual_actor
class Alarm:
    """Counts how often each timer key fired (exactly once is the claim under test)."""

    def __init__(self) -> None:
        self.fired: dict[str, int] = {}

    def arm(self, keys: list[str], after: float) -> int:
        call = vc.current_call()
        assert call is not None
        for key in keys:
            call.schedule("ring", after=after, key=key, args=(key,))
        return len(keys)

    def ring(self, key: str) -> None:
        self.fired[key] = self.fired.get(key, 0) + 1

    def noop(self) -> None:
        pass

    @vc.virtual_actor.readonly
    def counts(self) -> dict[str, int]:
        return dict(self.fired)


def init_from_spec(spec: StoreSpec) -> None:
    os.environ.update(spec.env)
    vc.init(spec.url, settings=SETTINGS, **spec.options)


def runner_process(
    spec: StoreSpec, until: float, lease: float, config: FaultConfig | None, split: str = "claims"
) -> None:
    """Fire due timers until the wall clock passes ``until`` and the due index is empty (SIGKILLed
    on the way if ``config`` says).

    Not until ``until`` alone: on a loaded machine four interpreters can take longer to start
    than the window lasts, and runners that stop on time leave every timer unfired. Bounded:
    ``until`` + 90 s at most.
    """
    init_from_spec(spec)
    if config is not None:
        install(config)
    store = vc.get_runtime().store
    while True:
        vc.fire_due_timers(lease=lease, split=split)  # type: ignore[arg-type]
        now = time.time()
        if now >= until + 90 or (now >= until and not _sync.sync(list_index(store))):
            break
        time.sleep(0.05)
    vc.shutdown()


def long_runner_process(
    spec: StoreSpec,
    runner_id: str,
    until: float,
    lease: float,
    poll: float,
    config: FaultConfig | None = None,
    view: list[str] | None = None,
) -> None:
    """``run_timers`` until ``until`` and the due index is empty (SIGKILLed on the way if
    ``config`` says; SIGTERM stops it gracefully).

    ``view``: pretend the live runners are exactly these, whatever the
    heartbeats say (two runners that disagree about who is alive).
    """
    import threading

    from vactor_cloud import timer_membership, timer_runner

    init_from_spec(spec)
    if config is not None:
        install(config)
    if view is not None:
        fixed = tuple(sorted(view))

        async def refresh(self: timer_membership.Membership) -> tuple[str, ...]:
            self._live = fixed
            return fixed

        timer_membership.Membership.refresh = refresh  # type: ignore[method-assign]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = vc.get_runtime().store

    def on_tick(_report: timer_runner.TickReport) -> None:
        # Past ``until`` once the index is empty (a slow start must not leave timers unfired);
        # ``until`` + 90 s at most.
        now = time.time()
        if now >= until + 90 or (now >= until and not _sync.sync(list_index(store))):
            stop.set()

    timer_runner.run_timers(poll=poll, stop=stop, lease=lease, runner_id=runner_id, on_tick=on_tick)
    vc.shutdown()


def arm_process(spec: StoreSpec, actor_id: str, keys: list[str], after: float) -> None:
    """Schedule timers on ``actor_id`` from another process."""
    init_from_spec(spec)
    vc.get_actor(actor_id).arm.run(keys, after)
    vc.shutdown()


def schedule_process(
    spec: StoreSpec, config: FaultConfig, actor_id: str, keys: list[str], after: float
) -> None:
    """Schedule timers on ``actor_id``; ``config`` kills this process between commit and index write."""
    init_from_spec(spec)
    install(config)
    vc.get_actor(actor_id).arm.run(keys, after)
    vc.shutdown()

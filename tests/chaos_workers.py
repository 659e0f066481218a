"""Actors, worker entry points and checks shared by the chaos and crash tests.

Kept in an importable module so ``spawn``-started children can find them.
Every worker call carries a unique token; the actor appends the tokens it
applies, so the checks can tell exactly which call was lost or applied twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from actors import OrderLog  # noqa: F401  (the class of the chaos actors: children load it here)
from child_processes import report_stacks_on_request

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import VactorError
from vactor_cloud.log import StepRecord
from vactor_cloud.testing.faults import FaultConfig, FaultyStore, install
from vactor_cloud.testing.lanes import StoreSpec

#: Settings of every chaos process: a short HEAD interval so HEAD moves (and faults on it) happen.
report_stacks_on_request()

#: (combine_after=1: a lost race posts at once, so that the posting path sees every fault)
CHAOS_SETTINGS = vc.Settings(storage="", head_interval=0.2, max_commit_attempts=200, combine_after=1)
_LOAD_ATTEMPTS = 30


@dataclass(frozen=True)
class Phase:
    """One fault kind under test: its faults, its actors, and how many calls each worker makes."""

    name: str
    config: FaultConfig
    actor_ids: tuple[str, ...]
    calls: int


@dataclass
class CallLog:
    """What one worker saw in one phase: acknowledged tokens, and errors by token."""

    phase: str
    worker: str
    acked: list[str] = field(default_factory=list)
    #: token -> "ErrorType: message"
    errors: dict[str, str] = field(default_factory=dict)
    #: tokens whose error was not a VactorError (a defect: errors must be typed)
    untyped: list[str] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallLog:
        return cls(**data)


def init_from_spec(spec: StoreSpec, settings: vc.Settings = CHAOS_SETTINGS) -> None:
    os.environ.update(spec.env)
    vc.init(spec.url, settings=settings, **spec.options)


def _handles(actor_ids: tuple[str, ...]) -> dict[str, vc.ActorHandle]:
    """Handles to existing actors; loading itself may meet injected faults, so it is retried."""
    handles: dict[str, vc.ActorHandle] = {}
    for actor_id in actor_ids:
        for attempt in range(_LOAD_ATTEMPTS):
            try:
                handles[actor_id] = vc.get_actor(actor_id)
                break
            except VactorError:
                if attempt == _LOAD_ATTEMPTS - 1:
                    raise
                time.sleep(0.01)
    return handles


def run_calls(phase: Phase, worker: str, seed: int, store: FaultyStore | None) -> CallLog:
    """Make ``phase.calls`` calls on the phase's actors; record every outcome by token."""
    log = CallLog(phase.name, worker)
    rng = random.Random(f"{seed}/{phase.name}/{worker}")
    handles = _handles(phase.actor_ids)
    for i in range(phase.calls):
        actor_id = rng.choice(phase.actor_ids)
        token = f"{phase.name}/{worker}/{i}"
        try:
            handles[actor_id].add.run(token)
        except VactorError as exc:
            log.errors[token] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            log.errors[token] = f"{type(exc).__name__}: {exc}"
            log.untyped.append(token)
        else:
            log.acked.append(token)
    if store is not None:
        log.injected = dict(store.injected)
    return log


def chaos_process(
    spec: StoreSpec, phases: list[Phase], worker: int, seed: int, out_path: str, barrier: Any
) -> None:
    """Entry point of one chaos OS process: every phase with a fresh runtime and its faults."""
    logs = []
    for phase in phases:
        init_from_spec(spec)
        store = install(phase.config.derive(f"worker-{worker}"))
        barrier.wait(120)  # all workers hammer the phase's actors at the same time
        logs.append(run_calls(phase, f"p{worker}", seed, store).to_json())
        vc.shutdown()
    with open(out_path, "w") as f:
        json.dump(logs, f)


def chaos_threads(phase: Phase, workers: int, seed: int) -> list[CallLog]:
    """The memory lane's stand-in for processes: ``workers`` threads sharing this process's runtime."""
    results: list[CallLog | None] = [None] * workers
    store = vc.get_runtime().store
    faulty = store if isinstance(store, FaultyStore) else None

    def run(index: int) -> None:
        results[index] = run_calls(phase, f"t{index}", seed, None)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(not t.is_alive() for t in threads), "a chaos thread did not finish"
    logs = [r for r in results if r is not None]
    assert len(logs) == workers, "a chaos thread failed outside its calls"
    if faulty is not None:
        logs[0].injected = dict(faulty.injected)
    return logs


def chaos_seed(what: str) -> int:
    """``$VACTOR_CHAOS_SEED``, else a fresh random seed; printed so that a failure can be replayed."""
    raw = os.environ.get("VACTOR_CHAOS_SEED")
    seed = int(raw) if raw else random.randrange(2**31)
    print(f"{what} seed {seed} (rerun with VACTOR_CHAOS_SEED={seed})")
    return seed


# -- checks ---------------------------------------------------------------------------------
def read_chain(actor_id: str) -> list[StepRecord]:
    """Every step of the actor, decoded (IntegrityError if one does not decode)."""
    log = vc.get_runtime().core(actor_id).log

    async def read_all() -> list[StepRecord]:
        records = []
        for step in await log.list_steps():
            record = await log.read_step(step)
            assert record is not None, f"{actor_id}: step {step} listed but unreadable"
            records.append(record)
        return records

    return _sync.sync(read_all())


def assert_gapless(actor_id: str, records: list[StepRecord]) -> None:
    steps = [r.step for r in records]
    assert steps == list(range(len(records))), f"{actor_id}: steps are not gapless: {steps}"
    parents = [r.parent for r in records]
    assert parents == [None, *range(len(records) - 1)], f"{actor_id}: wrong parents: {parents}"


@dataclass
class Verdict:
    """The accounting of one phase: what was tried, acknowledged, lost and applied twice."""

    tried: int
    acked: int
    errored: int
    applied: int
    lost: list[str]
    duplicated: list[str]
    silent: list[str]
    untyped: list[str]


def account(logs: list[CallLog], applied: list[str]) -> Verdict:
    """Compare what workers were told with what the actors hold."""
    acked = {t for log in logs for t in log.acked}
    errored = {t for log in logs for t in log.errors}
    counts = Counter(applied)
    return Verdict(
        tried=len(acked) + len(errored),
        acked=len(acked),
        errored=len(errored),
        applied=len(applied),
        lost=sorted(acked - counts.keys()),
        duplicated=sorted(t for t, n in counts.items() if n > 1),
        # applied, but the caller was told neither success nor a (typed) error
        silent=sorted(counts.keys() - acked - errored),
        untyped=sorted(t for log in logs for t in log.untyped),
    )


# -- crash workers ------------------------------------------------------------------------------
def crash_process(spec: StoreSpec, config: FaultConfig, actor_id: str, calls: int, ack_path: str) -> None:
    """Make ``calls`` calls; each acknowledged token is written (unbuffered) before the next call.

    ``config`` schedules a SIGKILL of this process at one point of a commit;
    writing with ``os.write`` on an ``O_APPEND`` descriptor puts each
    acknowledgement in the kernel at once, so the kill cannot lose it.

    Combining is off here: the kill is scheduled at the k-th step request,
    and a process whose calls another one folds may not make k of them.
    Killing posters and folders is tests/test_combining.py's job.
    """
    init_from_spec(spec, dataclasses.replace(CHAOS_SETTINGS, combine=False))
    install(config)
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    handle = _handles((actor_id,))[actor_id]
    for i in range(calls):
        token = f"{config.name}/{i}"
        os.write(fd, f"try {token}\n".encode())
        handle.add.run(token)
        os.write(fd, f"ack {token}\n".encode())
    vc.shutdown()
    os.write(fd, b"done\n")
    os.close(fd)

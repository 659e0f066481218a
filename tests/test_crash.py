"""Writers SIGKILLed at chosen points of a commit: nothing acknowledged is lost, HEAD is repaired.

Each victim process wraps its store in a :class:`FaultyStore` whose schedule
SIGKILLs the process at one point of a commit, so the kill lands exactly
there (not "somewhere around"):

* ``before_put``: just before the create-only put of its k-th step;
* ``after_put``: right after the k-th step was written, before the caller
  hears of it and before HEAD moves;
* ``before_head``: just before a HEAD move;
* ``contended``: at a random step read or write while a surviving process
  writes to the same actor.

Every acknowledged call is written to an ack file (``os.write``, so a kill
cannot lose it) before the next call starts. Afterwards the next caller
must find every acknowledged call applied exactly once, at most the one
in-flight call of each victim more, a gapless chain, and after its own call
and ``vactor_cloud.shutdown()`` HEAD pointing at the newest step.
Seeded like the chaos suite (``VACTOR_CHAOS_SEED``).
"""

from __future__ import annotations

import multiprocessing.context
import random
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from actors import OrderLog
from chaos_workers import assert_gapless, chaos_seed, crash_process, init_from_spec, read_chain
from child_processes import run_to_end

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.faults import FaultConfig, FaultRule
from vactor_cloud.testing.lanes import Lane, StoreSpec

JOIN_TIMEOUT = 180
CALLS = 8
_PUT = frozenset({"put"})
_STEP_OPS = frozenset({"get", "put"})


@pytest.fixture
def seed() -> int:
    return chaos_seed("crash")


@pytest.fixture
def shared(store_spec: StoreSpec, store_lane: Lane) -> Iterator[StoreSpec]:
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process: nothing to kill")
    try:
        yield store_spec
    finally:
        vc.shutdown()


def _victims(seed: int) -> dict[str, FaultConfig]:
    rng = random.Random(seed)
    k = rng.randint(2, CALLS - 2)
    contended_kind = rng.choice(("crash_before", "crash_after"))
    return {
        "before_put": FaultConfig(
            (FaultRule("crash_before", operations=_PUT, key_contains="/steps/", at=(k,)),), seed, "before_put"
        ),
        "after_put": FaultConfig(
            (FaultRule("crash_after", operations=_PUT, key_contains="/steps/", at=(k,)),), seed, "after_put"
        ),
        "before_head": FaultConfig(
            (FaultRule("crash_before", operations=_PUT, key_contains="/HEAD", at=(1,)),),
            seed,
            "before_head",
        ),
        "contended": FaultConfig(
            (
                FaultRule(
                    contended_kind,
                    operations=_STEP_OPS,
                    key_contains="/steps/",
                    at=(rng.randint(3, CALLS),),
                ),
            ),
            seed,
            "contended",
        ),
    }


def _acks(path: Path) -> tuple[list[str], list[str]]:
    """(acknowledged tokens, tokens tried but never acknowledged) from an ack file."""
    tried: list[str] = []
    acked: list[str] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        verb, _, token = line.partition(" ")
        if verb == "try":
            tried.append(token)
        elif verb == "ack":
            acked.append(token)
    return acked, [t for t in tried if t not in set(acked)]


def _head_step(actor_id: str) -> int:
    head = _sync.sync(vc.get_runtime().core(actor_id).log.read_head())
    return -1 if head is None else head.step


def test_writers_killed_mid_commit_lose_nothing_and_head_is_repaired(
    shared: StoreSpec,
    store_lane: Lane,
    seed: int,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:

    victims = _victims(seed)
    init_from_spec(shared)
    for name in victims:
        OrderLog.get_or_create(name)
    vc.shutdown()

    ack_files = {name: tmp_path / f"{name}.acks" for name in victims}
    ack_files["survivor"] = tmp_path / "survivor.acks"
    procs = {
        name: process_context.Process(
            target=crash_process, args=(shared, config, name, CALLS, str(ack_files[name]))
        )
        for name, config in victims.items()
    }
    procs["survivor"] = process_context.Process(
        target=crash_process,
        args=(shared, FaultConfig((), seed, "survivor"), "contended", 2 * CALLS, str(ack_files["survivor"])),
    )
    codes = dict(zip(procs, run_to_end(procs.values(), JOIN_TIMEOUT), strict=True))
    expected = dict.fromkeys(victims, -signal.SIGKILL) | {"survivor": 0}
    assert codes == expected, f"exit codes {codes} (seed {seed}): a kill did not land, or a process failed"

    acks = {name: _acks(path) for name, path in ack_files.items()}
    init_from_spec(shared, vc.Settings(storage=""))
    problems: list[str] = []
    for actor_id in victims:
        writers = [actor_id, "survivor"] if actor_id == "contended" else [actor_id]
        acked = {t for w in writers for t in acks[w][0]}
        in_flight = {t for w in writers for t in acks[w][1]}
        newest = read_chain(actor_id)[-1].step
        head_before = _head_step(actor_id)
        handle = vc.get_actor(actor_id)  # the actor is readable
        applied = handle.applied.run()
        counts = Counter(applied)
        lost = acked - counts.keys()
        duplicated = [t for t, n in counts.items() if n > 1]
        unexplained = counts.keys() - acked - in_flight
        print(
            f"{store_lane.name:10} {actor_id:12} acked {len(acked):3} in flight {sorted(in_flight)} "
            f"applied {len(applied):3} lost {len(lost)} duplicated {len(duplicated)} "
            f"HEAD {head_before} newest {newest}"
        )
        if lost or duplicated or unexplained:
            problems.append(f"{actor_id}: lost {lost} duplicated {duplicated} unexplained {unexplained}")
        # The kill landed where intended: visible in whether the in-flight call was applied.
        if actor_id == "before_put" and in_flight & counts.keys():
            problems.append(f"before_put: the in-flight call {in_flight} was applied")
        if actor_id == "after_put":
            if not in_flight <= counts.keys() or not in_flight:
                problems.append(f"after_put: the in-flight call {in_flight} is not applied")
            if head_before >= newest:
                problems.append(f"after_put: HEAD {head_before} is not behind the newest step {newest}")
        assert handle.add.run(f"next-caller/{actor_id}") == len(applied) + 1
    vc.shutdown()  # the next caller's runtime flushes HEAD

    init_from_spec(shared, vc.Settings(storage=""))
    for actor_id in victims:
        records = read_chain(actor_id)
        assert_gapless(actor_id, records)
        if _head_step(actor_id) != records[-1].step:
            problems.append(f"{actor_id}: HEAD {_head_step(actor_id)} not repaired to {records[-1].step}")
    assert not problems, f"seed {seed} on {store_lane.name}:\n" + "\n".join(problems)

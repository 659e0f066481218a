"""Features combined, under faults, from a hostile review: posting and folding beside
idempotency keys, events, timers and compaction. Each test failed on the code it was
written against, except the model check, which guards the combination as a whole."""

from __future__ import annotations

import contextlib
import multiprocessing.context
import queue
import time
from collections import Counter
from pathlib import Path

import pytest
from combined_workers import Ledger, drive

import vactor_cloud as vc
from vactor_cloud.testing.faults import FaultConfig, FaultRule
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_PUT = frozenset({"put"})
_GET = frozenset({"get"})


def _run_drivers(
    ctx: multiprocessing.context.SpawnContext,
    spec: StoreSpec,
    tmp_path: Path,
    actor_id: str,
    workers: int,
    ops: int,
    seed: int,
    faults: str | None,
) -> dict[str, list[str]]:
    ready = ctx.Queue()
    start = ctx.Value("d", 0.0)
    outs = {f"p{i}": tmp_path / f"p{i}.log" for i in range(workers)}
    procs = [
        ctx.Process(target=drive, args=(spec, actor_id, who, ops, seed, str(out), faults, start, ready))
        for who, out in outs.items()
    ]
    for p in procs:
        p.start()
    waiting = set(outs)
    give_up = time.monotonic() + 120
    while waiting and time.monotonic() < give_up and any(p.is_alive() for p in procs):
        with contextlib.suppress(queue.Empty):
            waiting.discard(ready.get(timeout=0.5))
    start.value = time.time() + 0.2
    for p in procs:
        p.join(240)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(10)
    assert [p.exitcode for p in procs] == [0] * workers, [p.exitcode for p in procs]
    return {who: out.read_text().splitlines() for who, out in outs.items()}


def _settle_everything(actor_id: str) -> list[str]:
    """Apply every pending event and due timer from a clean process; the final tokens."""
    handle = Ledger.get_or_create(actor_id)
    for _ in range(50):
        applied = handle.process_events()
        report = vc.fire_due_timers(split="none")
        if not applied and not report.fired:
            break
    return handle.applied.run()


def _problems(logs: dict[str, list[str]], tokens: list[str]) -> list[str]:
    counts = Counter(tokens)
    problems = [f"applied twice: {t}" for t, n in counts.items() if n > 1]
    tried: set[str] = set()
    acked: set[str] = set()
    sent: set[str] = set()
    arms: set[str] = set()
    never: set[str] = set()
    for who, lines in logs.items():
        if not any(line.startswith("done") for line in lines):
            problems.append(f"{who} did not finish")
        for line in lines:
            verb, _, rest = line.partition(" ")
            token = rest.split(" ", 1)[0]
            if verb == "try":
                tried.add(token)
                if rest.split(" ")[1] == "arm":
                    arms.add(token)
            elif verb == "ack":
                acked.add(token)
            elif verb == "sent":
                sent.add(token)
            elif verb == "outcome" and rest.endswith(" never"):
                never.add(token)
            elif verb == "outcome" and rest.endswith(" applied"):
                acked.add(token)
            elif verb in ("dup", "untyped"):
                problems.append(f"{who}: {line}")
    calls = [t for t in tokens if ":" not in t]
    problems += [f"acknowledged, not applied: {t}" for t in sorted(acked - counts.keys())]
    problems += [f"call_outcome said never, applied: {t}" for t in sorted(never & counts.keys())]
    problems += [f"applied, never tried: {t}" for t in sorted(set(calls) - tried)]
    by_who: dict[str, list[int]] = {}
    for t in calls:
        who, _, i = t.rpartition("/")
        by_who.setdefault(who, []).append(int(i))
    problems += [f"{who} out of order: {seq}" for who, seq in by_who.items() if seq != sorted(seq)]
    problems += [f"event lost: {t}" for t in sorted(sent) if counts[f"ev:{t}"] != 1]
    rung = {t[len("ring:") :] for t in tokens if t.startswith("ring:")}
    problems += [f"timer of an unapplied call fired: {t}" for t in sorted(rung - counts.keys())]
    problems += [f"timer never fired: {t}" for t in sorted(arms & counts.keys() - rung)]
    return problems


MIXED_FAULTS = FaultConfig(
    (
        FaultRule("lost_response", operations=_PUT, key_contains="/mail/", probability=0.05),
        FaultRule("lost_response", operations=_PUT, key_contains="/steps/", probability=0.05),
        FaultRule("lost_response", operations=_PUT, key_contains="/inbox/", probability=0.05),
        FaultRule("fail_before", operations=_GET, probability=0.02),
    ),
    seed=11,
    name="combined",
)


@pytest.mark.parametrize("faults", [None, MIXED_FAULTS], ids=["clean", "faults"])
@pytest.mark.parametrize("seed", [int(s) for s in __import__("os").environ.get("H24_SEEDS", "1,2").split(",")])
def test_random_mixes_of_every_feature_from_three_processes_match_the_model(
    shared: StoreSpec,
    spawn_context: multiprocessing.context.SpawnContext,
    tmp_path: Path,
    faults: FaultConfig | None,
    seed: int,
) -> None:
    shared.init(settings=vc.Settings(storage="", combine_after=1))
    Ledger.get_or_create("mix")
    vc.shutdown()
    logs = _run_drivers(
        spawn_context,
        shared,
        tmp_path,
        "mix",
        3,
        int(__import__("os").environ.get("H24_OPS", "40")),
        seed,
        None if faults is None else faults.to_json(),
    )
    shared.init()
    tokens = _settle_everything("mix")
    every = [line for lines in logs.values() for line in lines]
    print("\n".join(line for line in every if not line.startswith(("try", "ack", "sent"))))
    assert _problems(logs, tokens) == [], "\n".join(every)

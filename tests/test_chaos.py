"""Chaos suite: many writers on shared actors under every storage fault kind, on every lane.

For each fault kind (a phase), N OS processes (threads on the memory lane,
whose stores live in one process) make M calls each on shared actors, every
call with a unique token, while a :class:`FaultyStore` injects that kind of
fault at random. Then, through a clean store:

* the step chain of every actor is gapless, each step's parent is the step
  before, and every step decodes;
* no acknowledged call is missing (lost), no token was applied twice
  (duplicated), every applied call was either acknowledged or ended in an
  error (never a silent success), and every error is a ``VactorError``.
  So the final count is the acknowledged calls plus some of the errored ones.

Seeded: the seed is printed and in every failure message; rerun with
``VACTOR_CHAOS_SEED=<seed>``. The default profile is short (one phase per fault kind);
``-m chaos_long`` runs the long one (more processes and calls, plus a phase
mixing every kind). With ``VACTOR_CHAOS_REPORT=<file>`` each phase appends a
JSON row (backend, fault kind, tried, acknowledged, lost, duplicated, ...).
"""

from __future__ import annotations

import json
import multiprocessing.context
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from actors import OrderLog
from chaos_workers import (
    CHAOS_SETTINGS,
    CallLog,
    Phase,
    account,
    assert_gapless,
    chaos_process,
    chaos_seed,
    chaos_threads,
    init_from_spec,
    read_chain,
)
from child_processes import run_to_end

import vactor_cloud as vc
from vactor_cloud.testing.faults import ALL_OPERATIONS, FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy

_GET = frozenset({"get"})
_PUT = frozenset({"put"})

#: fault kind -> the rules injecting it (probabilities per matching operation)
FAULTS: dict[str, tuple[FaultRule, ...]] = {
    "fail_before": (
        FaultRule("fail_before", operations=ALL_OPERATIONS, probability=0.15),
        FaultRule("fail_before", operations=_PUT, probability=0.1, retryable=False),
    ),
    "lost_response": (
        FaultRule("lost_response", operations=_PUT, probability=0.25, retryable=False),
        FaultRule("lost_response", operations=ALL_OPERATIONS, probability=0.05),
    ),
    "conflict_before": (FaultRule("conflict_before", operations=_PUT, probability=0.25),),
    "conflict_after": (FaultRule("conflict_after", operations=_PUT, probability=0.25),),
    "rate_limited": (FaultRule("rate_limited", operations=ALL_OPERATIONS, probability=0.15),),
    "timeout": (
        FaultRule("timeout_before", operations=ALL_OPERATIONS, probability=0.1),
        FaultRule("timeout_after", operations=ALL_OPERATIONS, probability=0.1),
    ),
    "delay": (FaultRule("delay", operations=ALL_OPERATIONS, probability=0.5, delay=0.03),),
    "truncate_read": (FaultRule("truncate_read", operations=_GET, probability=0.3),),
    "corrupt_read": (FaultRule("corrupt_read", operations=_GET, probability=0.3),),
    "mixed": (
        FaultRule("lost_response", operations=_PUT, probability=0.08, retryable=False),
        FaultRule("conflict_after", operations=_PUT, probability=0.05),
        FaultRule("fail_before", operations=ALL_OPERATIONS, probability=0.05),
        FaultRule("rate_limited", operations=ALL_OPERATIONS, probability=0.05),
        FaultRule("timeout_after", operations=ALL_OPERATIONS, probability=0.03),
        FaultRule("truncate_read", operations=_GET, probability=0.03),
        FaultRule("corrupt_read", operations=_GET, probability=0.03),
        FaultRule("delay", operations=ALL_OPERATIONS, probability=0.2, delay=0.02),
    ),
}

#: (workers, calls per worker per phase, actors per phase). Short: 3 calls a worker, 9 a
#: phase. Reading a lost answer's own step as another's (duplicates), taking an unanswered
#: put for a commit (a gap) and an untyped error on a damaged read each fail it, as with 5 calls.
SHORT = (3, 3, 2)
#: the wire-drop phase's: its proxy drops by chance alone (0.3 of the uploads), and 15 calls
#: make a run that dropped nothing rare
WIRE = (3, 5, 2)
LONG = (6, 40, 3)

#: contention combining under faults: many writers on one actor, so most commits lose a race
#: and most calls are posted and folded; answers lost on post puts and on (folding) step puts
POSTING_FAULTS: dict[str, tuple[FaultRule, ...]] = {
    "posting": (
        FaultRule("lost_response", operations=_PUT, key_contains="/mail/", probability=0.25, retryable=False),
        FaultRule(
            "lost_response", operations=_PUT, key_contains="/steps/", probability=0.15, retryable=False
        ),
        FaultRule("conflict_after", operations=_PUT, key_contains="/steps/", probability=0.05),
        FaultRule("delay", operations=ALL_OPERATIONS, probability=0.2, delay=0.02),
    ),
}
POSTING_PROFILE = (8, 30, 1)


@pytest.fixture
def seed() -> int:
    return chaos_seed("chaos")


@pytest.fixture
def long_profile(request: pytest.FixtureRequest) -> None:
    """Skip the long profile unless it was asked for with ``-m chaos_long``."""
    if "chaos_long" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long chaos profile: run it with -m chaos_long")


@pytest.fixture
def parent_runtime(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    try:
        yield store_spec
    finally:
        vc.shutdown()


def _phases(kinds: dict[str, tuple[FaultRule, ...]], seed: int, calls: int, actors: int) -> list[Phase]:
    return [
        Phase(
            name=kind,
            config=FaultConfig(rules=_at_least_once(rules), seed=seed, name=kind),
            actor_ids=tuple(f"{kind}-{j}" for j in range(actors)),
            calls=calls,
        )
        for kind, rules in kinds.items()
    ]


def _at_least_once(rules: tuple[FaultRule, ...]) -> tuple[FaultRule, ...]:
    """``rules`` plus the first one scheduled on each worker's first matching request: with
    only chances, a short phase injected nothing about once in 80 runs (0.75 ** 15), and the
    phase then fails as having tested nothing."""
    if not rules:
        return rules
    return (*rules, replace(rules[0], probability=0.0, at=(1,), limit=1))


def _run_processes(
    ctx: multiprocessing.context.ForkServerContext,
    spec: StoreSpec,
    phases: list[Phase],
    workers: int,
    seed: int,
    tmp_path: Path,
) -> dict[str, list[CallLog]]:
    barrier = ctx.Barrier(workers)
    outs = [tmp_path / f"worker-{i}.json" for i in range(workers)]
    procs = [
        ctx.Process(target=chaos_process, args=(spec, phases, i, seed, str(out), barrier))
        for i, out in enumerate(outs)
    ]
    codes = run_to_end(procs)
    assert codes == [0] * workers, f"chaos worker exit codes {codes} (seed {seed})"
    by_phase: dict[str, list[CallLog]] = {}
    for out in outs:
        for entry in json.loads(out.read_text()):
            log = CallLog.from_json(entry)
            by_phase.setdefault(log.phase, []).append(log)
    return by_phase


def _run_threads(spec: StoreSpec, phases: list[Phase], workers: int, seed: int) -> dict[str, list[CallLog]]:
    by_phase = {}
    for phase in phases:
        # Threads share one actor cache; without a fresh window every commit probes
        # (reads), as a fresh process would, so read faults have reads to hit.
        init_from_spec(spec, replace(CHAOS_SETTINGS, fresh_window=0.0))
        install(phase.config.derive("threads"))
        by_phase[phase.name] = chaos_threads(phase, workers, seed)
        vc.shutdown()
    return by_phase


def run_chaos(
    lane: Lane,
    spec: StoreSpec,
    kinds: dict[str, tuple[FaultRule, ...]],
    profile: tuple[int, int, int],
    seed: int,
    ctx: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
    backend: str,
) -> None:
    workers, calls, actors = profile
    phases = _phases(kinds, seed, calls, actors)
    init_from_spec(spec)
    for phase in phases:
        for actor_id in phase.actor_ids:
            OrderLog.get_or_create(actor_id)
    vc.shutdown()

    if lane.multiprocess:
        by_phase = _run_processes(ctx, spec, phases, workers, seed, tmp_path)
    else:
        by_phase = _run_threads(spec, phases, workers, seed)

    init_from_spec(spec)  # no faults from here on
    problems = []
    for phase in phases:
        logs = by_phase[phase.name]
        applied: list[str] = []
        for actor_id in phase.actor_ids:
            records = read_chain(actor_id)  # every step decodes
            assert_gapless(actor_id, records)
            tokens = vc.get_actor(actor_id).applied.run()
            in_steps = sum(len(r.calls) for r in records[1:])
            assert in_steps == len(tokens), (
                f"{actor_id}: the steps record {in_steps} calls, the state {len(tokens)} (seed {seed})"
            )
            applied.extend(tokens)
        verdict = account(logs, applied)
        injected: dict[str, int] = {}
        for log in logs:
            for kind, n in log.injected.items():
                injected[kind] = injected.get(kind, 0) + n
        error_types = Counter(e.split(":", 1)[0] for log in logs for e in log.errors.values())
        row = {
            "backend": backend,
            "fault": phase.name,
            "seed": seed,
            **asdict(verdict),
            "injected": injected,
            "errors": dict(error_types),
        }
        row["lost"], row["duplicated"] = len(verdict.lost), len(verdict.duplicated)
        _report(row)
        print(
            f"{backend:10} {phase.name:16} tried {verdict.tried:4} acked {verdict.acked:4} "
            f"errored {verdict.errored:3} applied {verdict.applied:4} lost {len(verdict.lost)} "
            f"duplicated {len(verdict.duplicated)} injected {injected} errors {dict(error_types)}"
        )
        for message in _sample_errors(logs)[:3]:
            print(f"    e.g. {message[:300]}")
        if verdict.lost or verdict.duplicated or verdict.silent or verdict.untyped:
            errors = {t: e for log in logs for t, e in log.errors.items()}
            problems.append(
                f"{phase.name}: lost {verdict.lost} duplicated {verdict.duplicated} "
                f"silent {verdict.silent} untyped {[(t, errors[t]) for t in verdict.untyped]}"
            )
        if verdict.acked == 0:
            problems.append(f"{phase.name}: no call succeeded; errors: {_sample_errors(logs)}")
        if kinds[phase.name] and not injected:
            problems.append(f"{phase.name}: no fault was injected: the phase tested nothing")
        if verdict.tried != workers * calls:
            problems.append(f"{phase.name}: {verdict.tried} outcomes recorded for {workers * calls} calls")
    vc.shutdown()
    assert not problems, f"seed {seed} on {backend}:\n" + "\n".join(problems)


def _sample_errors(logs: list[CallLog]) -> list[str]:
    return [e for log in logs for e in log.errors.values()][:5]


def _report(row: dict[str, object]) -> None:
    path = os.environ.get("VACTOR_CHAOS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def test_chaos_every_fault_kind(
    parent_runtime: StoreSpec,
    store_lane: Lane,
    seed: int,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    single = {kind: rules for kind, rules in FAULTS.items() if kind != "mixed"}
    run_chaos(store_lane, parent_runtime, single, SHORT, seed, process_context, tmp_path, store_lane.name)


@pytest.mark.chaos_long
@pytest.mark.usefixtures("long_profile")
def test_chaos_every_fault_kind_long(
    parent_runtime: StoreSpec,
    store_lane: Lane,
    seed: int,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    run_chaos(store_lane, parent_runtime, FAULTS, LONG, seed, process_context, tmp_path, store_lane.name)


@pytest.mark.chaos_long
@pytest.mark.usefixtures("long_profile")
def test_chaos_posting_heavy_long(
    parent_runtime: StoreSpec,
    store_lane: Lane,
    seed: int,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    """The posting path under lost responses: 0 lost, 0 duplicated, and each worker's calls in order."""
    profile = POSTING_PROFILE
    run_chaos(
        store_lane, parent_runtime, POSTING_FAULTS, profile, seed, process_context, tmp_path, store_lane.name
    )
    init_from_spec(parent_runtime)
    tokens = vc.get_actor("posting-0").applied.run()
    folds = sum(1 for r in read_chain("posting-0") if r.posted)
    vc.shutdown()
    by_worker: dict[str, list[int]] = {}
    for token in tokens:
        _, worker, index = token.split("/")
        by_worker.setdefault(worker, []).append(int(index))
    out_of_order = {w: seqs for w, seqs in by_worker.items() if seqs != sorted(seqs)}
    assert not out_of_order, f"calls applied out of their worker's order (seed {seed}): {out_of_order}"
    print(f"{store_lane.name:10} posting: {folds} steps folded posted calls")
    if store_lane.multiprocess:  # threads of one process share one actor cache: nobody posts
        assert folds > 0, f"no step folded a post: the cell tested nothing (seed {seed})"


def _wire_lane(store_lane: Lane) -> str:
    endpoint = getattr(store_lane, "endpoint", None)
    if not isinstance(endpoint, str) or not endpoint.startswith("http://"):
        pytest.skip(f"lane {store_lane.name} has no HTTP server to put a proxy in front of")
    return endpoint


def _wire_chaos(
    store_lane: Lane,
    spec: StoreSpec,
    profile: tuple[int, int, int],
    seed: int,
    ctx: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    upstream = _wire_lane(store_lane)
    with DroppingProxy(upstream, drop_share=0.3, seed=seed) as proxy:
        routed = proxy.route(spec)
        run_chaos(
            store_lane,
            routed,
            {"wire_drop": ()},
            profile,
            seed,
            ctx,
            tmp_path,
            store_lane.name,
        )
        dropped = proxy.stats.dropped
    print(f"{store_lane.name}: the proxy dropped {dropped} answers to successful uploads")
    assert dropped > 0, f"the proxy dropped nothing (seed {seed})"


def test_chaos_dropped_connections_on_the_wire(
    parent_runtime: StoreSpec,
    store_lane: Lane,
    seed: int,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    _wire_chaos(store_lane, parent_runtime, WIRE, seed, process_context, tmp_path)


@pytest.mark.chaos_long
@pytest.mark.usefixtures("long_profile")
def test_chaos_dropped_connections_on_the_wire_long(
    parent_runtime: StoreSpec,
    store_lane: Lane,
    seed: int,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    _wire_chaos(store_lane, parent_runtime, LONG, seed, process_context, tmp_path)

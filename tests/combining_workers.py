"""Actors, child-process entry points and checks of the contention-combining tests.

Kept in an importable module so ``spawn``-started children can find them.
Every call appends ``"<who>/<seq>"`` to one shared list: the checks can tell
which call was lost, applied twice, or applied out of its process's order.
Each child writes ``try``/``ack``/``err`` lines to its own file with
``os.write`` on an ``O_APPEND`` descriptor, so a SIGKILL cannot lose a line.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from child_processes import get_actor_despite_faults, wait_for_start

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import VactorError
from vactor_cloud.log import StepRecord
from vactor_cloud.runtime import get_runtime
from vactor_cloud.storage import PutMode
from vactor_cloud.testing.faults import FaultConfig, FaultyStore, _kill_self, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.testing.latency import Latency
from vactor_cloud.testing.latency import install as install_latency

#: every child of these tests: a lost race makes a process post for the rest of the run
#: (combine_after=1: the first lost race posts, as the tests of the posting path need)
POSTING = {"combine_window": 60.0, "head_interval": 0.2, "combine_after": 1}


class KillAfterFold(FaultyStore):
    """SIGKILLs this process right after its ``at``-th step put that folded another process's
    posted calls (a call whose token is not ``who``'s).

    The step is stored (the fold is committed); the kill lands before the
    posts are deleted and before any caller hears of the commit.
    """

    def __init__(self, inner: Any, config: FaultConfig, at: int, who: str) -> None:
        super().__init__(inner, config)
        self.at = at
        self.who = who
        self.folds = 0

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version = await super()._put(key, data, mode)
        if "/steps/" in key:
            record = StepRecord.decode(key, data, None)
            if record.posted and any(f"{self.who}/" not in (c.args or "") for c in record.calls):
                self.folds += 1
                if self.folds == self.at:
                    _kill_self()
        return version


def install_kill_after_fold(at: int, who: str) -> KillAfterFold:
    runtime = get_runtime()
    store = KillAfterFold(runtime.store, FaultConfig(name="kill_after_fold"), at, who)
    runtime.store = store
    return store


def pretend_to_hold_the_lease() -> None:
    """Every read of the folder lease finds it free and every write of it succeeds: each
    contended process of this kind believes it holds the lease, and folds."""
    from vactor_cloud import lease

    async def read(self: lease.LeaseStore) -> lease.Lease:
        return lease.Lease("", 0.0, -1, "", None)

    async def write(
        self: lease.LeaseStore, seen: lease.Lease, holder: str, seconds: float, step: int
    ) -> lease.Lease:
        return lease.Lease(holder, time.time() + seconds if seconds > 0 else 0.0, step, "t", "v")

    lease.LeaseStore.read = read  # type: ignore[method-assign]
    lease.LeaseStore.write = write  # type: ignore[method-assign]


def commit_behind_its_back(actor_id: str) -> None:
    """Another writer commits the next step (this process's cache stays fresh): its next commit loses."""
    # (loaded if it must be: with a cache of one, an evicted lease holder of another actor, at
    # its next round, may have taken this core's place a moment; it comes back without its step)
    core = get_runtime().load(actor_id)
    mine = core.record
    assert mine is not None
    theirs = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
    _sync.sync(core.log.put_step(theirs))
    # (validated now, as it was at this process's last commit: on a loaded host the time since
    # could pass ``fresh_window``, and the next commit probe its way to "theirs" and not lose)
    core.validated_at = time.monotonic()


def hammer(
    spec: StoreSpec,
    actor_id: str,
    who: str,
    calls: int,
    out_path: str,
    settings: dict[str, Any],
    faults: str | None,
    kill_after_fold: int | None,
    start: Any,
    delay: float,
    ready: Any,
    lose_first: bool = False,
    every_one_holds_the_lease: bool = False,
) -> None:
    """Make up to ``calls`` sequential calls ``add("<who>/<i>")``; log each try and outcome.

    ``faults`` is a :class:`FaultConfig` as JSON to install; ``kill_after_fold``
    SIGKILLs the process right after its n-th committed fold. ``lose_first``:
    commit a step behind this process's back before the start, so that its
    first call loses a race and it posts from then on (within ``combine_window``).
    ``start`` (a shared double, 0 until set): the calls begin ``delay`` seconds after that
    time; the parent sets it once every child put its name on ``ready`` (loaded, set up).
    """
    if every_one_holds_the_lease:
        pretend_to_hold_the_lease()
    settings = dict(settings)
    latency = settings.pop("latency", None)  # "MS[,JITTER]": every request that much later
    #: a path: no call starts once it exists (a worker that runs until the others are done)
    stop_when = settings.pop("stop_when", None)
    spec.init(settings=vc.Settings(storage="", **settings))
    if latency is not None:
        install_latency(Latency.parse(latency))
    store: FaultyStore | None = None
    if faults is not None:
        store = install(FaultConfig.from_json(faults).derive(who))
    if kill_after_fold is not None:
        store = install_kill_after_fold(kill_after_fold, who)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    handle = get_actor_despite_faults(actor_id, 50)
    if lose_first:
        handle.applied.run()  # loads the newest step into this process's cache
        commit_behind_its_back(actor_id)
    ready.put(who)
    wait_for_start(start, delay)
    call_and_log(fd, handle, who, calls, stop_when=stop_when)
    posted, leases = posting_stats()
    injected = dict(store.injected) if store is not None else {}
    vc.shutdown()
    os.write(fd, f"done posted={posted} leases={leases} injected={injected}\n".encode())
    os.close(fd)


def call_and_log(
    fd: int, handle: Any, who: str, calls: int, *, timed: bool = False, stop_when: str | None = None
) -> None:
    """``handle.add.run("<who>/<i>")`` for each ``i < calls``, one after another, each logged to
    ``fd`` (read back by :class:`ChildLog`): ``try``, then ``ack``, ``err <type>`` (a VactorError)
    or ``untyped <type>`` (any other error: a defect the checks report); ``timed``: a ``took``
    line after each (diagnostics); ``stop_when``: no further call once that path exists."""
    for i in range(calls):
        if stop_when is not None and os.path.exists(stop_when):
            return
        token = f"{who}/{i}"
        os.write(fd, f"try {token}\n".encode())
        took = time.monotonic()
        try:
            handle.add.run(token)
        except VactorError as exc:
            os.write(fd, f"err {token} {type(exc).__name__}\n".encode())
        except Exception as exc:  # untyped: a defect the checks report
            os.write(fd, f"untyped {token} {type(exc).__name__}\n".encode())
        else:
            os.write(fd, f"ack {token}\n".encode())
        if timed:
            os.write(fd, f"took {token} {time.monotonic() - took:.3f}\n".encode())


def posting_stats() -> tuple[int, int]:
    """This process's calls posted and folder leases taken (``vc.stats()``), for its ``done`` line."""
    stats = vc.stats()
    if not isinstance(stats, dict):
        return 0, 0
    return stats.get("posted_calls", 0), stats.get("leases_taken", 0)


@dataclass
class ChildLog:
    """What one child recorded: tokens tried, acknowledged, failed (by error type)."""

    tried: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    untyped: dict[str, str] = field(default_factory=dict)
    done: str | None = None

    @classmethod
    def read(cls, path: Path) -> ChildLog:
        log = cls()
        for line in path.read_text().splitlines() if path.exists() else []:
            verb, _, rest = line.partition(" ")
            if verb == "try":
                log.tried.append(rest)
            elif verb == "ack":
                log.acked.append(rest)
            elif verb in ("err", "untyped"):
                token, _, kind = rest.partition(" ")
                (log.errors if verb == "err" else log.untyped)[token] = kind
            elif verb == "done":
                log.done = rest
        return log


def check_once_and_in_order(logs: Iterable[ChildLog], applied: list[str]) -> list[str]:
    """Problems: acknowledged calls missing, tokens applied twice, a process's calls out of order,
    calls applied that were never tried, untyped errors."""
    logs = list(logs)
    counts = Counter(applied)
    acked = {t for log in logs for t in log.acked}
    tried = {t for log in logs for t in log.tried}
    problems = []
    lost = sorted(acked - counts.keys())
    doubled = sorted(t for t, n in counts.items() if n > 1)
    unknown = sorted(counts.keys() - tried)
    if lost:
        problems.append(f"lost (acknowledged, not applied): {lost}")
    if doubled:
        problems.append(f"applied twice: {doubled}")
    if unknown:
        problems.append(f"applied but never tried: {unknown}")
    by_who: dict[str, list[int]] = {}
    for token in applied:
        who, _, seq = token.rpartition("/")
        by_who.setdefault(who, []).append(int(seq))
    for who, seqs in by_who.items():
        if seqs != sorted(seqs):
            problems.append(f"{who}: applied out of submission order: {seqs}")
    untyped = {t: k for log in logs for t, k in log.untyped.items()}
    if untyped:
        problems.append(f"untyped errors: {untyped}")
    return problems

"""Timer runners: firing due timers once (a tick) or until stopped (a long-running runner).

One code path for every runner, :class:`TimerRunner`: :func:`fire_due_timers`
(``vc.fire_due_timers()``, ``vactor timers tick``) fires what is due now and
returns; :func:`run_timers` (``vactor timers run``) keeps firing until stopped.

How runners split the work (``split=``), without a coordinator:

* ``"runners"`` (the default): each runner heartbeats ``timer-runners/<id>``
  (its expiry, renewed every ``lease/3``, deleted on a graceful stop) and,
  every poll, lists that prefix; an actor belongs to the live runner of the
  same group (same ``shard``) that rendezvous hashing of (actor, runner)
  ranks first. No request per actor. Runners whose views differ for a
  moment (one just started, one just stopped) only duplicate work.
* ``"claims"``: per actor, a create-only ``timer-claims/<actor>`` holding a
  lease (two requests per actor and firing; losers pay more).
* ``"none"``: this runner fires every due timer (of its shard): one runner
  per shard, or a lone tick.

With a signing key, heartbeats and claims are signed envelopes
(:func:`~vactor_cloud.timer_hints.encode_hint`), and one that does not verify for its own key
counts for nothing: a forger who can write the bucket cannot hold actors' timers off.
Due-index entries are not signed: empty names, they decide nothing (docs/security.md).

None of them is what makes firing exactly once: the actor's step is. A
``FIRE`` call removes its timer in the step that applies it, so a second
runner, a retry or a stale index entry finds the timer gone.

A long-running runner (:meth:`TimerRunner.run`) lists the due index every
``poll`` seconds, but only the entries due within ``horizon`` seconds
(pages of 1,000 keys): the ones it owns go into a local heap, and each
actor's group is fired, on a bounded pool, as soon as it is due (entries due
within ``coalesce`` seconds of each other commit together). A timer indexed
at least a poll before its due time is therefore fired about when it is due,
not a poll later.

Firing one actor's group: queue one ``FIRE`` per entry (they group-commit
as one step), then delete the entries whose timers fired or are gone. An
entry whose ``FIRE`` found nothing to fire is deleted only after a probe of
the newest step agrees (the cache may be behind a step that scheduled it).

The parts, each a module of its own below this one:

* :mod:`vactor_cloud.timer_report`: :class:`TickReport`, what a pass (or a run) did;
* :mod:`vactor_cloud.timer_hints`: heartbeats and claims as stored, signed or plain;
* :mod:`vactor_cloud.timer_membership`: :class:`Membership`, the heartbeats and
  rendezvous hashing of ``split="runners"``;
* :mod:`vactor_cloud.timer_claims`: the per-actor claims of ``split="claims"``;
* :mod:`vactor_cloud.timer_firing`: firing one actor's group, then deleting its entries;
* :mod:`vactor_cloud.timer_renewals`: a tick's heartbeat renewals on the IO loop;
* :mod:`vactor_cloud.timer_repair`: :func:`repair_timer_index`;
* :mod:`vactor_cloud.handle_timers`: the timer operations of handles (schedule from
  outside, list, cancel).

This module holds :class:`TimerRunner` (its tick, and its long-running listing thread,
dispatcher and pool) and the functions that make one; it re-exports the public names of
the parts listed in ``__all__``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import heapq
import logging
import math
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from vactor_cloud import _sync
from vactor_cloud.errors import (
    StorageTimeoutError,
    VactorError,
)
from vactor_cloud.handle_timers import cancel_timer, list_timers, scheduling_call
from vactor_cloud.runtime import Runtime, get_runtime
from vactor_cloud.runtime_scope import carry_runtime
from vactor_cloud.runtime_shutdown import join_threads
from vactor_cloud.timer_firing import delete_entries, fire_actor
from vactor_cloud.timer_membership import Membership
from vactor_cloud.timer_renewals import TickRenewals, next_renewal, no_renewals
from vactor_cloud.timer_repair import repair_timer_index
from vactor_cloud.timer_report import TickError, TickReport
from vactor_cloud.timers import (
    IndexEntry,
    list_index,
    remember_listed,
)

__all__ = [
    "DEFAULT_LEASE",
    "SPLITS",
    "Membership",
    "Split",
    "TickError",
    "TickReport",
    "TimerRunner",
    "cancel_timer",
    "fire_due_timers",
    "list_timers",
    "repair_timer_index",
    "run_timers",
    "scheduling_call",
]


logger = logging.getLogger("vactor_cloud")

#: seconds a runner's heartbeat (or claim) holds: a runner killed without a word is replaced after this
DEFAULT_LEASE = 30.0


#: how runners split the actors among themselves
Split = Literal["runners", "claims", "none"]
SPLITS: tuple[Split, ...] = ("runners", "claims", "none")
#: a long-running runner keeps the entries due within this many polls in its heap
_HORIZON_POLLS = 2.0
#: ...and lists at most this many entries per poll (a backlog is taken a slice at a time)
_MAX_LISTED = 20_000


def _split_of(split: str | None, claims: bool | None) -> Split:
    """``split=``, or the older ``claims=`` flag (True: claims; False: none)."""
    if split is None:
        return "runners" if claims is None else ("claims" if claims else "none")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if claims is not None and (split == "claims") != claims:
        raise ValueError(f"claims={claims!r} contradicts split={split!r}")
    return split


def _shard_of(actor_id: str, count: int) -> int:
    return zlib.crc32(actor_id.encode("utf-8")) % count


# -- runners --------------------------------------------------------------------------------------


class TimerRunner:
    """One timer runner: :meth:`tick` fires what is due now; :meth:`run` keeps firing until stopped.

    ``split`` says how runners share the actors (see the module's docstring);
    ``shard=(i, n)`` first keeps only the actors whose id hashes (CRC32) to
    ``i`` of ``n``, and with ``split="runners"`` only runners of the same
    shard split them. ``lease`` is the heartbeat's (or claim's) lifetime.
    """

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        split: Split = "runners",
        lease: float = DEFAULT_LEASE,
        shard: tuple[int, int] | None = None,
        concurrency: int = 16,
        runner_id: str | None = None,
        poll: float = 1.0,
        horizon: float | None = None,
        coalesce: float = 0.03,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
        if not math.isfinite(poll) or poll <= 0:
            raise ValueError(f"poll must be a positive number of seconds, got {poll!r}")
        # (a claim of a lease of 0, negative or NaN expired as written: claims held nothing)
        if not math.isfinite(lease) or lease <= 0:
            raise ValueError(f"the lease must be a positive number of seconds, got {lease!r}")
        self.runtime = runtime or get_runtime()
        self.split = split
        self.lease = lease
        self.shard = shard
        self.concurrency = max(1, concurrency)
        self.runner_id = runner_id or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.poll = poll
        self.horizon = _HORIZON_POLLS * poll if horizon is None else horizon
        self.coalesce = coalesce
        group = "all" if shard is None else f"{shard[0]}/{shard[1]}"
        self.membership = (
            Membership(self.runtime.store, self.runner_id, lease, group, self.runtime.settings.signing_key)
            if split == "runners"
            else None
        )

    # -- pieces shared by tick and run ---------------------------------------------------------
    def _join(self) -> None:
        if self.membership is None:
            return
        try:
            self.runtime.run(self.membership.beat())
        except VactorError as exc:  # the others do not see us: they duplicate our work, no more
            logger.warning("timer runner %s: could not write its heartbeat: %s", self.runner_id, exc)

    def _leave(self) -> None:
        if self.membership is None:
            return
        try:
            self.runtime.run(self.membership.leave())
        except VactorError as exc:  # it expires by itself
            logger.warning("timer runner %s: could not delete its heartbeat: %s", self.runner_id, exc)

    def _refresh(self, report: TickReport) -> None:
        if self.membership is None:
            return
        try:
            report.runners = len(self.runtime.run(self.membership.refresh()))
        except VactorError as exc:  # keep the previous view
            logger.warning("timer runner %s: could not list the runners: %s", self.runner_id, exc)

    def _mine(self, actor_id: str) -> bool:
        if self.shard is not None and _shard_of(actor_id, self.shard[1]) != self.shard[0]:
            return False
        return self.membership is None or self.membership.owns(actor_id)

    def _in_shard(self, actor_id: str) -> bool:
        return self.shard is None or _shard_of(actor_id, self.shard[1]) == self.shard[0]

    def _list(
        self,
        due_by_ms: float,
        limit: int | None,
        refresh: bool = False,
        report: TickReport | None = None,
        after: str | None = None,
    ) -> list[IndexEntry]:
        """The index entries due by ``due_by_ms`` (past the key ``after``); with ``refresh``, the
        runners listed beside."""
        store = self.runtime.store
        if refresh and self.membership is not None and report is not None:
            membership = self.membership

            async def both() -> list[IndexEntry]:
                view, found = await asyncio.gather(
                    membership.refresh(),
                    list_index(store, due_by_ms=due_by_ms, limit=limit, start_after=after),
                    return_exceptions=True,
                )
                if isinstance(view, VactorError):  # keep the previous view
                    logger.warning("timer runner %s: could not list the runners: %s", self.runner_id, view)
                elif isinstance(view, BaseException):
                    raise view
                else:
                    report.runners = len(view)
                if isinstance(found, BaseException):
                    raise found
                return found

            entries = self.runtime.run(both())
        else:
            entries = self.runtime.run(list_index(store, due_by_ms=due_by_ms, limit=limit, start_after=after))
        complete = limit is None or len(entries) < limit
        remember_listed(store, entries, complete_until_ms=due_by_ms if complete else None)
        return entries

    def _fire(self, actor_id: str, entries: list[IndexEntry]) -> tuple[TickReport, list[IndexEntry]]:
        lease = self.lease if self.split == "claims" else None
        return fire_actor(self.runtime, self.runner_id, lease, actor_id, entries)

    # -- one pass ------------------------------------------------------------------------------
    def tick(
        self,
        *,
        stop: threading.Event | None = None,
        on_due: Callable[[int], None] | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ) -> TickReport:
        """Fire every timer due now that this runner owns, each exactly once; what was done.

        With ``split="runners"`` the tick registers itself for its duration
        (heartbeat written first, deleted at the end), so that concurrent
        ticks and long-running runners split the actors with it.

        Once ``stop`` is set, no fire starts: those in flight finish, and the tick returns,
        counting in ``left`` the due entries it listed and did not fire (they stay due).
        ``on_due(n)`` is called as each slice of the index is listed, with the entries due
        that this runner fires; ``on_done(actor_id, n)`` as each actor's fire ends, with its
        entries (on the thread that called ``tick``).
        """
        # The renewals are timed from before the heartbeat's first write (its expiry counts from
        # then) and go on while it is in flight: started once it returned, a first write
        # answered late (after 2/3 of the lease) left its first renewal too little time to land.
        joined = time.monotonic()
        stalled = False
        # (begun in the ``try``: an interrupt just after they began stops them in the
        # ``finally``; left, they renewed the heartbeat for the process's life)
        renewing: Callable[[bool], None] = no_renewals
        try:
            renewals = self._renewals(joined)
            if renewals is not None:
                # (Their stop held before they begin: an interrupt as ``begin`` queued the first
                # timer on the IO loop, before the stop was ours, left them renewing for good.)
                renewing = renewals.stop
                renewals.begin()
            self._join()
            report = TickReport()
            due_by_ms = time.time() * 1000
            after: str | None = None
            elsewhere: set[str] = set()
            while True:
                # The due entries (not the future ones) a slice at a time, past the previous
                # slice (an entry that could not be fired is not met again): a backlog of
                # millions is not held at once. The first slice lists the runners beside: a
                # stalled store costs one request timeout here, not two in a row.
                try:
                    entries = self._list(
                        due_by_ms, _MAX_LISTED, refresh=after is None, report=report, after=after
                    )
                except StorageTimeoutError:
                    stalled = True
                    raise
                self._fire_slice(entries, report, elsewhere, stop=stop, on_due=on_due, on_done=on_done)
                report._trim()  # (a figure per timer fired: the newest, as run()'s totals keep)
                if len(entries) < _MAX_LISTED or (stop is not None and stop.is_set()):
                    return report
                after = entries[-1].object_key
        finally:
            try:
                # (ended before the heartbeat is deleted: a renewal then wrote it again; on a
                # stalled store, not waited for: the heartbeat is left to expire)
                renewing(not stalled)
            finally:
                # (Left even when Ctrl-C cut that wait short: the heartbeat then stayed a lease,
                # this runner's share unfired. The renewal still in flight had put its write in
                # ``Membership._writes`` as it began, before the stop saw it: the leave waits
                # for that write before the delete.)
                if stalled:  # a third request timeout in a row would tell nothing new
                    logger.warning(
                        "timer runner %s: the store did not answer; its heartbeat is left to expire "
                        "(within %g s)",
                        self.runner_id,
                        self.lease,
                    )
                else:
                    self._leave()

    def _fire_slice(
        self,
        entries: list[IndexEntry],
        report: TickReport,
        elsewhere: set[str],
        *,
        stop: threading.Event | None = None,
        on_due: Callable[[int], None] | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ) -> None:
        """Fire the listed ``entries`` this runner owns (a tick's slice); counted in ``report``,
        the actors another runner owns added to ``elsewhere``; see :meth:`tick` for the rest."""
        report.listed += len(entries)
        groups: dict[str, list[IndexEntry]] = {}
        for entry in entries:
            if not self._in_shard(entry.actor_id):
                continue
            if not self._mine(entry.actor_id):
                elsewhere.add(entry.actor_id)
                continue
            groups.setdefault(entry.actor_id, []).append(entry)
            report.due += 1
        report.assigned_elsewhere = len(elsewhere)
        if not groups:
            return
        if on_due is not None:
            on_due(sum(len(group) for group in groups.values()))
        workers = min(self.concurrency, len(groups))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="vactor-timers")
        fire = carry_runtime(self._fire)

        def fire_unless_stopped(actor_id: str, group: list[IndexEntry]) -> TickReport | None:
            if stop is not None and stop.is_set():  # (queued when it came: left due)
                return None
            return fire(actor_id, group)[0]

        finished_all = False
        try:
            fires = {pool.submit(fire_unless_stopped, a, g): (a, len(g)) for a, g in groups.items()}
            # (on the main thread in slices: a timer method may take long, and a signal's
            # handler runs meanwhile)
            pending = set(fires)
            while pending:
                finished = _sync.wait_first(pending)
                pending -= finished
                for done in finished:  # (one that raised raises below, once all are done)
                    if on_done is not None and done.exception() is None and done.result() is not None:
                        on_done(*fires[done])
            for done, (_, count) in fires.items():  # (in the order listed)
                actor_report = done.result()
                if actor_report is None:
                    report.left += count
                else:
                    report.merge(actor_report)
            finished_all = True
        finally:
            # (interrupted, a KeyboardInterrupt: the fires in flight finish, the queued ones are
            # not started; they stay due)
            _stopped(pool, cancel=not finished_all)

    # -- long-running ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, on_tick: Callable[[TickReport], Any] | None = None) -> TickReport:
        """Fire timers as they fall due until ``stop`` is set; the totals (of their lateness
        figures and errors, the newest 100,000 and 1,000).

        A listing thread reads the runners and the due index every ``poll``
        seconds and puts the entries this runner owns (due within
        ``horizon``) into a heap; this thread pops each as it falls due and
        hands the actor's group to a pool of ``concurrency`` threads. On stop,
        fires in flight finish (queued ones are left to the next runner), then
        the heartbeat is deleted. ``on_tick(report)`` is called after each
        listing, with what happened since the previous one.
        """
        state = _RunState()
        joined = time.monotonic()  # (renewals from here, beside the first write: see ``tick``)
        renewer = threading.Thread(
            target=carry_runtime(self._renew), args=(stop, joined), name="vactor-timer-heartbeat", daemon=True
        )
        lister = threading.Thread(
            target=carry_runtime(self._list_loop),
            args=(stop, state, on_tick),
            name="vactor-timer-lister",
            daemon=True,
        )
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="vactor-timers")
        try:
            if self.membership is not None:
                renewer.start()
            self._join()
            lister.start()
            self._dispatch(stop, state, pool)
        finally:
            try:
                stop.set()
                with state.cond:
                    state.cond.notify_all()
                _stopped(pool, cancel=True)  # fires in flight finish; queued ones are left
                with state.cond:
                    deleting = list(state.deleting)
                _sync.wait_futures(deleting, self.runtime.settings.deadline)
                join_threads([t for t in (lister, renewer) if t.is_alive()], None)
            finally:
                # (Left even when Ctrl-C cut those waits short, as a tick's end is: kept, the
                # heartbeat stayed a lease. A renewal the renewer had sent is in
                # ``Membership._writes``, which the leave waits for; one it sends as the stop
                # comes, its join cut short, may land after the delete: a lease, as before.)
                self._leave()
        with state.cond:
            total = state.total
            total.merge(state.since)
            total._trim()
        return total

    def _renewals(self, joined: float) -> TickRenewals | None:
        """The renewals of a tick's heartbeat (one outlasting its lease was counted gone while
        it fired its share, and the others fired that share too), from ``begin`` until ``stop``,
        which (given True) waits for a renewal in flight (lease/3 at most); ``joined``: when the
        heartbeat's first write was sent (monotonic), see :meth:`_renew`. Timed on the IO loop
        (:class:`TickRenewals`), not on a thread of the tick's own: most ticks end before the
        first renewal is due, and a thread started and joined per tick cost each about 1 ms.
        None: no membership, nothing to renew."""
        if self.membership is None:
            return None
        return TickRenewals(self.runtime, self.membership, self.runner_id, joined)

    def _renew(self, stop: threading.Event, joined: float) -> None:
        """Renew the heartbeat every lease/3 (from the start of one renewal to the next), each
        renewal cut off at lease/3: bounded by ``Settings.deadline`` alone (30 s by default,
        more than a third of the default lease) and followed lease/3 after it ended, one
        stalled renewal let the heartbeat expire while this runner went on firing its share.
        The first is due lease/3 after ``joined``, when the first write was sent (monotonic):
        counted from when that write returned, one answered after 2/3 of the lease was renewed
        only once it had expired."""
        membership = self.membership
        assert membership is not None
        period = self.lease / 3
        due = joined + period
        while not stop.wait(max(0.0, due - time.monotonic())):
            due = next_renewal(due, period, time.monotonic())
            try:
                self.runtime.run(membership.beat(within=period))
            except VactorError as exc:  # retried next period; meanwhile others may duplicate our work
                logger.warning("timer runner %s: could not renew its heartbeat: %s", self.runner_id, exc)

    def _list_loop(
        self, stop: threading.Event, state: _RunState, on_tick: Callable[[TickReport], Any] | None
    ) -> None:
        refreshed = -math.inf
        while not stop.is_set():
            started = time.monotonic()
            report = TickReport(runners=len(self.membership.live) if self.membership else 1)
            try:
                # The runners are listed at most every lease/10 (a graceful leave is seen within
                # that), beside the index listing.
                refresh = self.membership is not None and started - refreshed >= self.lease / 10
                if refresh:
                    refreshed = started
                listed_at = time.monotonic()
                due_by_ms = time.time() * 1000 + self.horizon * 1000
                after: str | None = None
                while True:
                    # A slice at a time, past the previous one while this runner holds less
                    # than a slice: entries it does not own (another shard's, whose runner is
                    # down; a dead runner's) filling the earliest slice starved its own.
                    entries = self._list(due_by_ms, _MAX_LISTED, refresh and after is None, report, after)
                    report.listed += len(entries)
                    self._take(state, entries, listed_at, report)
                    with state.cond:
                        full = len(state.held) >= _MAX_LISTED
                    if len(entries) < _MAX_LISTED or full or stop.is_set():
                        break
                    after = entries[-1].object_key
            except VactorError as exc:
                logger.warning("timer runner %s: listing the due index failed: %s", self.runner_id, exc)
                report.errors.append(str(exc))
            with state.cond:
                done, state.since = state.since, TickReport()
            report.merge(done)
            with state.cond:
                state.total.listed += report.listed
                state.total.due += report.due
                state.total.runners = report.runners
                state.total.merge(report)
                state.total._trim()
            if on_tick is not None:
                on_tick(report)
            stop.wait(max(0.0, self.poll - (time.monotonic() - started)))
        with state.cond:
            state.cond.notify_all()

    def _take(
        self, state: _RunState, entries: list[IndexEntry], listed_at: float, report: TickReport
    ) -> None:
        """Put the listed entries this runner owns and does not hold yet into the heap."""
        elsewhere: set[str] = set()
        with state.cond:
            for entry in entries:
                key = entry.object_key
                if key in state.held or key in state.deleted or not self._in_shard(entry.actor_id):
                    continue
                if not self._mine(entry.actor_id):
                    elsewhere.add(entry.actor_id)
                    continue
                state.held.add(key)
                heapq.heappush(state.heap, (entry.due_ms, key, entry))
                report.due += 1
            # A delete that finished before this listing started cannot show in later ones.
            state.deleted = {k: t for k, t in state.deleted.items() if t >= listed_at}
            state.cond.notify_all()
        report.assigned_elsewhere += len(elsewhere)

    def _dispatch(self, stop: threading.Event, state: _RunState, pool: ThreadPoolExecutor) -> None:
        coalesce_ms = self.coalesce * 1000
        while not stop.is_set():
            groups: dict[str, list[IndexEntry]] = {}
            with state.cond:
                now_ms = time.time() * 1000
                if not state.heap or state.heap[0][0] + coalesce_ms > now_ms:
                    wait = 0.25 if not state.heap else (state.heap[0][0] + coalesce_ms - now_ms) / 1000
                    state.cond.wait(min(0.25, max(0.001, wait)))
                    continue
                while state.heap and state.heap[0][0] <= now_ms:
                    _, key, entry = heapq.heappop(state.heap)
                    if not self._mine(entry.actor_id):  # the view changed: the new owner fires it
                        state.held.discard(key)
                        continue
                    groups.setdefault(entry.actor_id, []).append(entry)
            for actor_id, group in groups.items():
                pool.submit(carry_runtime(self._fire_held), state, actor_id, group)

    def _fire_held(self, state: _RunState, actor_id: str, group: list[IndexEntry]) -> None:
        """Fire one actor's group (a pool thread); its entries are deleted off the pool thread."""
        claims = self.split == "claims"
        try:
            if claims:
                report, done = self._fire(actor_id, group)
            else:
                report, done = fire_actor(self.runtime, self.runner_id, None, actor_id, group, delete=False)
        except Exception as exc:  # never lose the pool thread; the entries are listed again
            logger.exception("timer runner %s: firing %r failed", self.runner_id, actor_id)
            report, done = TickReport(errors=[TickError(f"{actor_id}: {exc!r}", exc)]), []
        self._warn_once(state, report.errors)

        def finish(deleting: concurrent.futures.Future[None] | None = None) -> None:
            now = time.monotonic()
            with state.cond:
                for entry in group:
                    state.held.discard(entry.object_key)
                for entry in done:
                    state.deleted[entry.object_key] = now
                state.since.merge(report)
                if deleting is not None:
                    state.deleting.discard(deleting)

        if claims or not done:
            finish()
            return
        # The entries stay held until their deletes finish: a listing meanwhile must not fire them.
        deleting = _sync.submit(delete_entries(self.runtime.store, done))
        with state.cond:
            state.deleting.add(deleting)
        deleting.add_done_callback(finish)

    def _warn_once(self, state: _RunState, errors: list[str]) -> None:
        """Log each error not logged before: a long-running runner's log is its output, and a
        timer that cannot be fired is tried at every poll (one line, not one a poll)."""
        with state.cond:
            new = [error for error in errors if error not in state.warned]
            if len(state.warned) + len(new) > _MAX_WARNED:
                state.warned.clear()
            state.warned.update(new)
        for error in new:
            logger.warning("timer runner %s: %s", self.runner_id, error)


#: errors a long-running runner remembers having logged (then it forgets them all, and may log
#: each once more)
_MAX_WARNED = 10_000


def _stopped(pool: ThreadPoolExecutor, *, cancel: bool) -> None:
    """Shut ``pool`` down once its tasks in flight have finished (``cancel``: the queued ones
    are cancelled); on the main thread waited for in slices (``_sync.wait_aside``), as fires
    may take long."""
    _sync.wait_aside(
        functools.partial(pool.shutdown, wait=True, cancel_futures=cancel), name="vactor-timers-stop"
    )


@dataclass
class _RunState:
    """What the listing thread, the dispatcher and the pool share (under ``cond``)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    #: (due_ms, object key, entry) of owned entries waiting for their due time
    heap: list[tuple[int, str, IndexEntry]] = field(default_factory=list)
    #: object keys in the heap or being fired: a listing does not add them again
    held: set[str] = field(default_factory=set)
    #: object keys this runner deleted, and when (monotonic): a listing that began before is stale
    deleted: dict[str, float] = field(default_factory=dict)
    #: deletes of fired entries in flight (a graceful stop waits for them)
    deleting: set[concurrent.futures.Future[None]] = field(default_factory=set)
    #: the errors logged already (``TimerRunner._warn_once``)
    warned: set[str] = field(default_factory=set)
    #: fires finished since the last listing, and the totals
    since: TickReport = field(default_factory=TickReport)
    total: TickReport = field(default_factory=TickReport)


def fire_due_timers(
    *,
    runtime: Runtime | None = None,
    lease: float = DEFAULT_LEASE,
    runner_id: str | None = None,
    concurrency: int = 16,
    shard: tuple[int, int] | None = None,
    split: Split | None = None,
    claims: bool | None = None,
    stop: threading.Event | None = None,
    on_due: Callable[[int], None] | None = None,
    on_done: Callable[[str, int], None] | None = None,
) -> TickReport:
    """Fire every timer due now, each exactly once, and return what was done.

    Safe to run in many processes at once and to kill at any point. By
    default (``split="runners"``) the pass registers itself as a runner for
    its duration and takes its rendezvous share of the actors, beside the
    other live runners of its group; ``split="none"`` takes every due timer
    (``claims=False``, as before), ``split="claims"`` claims each actor
    (``claims=True``). ``shard=(i, n)`` keeps only the actors whose id hashes
    to ``i`` of ``n`` (e.g. one Dask task per shard). ``stop`` ends the pass early (the fires
    in flight finish; the report's ``left`` counts the due timers not fired, which stay due);
    ``on_due`` and ``on_done`` follow its progress: see :meth:`TimerRunner.tick`.
    """
    runner = TimerRunner(
        runtime,
        split=_split_of(split, claims),
        lease=lease,
        shard=shard,
        concurrency=concurrency,
        runner_id=runner_id,
    )
    return runner.tick(stop=stop, on_due=on_due, on_done=on_done)


def run_timers(
    *,
    poll: float = 1.0,
    stop: threading.Event | None = None,
    runtime: Runtime | None = None,
    lease: float = DEFAULT_LEASE,
    shard: tuple[int, int] | None = None,
    split: Split | None = None,
    claims: bool | None = None,
    concurrency: int = 16,
    runner_id: str | None = None,
    on_tick: Callable[[TickReport], Any] | None = None,
) -> TickReport:
    """Fire timers as they fall due until ``stop`` is set; the totals (see :meth:`TimerRunner.run`).

    Fires in flight finish before returning (graceful shutdown), and the
    runner's heartbeat is deleted so that the others take its actors at once.
    """
    runner = TimerRunner(
        runtime,
        split=_split_of(split, claims),
        lease=lease,
        shard=shard,
        concurrency=concurrency,
        runner_id=runner_id,
        poll=poll,
    )
    return runner.run(stop or threading.Event(), on_tick)

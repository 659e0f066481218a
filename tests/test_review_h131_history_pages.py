"""Review h131: history read a page at a time (``history._history_pages``), the retention
watermark read after each page.

* On the same logs (kept steps, a compacted tail, strays below the watermark, damaged steps),
  ``history(limit=...)`` gives what the one-list reading before it gave (``_old_history``,
  copied from commit c0efb2d), damaged steps reported alike.
* A compaction racing the reading (the watermark raised between pages or amid a page, the
  oldest steps deleted, a stalled writer's late put re-creating a freed number: a stray)
  shows no stray, no step twice, and every step still kept when the reading ended.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from actors import Tally
from garbage import full_collection

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud import history as history_module
from vactor_cloud.errors import IntegrityError
from vactor_cloud.history import (
    _DAMAGED,
    _READ_AHEAD,
    HistoryEntry,
    OnDamagedStep,
    _history,
    _newest,
    iter_history,
)
from vactor_cloud.log import ClassRef, StepRecord
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")

DAMAGED = "damaged"


def record(step: int, writer: str = "w") -> StepRecord:
    return StepRecord(
        step=step,
        parent=None if step == 0 else step - 1,
        class_ref=ClassRef("0" * 64, "tests.H"),
        serializer="json",
        state=b"{}",
        writer=writer,
        time=time.time(),
    )


class FakeLog:
    """What history reads of a log: its newest step, its steps, its watermark. ``on_read(n)``
    runs before the n-th step read (0-based): a compaction racing the reading."""

    actor_id = "h"

    def __init__(self, steps: dict[int, Any], gc: int, newest: int) -> None:
        self.steps = steps
        self.gc = gc
        self.newest = steps[newest]
        self.reads = 0
        self.on_read: Callable[[int], None] = lambda n: None

    async def read_head(self) -> None:
        return None

    async def load_latest(self, head: None) -> StepRecord:
        return self.newest

    async def read_step(self, step: int) -> StepRecord | None:
        self.on_read(self.reads)
        self.reads += 1
        await asyncio.sleep(0)
        found = self.steps.get(step)
        if found == DAMAGED:
            raise IntegrityError(f"steps/{step}", "damaged")
        return found

    async def read_gc(self) -> int:
        return self.gc


async def _old_history(
    log: Any, limit: int | None, on_damaged: OnDamagedStep | None = None
) -> list[HistoryEntry]:
    """``history._history`` as of commit c0efb2d (one list, the watermark read once)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    newest = await _newest(log)
    entries = [HistoryEntry.from_record(newest)]
    damaged: list[tuple[int, IntegrityError]] = []

    async def read(step: int) -> object:
        try:
            return await log.read_step(step)
        except IntegrityError as exc:
            if on_damaged is None:
                raise
            damaged.append((step, exc))
            return _DAMAGED

    want = newest.step + 1 if limit is None else min(limit, newest.step + 1)
    next_step = newest.step - 1
    while len(entries) < want and next_step >= 0:
        count = min(_READ_AHEAD, want - len(entries), next_step + 1)
        steps = range(next_step, next_step - count, -1)
        records = await asyncio.gather(*(read(s) for s in steps))
        found = list(itertools.takewhile(lambda r: r is not None, records))
        entries.extend(HistoryEntry.from_record(r) for r in found if isinstance(r, StepRecord))
        if len(found) < len(records):
            break
        next_step -= count
    floor = 0
    if len(entries) > 1 or damaged:
        floor = await log.read_gc()
        entries = [e for e in entries if e.step >= floor or e.step == newest.step]
    for step, exc in sorted(damaged, reverse=True):
        if step >= floor:
            assert on_damaged is not None
            on_damaged(step, exc)
    return entries[:want]


def a_log(rng: random.Random) -> FakeLog:
    """Steps ``lo..newest`` kept or damaged, the watermark at or above ``lo``, strays below."""
    newest = rng.choice([0, 1, 2, rng.randrange(3, 200)])
    gc = rng.randint(0, newest)
    lo = rng.randint(0, gc)  # the compaction deleted steps below lo so far (oldest first)
    steps: dict[int, Any] = {s: record(s) for s in range(lo, newest + 1)}
    for _ in range(rng.choice([0, 0, 1, 3])):
        if lo:
            stray = rng.randrange(lo)
            steps[stray] = record(stray, "stray")  # (a late put re-created a freed number)
    for s in range(lo, newest):
        if rng.random() < 0.05:
            steps[s] = DAMAGED
    return FakeLog(steps, gc, newest)


def outcome(log: FakeLog, reader: Any, limit: int | None, damaged: bool) -> tuple[Any, ...]:
    reported: list[int] = []
    on_damaged = (lambda step, exc: reported.append(step)) if damaged else None
    try:
        entries = _sync.sync(reader(log, limit, on_damaged))
    except IntegrityError as exc:
        return ("raised", exc.key)
    return ([(e.step, e.writer) for e in entries], reported)


@pytest.mark.parametrize("page", [1, 3, 16, 64])
def test_history_gives_what_the_one_list_reading_gave_on_the_same_logs(
    monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    monkeypatch.setattr(history_module, "_HISTORY_PAGE", page)
    rng = random.Random(131 + page)
    for _ in range(150):
        log = a_log(rng)
        limit = rng.choice([None, 0, 1, 2, rng.randrange(0, 220)])
        damaged = rng.random() < 0.7
        new = outcome(log, _history, limit, damaged)
        old = outcome(log, _old_history, limit, damaged)
        assert new == old, (sorted(log.steps), log.gc, limit)


class RacingCompaction:
    """A compaction (or two) racing the reading: at a chosen read it raises the watermark, then
    deletes the oldest steps below it one per read; a stalled writer's late put re-creates a
    freed number below the watermark now and then (a stray)."""

    def __init__(self, log: FakeLog, rng: random.Random) -> None:
        self.log = log
        self.rng = rng
        self.starts = sorted(rng.sample(range(300), rng.choice([1, 2])))
        self.target = 0

    def __call__(self, n: int) -> None:
        log, rng = self.log, self.rng
        if self.starts and n >= self.starts[0]:
            self.starts.pop(0)
            log.gc = rng.randint(log.gc, log.newest.step)  # (the watermark first, then deletes)
            self.target = log.gc
        kept = [s for s, r in log.steps.items() if r.writer != "stray"]
        oldest = min(kept)
        if oldest < self.target:
            del log.steps[oldest]
        freed = [s for s in range(log.gc) if s not in log.steps]
        if freed and rng.random() < 0.2:
            stray = rng.choice(freed)
            log.steps[stray] = record(stray, "stray")


@pytest.mark.parametrize("page", [3, 64])
def test_a_compaction_racing_a_paged_history_shows_no_stray_no_step_twice_and_every_kept_step(
    monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    monkeypatch.setattr(history_module, "_HISTORY_PAGE", page)
    rng = random.Random(1310 + page)
    for _ in range(60):
        newest = rng.randrange(1, 260)
        lo = rng.randint(0, newest // 3)
        log = FakeLog({s: record(s) for s in range(lo, newest + 1)}, lo, newest)
        log.on_read = RacingCompaction(log, rng)
        limit = rng.choice([None, None, rng.randrange(1, 270)])
        shown = [(e.step, e.writer) for e in _sync.sync(_history(log, limit))]
        steps = [s for s, _ in shown]
        assert all(w != "stray" for _, w in shown), shown
        assert steps == sorted(set(steps), reverse=True), steps  # (newest first, none twice)
        # Steps at or above the watermark when the reading ended were never deleted: shown,
        # as far as the limit reaches.
        top = newest + 1 if limit is None else min(limit, newest + 1)
        assert set(range(max(log.gc, newest + 1 - top), newest + 1)) <= set(steps), (log.gc, limit, steps)


@pytest.mark.vactor_lanes("memory", "local")
def test_iter_history_stopped_early_or_after_shutdown_closes_its_reading_and_raises_nothing_more(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    monkeypatch.setattr(history_module, "_HISTORY_PAGE", 3)
    store_spec.init()
    tally = Tally.get_or_create("t")
    for _ in range(9):
        tally.incr.run()
    assert [len(p) for p in iter_history("t")] == [3, 3, 3, 1]
    # A break: the pages' reading is closed (its generator ended), not left suspended.
    closed: list[str] = []
    real = history_module._history_pages

    async def watched(*args: Any) -> Any:
        try:
            async for page in real(*args):
                yield page
        finally:
            await asyncio.sleep(0.02)  # (closed on the IO loop later, by its finalizer: too late)
            closed.append("closed")

    monkeypatch.setattr(history_module, "_history_pages", watched)
    for page in iter_history("t"):
        assert [e.step for e in page] == [9, 8, 7]
        break
    assert closed == ["closed"]
    # An exception in the loop's body: the same.
    with pytest.raises(LookupError):
        for _page in iter_history("t"):
            raise LookupError
    assert closed == ["closed", "closed"]
    # The runtime shut down between pages: the next page raises RuntimeShutdownError (no hang),
    # closing raises nothing.
    pages = iter_history("t")
    assert len(next(pages)) == 3
    vc.shutdown()
    with pytest.raises(vc.RuntimeShutdownError):
        next(pages)
    pages.close()
    full_collection()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_a_bad_limit_is_refused_at_the_call_not_at_the_first_page() -> None:
    """``history(limit=-1)`` raises at the call; ``iter_history`` and ``iter_actors`` raised
    only at the first ``next()`` (generator functions), where a caller that built the
    iterator in one place and read it in another met it far from its cause."""
    with pytest.raises(ValueError, match="limit must be >= 0"):
        history_module.iter_history("t", limit=-1)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        history_module.iter_actors(limit=0)

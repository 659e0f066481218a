"""``vactor compact ID`` before its first delete (review-h136): it lists every old step, and
for an actor with sub-task checkpoints reads them all (minutes for a million steps on S3),
and said nothing meanwhile. ``compact`` now tells an optional hook (``on_listed``) how far
the listing and the reading have got, as ``on_deleted`` tells of the deletes; the command
shows it. In-process on a local store; no timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_harness import Vactor, copy_long_actor, seed_long_actor

import vactor_cloud as vc
from vactor_cloud import _sync, compaction
from vactor_cloud.cli import EXIT_OK
from vactor_cloud.compaction import compact
from vactor_cloud.keys import tasks_prefix

#: the actor's steps: compacted to the newest, 39 old ones go (read in batches of 16, 16 and 7)
STEPS = 40
FORCED = ["--keep-last", "1", "--min-age", "0", "--force"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_long_actor(tmp_path_factory.mktemp("compact-listing") / "store", STEPS)


@pytest.fixture
def long_actor(store: str, seeded: Path) -> str:
    return copy_long_actor(seeded, store)


def _with_a_task_checkpoint(store: str, actor_id: str) -> None:
    """A sub-task checkpoint of a call no step committed: compaction then reads every old step
    for the calls it committed (whose checkpoints may go)."""
    vc.init(store)
    try:
        _sync.sync(vc.get_runtime().store.put(f"{tasks_prefix(actor_id, 'a-call')}000000", b"{}"))
    finally:
        vc.shutdown()


def _compact_telling(store: str, actor_id: str) -> tuple[Any, list[tuple[str, int, int]]]:
    told: list[tuple[str, int, int]] = []
    vc.init(store)
    try:
        log = vc.get_runtime().log(actor_id)
        report = _sync.sync(
            compact(log, 1, min_age=0, fresh_window=0, on_listed=lambda *said: told.append(said))
        )
    finally:
        vc.shutdown()
    return report, told


def test_compaction_tells_its_hook_the_old_steps_listed_page_by_page(
    long_actor: str, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 16 keys (a real listing: 1,000): the steps below the watermark found so far,
    after each page; the total is not known until the listing ends (0). No checkpoints: no step
    is read."""
    monkeypatch.setattr(compaction, "_PAGE", 16)
    report, told = _compact_telling(store, long_actor)
    assert report.deleted_steps == STEPS - 1
    assert told == [
        ("listing old steps", 16, 0),
        ("listing old steps", 32, 0),
        ("listing old steps", 39, 0),
    ], told


def test_compaction_tells_its_hook_the_old_steps_read_for_their_calls(long_actor: str, store: str) -> None:
    """An actor with a sub-task checkpoint: after the listing, each batch of old steps read (of
    how many), before the first delete."""
    _with_a_task_checkpoint(store, long_actor)
    report, told = _compact_telling(store, long_actor)
    assert report.deleted_steps == STEPS - 1
    assert told == [
        ("listing old steps", 39, 0),
        ("reading old steps", 16, 39),
        ("reading old steps", 32, 39),
        ("reading old steps", 39, 39),
    ], told


def test_compact_of_one_actor_says_how_far_it_read_before_deleting_when_piped(
    vactor: Vactor, long_actor: str, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped, with a line allowed each 0 s: the old steps listed so far, then those read (of
    how many), then those deleted. Before: the first line said ``deleting steps 16/39``."""
    from vactor_cloud.cli import _output

    _with_a_task_checkpoint(store, long_actor)
    monkeypatch.setattr(_output, "PLAIN_PROGRESS_EVERY", 0.0)
    result = vactor("compact", long_actor, *FORCED)
    assert result.code == EXIT_OK, result
    assert result.err.splitlines() == [
        "listing old steps 39 so far long",
        "reading old steps 16/39 long",
        "reading old steps 32/39 long",
        "reading old steps 39/39 long",
        "deleting steps 16/39 long",
        "deleting steps 32/39 long",
        "deleting steps 39/39 long",
    ], result.err


def test_a_short_listing_adds_no_line_when_piped(
    vactor: Vactor, long_actor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing shorter than the interval between lines says nothing (as ``listing_count``: a
    cron job's log of a small actor is not told of it); the deletes are told as before."""
    from vactor_cloud.cli import _output

    monkeypatch.setattr(_output, "PLAIN_PROGRESS_EVERY", 3600.0)
    result = vactor("compact", long_actor, *FORCED)
    assert result.code == EXIT_OK, result
    assert result.err.splitlines() == ["deleting steps 16/39 long", "deleting steps 39/39 long"], result.err


def test_a_terminal_bar_shows_each_phase_with_its_count(capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal one bar, relabelled for each phase: the listing's count without a total
    (``N/?``), then each later phase's of its total."""
    from vactor_cloud.cli._output import progress

    capsys.readouterr()
    with progress(0, "deleting steps", enabled=True) as advance:
        advance.phase("listing old steps", None)
        advance.many(7, "long")
        advance.phase("reading old steps", 3)
        advance.many(3, "long")
        advance.phase("deleting steps", 5)
        advance.many(5, "long")
    err = capsys.readouterr().err
    assert "deleting steps" in err and "5/5" in err, err

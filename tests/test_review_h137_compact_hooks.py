"""Review h137: a progress hook of ``compact`` (``on_listed``, ``on_deleted``) that raises
stops the compaction with the hook's error, before (or between) deletes; the actor reads as
before and the next compaction finishes the work. In-process on a local store; no timings."""

from __future__ import annotations

import pytest
from actors import Tally
from test_review_h136_compact_listing import STEPS, _with_a_task_checkpoint, long_actor, seeded

import vactor_cloud as vc
from vactor_cloud import _sync, compaction
from vactor_cloud.compaction import compact

__all__ = ["long_actor", "seeded"]  # (fixtures)


class HookFailed(Exception):
    pass


def _fail_at(phase: str, count: int) -> tuple[object, object]:
    """Hooks that raise once they are told ``count`` items of ``phase``."""

    def on_listed(said: str, done: int, total: int) -> None:
        if said == phase and done >= count:
            raise HookFailed(f"{said} {done}")

    def on_deleted(done: int, total: int) -> None:
        if phase == "deleting steps" and done >= count:
            raise HookFailed(f"deleting {done}")

    return on_listed, on_deleted


@pytest.mark.parametrize(
    ("phase", "count"), [("listing old steps", 32), ("reading old steps", 16), ("deleting steps", 1)]
)
def test_a_compaction_hook_that_raises_stops_it_and_the_next_compaction_finishes(
    long_actor: str, store: str, monkeypatch: pytest.MonkeyPatch, phase: str, count: int
) -> None:
    monkeypatch.setattr(compaction, "_PAGE", 16)
    _with_a_task_checkpoint(store, long_actor)
    on_listed, on_deleted = _fail_at(phase, count)
    vc.init(store)
    try:
        log = vc.get_runtime().log(long_actor)
        with pytest.raises(HookFailed):
            _sync.sync(
                compact(
                    log,
                    1,
                    min_age=0,
                    fresh_window=0,
                    on_listed=on_listed,
                    on_deleted=on_deleted,  # type: ignore[arg-type]
                )
            )
        assert Tally.get_or_create(long_actor).get.run() == STEPS - 1, "the actor's state changed"
        report = _sync.sync(compact(log, 1, min_age=0, fresh_window=0))
        assert report.deleted_steps > 0 or phase == "deleting steps", report
        assert list(_sync.sync(log.list_steps(after=None, limit=100))) == [STEPS - 1], "old steps left"
        tally = Tally.get_or_create(long_actor)
        assert tally.get.run() == STEPS - 1
        tally.incr.run()
        assert tally.get.run() == STEPS
    finally:
        vc.shutdown()

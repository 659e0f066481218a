"""Review h153: ``vactor compact --all`` interrupted right after its last batch said "interrupted
after compacting 6 of 6 actors, between two batches (none was being compacted); the other 0
were not touched: run it again to finish": after the last batch there is no other, and nothing
to finish. It now says every actor was compacted (and, when the first pass held some last steps
for want of the writers' evidence, that the second pass for them did not run)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cli_harness import Vactor
from test_review_h149_cli_compact_interrupt import COMPACT, _last_line, _seed

from vactor_cloud.cli import compact as compact_cli
from vactor_cloud.errors import PermissionDeniedError

pytestmark = pytest.mark.vactor_lanes("local")


def _interrupt_after_the_last_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compact_cli._batches

    def batches_then_interrupt(*args: Any) -> Any:
        yield from real(*args)
        raise KeyboardInterrupt  # (as the loop asks for the batch after the last)

    monkeypatch.setattr(compact_cli, "_batches", batches_then_interrupt)


def test_interrupted_after_the_last_batch_says_every_actor_was_compacted(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(store)
    _interrupt_after_the_last_batch(monkeypatch)
    line = _last_line(vactor(*COMPACT))
    assert "interrupted after compacting all 6 actors" in line, line
    assert "the other 0" not in line and "between two batches" not in line, line
    assert "run it again to finish" not in line, line


def test_interrupted_after_the_last_batch_before_the_second_pass_says_it_did_not_run(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass held some last steps for want of the writers' evidence: the second pass,
    which compacts those actors again, did not run."""
    _seed(store)
    _interrupt_after_the_last_batch(monkeypatch)
    real = compact_cli._gathered

    async def gathered_all_held(coroutines: list[Any]) -> list[Any]:
        return [dataclasses.replace(report, held_unproven=1) for report in await real(coroutines)]

    monkeypatch.setattr(compact_cli, "_gathered", gathered_all_held)
    line = _last_line(vactor(*COMPACT))
    assert "interrupted after compacting all 6 actors once, before the second pass" in line, line
    assert "the other 0" not in line and "between two batches" not in line, line


def test_interrupted_after_the_last_batch_with_an_actor_that_failed_says_so(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(store)
    _interrupt_after_the_last_batch(monkeypatch)
    real = compact_cli._gathered
    failures: list[int] = []

    async def gathered_one_failed(coroutines: list[Any]) -> list[Any]:
        reports = await real(coroutines)
        if not failures:
            failures.append(1)
            reports[0] = PermissionDeniedError("access denied", "actors/m0/HEAD")
        return reports

    monkeypatch.setattr(compact_cli, "_gathered", gathered_one_failed)
    line = _last_line(vactor(*COMPACT))
    assert "interrupted after trying all 6 actors (1 could not be compacted)" in line, line
    assert "none was left to try; run it again for those that failed" in line, line

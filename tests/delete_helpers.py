"""Shared by the delete tests (test_delete_actor, test_delete_faults) and their children:
``newest``, ``steps`` and ``tombstones`` read an actor's log, and
:class:`LosesFirstTombstoneRace` makes a delete lose its first race (so that it takes the
folder lease over), in a test or in a spawned child."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.deletion import is_deleted
from vactor_cloud.log import ActorLog, StepRecord
from vactor_cloud.runtime import Runtime

__all__ = ["LosesFirstTombstoneRace", "newest", "steps", "tombstones"]


def newest(runtime: Runtime, actor_id: str) -> StepRecord:
    record = _sync.sync(runtime.log(actor_id).load_latest(None))
    assert record is not None
    return record


def steps(runtime: Runtime, actor_id: str) -> list[int]:
    return _sync.sync(runtime.log(actor_id).list_steps())


def tombstones(runtime: Runtime, actor_id: str) -> list[int]:
    """The step numbers of the actor's tombstones, oldest first."""
    log = runtime.log(actor_id)
    found = []
    for step in steps(runtime, actor_id):
        record = _sync.sync(log.read_step(step))
        if record is not None and is_deleted(record):
            found.append(step)
    return found


class LosesFirstTombstoneRace:
    """Patches ``ActorLog.put_step``: the first tombstone put loses its race (a racer's step, a
    copy of the step before it, is put at its number first), so the delete takes the folder
    lease over and tries again. The tombstone puts after it end as ``then`` says: "commit"
    (put as they are), "unknown" (``CommitOutcomeUnknownError``: an answer lost), or "hang"
    (never answer, until the caller gives up and cancels). ``retried`` is set as the second
    tombstone put begins; ``tombstone_puts`` counts them.

    ``install(monkeypatch)`` in a test (undone with it); ``install()`` in a spawned child,
    for the rest of its life."""

    THEN = ("commit", "unknown", "hang")

    def __init__(self, then: str = "commit") -> None:
        assert then in self.THEN, f"then: one of {self.THEN}, not {then!r}"
        self.then = then
        self.tombstone_puts = 0
        self.retried = threading.Event()
        self.real = ActorLog.put_step

    def install(self, monkeypatch: pytest.MonkeyPatch | None = None) -> LosesFirstTombstoneRace:
        patch = self.put_step

        async def put_step(log: ActorLog, record: StepRecord) -> bool:
            return await patch(log, record)

        if monkeypatch is None:
            ActorLog.put_step = put_step  # type: ignore[method-assign]
        else:
            monkeypatch.setattr(ActorLog, "put_step", put_step)
        return self

    async def put_step(self, log: ActorLog, record: StepRecord) -> bool:
        if not is_deleted(record):
            return await self.real(log, record)
        self.tombstone_puts += 1
        if self.tombstone_puts == 1:
            base = await log.read_step(record.step - 1)
            assert base is not None, f"no step {record.step - 1} to race the tombstone with"
            racer = dataclasses.replace(base, step=record.step, parent=record.step - 1, writer="racer")
            await self.real(log, racer)
            return await self.real(log, record)  # StepTakenError: the racer's step is there
        self.retried.set()
        if self.then == "unknown":
            raise vc.CommitOutcomeUnknownError(log.actor_id, record.step, "its answer was lost")
        if self.then == "hang":
            await asyncio.sleep(3600)  # never answers: the caller gives up and cancels
            raise AssertionError("not cancelled")
        return await self.real(log, record)

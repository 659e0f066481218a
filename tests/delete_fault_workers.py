"""Child-process entry points for tests/test_delete_faults.py (importable by spawned children)."""

from __future__ import annotations

import dataclasses

from child_processes import report_stacks_on_request

import vactor_cloud as vc
from vactor_cloud.deletion import is_deleted
from vactor_cloud.log import ActorLog, StepRecord
from vactor_cloud.testing.faults import FaultConfig, install
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


def lose_the_first_tombstone_race() -> None:
    """The first tombstone put of this process loses its race (a racer's step, a copy of the
    step before, is put first): the delete takes the folder lease over and tries again."""
    real = ActorLog.put_step
    lost: list[int] = []

    async def put_step(log: ActorLog, record: StepRecord) -> bool:
        if is_deleted(record) and not lost:
            lost.append(record.step)
            base = await log.read_step(record.step - 1)
            assert base is not None
            await real(
                log, dataclasses.replace(base, step=record.step, parent=record.step - 1, writer="racer")
            )
        return await real(log, record)

    ActorLog.put_step = put_step  # type: ignore[method-assign]


def delete_killed_at(spec: StoreSpec, actor_id: str, faults: str, lease_seconds: float) -> None:
    """Delete ``actor_id`` after losing a race, with ``faults`` (a scheduled SIGKILL) installed."""
    spec.init(settings=vc.Settings(storage="", lease_seconds=lease_seconds))
    install(FaultConfig.from_json(faults))
    lose_the_first_tombstone_race()
    vc.delete_actor(actor_id)
    raise SystemExit(3)  # (the kill never landed)

"""Child-process entry points for tests/test_delete_faults.py (importable by spawned children)."""

from __future__ import annotations

from child_processes import report_stacks_on_request
from delete_helpers import LosesFirstTombstoneRace

import vactor_cloud as vc
from vactor_cloud.testing.faults import FaultConfig, install
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()


def delete_killed_at(spec: StoreSpec, actor_id: str, faults: str, lease_seconds: float) -> None:
    """Delete ``actor_id`` after losing a race, with ``faults`` (a scheduled SIGKILL) installed."""
    spec.init(settings=vc.Settings(storage="", lease_seconds=lease_seconds))
    install(FaultConfig.from_json(faults))
    LosesFirstTombstoneRace().install()
    vc.delete_actor(actor_id)
    raise SystemExit(3)  # (the kill never landed)

"""The actor of tests/test_review_step_prerequisites.py, and its child process entry point:
a keyed call with a large result, killed (SIGKILL) right after a put made before its step."""

from __future__ import annotations

import os

from child_processes import report_stacks_on_request

import vactor_cloud as vc
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()

#: a result over the outcome-object threshold, once encoded (dedup.OUTCOME_OBJECT_BYTES)
BIG = 100 * 1024
#: pads a small result so that a few keyed calls outgrow a delta (a checkpoint each few)
PAD = "p" * 600


@vc.virtual_actor
class Exporter:
    def __init__(self) -> None:
        self.runs = 0

    def export(self, fill: str) -> str:
        self.runs += 1
        return fill * BIG

    def small(self, i: int) -> str:
        self.runs += 1
        return f"{i}{PAD}"

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.runs


def export_killed_after(spec: StoreSpec, fragment: str) -> None:
    """Call ``export`` with an idempotency key; SIGKILL this process once the put of the key
    containing ``fragment`` (an outcome object, or the checkpoint) was applied: before the
    step's own put is sent."""
    os.environ.update(spec.env)
    vc.init(spec.url, settings=vc.Settings(storage=spec.url, fresh_window=0.0), **spec.options)
    install(FaultConfig((FaultRule("crash_after", key_contains=fragment, at=(1,)),)))
    x = Exporter.get_or_create("x")
    x.export.options(idempotency_key="big").run("a")
    raise AssertionError("the kill did not land")

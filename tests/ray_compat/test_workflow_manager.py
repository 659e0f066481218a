"""Port of ``test_actor_manager`` from Ray's python/ray/workflow/tests/test_workflow_manager.py
(ray-project/ray@b34a5e3c); the file's other tests are about plain workflows, not virtual actors.

Changed: imports (``ray`` -> ``vactor_cloud as vc``, ``ray.workflow`` -> ``vactor_cloud.workflow``),
``ray.get`` -> ``vc.get``, the fixture ``workflow_start_regular`` with its ``num_cpus``
parametrization -> ``actor_store`` (a fresh store per test, on every lane).
"""

import time

import pytest
from filelock import FileLock

import vactor_cloud as vc
from vactor_cloud import workflow

#: Ray's tests exercise behaviour above the storage contract: memory and local, and moto for S3
#: (as issue 15 asks); the shipped conformance suite covers every backend.
pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


def test_actor_manager(actor_store, tmp_path):
    # Changed: fixture, ray.get -> vc.get. Waits for: handle.ready().
    lock_file = tmp_path / "lock"

    @workflow.virtual_actor
    class LockCounter:
        def __init__(self, lck):
            self.counter = 0
            self.lck = lck

        @workflow.virtual_actor.readonly
        def val(self):
            with FileLock(self.lck):
                return self.counter

        def incr(self):
            with FileLock(self.lck):
                self.counter += 1
                return self.counter

        def __getstate__(self):
            return (self.lck, self.counter)

        def __setstate__(self, state):
            self.lck, self.counter = state

    actor = LockCounter.get_or_create("counter", str(lock_file))
    vc.get(actor.ready())

    lock = FileLock(lock_file)
    lock.acquire()

    assert [("counter", workflow.SUCCESSFUL)] == workflow.list_all()

    v = actor.val.run_async()
    # Readonly function won't make the workflow running
    assert [("counter", workflow.SUCCESSFUL)] == workflow.list_all()
    lock.release()
    assert vc.get(v) == 0

    # Writer function would make the workflow running
    lock.acquire()
    v = actor.incr.run_async()
    time.sleep(2)
    assert [("counter", workflow.RUNNING)] == workflow.list_all()
    lock.release()
    assert vc.get(v) == 1

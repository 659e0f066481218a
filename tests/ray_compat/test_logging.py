"""Port of ``test_virtual_actor_logs`` from Ray's python/ray/workflow/tests/test_logging.py (the
last version with virtual actors); the file's other tests are about plain workflows.

Changed: imports (``ray`` -> ``vactor_cloud as ray`` inside the driver script, whose imports are
Ray's), Ray's ``run_string_as_driver_nonblocking`` -> a child Python process run to its end, the
fixture ``workflow_start_regular`` -> ``shared`` (a fresh store several processes can open; the
memory lane is skipped), and so the script's ``ray.init(address='auto')`` (join the test's
cluster) -> ``ray.init(<the test's store>)``.
"""

import os
import subprocess
import sys

import pytest

#: Ray's tests exercise behaviour above the storage contract: memory and local, and moto for S3
#: (as issue 15 asks); the shipped conformance suite covers every backend.
pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.mark.xfail(
    reason="cannot pass as written: the lines are logged (logger 'vactor_cloud', INFO), but a "
    "library installs no log handler and Python's last-resort handler prints WARNING and above "
    "only (Ray printed them unasked); pinned by "
    "test_virtual_actor_logs_when_the_application_configures_logging in test_ray_variants.py",
    strict=True,
)
def test_virtual_actor_logs(shared):
    # Changed: fixture, driver process, ray.init(address='auto') -> ray.init(<store>).
    script = f"""
import vactor_cloud as ray
from vactor_cloud import workflow



ray.init({shared.url!r}, **{shared.options!r})

@workflow.virtual_actor
class Counter:
    def __init__(self, x: int):
        self.x = x

    def add(self, y):
        self.x += y
        return self.x

couter = Counter.get_or_create("vid", 10)
couter.add.options(name="add").run(1)
    """
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=120,
        env={**os.environ, **shared.env},
        check=False,
    )
    logs = proc.stdout.decode("ascii") + proc.stderr.decode("ascii")
    print(logs)
    # on driver
    assert 'Workflow job created. [id="vid"' in logs
    # # in WorkflowManagementActor's run_or_resume.remote()
    # assert "run_or_resume: vid" in logs
    # assert "Workflow job [id=vid] started." in logs
    # in _workflow_step_executor_remote
    assert "Step status [RUNNING]\t[vid@add" in logs
    assert "Step status [SUCCESSFUL]\t[vid@add" in logs

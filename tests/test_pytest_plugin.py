"""The shipped pytest plugin in a user's project: memory and local by default, server lanes opted into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_USER_TEST = """
def test_uses_a_store(store_spec):
    assert store_spec.url
"""


def _run_user_suite(
    project: Path, *args: str, env: dict[str, str] | None = None, test: str = _USER_TEST
) -> subprocess.CompletedProcess[str]:
    (project / "test_user.py").write_text(test)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VACTOR_") and k != "CI"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            "--rootdir",
            str(project),
            *args,
        ],
        cwd=project,
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        env={**clean, **(env or {})},
    )


def test_a_users_project_runs_memory_and_local_only_by_default(tmp_path: Path) -> None:
    out = _run_user_suite(tmp_path, "--collect-only", env={"CI": "true"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test_uses_a_store[memory]" in out.stdout
    assert "test_uses_a_store[local]" in out.stdout
    assert "moto" not in out.stdout and "fakegcs" not in out.stdout


@pytest.mark.parametrize(
    ("how", "args", "env", "ini"),
    [
        ("option", ("--vactor-lanes", "memory,localstack"), {}, ""),
        ("environment", (), {"VACTOR_LANES": "memory,localstack"}, ""),
        ("ini option", (), {}, "vactor_lanes = memory,localstack"),
    ],
)
def test_server_lanes_are_opted_into_and_ci_does_not_fail_a_users_suite(
    tmp_path: Path, how: str, args: tuple[str, ...], env: dict[str, str], ini: str
) -> None:
    if ini:
        (tmp_path / "pytest.ini").write_text(f"[pytest]\n{ini}\n")
    # No LocalStack endpoint is given, so the lane is unavailable: a user's CI skips, and says why.
    out = _run_user_suite(tmp_path, *args, env={"CI": "true", **env})
    assert out.returncode == 0, how + "\n" + out.stdout + out.stderr
    assert "1 passed, 1 skipped" in out.stdout, out.stdout
    assert "lane 'localstack' unavailable" in out.stdout


def test_strict_lanes_fail_an_unavailable_lane_under_ci(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nvactor_strict_lanes = ci\n")
    out = _run_user_suite(tmp_path, "--vactor-lanes", "localstack", env={"CI": "true"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "unavailable lanes fail" in out.stdout


def test_this_repository_runs_every_lane_and_is_strict_in_ci(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.getini("vactor_lanes") == "all"
    assert pytestconfig.getini("vactor_strict_lanes") == "ci"


_SHUTDOWN_RAISES = """
from pathlib import Path

import vactor_cloud
from vactor_cloud.testing import lanes


def test_leaves_a_shutdown_that_raises(store_spec):
    marker = Path(__file__).with_name("stopped.txt")
    stop = lanes.LocalLane.stop

    def stop_and_mark(self):
        marker.write_text("stopped")
        stop(self)

    def shutdown_fails(*args, **kwargs):
        raise RuntimeError("shutdown failed on purpose")

    lanes.LocalLane.stop = stop_and_mark
    vactor_cloud.shutdown = shutdown_fails
"""


def test_the_lanes_stop_even_when_the_runtimes_shutdown_raises(tmp_path: Path) -> None:
    out = _run_user_suite(tmp_path, "-k", "local", test=_SHUTDOWN_RAISES)
    assert "shutdown failed on purpose" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "stopped.txt").read_text() == "stopped", out.stdout + out.stderr


def test_the_local_lane_removes_a_dropped_store_while_the_session_goes_on_and_all_at_stop() -> None:
    """A dropped local store's directory goes before the lane stops (the removal of a session's
    stores all at ``stop`` made the last test's teardown take half a minute in CI); a store
    never dropped, or written again after its drop, still goes at ``stop``, and so does the
    lane's remover thread. Failed before: a dropped store stayed until ``stop``."""
    import threading
    import time

    from vactor_cloud.testing.lanes import LocalLane

    def removers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "vactor-local-lane-remover"]

    lane = LocalLane()
    before = removers()
    lane.start()
    try:
        dropped, kept = lane.new_store(), lane.new_store()
        dirs = [Path(spec.url.removeprefix("file://")) for spec in (dropped, kept)]
        for directory in dirs:
            (directory / "a" / "b").mkdir(parents=True)
            (directory / "a" / "b" / "step").write_bytes(b"x")
        lane.drop_store(dropped)
        until = time.monotonic() + 60
        while dirs[0].exists():
            assert time.monotonic() < until, "the dropped store was not removed while the lane ran"
            time.sleep(0.01)
        assert (dirs[1] / "a" / "b" / "step").exists()  # (only the store dropped)
        (dirs[0] / "late").mkdir(parents=True)  # written again after its drop
        root = dirs[0].parent
    finally:
        lane.stop()
    assert not root.exists()
    assert removers() == before

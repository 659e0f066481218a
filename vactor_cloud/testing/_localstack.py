"""The LocalStack lane: attach to a running LocalStack, a fresh bucket per store.

The lane never starts LocalStack itself (it needs Python 3.13 in its own
virtualenv, or Docker, and takes a while): ``bash localstack/start-host.sh``
starts it on 127.0.0.1 and prints the ``VACTOR_LOCALSTACK_ENDPOINT=...``
line to export. Without that variable, or when the endpoint is not healthy,
``start()`` raises :class:`LaneUnavailable` saying so.

While a starter is still at work, ``$VACTOR_LOCALSTACK_STARTING`` names the
file it will write its exit status to (``scripts/test.sh`` sets it: the
tests start while LocalStack boots, and the first LocalStack test of each
worker waits for it, up to ``BOOT_WAIT`` seconds, rather than the whole run
waiting before its first test).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

from vactor_cloud.testing._moto import S3EmulatorLane
from vactor_cloud.testing.lanes import LaneUnavailable

__all__ = ["ENDPOINT_VARIABLE", "STARTING_VARIABLE", "LocalStackLane"]

#: The environment variable naming the LocalStack endpoint, e.g. ``http://127.0.0.1:4566``.
ENDPOINT_VARIABLE = "VACTOR_LOCALSTACK_ENDPOINT"

#: Set while LocalStack is being started: the file its starter writes ``<exit status> <log path>`` to.
STARTING_VARIABLE = "VACTOR_LOCALSTACK_STARTING"
#: Seconds a lane waits for a LocalStack still starting (its first install and boot take a minute or two).
BOOT_WAIT = 300.0

_HOW_TO_START = (
    "start it with `bash localstack/start-host.sh` (or `docker compose -f localstack/docker-compose.yml "
    f"up -d`) and export the {ENDPOINT_VARIABLE}=... line it prints"
)


class LocalStackLane(S3EmulatorLane):
    """LocalStack's S3 at ``$VACTOR_LOCALSTACK_ENDPOINT``, checked through ``/_localstack/health``."""

    name = "localstack"
    #: LocalStack accepts any credentials; ``test`` is its documented default.
    access_key = "test"
    secret_key = "test"
    #: The S3 store's second transport (aiobotocore through s3fs) is tested here, on every
    #: suite LocalStack runs; moto runs the default one (botocore on threads).
    transport = "s3fs"

    def start(self) -> None:
        endpoint = os.environ.get(ENDPOINT_VARIABLE, "").strip().rstrip("/")
        if not endpoint:
            raise LaneUnavailable(
                f"{ENDPOINT_VARIABLE} is not set: no LocalStack to attach to; {_HOW_TO_START}"
            )
        state, starter = _wait_for_boot(endpoint, os.environ.get(STARTING_VARIABLE, "").strip())
        if not _healthy(state):
            raise LaneUnavailable(
                f"LocalStack at {endpoint} is not healthy (s3: {state}){starter}; {_HOW_TO_START}, "
                "or look at its log (localstack.log in the state directory)"
            )
        self.endpoint = endpoint

    def stop(self) -> None:
        # The server belongs to whoever started it (stop it with localstack/stop-host.sh).
        self.endpoint = None


def health_of_s3(endpoint: str, timeout: float = 5.0) -> str:
    """The S3 service state reported by ``<endpoint>/_localstack/health``, or why it could not be read."""
    # No proxies: the emulator is local, and a proxy from the environment would answer instead.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint}/_localstack/health", timeout=timeout) as response:
            health = json.load(response)
    except (OSError, ValueError) as exc:  # URLError is an OSError; bad JSON a ValueError
        return f"unreachable ({type(exc).__name__}: {exc})"
    services = health.get("services") if isinstance(health, dict) else None
    if not isinstance(services, dict):
        return "no services in the health report"
    return str(services.get("s3", "not enabled"))


def _healthy(state: str) -> bool:
    return state in ("available", "running")


def _wait_for_boot(endpoint: str, status_file: str) -> tuple[str, str]:
    """The endpoint's S3 state, once healthy or once no starter is at work any more; and what the
    starter said, if it ended without LocalStack healthy (for the error)."""
    deadline = time.monotonic() + BOOT_WAIT
    while True:
        state = health_of_s3(endpoint)
        if _healthy(state) or not status_file:
            return state, ""
        status = Path(status_file)
        if status.exists():  # the starter ended: its answer is final (one more look: it may just be up)
            state = health_of_s3(endpoint)
            return state, f"; its starter ended with: {status.read_text().strip() or 'nothing'}"
        if time.monotonic() >= deadline:
            return state, f"; still starting after {BOOT_WAIT:.0f} s"
        time.sleep(0.5)

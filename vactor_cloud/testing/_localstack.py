"""The LocalStack lane: attach to a running LocalStack, a fresh bucket per store.

The lane never starts LocalStack itself (it needs Python 3.13 in its own
virtualenv, or Docker, and takes a while): ``bash localstack/start-host.sh``
starts it on 127.0.0.1 and prints the ``VACTOR_LOCALSTACK_ENDPOINT=...``
line to export. Without that variable, or when the endpoint is not healthy,
``start()`` raises :class:`LaneUnavailable` saying so.
"""

from __future__ import annotations

import json
import os
import urllib.request

from vactor_cloud.testing._moto import S3EmulatorLane
from vactor_cloud.testing.lanes import LaneUnavailable

__all__ = ["ENDPOINT_VARIABLE", "LocalStackLane"]

#: The environment variable naming the LocalStack endpoint, e.g. ``http://127.0.0.1:4566``.
ENDPOINT_VARIABLE = "VACTOR_LOCALSTACK_ENDPOINT"

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
        state = health_of_s3(endpoint)
        if state not in ("available", "running"):
            raise LaneUnavailable(
                f"LocalStack at {endpoint} is not healthy (s3: {state}); {_HOW_TO_START}, "
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

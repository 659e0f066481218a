"""The moto lane: one moto S3 server per test session, on 127.0.0.1, a fresh bucket per store.

The server is moto's ``ThreadedMotoServer`` (a real HTTP server in a thread
of this process), never the in-process ``mock_aws`` patch: the code under
test must speak HTTP to it exactly as it would to S3, and child processes
must be able to reach it too.

:class:`S3EmulatorLane` holds what every S3 emulator lane shares (bucket
creation and removal, the :class:`StoreSpec` shape); the LocalStack lane
builds on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from typing import Any

from vactor_cloud.testing.lanes import Lane, LaneUnavailable, StoreSpec

__all__ = ["MotoLane", "S3EmulatorLane"]

_REGION = "us-east-1"


class S3EmulatorLane(Lane):
    """A lane backed by an S3 emulator at ``endpoint``; each store is a fresh bucket.

    Subclasses set ``endpoint`` (and the credentials the emulator accepts) in
    ``start()``.
    """

    #: Static credentials the emulator accepts; they open nothing real.
    access_key = "testing"
    secret_key = "testing"

    def __init__(self) -> None:
        self.endpoint: str | None = None

    def _client(self) -> Any:
        import boto3

        if self.endpoint is None:
            raise LaneUnavailable(f"{type(self).__name__}.start() was not called")
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=_REGION,
        )

    def new_store(self) -> StoreSpec:
        """A fresh, empty bucket; the store is rooted at its ``store`` prefix."""
        bucket = f"vactor-{self.name}-{uuid.uuid4().hex[:16]}"
        self._client().create_bucket(Bucket=bucket)
        assert self.endpoint is not None
        return StoreSpec(
            url=f"s3://{bucket}/store",
            options={
                "endpoint_url": self.endpoint,
                "key": self.access_key,
                "secret": self.secret_key,
                "client_kwargs": {"region_name": _REGION},
            },
            # What a child process (or code that reads only the environment) needs.
            env={
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": _REGION,
            },
        )

    def drop_store(self, spec: StoreSpec) -> None:
        """Empty and remove the store's bucket (best effort: the server may be gone)."""
        bucket = spec.url.removeprefix("s3://").split("/", 1)[0]
        with contextlib.suppress(Exception):
            client = self._client()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if objects:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            client.delete_bucket(Bucket=bucket)


class _SerializedWrites:
    """WSGI middleware: one mutating request (PUT, POST, DELETE) at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            with self.lock:
                # Consume the response inside the lock: the write happens while it is built.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class MotoLane(S3EmulatorLane):
    """moto's S3 server on 127.0.0.1 and an ephemeral port, one per session.

    moto supports ``If-None-Match: *`` and ``If-Match`` on single PUTs
    (moto >= 5.0.18), which is all the S3 store uses.
    """

    name = "moto"

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None

    def start(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise LaneUnavailable(
                f"moto[server] is not importable ({exc}); install it: pip install 'vactor_cloud[test]'"
            ) from exc
        # One log line per request drowns test output; errors still show.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # ThreadedMotoServer binds all interfaces unless told otherwise: never expose it.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        try:
            server.start()
            host, port = server.get_host_and_port()
        except OSError as exc:
            raise LaneUnavailable(f"moto server could not listen on 127.0.0.1: {exc}") from exc
        # moto checks a conditional put's precondition and then writes, without a
        # lock, on a threaded server: two racing creates can both win. Real S3
        # is atomic, and a test of *our* protocol must not fail for moto's race,
        # so writes are serialized; reads stay concurrent.
        wsgi: Any = server._server
        wsgi.app = _SerializedWrites(wsgi.app)
        self._server = server
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        server, self._server = self._server, None
        self.endpoint = None
        if server is not None:
            server.stop()

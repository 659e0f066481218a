"""The moto lane: one moto S3 server per test session, on 127.0.0.1, a fresh bucket per store.

The server is moto's WSGI app behind werkzeug's threaded server (what
``ThreadedMotoServer`` runs), in a process of its own and with keep-alive
connections (:func:`keep_alive_handler`), never the in-process ``mock_aws``
patch: the code under test must speak HTTP to it exactly as it would to S3,
and child processes must be able to reach it too.

:class:`S3EmulatorLane` holds what every S3 emulator lane shares (bucket
creation and removal, the :class:`StoreSpec` shape); the LocalStack lane
builds on it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

from vactor_cloud.testing.lanes import Lane, LaneUnavailable, StoreSpec

__all__ = ["MotoLane", "S3EmulatorLane", "lock_etag"]

_REGION = "us-east-1"


class S3EmulatorLane(Lane):
    """A lane backed by an S3 emulator at ``endpoint``; each store is a fresh bucket.

    Subclasses set ``endpoint`` (and the credentials the emulator accepts) in
    ``start()``.
    """

    #: Static credentials the emulator accepts; they open nothing real.
    access_key = "testing"
    secret_key = "testing"
    #: the S3 store's ``transport`` option for this lane's stores (``None``: the default)
    transport: str | None = None

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
                **({"transport": self.transport} if self.transport else {}),
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


def keep_alive_handler() -> type:
    """moto's request handler with HTTP/1.1 keep-alive (werkzeug's dev server closes every
    connection after one response).

    S3 clients keep their connections open between requests; against a server that
    closes each one, every request also pays a TCP connect in the client and a new
    thread in the server, which real S3 does not make them pay. This handler reads
    the request body whole before the app runs (so the next request on the
    connection starts where it should, whatever the app read), and answers with a
    ``Content-Length`` instead of closing. moto's answers are built in memory
    anyway. A request it cannot parse, or an app that raises, closes the connection.
    """
    import io  # (here: only the server's process needs these)
    import traceback

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import DechunkedInput

    class KeepAliveHandler(MotoRequestHandler):
        #: an idle connection's thread ends after this long (the client opens another)
        timeout = 60
        #: TCP_NODELAY: the body follows the headers in a second send, which Nagle's
        #: algorithm would hold until the client's delayed ACK (40 ms) on a kept connection
        disable_nagle_algorithm = True

        def run_wsgi(self) -> None:
            environ = self.make_environ()
            if environ.get("wsgi.input_terminated"):
                body = DechunkedInput(self.rfile).read()  # type: ignore[arg-type]
                environ.pop("wsgi.input_terminated")
                environ.pop("HTTP_TRANSFER_ENCODING", None)
            else:
                declared = int(environ.get("CONTENT_LENGTH") or 0)
                body = self.rfile.read(declared)
                if len(body) < declared:
                    # The client went away mid-body (a process killed during its PUT): S3
                    # applies no request it did not receive whole. Passed on with the length
                    # of what arrived, it stored the torn body (b"" when killed between the
                    # headers and the body) under the checksum the client sent for the whole.
                    self.close_connection = True
                    return
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            answer: list[Any] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answer[:] = [status, headers]
                return chunks.append

            chunks: list[bytes] = []
            try:
                result = self.server.app(environ, start_response)
                try:
                    chunks.extend(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
            except Exception:  # answered as werkzeug would, then the connection closes
                traceback.print_exc()
                answer[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
                chunks[:] = [b"Internal Server Error"]
                self.close_connection = True
            status, headers = answer
            code, _, reason = status.partition(" ")
            payload = b"".join(chunks)
            # (send_response would add http.server's Server and Date beside the app's: moto
            # sends a Server header, and a strict client refuses a second one)
            self.log_request(int(code))
            self.send_response_only(int(code), reason)
            bodiless = self.command == "HEAD" or int(code) in (204, 304) or 100 <= int(code) < 200
            dropped = {"connection", "transfer-encoding"} | (set() if bodiless else {"content-length"})
            sent = {name.lower() for name, _ in headers}
            if "server" not in sent:
                self.send_header("Server", self.version_string())
            if "date" not in sent:
                self.send_header("Date", self.date_time_string())
            for name, value in headers:
                if name.lower() not in dropped:
                    self.send_header(name, value)
            if not bodiless:
                self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if not bodiless:
                self.wfile.write(payload)

    return KeepAliveHandler


def lock_etag() -> None:
    """Make moto's ``FakeKey.etag`` read the object under the key's own lock.

    moto (5.x) computes an ETag lazily by seeking the object's shared buffer to 0 and
    reading it, without the lock its ``value`` getter takes. A GET of the same object
    at that moment (it seeks and reads the same buffer) can leave the ETag reader at
    the end: it hashes nothing and caches the MD5 of b"" -- or two threads each
    compute one and the PUT's answer names a version the object never has. A writer
    that then puts with ``If-Match`` on that version is refused (a CI run failed so:
    ``test_reader_never_sees_a_partial_object[moto]``, If-Match
    ``"d41d8cd98f00b204e9800998ecf8427e"``). The GET can come up short as well: the
    ETag's seek lands between its seek and its read, and it answers b"". Real S3
    computes the ETag once, at the write; this makes moto do the same, as far as
    readers can tell.
    """
    from moto.s3.models import FakeKey  # (here: only the server's process needs moto)

    compute: Any = vars(FakeKey)["etag"].fget
    if getattr(compute, "_vactor_locked", False):
        return

    def etag(key: Any) -> str:
        with key.lock:
            return str(compute(key))

    etag._vactor_locked = True  # type: ignore[attr-defined]
    FakeKey.etag = property(etag)  # type: ignore[method-assign,assignment]


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
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise LaneUnavailable(
                f"moto[server] is not importable ({exc}); install it: pip install 'vactor_cloud[test]'"
            ) from exc
        # The server runs in a process of its own: in a thread of the test process it
        # would share that process's GIL with the code under test, and a busy test (or
        # a busy xdist worker) would starve the server its child processes talk to.
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = _read_line(proc, timeout=60.0)
        if not line.startswith("PORT "):
            proc.kill()
            proc.wait(10)
            raise LaneUnavailable(f"moto server could not listen on 127.0.0.1: {line or 'no answer in 60 s'}")
        self._server = proc
        self.endpoint = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        proc, self._server = self._server, None
        self.endpoint = None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line of output, or "" after ``timeout`` seconds or at its exit."""
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


#: The moto server process: 127.0.0.1 only (ThreadedMotoServer binds every interface
#: unless told otherwise; this binds its own server), writes serialized (see
#: _SerializedWrites), connections kept open (VACTOR_MOTO_KEEPALIVE=0: werkzeug's stock
#: handler, which closes each one, for comparisons), and gone as soon as the process that
#: started it is (it watches its parent's pid).
_SERVER_SCRIPT = """
import logging, os, sys, threading, time
import moto.backends
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server
from vactor_cloud.testing._moto import _SerializedWrites, keep_alive_handler, lock_etag
lock_etag()
# moto's dispatcher asks, for every request and under one lock, whether the service
# is one of its modules by listing its package directory and stat-ing each entry
# (about 120 stats before "s3"): a third of the server's CPU under load. The list
# does not change while the server runs.
_modules = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _modules
logging.getLogger("werkzeug").setLevel(logging.WARNING)
parent = int(sys.argv[1])
app = _SerializedWrites(DomainDispatcherApplication(create_backend_app))
handler = keep_alive_handler() if os.environ.get("VACTOR_MOTO_KEEPALIVE", "1") != "0" else None
if handler is None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler as handler
try:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
except OSError as exc:
    print(f"ERROR {exc}", flush=True)
    sys.exit(1)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"PORT {server.server_address[1]}", flush=True)
while os.getppid() == parent:
    time.sleep(0.5)
server.shutdown()
"""

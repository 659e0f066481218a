"""S3-specific behaviour of ``S3Store``, over HTTP against real emulators (moto, LocalStack).

The shared conformance suite proves the ObjectStore contract; these tests
prove what is particular to S3: which wire answers become which
``vactor_cloud.errors``, that listing never trusts a cache, and that keys and
sizes S3 users meet in practice work. Answers no emulator gives on demand
(409 ConditionalRequestConflict, 503 SlowDown, 500) come from a tiny stub S3
on 127.0.0.1, still over HTTP.

LocalStack tests need ``VACTOR_LOCALSTACK_ENDPOINT`` (``bash
localstack/start-host.sh`` prints it); without it they skip, or fail when
``CI=true``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import http.client
import http.server
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import boto3
import pytest

from vactor_cloud.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.storage import IfMatch, ObjectStore, open_store
from vactor_cloud.storage._s3 import S3Store
from vactor_cloud.testing._localstack import ENDPOINT_VARIABLE, LocalStackLane
from vactor_cloud.testing._moto import MotoLane, S3EmulatorLane
from vactor_cloud.testing.lanes import LaneUnavailable, StoreSpec

T = TypeVar("T")

MIB = 1024 * 1024


# -- fixtures and helpers ------------------------------------------------------
@pytest.fixture(scope="module", params=["moto", "localstack"])
def lane(request: pytest.FixtureRequest) -> Iterator[S3EmulatorLane]:
    chosen: S3EmulatorLane
    if request.param == "moto":
        chosen = MotoLane()
    else:
        if not os.environ.get(ENDPOINT_VARIABLE):
            reason = f"{ENDPOINT_VARIABLE} is not set; run `bash localstack/start-host.sh` and export it"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        chosen = LocalStackLane()
    chosen.start()
    try:
        yield chosen
    finally:
        chosen.stop()


@pytest.fixture
def spec(lane: S3EmulatorLane) -> Iterator[StoreSpec]:
    store_spec = lane.new_store()
    try:
        yield store_spec
    finally:
        lane.drop_store(store_spec)


def with_store(spec: StoreSpec, body: Callable[[ObjectStore], Awaitable[T]], **extra: Any) -> T:
    """Open the spec's store on a fresh event loop, run ``body``, close the store."""

    async def main() -> T:
        store = open_store(spec.url, **{**spec.options, **extra})
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def bucket_and_prefix(spec: StoreSpec) -> tuple[str, str]:
    bucket, _, prefix = spec.url.removeprefix("s3://").partition("/")
    return bucket, prefix


def ground_truth(spec: StoreSpec) -> Any:
    """A plain boto3 client on the same bucket: 'another machine' writing around the store."""
    return boto3.client(
        "s3",
        endpoint_url=spec.options["endpoint_url"],
        aws_access_key_id=spec.options["key"],
        aws_secret_access_key=spec.options["secret"],
        region_name=spec.options["client_kwargs"]["region_name"],
    )


# -- the lane's own server -------------------------------------------------------
def test_the_moto_server_keeps_a_connection_open_across_requests_of_every_shape(
    lane: S3EmulatorLane, spec: StoreSpec
) -> None:
    """As S3 does: werkzeug's stock server closes every connection after one answer, so each
    request also cost a connect and a server thread (and a refused conditional PUT about
    10 ms more, waiting to drain its unread body). Signed as botocore signs, but for the
    chunked upload (its body is a stream: sent unsigned, which moto accepts for a PUT)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if lane.name != "moto":
        pytest.skip("about the moto lane's own server")
    bucket, prefix = bucket_and_prefix(spec)
    assert lane.endpoint is not None
    where = urlsplit(lane.endpoint)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)

    def ask(method: str, key: str, body: Any = None, **headers: str) -> tuple[int, str | None, bytes]:
        path = f"/{bucket}/{prefix}/{key}"
        if not hasattr(body, "__next__"):
            request = AWSRequest(method, f"{lane.endpoint}{path}", data=body, headers=headers)
            S3SigV4Auth(Credentials(lane.access_key, lane.secret_key), "s3", "us-east-1").add_auth(request)
            headers = dict(request.headers.items())
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Length"), answer.read()

    try:
        assert ask("PUT", "a", b"x" * 10)[0] == 200
        sock = connection.sock
        assert sock is not None
        # refused before moto reads the body: the body must still be consumed
        assert ask("PUT", "a", b"y" * 1000, **{"If-None-Match": "*"})[0] == 412
        assert ask("GET", "a") == (200, "10", b"x" * 10)
        assert ask("HEAD", "a") == (200, "10", b"")
        assert ask("GET", "missing")[0] == 404
        assert ask("PUT", "b", iter([b"ab", b"cd"]))[0] == 200  # chunked transfer coding
        assert ask("GET", "b") == (200, "4", b"abcd")
        assert ask("DELETE", "b")[0] == 204
        assert ask("GET", "b")[0] == 404
        assert connection.sock is sock
    finally:
        connection.close()


# -- conditional writes ----------------------------------------------------------
def test_create_only_put_refuses_an_existing_key_with_already_exists_error(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> None:
        await store.put("steps/1", b"first", mode="create")
        with pytest.raises(AlreadyExistsError) as info:
            await store.put("steps/1", b"second", mode="create")
        assert info.value.key == "steps/1"
        assert "steps/1" in str(info.value)
        assert isinstance(info.value, FileExistsError)
        assert (await store.get("steps/1")).data == b"first"

    with_store(spec, body)


def test_exactly_one_of_many_concurrent_creates_wins(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> list[bool]:
        async def attempt(i: int) -> bool:
            try:
                await store.put("race", f"writer {i}".encode(), mode="create")
            except AlreadyExistsError:
                return False
            return True

        return await asyncio.gather(*(attempt(i) for i in range(16)))

    assert sum(with_store(spec, body)) == 1


def test_if_match_with_a_stale_etag_raises_precondition_failed(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> None:
        old = await store.put("HEAD", b"v1")
        new = await store.put("HEAD", b"v2", mode=IfMatch(old))
        assert new != old
        with pytest.raises(PreconditionFailedError) as info:
            await store.put("HEAD", b"v3", mode=IfMatch(old))
        assert info.value.key == "HEAD"
        assert old in str(info.value)
        # s3fs turns this 412 into a bare OSError(EINVAL); it must not leak as such.
        assert not isinstance(info.value, FileExistsError | FileNotFoundError)
        assert (await store.get("HEAD")).data == b"v2"

    with_store(spec, body)


def test_if_match_on_a_missing_key_raises_precondition_failed(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> None:
        version = await store.put("elsewhere", b"x")
        with pytest.raises(PreconditionFailedError) as info:
            await store.put("missing", b"y", mode=IfMatch(version))
        assert info.value.key == "missing"
        assert await store.head("missing") is None

    with_store(spec, body)


def test_versions_are_the_etags_s3_reports_everywhere(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> None:
        version = await store.put("obj", b"payload")
        assert await store.head("obj") == version
        assert (await store.get("obj")).version == version
        response = ground_truth(spec).head_object(
            Bucket=bucket_and_prefix(spec)[0], Key=f"{bucket_and_prefix(spec)[1]}/obj"
        )
        assert response["ETag"] == version

    with_store(spec, body)


# -- not found -------------------------------------------------------------------
def test_missing_key_raises_not_found_error_and_head_says_none(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> None:
        with pytest.raises(NotFoundError) as info:
            await store.get("nope")
        assert info.value.key == "nope"
        assert isinstance(info.value, FileNotFoundError)
        assert await store.head("nope") is None
        await store.delete("nope")  # deleting a missing key is fine

    with_store(spec, body)


def test_missing_bucket_is_a_storage_error_not_a_missing_object(lane: S3EmulatorLane) -> None:
    spec = lane.new_store()
    bucket, _ = bucket_and_prefix(spec)
    lane.drop_store(spec)

    async def body(store: ObjectStore) -> None:
        with pytest.raises(StorageError) as info:
            await store.put("k", b"x", mode="create")
        assert not isinstance(info.value, NotFoundError)
        assert bucket in str(info.value)
        with pytest.raises(StorageError) as info:
            await store.get("k")
        assert not isinstance(info.value, NotFoundError)
        assert "does not exist" in str(info.value)

    with_store(spec, body)


# -- listing ---------------------------------------------------------------------
def test_listing_sees_what_another_client_wrote_a_moment_ago(spec: StoreSpec) -> None:
    bucket, prefix = bucket_and_prefix(spec)
    other = ground_truth(spec)

    async def body(store: ObjectStore) -> None:
        for n in (0, 1):
            await store.put(f"actors/a/steps/{n:020d}", b"s", mode="create")
        assert await store.list("actors/a/steps/") == [f"actors/a/steps/{n:020d}" for n in (0, 1)]
        # Another machine commits step 2: the same store object must see it at once.
        other.put_object(Bucket=bucket, Key=f"{prefix}/actors/a/steps/{2:020d}", Body=b"s")
        after = await store.list("actors/a/steps/", start_after=f"actors/a/steps/{1:020d}")
        assert after == [f"actors/a/steps/{2:020d}"]
        other.delete_object(Bucket=bucket, Key=f"{prefix}/actors/a/steps/{0:020d}")
        assert await store.list("actors/a/steps/") == [f"actors/a/steps/{n:020d}" for n in (1, 2)]

    with_store(spec, body)


def test_listing_stays_inside_the_store_prefix(spec: StoreSpec) -> None:
    bucket, prefix = bucket_and_prefix(spec)
    other = ground_truth(spec)
    other.put_object(Bucket=bucket, Key=f"{prefix}-sibling/x", Body=b"")
    other.put_object(Bucket=bucket, Key="outside", Body=b"")

    async def body(store: ObjectStore) -> None:
        await store.put("a/b", b"1")
        assert await store.list("") == ["a/b"]
        keys = other.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")["Contents"]
        assert [item["Key"] for item in keys] == [f"{prefix}/a/b"]

    with_store(spec, body)


def test_listing_pages_past_one_thousand_keys_and_honours_limit(spec: StoreSpec) -> None:
    count = 1105

    async def body(store: ObjectStore) -> None:
        gate = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with gate:
                await store.put(f"k/{i:05d}", b"")

        await asyncio.gather(*(put(i) for i in range(count)))
        every = await store.list("k/")
        assert every == [f"k/{i:05d}" for i in range(count)]
        assert await store.list("k/", start_after="k/00999", limit=3) == ["k/01000", "k/01001", "k/01002"]
        assert len(await store.list("k/", limit=1050)) == 1050
        assert await store.list("k/", start_after="k/01104") == []

    with_store(spec, body)


# -- keys and sizes --------------------------------------------------------------
UNUSUAL_KEYS = [
    "dir with space/a b",
    "dir with space/a+b",
    "dir with space/\u00e9",
    "dir with space/\u65e5\u672c\u8a9e \u2713",
    "dir with space/%20",
    "dir with space/z",
]


def test_keys_with_unicode_and_spaces_round_trip_and_list_in_order(spec: StoreSpec) -> None:
    async def body(store: ObjectStore) -> None:
        for key in UNUSUAL_KEYS:
            version = await store.put(key, key.encode(), mode="create")
            blob = await store.get(key)
            assert (blob.data, blob.version) == (key.encode(), version)
            await store.put(key, b"again", mode=IfMatch(version))
            assert await store.head(key) not in (None, version)
        assert await store.list("dir with space/") == sorted(UNUSUAL_KEYS)

    with_store(spec, body)


def test_start_after_compares_keys_not_their_url_encoding(
    spec: StoreSpec, lane: S3EmulatorLane, request: pytest.FixtureRequest
) -> None:
    if lane.name == "localstack":
        # LocalStack 2026.3.0 applies StartAfter to the URL-encoded keys when the request
        # carries EncodingType=url (botocore always sends it): "\u00e9" encodes to "%C3%A9",
        # which sorts before "a". Real S3 and moto compare the keys themselves.
        request.applymarker(pytest.mark.xfail(strict=True, reason="LocalStack StartAfter on encoded keys"))

    async def body(store: ObjectStore) -> None:
        for key in UNUSUAL_KEYS:
            await store.put(key, b"")
        ordered = sorted(UNUSUAL_KEYS)
        for i, after in enumerate(ordered):
            assert await store.list("dir with space/", start_after=after) == ordered[i + 1 :], after

    with_store(spec, body)


def test_a_five_mib_object_is_written_in_one_conditional_put(spec: StoreSpec) -> None:
    data = os.urandom(5 * MIB + 123)

    async def body(store: ObjectStore) -> None:
        version = await store.put("big", data, mode="create")
        # A multipart upload would have an ETag ending in "-<parts>".
        assert "-" not in version
        assert (await store.get("big")).data == data
        with pytest.raises(AlreadyExistsError):
            await store.put("big", data, mode="create")
        await store.put("big", data[::-1], mode=IfMatch(version))
        assert (await store.get("big")).data == data[::-1]

    with_store(spec, body)


# -- connections and environment -------------------------------------------------
def test_one_store_works_across_event_loops(spec: StoreSpec) -> None:
    store = open_store(spec.url, **spec.options)
    asyncio.run(store.put("k", b"1"))
    # A second asyncio.run is a new loop: the store must reconnect, not reuse a dead session.
    assert asyncio.run(store.get("k")).data == b"1"
    asyncio.run(store.close())


def test_the_standard_aws_environment_is_enough(spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in spec.env.items():
        monkeypatch.setenv(name, value)

    async def body(store: ObjectStore) -> str:
        return await store.put("from-env", b"x", mode="create")

    async def main() -> str:
        store = open_store(spec.url)  # no options at all
        try:
            return await body(store)
        finally:
            await store.close()

    version = asyncio.run(main())
    assert with_store(spec, lambda store: store.head("from-env")) == version


def test_a_child_process_reaches_the_store_through_the_spec(spec: StoreSpec) -> None:
    with_store(spec, lambda store: store.put("shared", b"from parent"))
    clone = pickle.loads(pickle.dumps(spec))
    assert clone == spec
    script = (
        "import asyncio, pickle, sys\n"
        "spec = pickle.loads(sys.stdin.buffer.read())\n"
        "async def main():\n"
        "    store = spec.open()\n"
        "    try:\n"
        "        sys.stdout.buffer.write((await store.get('shared')).data)\n"
        "    finally:\n"
        "        await store.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=pickle.dumps(spec), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"from parent"


def test_an_unreachable_endpoint_is_a_storage_error_naming_the_key(
    s3_transport: str, refused_port: int
) -> None:
    port = refused_port
    store = S3Store(
        "bucket/prefix",
        transport=s3_transport,
        endpoint_url=f"http://127.0.0.1:{port}",
        key="k",
        secret="s",
        client_kwargs={"region_name": "us-east-1"},
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2},
    )

    async def body() -> None:
        try:
            with pytest.raises(StorageError) as info:
                await store.get("some/key")
            assert info.value.key == "some/key"
            assert "some/key" in str(info.value) and "127.0.0.1" in str(info.value)
        finally:
            await store.close()

    asyncio.run(body())


def test_a_request_out_of_time_on_a_refused_port_names_the_refusal(refused_port: int) -> None:
    # botocore retries a refused connection on its own for up to half a minute, so the
    # request runs out of Settings.timeout first: "got no answer" alone sent users looking
    # for a stalled server when nothing listens there.
    store = S3Store(
        "bucket/prefix",
        endpoint_url=f"http://127.0.0.1:{refused_port}",
        key="k",
        secret="s",
        client_kwargs={"region_name": "us-east-1"},
    )
    store.request_timeout = 1.5

    async def body() -> None:
        try:
            with pytest.raises(StorageTimeoutError) as info:
                await store.get("some/key")
            message = str(info.value)
            assert "got no answer within 1.5 s" in message
            assert "EndpointConnectionError" in message and "Could not connect" in message, message
        finally:
            await store.close()

    asyncio.run(body())


# -- answers only a stub gives on demand ------------------------------------------
class _LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (an ephemeral port) for one test's handler."""

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the loopback server's thread never ended"


class StubS3(_LoopbackServer):
    """A loopback HTTP server that answers every request with one canned S3 error."""

    def __init__(self, status: int, code: str) -> None:
        stub = self
        self.status, self.code, self.requests = status, code, 0
        self.transport = "botocore"

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                stub.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                payload = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{stub.code}</Code>"
                    f"<Message>canned {stub.code}</Message></Error>"
                ).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


@pytest.fixture(params=["botocore", "s3fs"])
def s3_transport(request: pytest.FixtureRequest) -> str:
    """Each S3 transport (the store's ``transport`` option) meets the same answers."""
    return str(request.param)


@pytest.fixture
def stub_s3(request: pytest.FixtureRequest, s3_transport: str) -> Iterator[StubS3]:
    status, code = request.param
    stub = StubS3(status, code)
    stub.transport = s3_transport
    try:
        yield stub
    finally:
        stub.close()


def stub_store(stub: StubS3 | DeleteObjectsStub) -> S3Store:
    return S3Store(
        "bucket/prefix",
        transport=stub.transport,
        endpoint_url=stub.endpoint,
        key="k",
        secret="s",
        client_kwargs={"region_name": "us-east-1"},
        # One botocore attempt: the translation is under test, not botocore's retry schedule.
        config_kwargs={"retries": {"max_attempts": 1, "mode": "standard"}},
    )


@pytest.mark.parametrize("stub_s3", [(409, "ConditionalRequestConflict")], indirect=True, ids=["409"])
def test_409_conditional_request_conflict_becomes_a_retryable_conflict_error(stub_s3: StubS3) -> None:
    async def body() -> None:
        store = stub_store(stub_s3)
        try:
            for mode in ("create", IfMatch('"abc"')):
                with pytest.raises(ConflictError) as info:
                    await store.put("actors/a/HEAD", b"x", mode=mode)
                assert isinstance(info.value, RetryableStorageError)
                assert info.value.key == "actors/a/HEAD"
                assert "retry" in str(info.value)
        finally:
            await store.close()

    asyncio.run(body())


@pytest.mark.parametrize("stub_s3", [(503, "SlowDown")], indirect=True, ids=["503"])
def test_503_slow_down_becomes_rate_limited_error(stub_s3: StubS3) -> None:
    async def body() -> None:
        store = stub_store(stub_s3)
        try:
            with pytest.raises(RateLimitedError) as info:
                await store.put("hot", b"x", mode="create")
            assert info.value.key == "hot"
            assert "slow down" in str(info.value)
        finally:
            await store.close()

    asyncio.run(body())


@pytest.mark.parametrize(
    "stub_s3", [(500, "InternalError"), (403, "AccessDenied")], indirect=True, ids=["500", "403"]
)
def test_other_server_refusals_are_storage_errors_that_say_what_to_do(stub_s3: StubS3) -> None:
    async def body() -> None:
        store = stub_store(stub_s3)
        try:
            with pytest.raises(StorageError) as info:
                await store.get("k")
            assert not isinstance(info.value, NotFoundError | ConflictError | RateLimitedError)
            assert info.value.key == "k"
            if stub_s3.status == 500:
                assert isinstance(info.value, RetryableStorageError)
            else:
                assert "AWS_ACCESS_KEY_ID" in str(info.value)
        finally:
            await store.close()

    asyncio.run(body())


@pytest.mark.parametrize(
    ("stub_s3", "expected"),
    [
        ((403, "InvalidAccessKeyId"), AuthenticationError),
        ((403, "SignatureDoesNotMatch"), AuthenticationError),
        ((403, "AccessDenied"), PermissionDeniedError),
    ],
    indirect=["stub_s3"],
    ids=["unknown-key", "bad-secret", "denied"],
)
def test_refused_credentials_and_denied_permissions_are_not_reported_as_unreachable(
    stub_s3: StubS3, expected: type[StorageError]
) -> None:
    async def body() -> None:
        store = stub_store(stub_s3)
        try:
            with pytest.raises(expected) as info:
                await store.put("k", b"x", mode="create")
            assert type(info.value) is expected and isinstance(info.value, PermissionError)
            assert not isinstance(info.value, RetryableStorageError)
            message = str(info.value)
            assert "AWS_ACCESS_KEY_ID" in message and "unreachable" not in message
            assert ("not accept the credentials" in message) == (expected is AuthenticationError)
        finally:
            await store.close()

    asyncio.run(body())


class DeleteObjectsStub(_LoopbackServer):
    """A loopback S3 that answers DeleteObjects only: keys under ``refuse/`` fail with
    ``code``, keys under ``gone/`` fail with NoSuchKey (as some emulators report a missing key),
    the others are deleted. Records each request's headers and keys."""

    def __init__(self, code: str = "InternalError") -> None:
        stub = self
        self.code = code
        self.transport = "botocore"
        self.seen: list[tuple[dict[str, str], list[str], bool]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                root = ElementTree.fromstring(body)
                keys = [element.text or "" for element in root.iter() if element.tag.endswith("Key")]
                quiet = any(e.tag.endswith("Quiet") and e.text == "true" for e in root.iter())
                stub.seen.append(({k.lower(): v for k, v in self.headers.items()}, keys, quiet))
                errors = "".join(
                    f"<Error><Key>{escape(key)}</Key><Code>{code}</Code><Message>canned</Message></Error>"
                    for key in keys
                    for code in (
                        [stub.code] if "/refuse/" in key else ["NoSuchKey"] if "/gone/" in key else []
                    )
                )
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{errors}</DeleteResult>'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


@pytest.fixture
def delete_stub(s3_transport: str) -> Iterator[DeleteObjectsStub]:
    stub = DeleteObjectsStub()
    stub.transport = s3_transport
    try:
        yield stub
    finally:
        stub.close()


def test_delete_many_is_one_quiet_checksummed_delete_objects_and_names_the_keys_s3_kept(
    delete_stub: DeleteObjectsStub,
) -> None:
    keys = ["ok/1", "refuse/1", "gone/1", "ok/2", "refuse/<&2>"]

    async def body() -> None:
        store = stub_store(delete_stub)
        try:
            with pytest.raises(RetryableStorageError) as info:
                await store.delete_many(keys)
        finally:
            await store.close()
        assert info.value.key == "refuse/1"
        message = str(info.value)
        assert "'refuse/1'" in message and "'refuse/<&2>'" in message
        assert "2 of 5 keys" in message and "gone/1" not in message  # NoSuchKey: deleted
        assert store.requests["delete"] == 1

    asyncio.run(body())
    [(headers, sent, quiet)] = delete_stub.seen
    assert sent == [f"prefix/{key}" for key in keys]
    assert quiet
    # DeleteObjects is refused without a checksum of its body: botocore sends one
    assert "content-md5" in headers or any(name.startswith("x-amz-checksum-") for name in headers)


@pytest.mark.parametrize(
    ("code", "expected"), [("AccessDenied", PermissionDeniedError), ("SlowDown", RateLimitedError)]
)
def test_delete_many_per_key_refusals_are_typed_like_single_requests(
    delete_stub: DeleteObjectsStub, code: str, expected: type[StorageError]
) -> None:
    delete_stub.code = code

    async def body() -> None:
        store = stub_store(delete_stub)
        try:
            with pytest.raises(expected) as info:
                await store.delete_many(["ok/1", "refuse/1"])
        finally:
            await store.close()
        assert info.value.key == "refuse/1"

    asyncio.run(body())


def test_delete_many_sends_a_thousand_keys_a_request(delete_stub: DeleteObjectsStub) -> None:
    keys = [f"k/{n:05d}" for n in range(2500)]

    async def body() -> None:
        store = stub_store(delete_stub)
        try:
            await store.delete_many(keys)
        finally:
            await store.close()
        assert store.requests["delete"] == 3

    asyncio.run(body())
    assert sorted(len(sent) for _, sent, _ in delete_stub.seen) == [500, 1000, 1000]
    assert sorted(key for _, sent, _ in delete_stub.seen for key in sent) == [f"prefix/{k}" for k in keys]


def test_bare_einval_from_s3fs_on_if_match_is_translated_to_precondition_failed() -> None:
    # The wire path keeps botocore's ClientError as the cause; this covers an s3fs
    # that raises its builtin without it.
    store = S3Store("bucket/prefix")
    error = store._translate(OSError(errno.EINVAL, "precondition"), "HEAD", "put_object", IfMatch('"e"'))
    assert isinstance(error, PreconditionFailedError)
    assert error.key == "HEAD"
    error = store._translate(FileExistsError("exists"), "s/1", "put_object", "create")
    assert isinstance(error, AlreadyExistsError)


# -- lanes -----------------------------------------------------------------------
def test_localstack_lane_without_endpoint_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_VARIABLE, raising=False)
    with pytest.raises(LaneUnavailable, match=r"localstack/start-host\.sh"):
        LocalStackLane().start()


def test_localstack_lane_with_a_dead_endpoint_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    monkeypatch.setenv(ENDPOINT_VARIABLE, f"http://127.0.0.1:{refused_port}")
    with pytest.raises(LaneUnavailable, match="not healthy"):
        LocalStackLane().start()


def test_moto_lane_listens_only_on_loopback() -> None:
    lane = MotoLane()
    lane.start()
    try:
        assert lane.endpoint is not None and lane.endpoint.startswith("http://127.0.0.1:")
        # The server (a process of its own) listens on loopback and nowhere else.
        psutil = pytest.importorskip("psutil")
        server = psutil.Process(lane._server.pid)
        listening = [c.laddr for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
        spec = lane.new_store()
        assert json.loads(json.dumps(spec.options)) == spec.options  # plain data, picklable
    finally:
        lane.stop()


def test_the_moto_lane_applies_no_put_whose_client_went_away_mid_body() -> None:
    # The lane's keep-alive handler read the declared Content-Length and passed on what
    # arrived: a process killed during its PUT left the torn body stored (b"" when killed
    # between headers and body) under the checksum sent for the whole one, and every later
    # GET failed its checksum (a loaded run: test_a_runner_killed_at_each_point_of_firing...
    # [moto-after_commit], the victim killed while another put was in flight). S3 applies no
    # request it did not receive whole.
    import boto3

    lane = MotoLane()
    lane.start()
    try:
        assert lane.endpoint is not None
        host, port = lane.endpoint.rsplit("/", 1)[1].split(":")
        client = boto3.client(
            "s3",
            endpoint_url=lane.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="torn")
        with socket.create_connection((host, int(port)), timeout=60) as conn:
            conn.sendall(b"PUT /torn/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nhello")
            conn.shutdown(socket.SHUT_WR)  # gone after 5 of its 100 bytes
            conn.recv(1024)  # (the server closes its end without applying the put)
        with pytest.raises(client.exceptions.NoSuchKey):
            client.get_object(Bucket="torn", Key="k")
        client.put_object(Bucket="torn", Key="k", Body=b"whole")  # a whole body still lands
        assert client.get_object(Bucket="torn", Key="k")["Body"].read() == b"whole"
    finally:
        lane.stop()


def test_the_moto_lane_answers_with_one_server_and_one_date_header() -> None:
    # The lane's keep-alive handler sent http.server's own Server and Date headers and then
    # moto's (``server: amazon.com``): two of each. aiohttp's strict parser (``python -X dev``,
    # AIOHTTP_NO_EXTENSIONS=1) refuses such an answer ("Duplicate 'Server' header found"), and
    # every request of the s3fs transport failed with RetryableStorageError.
    lane = MotoLane()
    lane.start()
    try:
        assert lane.endpoint is not None
        host, port = lane.endpoint.rsplit("/", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request("GET", "/")
            answer = conn.getresponse()
            answer.read()
            names = [name.lower() for name, _ in answer.getheaders()]
        finally:
            conn.close()
        assert answer.status == 200
        assert names.count("server") == 1, names
        assert names.count("date") == 1, names
    finally:
        lane.stop()


def test_the_moto_lane_computes_an_etag_under_the_objects_lock() -> None:
    # moto hashes an object for its ETag by seeking its shared buffer and reading it,
    # while a GET of the same object seeks and reads that buffer under a lock the ETag
    # did not take: the hash could be of b"" and the PUT's answer named a version the
    # object never had (a CI run's If-Match was refused so), and the GET could read
    # b"" (a torn read the store never made). The lane's server runs
    # lock_etag(); here the same race is run in this process, bounded to 2 s.
    from vactor_cloud.testing._moto import lock_etag

    models = pytest.importorskip("moto.s3.models")
    lock_etag()
    body = b"\x03" * (1 << 20)
    expected = f'"{hashlib.md5(body).hexdigest()}"'
    key = models.FakeKey("k", body, account_id="123456789012", region_name="us-east-1")
    stop = threading.Event()

    torn: list[int] = []

    def read() -> None:  # unlocked, the reads came up short too (b"")
        while not stop.is_set():
            value = key.value
            if value != body:
                torn.append(len(value))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many interleavings: unlocked, about 4 wrong hashes a second
    reader = threading.Thread(target=read)
    reader.start()
    wrong: list[str] = []
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            key._etag = None
            if key.etag != expected:
                wrong.append(key.etag)
    finally:
        stop.set()
        reader.join(10)
        sys.setswitchinterval(switch)
    assert (wrong, torn) == ([], [])


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound, never listening.

    (A port merely free when picked can be taken meanwhile by a server another test
    starts, whose answers, a 404, say, the test would then read.)
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])

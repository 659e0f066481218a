"""The storage layer at its edges, from a hostile review: each test failed on the code it was
written against."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vactor_cloud.errors import (
    NotFoundError,
    PreconditionFailedError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.storage import IfMatch, LocalStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def gcs_spec(vactor_lanes: Any) -> Any:
    """A fresh store on the fakegcs lane, whatever VACTOR_LANES says (tests/conftest.py would
    deselect a store_lane-parametrized test of this module on fakegcs)."""
    lane = vactor_lanes.require("fakegcs")
    spec = lane.new_store()
    try:
        yield spec
    finally:
        lane.drop_store(spec)


def _head_on_missing_bucket(spec: Any) -> object:
    from vactor_cloud.storage import open_store

    scheme, rest = spec.url.split("://", 1)
    bucket = rest.split("/", 1)[0]
    os.environ.update(spec.env)
    store = open_store(f"{scheme}://{bucket}-missing-zz/store", **spec.options)

    async def main() -> object:
        try:
            return await store.head("k")
        except StorageError as exc:
            return exc
        finally:
            await store.close()

    return run(main())


# ---------------------------------------------------------------------------
# 1. LocalStore: if-match is only atomic against other if-match writers.
#    An overwrite or a delete (which take no lock) landing between the
#    compare and the rename is silently clobbered / undone.
# ---------------------------------------------------------------------------


def _interleave_after_compare(store: LocalStore, action: Any) -> list[threading.Thread]:
    """Make ``action()`` (another process's request) land right after the if-match compared."""
    original = store._read_version
    done = []

    def read_version(key: str) -> str | None:
        version = original(key)
        if not done:
            # Another process's request, sent now: it lands at once, or waits for the lock the
            # if-match holds (then it lands after the if-match: linearizable either way).
            other = threading.Thread(target=action)
            other.start()
            other.join(0.3)
            done.append(other)
        return version

    store._read_version = read_version  # type: ignore[method-assign]
    return done


def test_local_if_match_succeeds_on_stale_version_after_concurrent_overwrite(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    other = LocalStore(tmp_path)  # another process on the same root
    v1 = store.put_now("HEAD", b"v1")
    others = _interleave_after_compare(
        store, lambda: other.put_now("HEAD", b"overwritten by another process")
    )
    outcome: object
    try:
        outcome = store.put_now("HEAD", b"cas on v1", mode=IfMatch(v1))
    except PreconditionFailedError as exc:
        outcome = exc
    others[0].join(10)
    final = other.get_now("HEAD").data
    # Linearizable outcomes: the CAS fails (the object is no longer at v1), or the CAS is
    # ordered before the overwrite and the overwrite's bytes are what remain.
    assert isinstance(outcome, PreconditionFailedError) or final == b"overwritten by another process", (
        f"if-match on {v1} succeeded (-> {outcome}) although the object had been overwritten; "
        f"the overwrite was lost, object now {final!r}"
    )


def test_local_if_match_resurrects_concurrently_deleted_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    other = LocalStore(tmp_path)
    v1 = store.put_now("HEAD", b"v1")
    others = _interleave_after_compare(store, lambda: run(other.delete("HEAD")))
    outcome: object
    try:
        outcome = store.put_now("HEAD", b"cas on v1", mode=IfMatch(v1))
    except PreconditionFailedError as exc:
        outcome = exc
    others[0].join(10)
    exists = run(other.head("HEAD")) is not None
    assert isinstance(outcome, PreconditionFailedError) or not exists, (
        f"if-match on {v1} succeeded (-> {outcome}) on a deleted object and re-created it"
    )


@pytest.mark.parametrize("mode", ["create", "overwrite", "if-match"])
def test_local_write_deleted_before_its_directory_sync_is_not_reported_failed(
    tmp_path: Path, mode: str
) -> None:
    # A write is atomic at its rename (or link); the directory's fsync after it runs outside the
    # key's lock. Another process's delete landing in between removed the object and pruned its
    # chain directory, and the fsync's FileNotFoundError made the write fail ("write failed")
    # although it had landed (and was then deleted: linearizable as write, then delete). The
    # if-match test above hit it under load in CI.
    store = LocalStore(tmp_path)
    other = LocalStore(tmp_path)
    v1 = store.put_now("HEAD", b"v1")
    if mode == "create":
        run(other.delete("HEAD"))
    real = store._sync_dir

    def delete_then_sync(path: str | Path) -> None:
        run(other.delete("HEAD"))  # another process's delete, landed right after the rename
        real(path)

    store._sync_dir = delete_then_sync  # type: ignore[method-assign]
    put_mode: Any = IfMatch(v1) if mode == "if-match" else mode
    assert store.put_now("HEAD", b"v2", mode=put_mode)
    assert run(other.head("HEAD")) is None


# ---------------------------------------------------------------------------
# 2. LocalStore: a write that fails while filling its temp file (ENOSPC, EIO,
#    EFBIG) leaves the partial .tmp-* file behind.
# ---------------------------------------------------------------------------


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_local_failed_write_leaves_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    store = LocalStore(tmp_path)
    store.put_now("warm/up", b"x")  # layout marker written
    real = getattr(os, failing)

    def is_temp(fd: int) -> bool:
        try:
            return os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".tmp-")
        except OSError:
            return False

    def write(fd: int, data: Any) -> int:
        if is_temp(fd):
            real(fd, bytes(data)[:7])  # part of it reached the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    def fsync(fd: int) -> None:
        if is_temp(fd):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, failing, write if failing == "write" else fsync)
    for mode in ("create", "overwrite"):
        with pytest.raises(StorageError):
            store.put_now(f"actors/a/steps/{mode}", b"state bytes" * 100, mode=mode)
    monkeypatch.undo()
    left = _temp_files(tmp_path)
    assert not left, (
        f"failed writes left their temp files behind: {[str(p.relative_to(tmp_path)) for p in left]}"
    )


# ---------------------------------------------------------------------------
# 3. LocalStore: lock files are never removed (one per key ever compared-and-swapped).
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 4. LocalStore: a mailbox name is stored whole, so "m/mail/xy+" lands on the chain
#    directory "xy+" of "m/mail/xyz/w": two unrelated keys (neither a prefix of the
#    other) collide; a create of an absent key answers "already exists".
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 5. LocalStore: get/head of an absent key that happens to be a directory
#    (a prefix of other keys) is a StorageError, not NotFoundError / None.
# ---------------------------------------------------------------------------


def test_local_get_of_prefix_only_key_is_not_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_now("actors/abc/steps/00000000000000000000", b"s")

    async def main() -> tuple[object, object, object]:
        try:
            got: object = await store.get("actors/abc")
        except StorageError as exc:
            got = exc
        try:
            head: object = await store.head("actors/abc")
        except StorageError as exc:
            head = exc
        try:
            await store.delete("actors/abc")  # deleting a missing object is not an error
            deleted: object = None
        except Exception as exc:
            deleted = exc
        return got, head, deleted

    got, head, deleted = run(main())
    problems = []
    if not isinstance(got, NotFoundError):
        problems.append(f"get of an absent key raised {type(got).__name__}: {got}")
    if head is not None:
        problems.append(f"head of an absent key answered {head!r}")
    if deleted is not None:
        problems.append(f"delete of an absent key raised {type(deleted).__name__}: {deleted}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# 6. S3: a configuration error (botocore ProfileNotFound, a BotoCoreError that is not
#    a transport failure) is reported as RetryableStorageError "failed talking to the
#    endpoint", and retried: the runtime would retry a request that can never succeed.
# ---------------------------------------------------------------------------


def test_s3_profile_not_found_is_not_retryable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    from vactor_cloud.storage._s3 import S3Store

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3Store("bucket", profile="no-such-profile", endpoint_url="http://127.0.0.1:9")

    async def main() -> BaseException:
        try:
            await store.head("k")
        except StorageError as exc:
            return exc
        finally:
            await store.close()
        raise AssertionError("head succeeded without a profile")

    error = run(main())
    assert not isinstance(error, RetryableStorageError), (
        f"a missing credentials profile is classed {type(error).__name__} (retry): {error}"
    )


# ---------------------------------------------------------------------------
# 8. S3: an if-match put whose response is lost is retried inside botocore; the
#    retry meets the object the first attempt wrote and gets 412, and the store
#    reports PreconditionFailedError ("another writer changed it") for its own
#    applied write. Nothing (no flag like definite_create_conflicts, no
#    RetryAttempts check) tells the caller the failure is not definite.
# ---------------------------------------------------------------------------


@pytest.mark.vactor_lanes("moto")
def test_s3_if_match_reports_precondition_failed_for_its_own_write(store_spec: Any, store_lane: Any) -> None:
    from vactor_cloud.testing.proxy import DroppingProxy

    upstream = store_lane.endpoint
    with DroppingProxy(upstream, drop_share=1.0, seed=1) as proxy:
        routed = proxy.route(store_spec)

        async def main() -> tuple[object, bytes]:
            direct, through = store_spec.open(), routed.open()
            try:
                v1 = await direct.put("lease", b"v1")
                try:
                    outcome: object = await through.put("lease", b"renewed by me", mode=IfMatch(v1))
                except StorageError as exc:
                    outcome = exc
                return outcome, (await direct.get("lease")).data
            finally:
                await direct.close()
                await through.close()

        outcome, stored = run(main())
    assert stored == b"renewed by me"  # the write was applied
    assert not isinstance(outcome, PreconditionFailedError), (
        f"the if-match put was applied, yet reported as a definite precondition failure: {outcome}"
    )


# ---------------------------------------------------------------------------
# 9. S3/GCS: HEAD on a bucket that does not exist answers None ("no such object"),
#    while GET says "bucket does not exist": a misconfigured bucket reads as an
#    empty store through head().
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 10. S3: HTTP 400 RequestTimeout ("your socket connection to the server was not
#     read from or written to within the timeout period") is transient by AWS's own
#     classification (botocore retries it; the SDKs' standard mode lists it as a
#     transient error), but the store maps it to a plain, final StorageError.
# ---------------------------------------------------------------------------


def test_s3_request_timeout_400_is_retryable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    from vactor_cloud.storage._s3 import S3Store

    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>RequestTimeout</Code>'
        b"<Message>Your socket connection to the server was not read from or written to within "
        b"the timeout period. Idle connections will be closed.</Message><RequestId>1</RequestId></Error>"
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(400)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    try:
        store = S3Store(
            "bucket/p",
            key="testing",
            secret="testing",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            config_kwargs={"retries": {"max_attempts": 1}},
        )

        async def main() -> BaseException:
            try:
                await store.put("k", b"x", mode="create")
            except StorageError as exc:
                return exc
            finally:
                await store.close()
            raise AssertionError("put succeeded")

        error = run(main())
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(error, RetryableStorageError), (
        f"S3 RequestTimeout (transient) classed {type(error).__name__}: {error}"
    )


# ---------------------------------------------------------------------------
# 11. MemoryStore accepts any unknown put mode as "overwrite" (every other backend
#     raises ValueError): a typo'd mode in code tested on memory:// silently
#     overwrites instead of failing.
# ---------------------------------------------------------------------------


@pytest.mark.vactor_lanes("memory")
def test_unknown_put_mode_is_refused(store_spec: Any) -> None:
    store = store_spec.open()

    async def main() -> object:
        await store.put("k", b"original", mode="create")
        try:
            return await store.put("k", b"clobbered", mode="create_only")  # type: ignore[arg-type]
        except ValueError as exc:
            return exc
        finally:
            await store.close()

    outcome = run(main())
    assert isinstance(outcome, ValueError), f"put with mode='create_only' answered {outcome!r} (overwrote)"


# ---------------------------------------------------------------------------
# 12. GCS: IfMatch("00") passes the "is a generation, not 0" guard but GCS reads
#     ifGenerationMatch=00 as 0, i.e. "create": an if-match on an absent key succeeds.
# ---------------------------------------------------------------------------


def test_gcs_if_match_on_absent_key_with_zero_padded_version(gcs_spec: Any) -> None:
    store = gcs_spec.open()

    async def main() -> object:
        try:
            return await store.put("absent", b"x", mode=IfMatch("00"))
        except StorageError as exc:
            return exc
        finally:
            await store.close()

    outcome = run(main())
    assert isinstance(outcome, PreconditionFailedError), f"if-match on an absent key answered {outcome!r}"

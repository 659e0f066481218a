"""The S3 store's two transports: which one a store gets, what the botocore one maps and promises.

Both transports run the whole S3 suite on real servers: moto's lane uses the
default (botocore on daemon threads), LocalStack's lane ``transport="s3fs"``,
and the stub-server tests in ``test_s3_backend.py`` run on both. This file
covers what is particular to the botocore transport: option mapping, its
thread pool, ``fork``, and the cold-start promise (no aiohttp, no s3fs).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("botocore")

import vactor_cloud as vc
from vactor_cloud.storage._s3 import S3Store
from vactor_cloud.storage._s3_threads import BotocoreTransport, _DaemonPool
from vactor_cloud.testing._moto import MotoLane
from vactor_cloud.testing.lanes import StoreSpec


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoLane]:
    lane = MotoLane()
    lane.start()
    try:
        yield lane
    finally:
        lane.stop()


@pytest.fixture
def spec(moto: MotoLane) -> Iterator[StoreSpec]:
    store_spec = moto.new_store()
    try:
        yield store_spec
    finally:
        moto.drop_store(store_spec)


# -- which transport -------------------------------------------------------------------
def test_the_default_transport_is_botocore_and_s3fs_is_chosen_by_name() -> None:
    assert type(S3Store("bucket/p")._transport).__name__ == "BotocoreTransport"
    assert type(S3Store("bucket/p", transport="s3fs")._transport).__name__ == "S3fsTransport"


def test_an_unknown_transport_or_a_session_without_s3fs_is_refused_at_init() -> None:
    with pytest.raises(ValueError, match=r"transport='boto'.*'botocore', 's3fs'"):
        vc.init("s3://bucket/p", transport="boto")
    with pytest.raises(ValueError, match="transport='s3fs'"):
        S3Store("bucket/p", transport="botocore", session=object())


def test_importing_and_opening_the_s3_store_loads_neither_aiohttp_nor_s3fs() -> None:
    # What a serverless function's cold start pays: botocore only (issue 14, point 8).
    script = (
        "import sys, asyncio\n"
        "from vactor_cloud.storage import open_store\n"
        "store = open_store('s3://bucket/p', endpoint_url='http://127.0.0.1:9', key='k', secret='s')\n"
        "heavy = sorted(m for m in ('aiohttp', 's3fs', 'aiobotocore', 'fsspec') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "none"


# -- option mapping --------------------------------------------------------------------
def test_s3fs_style_options_become_botocore_client_arguments() -> None:
    transport = BotocoreTransport(
        "bucket",
        {
            "key": "AK",
            "secret": "SK",
            "token": "T",
            "endpoint_url": "http://127.0.0.1:9",
            "client_kwargs": {"region_name": "eu-west-3"},
            "config_kwargs": {"read_timeout": 3, "max_pool_connections": 4},
        },
    )
    client = transport.build_client()
    try:
        credentials = client._request_signer._credentials
        assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AK", "SK", "T")
        assert client.meta.endpoint_url == "http://127.0.0.1:9"
        assert client.meta.region_name == "eu-west-3"
        assert client.meta.config.read_timeout == 3
        assert client.meta.config.connect_timeout == 5  # s3fs's default, kept
        assert transport._pool_size == 4
    finally:
        client.close()


def test_anonymous_access_sends_unsigned_requests() -> None:
    from botocore import UNSIGNED

    client = BotocoreTransport("bucket", {"anon": True, "key": "AK", "secret": "SK"}).build_client()
    try:
        assert client.meta.config.signature_version is UNSIGNED
    finally:
        client.close()


def test_requester_pays_and_additional_kwargs_go_only_where_the_operation_takes_them() -> None:
    transport = BotocoreTransport(
        "bucket",
        {"requester_pays": True, "s3_additional_kwargs": {"ACL": "private"}, "endpoint_url": "http://x:9"},
    )
    client = transport.build_client()
    try:
        assert transport._extra_parameters(client, "put_object") == {
            "ACL": "private",
            "RequestPayer": "requester",
        }
        assert transport._extra_parameters(client, "list_objects_v2") == {"RequestPayer": "requester"}
    finally:
        client.close()


# -- the thread pool -------------------------------------------------------------------
def test_a_job_whose_caller_gave_up_before_a_thread_took_it_never_runs() -> None:
    pool = _DaemonPool(1, "test")
    release = threading.Event()
    ran: list[str] = []
    first = pool.submit(lambda: (release.wait(10), ran.append("first")))
    second = pool.submit(lambda: ran.append("second"))
    assert second.cancel()  # still queued behind the one thread
    release.set()
    first.result(10)
    third = pool.submit(lambda: ran.append("third"))
    third.result(10)
    assert ran == ["first", "third"]
    assert pool._threads == 1


def test_the_pool_grows_to_its_size_for_concurrent_requests_and_no_further() -> None:
    pool = _DaemonPool(3, "test")
    release = threading.Event()
    started = threading.Semaphore(0)

    def job() -> str:
        started.release()
        release.wait(10)
        return threading.current_thread().name

    futures = [pool.submit(job) for _ in range(5)]
    for _ in range(3):
        assert started.acquire(timeout=10)
    assert not started.acquire(timeout=0.2)  # two wait for a thread
    release.set()
    names = {future.result(10) for future in futures}
    assert len(names) == 3 and pool._threads == 3
    # Finished threads are reused, not multiplied.
    assert pool.submit(lambda: threading.current_thread().name).result(10) in names
    assert pool._threads == 3


def _alive(name: str) -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(f"{name}-"))


def test_idle_threads_end_and_a_shut_down_pool_leaves_no_thread() -> None:
    # A store dropped without close() must not keep its threads forever; close() ends them.
    pool = _DaemonPool(4, "idle-test", idle=0.2)
    release = threading.Event()
    futures = [pool.submit(lambda: release.wait(10)) for _ in range(4)]
    assert _alive("idle-test") == 4
    release.set()
    for future in futures:
        future.result(10)
    deadline = time.monotonic() + 10
    while _alive("idle-test") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive("idle-test") == 0 and pool._threads == 0
    assert pool.submit(lambda: 5).result(10) == 5  # a new job starts a thread again

    closing = _DaemonPool(3, "shutdown-test", idle=60)
    futures = [closing.submit(lambda: time.sleep(0.1)) for _ in range(3)]
    closing.shutdown()
    for future in futures:
        future.result(10)  # jobs queued before the shutdown still run
    deadline = time.monotonic() + 10
    while _alive("shutdown-test") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive("shutdown-test") == 0


def test_closing_the_store_ends_its_threads(spec: StoreSpec) -> None:
    """close() returns once its threads have ended (they ended just after it returned)."""

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("vactor-s3-")}

    async def body() -> None:
        store = spec.open()
        await asyncio.gather(*(store.put(f"k{i}", b"v") for i in range(8)))
        assert ours() - before
        await store.close()

    before = ours()
    asyncio.run(body())
    assert not ours() - before  # at once: no wait for them to end


def test_join_waits_for_every_thread_and_gives_up_on_a_stuck_one_at_its_bound() -> None:
    pool = _DaemonPool(3, "join-test", idle=60)
    release = threading.Event()
    stuck = pool.submit(lambda: release.wait(60))
    done = [pool.submit(lambda: 1) for _ in range(2)]
    assert [f.result(10) for f in done] == [1, 1]
    pool.shutdown()
    assert asyncio.run(pool.join(0.05)) is False  # a request stalled: not waited for past the bound
    assert _alive("join-test") >= 1
    release.set()
    assert asyncio.run(pool.join(60)) is True
    assert stuck.result(0) is True
    assert _alive("join-test") == 0  # at once: join returned once each had ended


def test_an_exception_of_any_kind_reaches_the_caller() -> None:
    pool = _DaemonPool(1, "test")

    def exits() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        pool.submit(exits).result(10)
    assert pool.submit(lambda: 7).result(10) == 7  # the thread survived


# -- against moto ----------------------------------------------------------------------
def test_requests_cancelled_by_the_deadline_leave_the_store_usable(spec: StoreSpec) -> None:
    async def body() -> None:
        store = spec.open()
        try:
            await store.put("k", b"v", mode="create")
            store.request_timeout = 1e-6  # every request gives up at once
            for _ in range(20):
                with pytest.raises(vc.StorageTimeoutError):
                    await store.get("k")
            store.request_timeout = 10.0
            assert (await store.get("k")).data == b"v"
        finally:
            await store.close()

    asyncio.run(body())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_builds_its_own_client_and_threads(spec: StoreSpec) -> None:
    async def parent_write(store: Any) -> None:
        await store.put("from-parent", b"p", mode="create")

    store = spec.open()
    asyncio.run(parent_write(store))  # the parent's pool and client exist now
    parent_client = store._transport._client
    assert parent_client is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:

            async def child() -> None:
                assert (await store.get("from-parent")).data == b"p"
                await store.put("from-child", b"c", mode="create")
                assert store._transport._client is not parent_client

            asyncio.run(child())
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "the forked child hung"
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0

    async def parent_reads() -> bytes:
        try:
            return (await store.get("from-child")).data
        finally:
            await store.close()

    assert asyncio.run(parent_reads()) == b"c"


# -- what a request costs the client's CPU ----------------------------------------------
def test_responses_keep_their_timestamps_as_sent_not_parsed(spec: StoreSpec) -> None:
    """The store reads no timestamp of a response (versions are ETags, write times its own), and
    botocore parsed each one with dateutil: every GET and HEAD (``LastModified``), and every key
    of a listing (the folder's LIST of ``mail/``), on every request."""

    async def body() -> None:
        store = spec.open()
        assert isinstance(store, S3Store)
        try:
            await store.put("k", b"v", mode="create")
            head = await store._transport.call("head_object", {"Key": store._object_key("k")})
            listed = await store._transport.call("list_objects_v2", {"Prefix": store.prefix})
        finally:
            await store.close()
        assert isinstance(head["LastModified"], str)
        assert listed["Contents"] and all(
            isinstance(item["LastModified"], str) for item in listed["Contents"]
        )

    asyncio.run(body())


def test_other_clients_of_the_transports_session_parse_timestamps_as_botocore_does(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the store's own client keeps timestamps as strings: a client the same session makes
    later (STS, for an assumed role's credentials, whose expiry is a timestamp) parses them."""
    import botocore.session

    sessions: list[Any] = []
    create = botocore.session.Session.create_client

    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        sessions.append(self)
        return create(self, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", recorded)

    async def body() -> None:
        store = spec.open()
        assert isinstance(store, S3Store)
        try:
            await store.put("k", b"v", mode="create")
            head = await store._transport.call("head_object", {"Key": store._object_key("k")})
            assert isinstance(head["LastModified"], str)
            other = sessions[0].create_client("s3", **store._transport._arguments)  # type: ignore[attr-defined]
            try:
                again = other.head_object(Bucket=store.bucket, Key=store._object_key("k"))
            finally:
                other.close()
            assert isinstance(again["LastModified"], datetime.datetime)
        finally:
            await store.close()

    asyncio.run(body())


def test_the_user_agent_is_built_once_per_set_of_features(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore builds the User-Agent header twice per request (when the request is made, and again
    before it is signed, for the features the request used), each a dozen strings sanitized
    character by character: the same string every time for the same features. Built once per
    set of features, and what is sent is what botocore would send."""
    from botocore.useragent import UserAgentString

    built: list[str] = []
    build = UserAgentString.to_string

    def counted(self: UserAgentString) -> str:
        built.append(build(self))
        return built[-1]

    monkeypatch.setattr(UserAgentString, "to_string", counted)
    sent: list[str] = []

    async def body() -> None:
        store = spec.open()
        assert isinstance(store, S3Store)
        try:
            await store.put("first", b"v")  # the client is built (before it, none to watch)
            client = store._transport.client()  # type: ignore[attr-defined]
            client.meta.events.register(
                "before-send.s3", lambda request, **_: sent.append(_text(request.headers["User-Agent"]))
            )
            for i in range(5):
                await store.put(f"k{i}", b"v", mode="create")
                await store.get(f"k{i}")
        finally:
            await store.close()

    asyncio.run(body())
    assert len(sent) == 10
    # Twice per request before (22 builds for these 11 requests). A request's features grow
    # while it is made (a put's two sets, a get's two); a retry may add one: fewer than one
    # build per request, whatever the host's load.
    assert len(built) < 11
    assert set(sent) <= set(built)
    assert all("Botocore/" in ua for ua in sent)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _components(agent: str) -> frozenset[str]:
    """A User-Agent header's components, the features' (``m/a,b``) as a set (botocore joins a set)."""
    return frozenset(
        "m/" + ",".join(sorted(part[2:].split(","))) if part.startswith("m/") else part
        for part in agent.split(" ")
    )


def test_the_user_agent_of_concurrent_requests_is_what_botocore_builds_for_each(spec: StoreSpec) -> None:
    """(Review h131) Requests in flight on several of the transport's threads at once, of kinds
    whose features differ (create, overwrite, get, head, list, delete): each sends the
    User-Agent botocore builds for that request's features at that moment, not another
    request's (the cache is keyed by them; each thread's features are its own)."""
    from botocore.useragent import UserAgentString

    mismatched: list[tuple[str, str]] = []
    seen: list[str] = []

    async def body() -> None:
        store = spec.open()
        assert isinstance(store, S3Store)
        try:
            await store.put("first", b"v")
            client = store._transport.client()  # type: ignore[attr-defined]
            creator = client._user_agent_creator

            def check(request: Any, **_: Any) -> None:
                sent = _text(request.headers["User-Agent"])
                fresh = UserAgentString.to_string(creator)  # (botocore's own build, not the cache)
                seen.append(sent)
                if _components(sent) != _components(fresh):
                    mismatched.append((sent, fresh))

            client.meta.events.register("before-send.s3", check)

            async def one(i: int) -> None:
                await store.put(f"k{i}", b"v" * i, mode="create")
                await store.put(f"k{i}", b"w")
                await store.get(f"k{i}")
                await store.head(f"k{i}")
                await store.list("k")
                await store.delete(f"k{i}")

            await asyncio.gather(*(one(i) for i in range(8)))
        finally:
            await store.close()

    asyncio.run(body())
    assert len(seen) >= 48
    assert not mismatched, mismatched[:3]

"""A stalled endpoint fails within the deadline, over real TCP (issue 11, point 7).

A listener on 127.0.0.1 accepts every connection and never answers a byte:
what a hung load balancer or a black-holed proxy looks like to a client. The
first runtime gave no error in 590 s against one (104 s with 3 s botocore
timeouts). Here a read (``get_actor``) and a write (``get_or_create``) each
fail with :class:`vactor_cloud.StorageTimeoutError` within a bounded time, on
``s3://`` (both transports: botocore on threads, s3fs/aiobotocore) and on
``gs://`` (gcsfs/aiohttp). A process whose requests are stuck there still
exits at once.

``tests/test_execution_model.py`` covers the same promise with a store whose
reads never return (no network); this file covers the clients' own sockets.
Each test bounds itself: the listener is closed at teardown, the runtime
shut down, and the whole run is far inside pytest-timeout's 300 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from actors import Tally
from silent_listener import TRIES_UNTIL_TOLD, SilentListener, run_until_it_connected

import vactor_cloud as vc

#: the settings under test: one request may take 1 s, an operation 3 s
SETTINGS = vc.Settings(timeout=1.0, deadline=3.0)
#: how long a failure may take, generous for a loaded machine (the first runtime: 590 s)
BOUND = 30.0


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentListener]:
    # Nothing from the environment may redirect the clients (a proxy, another endpoint).
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "STORAGE_EMULATOR_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    silent = SilentListener()
    try:
        yield silent
    finally:
        with contextlib.suppress(Exception):
            vc.shutdown()
        silent.close()


def _init_s3(endpoint: str, transport: str = "botocore") -> None:
    vc.init(
        "s3://stalled-bucket/prefix",
        transport=transport,
        endpoint_url=endpoint,
        key="x",
        secret="y",
        client_kwargs={"region_name": "us-east-1"},
        settings=SETTINGS,
    )


def _init_gcs(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the suite points gcsfs at fake-gcs-server (vactor_cloud/testing/_fakegcs.py).
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    vc.init(
        "gs://stalled-bucket/prefix",
        token="anon",
        project="test",
        endpoint_url=endpoint,
        settings=SETTINGS,
    )


def _fails_in_time(action: Callable[[], Any]) -> tuple[vc.StorageTimeoutError, float]:
    started = time.monotonic()
    with pytest.raises(vc.StorageTimeoutError) as info:
        action()
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"took {elapsed:.1f} s"
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, vc.StorageError)
    return info.value, elapsed


#: tries a test makes until its client reached the listener (each a few seconds at most)
TRIES = 10


def _until_it_connected(listener: SilentListener, action: Callable[[], Any]) -> list[vc.StorageTimeoutError]:
    """``action`` fails in time (``_fails_in_time``), tried again until the listener saw a
    connection: on a loaded machine building the client (botocore loads its service model)
    can outlast a try or two, none of whose requests then reached the socket."""
    errors = [_fails_in_time(action)[0]]
    while listener.accepted < 1 and len(errors) < TRIES:
        errors.append(_fails_in_time(action)[0])
    return errors


def _accepted_soon(listener: SilentListener, within: float = 60.0) -> bool:
    """Whether the listener has accepted a connection (its accept loop may lag on a loaded machine)."""
    until = time.monotonic() + within
    while listener.accepted < 1 and time.monotonic() < until:
        time.sleep(0.05)
    return listener.accepted >= 1


@pytest.mark.parametrize("scheme", ["s3", "s3+s3fs", "gs"])
def test_a_read_against_a_silent_endpoint_fails_within_the_deadline(
    scheme: str, listener: SilentListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    if scheme.startswith("s3"):
        pytest.importorskip("s3fs")
        _init_s3(listener.endpoint, "s3fs" if scheme == "s3+s3fs" else "botocore")
    else:
        pytest.importorskip("gcsfs")
        _init_gcs(listener.endpoint, monkeypatch)
    # The client really was talking to the silent listener: tried until it connected.
    errors = _until_it_connected(listener, lambda: vc.get_actor("x"))
    assert not any(error.write_in_flight for error in errors)
    assert _accepted_soon(listener)


@pytest.mark.parametrize("scheme", ["s3", "s3+s3fs", "gs"])
def test_a_write_against_a_silent_endpoint_fails_within_the_deadline(
    scheme: str, listener: SilentListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    if scheme.startswith("s3"):
        pytest.importorskip("s3fs")
        _init_s3(listener.endpoint, "s3fs" if scheme == "s3+s3fs" else "botocore")
    else:
        pytest.importorskip("gcsfs")
        _init_gcs(listener.endpoint, monkeypatch)
    _fails_in_time(lambda: Tally.get_or_create("fresh"))
    # The runtime still answers afterwards: the next call fails in time as well, it does not hang.
    _until_it_connected(listener, lambda: vc.get_actor("x"))
    assert _accepted_soon(listener)


@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
def test_a_client_slower_to_build_than_the_timeout_is_built_once_and_then_used(
    transport: str, listener: SilentListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore's client build (its service model) can take longer than Settings.timeout on a
    # loaded machine or a small serverless instance. The build is not within the request's
    # timeout (tests/test_s3_client_build.py): the first request waits for it, then reaches
    # the endpoint, and the next one uses the same client.
    builds = []
    built = threading.Event()
    if transport == "s3fs":
        s3fs = pytest.importorskip("s3fs")
        original = s3fs.S3FileSystem.set_session

        async def slow_set_session(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self._s3 is None:
                builds.append(1)
                await asyncio.sleep(1.5)  # beyond the 1 s request timeout
            session = await original(self, *args, **kwargs)
            built.set()
            return session

        monkeypatch.setattr(s3fs.S3FileSystem, "set_session", slow_set_session)
    else:
        from vactor_cloud.storage._s3_threads import BotocoreTransport

        build = BotocoreTransport.build_client

        def slow_build(self: BotocoreTransport) -> Any:
            builds.append(1)
            time.sleep(1.5)  # beyond the 1 s request timeout, on the request's thread
            client = build(self)
            built.set()
            return client

        monkeypatch.setattr(BotocoreTransport, "build_client", slow_build)
    _init_s3(listener.endpoint, transport)
    _fails_in_time(lambda: vc.get_actor("x"))
    # The build is not cut short by the request's 1 s timeout. It may outlast the operation's
    # 3 s deadline on a loaded machine (the CI run of 6f005b7: the first call ended before any
    # request was sent), so the test waits for it rather than assuming the first call reached
    # the endpoint; with the build inside the timeout it never finishes, and every call builds
    # again.
    assert built.wait(BOUND)
    _fails_in_time(lambda: vc.get_actor("x"))
    assert _accepted_soon(listener)  # a request after the build reached the endpoint
    assert len(builds) == 1


_EXIT_SCRIPT = (
    """
import sys, time
import vactor_cloud as vc
vc.init("s3://stalled-bucket/prefix", transport=sys.argv[2], endpoint_url=sys.argv[1], key="x",
        secret="y", client_kwargs={"region_name": "us-east-1"},
        settings=vc.Settings(timeout=1.0, deadline=2.0))
"""
    + TRIES_UNTIL_TOLD
)


@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
def test_a_process_whose_requests_hang_on_a_silent_endpoint_still_exits_at_once(
    transport: str, listener: SilentListener
) -> None:
    # The request threads of the botocore transport are still blocked in botocore's read
    # (15 s, then its retries) when the script ends: they must not hold the process. A
    # ThreadPoolExecutor's threads would (it joins them at exit): about a minute here.
    import sys

    _, ended, exited = run_until_it_connected(
        listener, [sys.executable, "-c", _EXIT_SCRIPT, listener.endpoint, transport]
    )
    assert _accepted_soon(listener)
    # From the script's last line to the process's end; the stuck reads would add 15 s or more.
    exiting = exited - ended
    assert exiting < 8, f"the process took {exiting:.1f} s to exit after its script ended"

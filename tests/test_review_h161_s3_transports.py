"""The S3 transports and the store's opening hold what no test held (review h161).

A mutation sweep of ``storage/_s3_threads.py`` (the botocore transport), ``storage/_s3_aio.py``
(the s3fs transport), ``storage/_s3_answers.py`` and ``storage/__init__.py`` (``open_store``):
each test here (and in ``test_review_h161_s3_answers``) kills a mutation the rest of the suite
let through (it fails with the mutation applied and passes without); the mutation it holds is
named in its docstring.

One survivor was a defect, fixed: ``_DaemonPool.join`` joined no thread (it looked for them
among the live ones, which each had left before it looked), so ``close()`` (``vc.shutdown()``)
could return while a thread of the store was still alive
(``test_join_returns_once_the_threads_have_ended_not_only_finished_their_work``).
Also fixed, not by a mutation: ``test_stalled_endpoint``'s slow-client-build test still
asserted the build cut the first request short, which 8e160e3 changed (it failed on main).

The sweep: 73 mutations. The S3 ones ran on the moto lane against ``test_s3_transports``,
``test_stalled_endpoint``, ``test_s3_client_build``, ``test_review_h136_s3``, ``h137_s3``,
``h139_s3_errors``, ``h149_refused_connection``, ``h149_timeout_answers``,
``h151_reset_after_sending``, ``h159_client_build`` (and ``test_review_process_lifecycle`` for
the fork ones; the slow-build test of ``test_stalled_endpoint`` left out: it failed on main);
``open_store``'s on memory,local against the modules naming it.

* ``_s3_threads`` (32). Killed by the suite: shutdown one ``None`` short, ``_settle_join``'s
  ``<=`` as ``<``, a cancelled queued job run all the same, ``_pending`` never lowered, a
  forked child keeping the parent's pool or client, a request's own answers not noted, the
  client's ``config_kwargs``/``client_kwargs``/``RequestPayer``/per-operation extras dropped,
  the User-Agent cache keyed by nothing, the timestamp parser kept by the session or not set.
  Killed here (the suite let them through): the ``before-send`` refusal a no-op and ``call``
  not telling the thread its caller left (an abandoned request retried behind its caller's
  back), ``call`` not setting its job aside, a new thread's count ignoring set-aside jobs,
  ``abandon`` setting aside a job not running or without its bound, ``join`` joining no
  thread (the defect), a freed thread ending whenever the pool is full, ``close`` without its
  bound, connections left to ``client.close()``, the setup lock kept across ``fork``, an idle
  thread leaving with a job being submitted, an abandoned request noted as the last failure,
  ``needs_client`` ignoring the process, ``close`` in a forked child closing the parent's
  client, ``username``, the User-Agent cache's bound.
* ``_s3_answers`` (14). Killed by the suite (and here): every attempt marked sent, no
  ``before-parse`` mark, any ``EndpointConnectionError`` counted unsent, aiohttp's
  ``ClientConnectorError`` not counted unsent, ``maybe_sent`` ignored, the unreadable mark on
  an HTML page. Killed here (``test_review_h161_s3_answers``; the suite let them through): a
  connect timeout and ``gaierror`` not counted as unsent, ``NothingSent``'s cause unset, the
  unreadable mark on a 503; not run against the suite: ``>= 500`` as ``> 500``, 429 dropped,
  the unreadable answer or the caught exception not returned.
* ``_s3_aio`` (11). Killed by the suite: aiohttp's resend left on in new sessions, one
  filesystem across loops, fsspec's instance cache, a request's answers not noted. Killed
  here (the suite let them through): the resend left on in a session already open, a failed
  build never tried again, the build awaited unshielded, ``close`` leaving the build running
  or only scheduling the session's close, the old loop's filesystem not closed.
* ``__init__`` (16), killed here (``test_review_h161_open_store``; I01 and I02 ran against the
  suite and survived, the others were not run against it): the scheme's case in the typo
  check and in ``_backend``, ``:/`` for ``://``, the typo check left out, the ``file:///``
  advice, ``LOCALHOST``, ``file://localhost`` alone, leading white space, ``file://``,
  ``s3a``/``gcs``, the memory name's slashes, ``True`` as a number, ``None`` refused, every
  ``ImportError`` blamed on the extra, ``open_store`` not checking options.

Survivors left without a test, each judged equivalent:

* ``anon`` keeping the given credentials (requests are ``UNSIGNED``: checked, no
  ``Authorization`` header is sent either way);
* the s3fs transport's ``_ATTEMPTS`` not reset after a call (every call sets its own before
  botocore's handlers run; none runs outside a call).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.server
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from child_processes import held_by_another_thread
from forking import reaped

pytest.importorskip("botocore")

from vactor_cloud.storage._s3_threads import BotocoreTransport, _DaemonPool


# -- the botocore transport's thread pool -------------------------------------------------
def _wait_running(future: concurrent.futures.Future[Any]) -> None:
    deadline = time.monotonic() + 10
    while not future.running():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)


def test_a_job_set_aside_by_its_caller_does_not_hold_the_pool() -> None:
    """Mutation: a new thread's count ignored the abandoned jobs (a request stalled in a silent
    socket, its caller gone, held its thread's place: the store answered nothing more until
    botocore's read timeout ended the stall, though the endpoint answered again)."""
    pool = _DaemonPool(1, "h161-aside", idle=60)
    release = threading.Event()
    stuck = pool.submit(lambda: release.wait(30))
    try:
        _wait_running(stuck)
        pool.abandon(stuck)
        assert pool.submit(lambda: 7).result(10) == 7
    finally:
        release.set()
        stuck.result(10)
        pool.shutdown()


def test_a_job_cancelled_in_the_queue_is_not_set_aside_so_close_still_waits_for_a_running_one() -> None:
    """Mutation: :meth:`_DaemonPool.abandon` set aside a job not running (one cancelled while
    queued): counted among the stalled ones, it let ``join`` (``close()``) return at once while
    a thread still ran a request whose caller waited for it."""
    pool = _DaemonPool(1, "h161-queued", idle=60)
    release = threading.Event()
    first = pool.submit(lambda: release.wait(30))
    try:
        _wait_running(first)
        queued = pool.submit(lambda: None)
        assert queued.cancel()
        pool.abandon(queued)  # (what ``call`` does when its caller is cancelled)
        pool.shutdown()
        assert asyncio.run(pool.join(0.3)) is False  # the first job's caller still waits
    finally:
        release.set()
    assert first.result(10) is True
    assert asyncio.run(pool.join(10)) is True


# -- the client's arguments -----------------------------------------------------------------
def test_username_and_password_are_the_key_and_the_secret() -> None:
    """Mutation: ``username`` not read as ``key`` (s3fs's alias: the store's requests were
    signed with the environment's credentials, or none)."""
    transport = BotocoreTransport(
        "bucket", {"username": "AK", "password": "SK", "endpoint_url": "http://127.0.0.1:9"}
    )
    client = transport.build_client()
    try:
        credentials = client._request_signer._credentials
        assert (credentials.access_key, credentials.secret_key) == ("AK", "SK")
    finally:
        client.close()


def test_the_user_agents_kept_are_bounded() -> None:
    """Mutation: the User-Agent cache kept every set of features it met (memory without bound
    if a botocore version named a feature per request)."""
    from botocore.context import get_context, start_as_current_context

    transport = BotocoreTransport(
        "bucket", {"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:9"}
    )
    client = transport.build_client()
    try:
        creator = client._user_agent_creator
        agents = set()
        for i in range(100):
            with start_as_current_context():
                get_context().features.add(f"Z{i}")
                agents.add(creator.to_string())
        assert len(agents) == 100  # each its own, cached or not
        cells = [cell.cell_contents for cell in creator.to_string.__closure__ or ()]
        (cache,) = [c for c in cells if isinstance(c, dict)]
        assert len(cache) <= 32
    finally:
        client.close()


def test_no_more_jobs_are_set_aside_than_the_pool_has_threads() -> None:
    """Mutation: :meth:`_DaemonPool.abandon` without its bound (every stalled request set aside
    started a thread in its place: a silent endpoint met by request after request grew the
    pool without end)."""
    pool = _DaemonPool(1, "h161-bound", idle=60)
    release = threading.Event()
    started = threading.Semaphore(0)

    def job() -> None:
        started.release()
        release.wait(30)

    futures = [pool.submit(job)]
    try:
        assert started.acquire(timeout=10)
        pool.abandon(futures[0])
        futures.append(pool.submit(job))  # in the first one's place
        assert started.acquire(timeout=10)
        pool.abandon(futures[1])  # the pool's one place for a set-aside job is taken
        futures.append(pool.submit(job))
        assert not started.acquire(timeout=0.3)  # waits for a thread: no third one
    finally:
        release.set()
    for future in futures:
        future.result(10)
    pool.shutdown()


def test_a_thread_freed_by_a_set_aside_job_takes_the_queued_work() -> None:
    """Mutation: a thread whose set-aside job ended left whenever the pool was full, not only
    when a thread had been started in its place (a job queued meanwhile waited for another
    thread, perhaps stalled, while this one ended)."""
    pool = _DaemonPool(2, "h161-freed", idle=60)
    first_done, second_done = threading.Event(), threading.Event()
    first = pool.submit(lambda: first_done.wait(30))
    second = pool.submit(lambda: second_done.wait(30))
    try:
        _wait_running(first)
        _wait_running(second)
        queued = pool.submit(lambda: 3)  # both threads busy: it waits
        pool.abandon(first)  # (its caller left; none was started in its place)
        first_done.set()
        assert queued.result(10) == 3  # the second still runs
    finally:
        first_done.set()
        second_done.set()
    second.result(10)
    pool.shutdown()


class _SlowToEnd(_DaemonPool):
    """A pool whose threads take a moment to end after their last line (as a loaded host's do)."""

    def _work(self) -> None:
        super()._work()
        time.sleep(0.3)


def test_join_returns_once_the_threads_have_ended_not_only_finished_their_work() -> None:
    """Mutation: ``join`` returned when the threads said they were done, without joining them
    (after ``vc.shutdown()`` a thread of the store still ran)."""
    pool = _SlowToEnd(2, "h161-ending", idle=60)
    assert [pool.submit(lambda: 1).result(10) for _ in range(2)] == [1, 1]
    pool.shutdown()
    assert asyncio.run(pool.join(10)) is True
    assert not [t for t in threading.enumerate() if t.name.startswith("h161-ending-")]


def test_an_idle_thread_stays_for_a_job_being_submitted() -> None:
    """Mutation: an idle thread left when the jobs pending were as many as the threads (a job
    counted by ``submit``, which then started no thread, and not yet queued when the last
    thread's wait ran out: nobody ever took it, its caller waited to its deadline)."""
    pool = _DaemonPool(1, "h161-idle", idle=0.05)
    assert pool.submit(lambda: 1).result(10) == 1
    with pool._lock:  # ``submit`` between its count and its put: no new thread is needed
        pool._pending += 1
    time.sleep(0.3)  # the thread's wait for work runs out several times meanwhile
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    pool._jobs.put((future, lambda: 2))
    assert future.result(10) == 2
    pool.shutdown()


# -- the botocore transport -------------------------------------------------------------------
def _transport() -> BotocoreTransport:
    return BotocoreTransport("bucket", {"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:9"})


def test_an_abandoned_request_is_not_the_stores_last_failure() -> None:
    """Mutation: the transport noted its own refusal to send an abandoned request as the
    failure botocore retried (a later timeout said "the last failure: the request's caller
    stopped waiting", not what the endpoint did)."""
    from vactor_cloud.storage._s3_threads import RequestAbandoned

    transport = _transport()
    transport._note_failure(1.0, RequestAbandoned("gone"))
    assert transport.last_failure is None
    refused = ConnectionRefusedError(111, "refused")
    transport._note_failure(2.0, refused)
    assert transport.last_failure == (2.0, refused)


def test_a_forked_child_needs_its_own_client() -> None:
    """Mutation: ``needs_client`` ignored the process (a forked child with the parent's client
    object built its own within its first request's timeout, not before it: a build slower
    than ``Settings.timeout`` made that request fail having sent nothing)."""
    transport = _transport()
    transport._client = object()
    transport._pid = os.getpid()
    assert not transport.needs_client()
    transport._pid = os.getpid() + 1  # (as a forked child sees the parent's)
    assert transport.needs_client()


def test_closing_a_forked_childs_copy_leaves_the_parents_client_alone() -> None:
    """Mutation: ``close()`` in a forked child went on with the parent's pool and client (it
    waited ``_CLOSE_WAIT`` for threads that do not exist there, and closed the connections)."""
    closed: list[str] = []

    class Client:
        def close(self) -> None:
            closed.append("closed")

    transport = _transport()
    transport._client = Client()
    transport._pid = os.getpid() + 1
    asyncio.run(transport.close())
    assert closed == [] and transport._client is None


# -- the s3fs transport ---------------------------------------------------------------------
class _SlowBuild:
    """A stand-in for ``s3fs.S3FileSystem`` whose client build takes ``delay`` seconds and
    fails the first ``failures`` times."""

    _s3creator = None

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self._s3: Any = None
        self.delay = delay
        self.failures = failures
        self.builds = 0
        self.cancelled = 0

    async def set_session(self) -> Any:
        self.builds += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.builds <= self.failures:
            raise OSError("no credentials")
        self._s3 = object()
        return self._s3


def _s3fs_transport() -> Any:
    pytest.importorskip("s3fs")
    from vactor_cloud.storage._s3_aio import S3fsTransport

    return S3fsTransport("bucket", {"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:9"})


def test_s3fs_a_failed_client_build_is_tried_again_by_the_next_request() -> None:
    """Mutation: a build that failed stayed the store's build (every later request raised the
    first one's error, though the credentials or the network had come back)."""
    transport = _s3fs_transport()
    fs = _SlowBuild(failures=1)

    async def body() -> None:
        with pytest.raises(OSError, match="no credentials"):
            await transport._client_ready(fs)
        await transport._client_ready(fs)

    asyncio.run(body())
    assert fs.builds == 2 and fs._s3 is not None


def test_s3fs_a_request_cut_short_leaves_the_client_build_to_finish_for_the_next() -> None:
    """Mutation: the build awaited without ``shield`` (a request cancelled by its timeout
    cancelled the build: under a timeout shorter than the build no request ever got a client)."""
    transport = _s3fs_transport()
    fs = _SlowBuild(delay=0.3)

    async def body() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(transport._client_ready(fs), 0.05)
        await transport._client_ready(fs)

    asyncio.run(body())
    assert (fs.builds, fs.cancelled) == (1, 0)


def test_s3fs_close_cancels_a_client_build_still_running() -> None:
    """Mutation: ``close()`` left the build task running (it opened a client, and its
    connections, for a store already closed)."""
    transport = _s3fs_transport()
    fs = _SlowBuild(delay=30)

    async def body() -> None:
        transport._fs, transport._loop = fs, asyncio.get_running_loop()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(transport._client_ready(fs), 0.05)
        await transport.close()
        await asyncio.sleep(0.05)  # (the cancellation is delivered)
        assert fs.cancelled == 1  # (before asyncio.run's own cancelling of what is left)

    asyncio.run(body())
    assert fs._s3 is None


def test_s3fs_each_store_and_each_event_loop_has_its_own_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations: fsspec's instance cache left on (two stores with the same options shared one
    filesystem: closing one closed the other's connections); the filesystem kept across event
    loops; the old loop's filesystem not closed when another loop's replaced it."""
    from vactor_cloud.storage._s3_aio import S3fsTransport

    first, second = _s3fs_transport(), _s3fs_transport()
    abandoned: list[Any] = []
    monkeypatch.setattr(S3fsTransport, "_abandon", staticmethod(lambda fs, loop: abandoned.append(fs)))

    async def filesystems() -> tuple[Any, Any]:
        return first._filesystem(), second._filesystem()

    one, two = asyncio.run(filesystems())
    assert one is not two
    again, _ = asyncio.run(filesystems())  # another event loop: another filesystem
    assert again is not one
    assert one in abandoned and two in abandoned


def test_s3fs_a_session_opened_before_the_switch_sends_each_request_once() -> None:
    """Mutation: aiohttp's resend switched off only in sessions opened after the switch (one
    already open, a PUT whose connection closed before its answer was sent again unseen)."""
    pytest.importorskip("s3fs")
    from vactor_cloud.storage._s3_aio import _send_each_request_once

    class Session:
        _retry_connection = True

    opened = Session()

    class Http:
        _sessions = {"proxy": opened}

        async def _get_session(self, proxy_url: Any) -> Session:
            return Session()

    class Endpoint:
        http_session = Http()

    class Client:
        _endpoint = Endpoint()

    client = Client()
    _send_each_request_once(client)
    assert opened._retry_connection is False
    later = asyncio.run(client._endpoint.http_session._get_session(None))
    assert later._retry_connection is False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_forked_while_a_thread_set_a_transport_up_sets_up_its_own() -> None:
    """Mutation: the setup lock not made anew in a forked child (forked while another thread
    held it, the child's first request waited forever for a lock no thread of its own held)."""
    from vactor_cloud.storage import _s3_threads

    transport = _transport()
    with held_by_another_thread(_s3_threads._SETUP, 10):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                signal.alarm(5)  # (the mutation's deadlock: killed by the alarm)
                transport._pool_here()
                code = 0
            finally:
                os._exit(code)
    assert reaped(pid, 30) == 0  # (a hung child is killed, not left behind)


class _Answers200(http.server.BaseHTTPRequestHandler):
    """HEAD: 200; on a key named ``slow-*`` only once ``server.release`` is set (then 503)."""

    protocol_version = "HTTP/1.1"  # (keep-alive: the connection stays in the client's pool)

    def do_HEAD(self) -> None:
        server: Any = self.server
        server.heads.append(self.path)
        if "slow-" in self.path:
            server.release.wait(10)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", '"e"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving() -> Iterator[Any]:
    """A loopback HTTP server answering as ``_Answers200`` does, released and shut at the end."""
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers200)
    server.heads, server.release = [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def _served_transport(server: Any, **config: Any) -> BotocoreTransport:
    return BotocoreTransport(
        "bucket",
        {
            "key": "AK",
            "secret": "SK",
            "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 3}, **config},
        },
    )


async def _left_once_sent(transport: BotocoreTransport, server: Any, key: str) -> None:
    """A HEAD of ``key`` (held by ``server``) whose caller stops waiting once the server has it.

    Not after a fixed 0.2 s: the request's thread builds the client first (a third of a second
    cold, and longer on a loaded host), and a caller gone by then left a request never sent, so
    the server saw no HEAD at all and the tests below failed, or pinned nothing."""
    request = asyncio.ensure_future(transport.call("head_object", {"Key": key}))
    give_up = time.monotonic() + 60
    while f"/bucket/{key}" not in server.heads:
        assert not request.done(), request
        assert time.monotonic() < give_up, "the request never reached the server"
        await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request


def test_a_request_whose_caller_stopped_waiting_is_not_sent_again() -> None:
    """Mutations: the ``before-send`` refusal made a no-op, or ``call`` not telling the thread
    its caller left (botocore retried the request behind its caller's back: a write said "not
    applied" by its timeout could land afterwards)."""
    with _serving() as server:
        transport = _served_transport(server)

        async def body() -> None:
            await _left_once_sent(transport, server, "slow-1")
            server.release.set()  # the one attempt is answered 503, which botocore retries
            deadline = time.monotonic() + 20
            while transport._pool is not None and transport._pool._pending:  # the request ends
                assert time.monotonic() < deadline, "the request never ended"
                await asyncio.sleep(0.05)
            await transport.close()

        asyncio.run(body())
    assert server.heads == ["/bucket/slow-1"]


def test_a_request_stalled_after_its_caller_left_does_not_hold_the_transports_pool() -> None:
    """Mutation: ``call`` not setting its job aside when its caller left (on a pool of one
    thread, a request stalled in a silent socket kept every later request waiting)."""
    with _serving() as server:
        transport = _served_transport(server, max_pool_connections=1)

        async def body() -> None:
            await _left_once_sent(transport, server, "slow-1")
            answer = await asyncio.wait_for(transport.call("head_object", {"Key": "k"}), 5)
            assert answer["ETag"] == '"e"'
            server.release.set()
            await transport.close()

        asyncio.run(body())


def test_close_closes_the_clients_connections_not_only_forgets_them() -> None:
    """Mutation: ``close()`` left the connections to botocore's ``client.close()`` (urllib3 2.x
    only forgets its pools there: their sockets stayed open until collected, a
    ``ResourceWarning`` each under ``-X dev``)."""
    with _serving() as server:
        transport = _served_transport(server)

        async def body() -> list[Any]:
            answer = await transport.call("head_object", {"Key": "k"})
            assert answer["ETag"] == '"e"'
            manager = transport.client()._endpoint.http_session._manager
            pools = [manager.pools.get(key) for key in manager.pools.keys()]  # noqa: SIM118
            await transport.close()
            return pools

        pools = asyncio.run(body())
    assert pools and all(pool.pool is None for pool in pools)  # (urllib3's pool, closed)


def test_s3fs_close_on_its_own_loop_has_closed_the_session_when_it_returns() -> None:
    """Mutation: ``close()`` on the filesystem's own loop only scheduled the session's close
    (it returned with the connections open; ``asyncio.run`` ending then left them to the
    collector: "Unclosed client session")."""
    transport = _s3fs_transport()
    exited: list[str] = []

    class Creator:
        async def __aexit__(self, *args: Any) -> None:
            await asyncio.sleep(0)
            exited.append("closed")

    fs = _SlowBuild()
    fs._s3creator = Creator()  # type: ignore[assignment]

    async def body() -> None:
        transport._fs, transport._loop = fs, asyncio.get_running_loop()
        await transport.close()
        assert exited == ["closed"]

    asyncio.run(body())


def test_close_waits_for_a_stalled_request_its_bound_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: ``close()`` waited for the request threads without its bound (a request
    stalled in a silent socket, its caller still waiting, held ``vc.shutdown()`` for botocore's
    read timeout and retries: a minute and more)."""
    from vactor_cloud.storage import _s3_threads

    monkeypatch.setattr(_s3_threads, "_CLOSE_WAIT", 0.2)
    with _serving() as server:
        transport = _served_transport(server)

        async def body() -> None:
            stalled = asyncio.ensure_future(transport.call("head_object", {"Key": "slow-1"}))
            deadline = time.monotonic() + 10
            while not server.heads:  # the request is in the server's hands
                assert time.monotonic() < deadline, "the request never arrived"
                await asyncio.sleep(0.02)
            await asyncio.wait_for(transport.close(), 5)
            server.release.set()
            with contextlib.suppress(Exception):
                await stalled

        asyncio.run(body())

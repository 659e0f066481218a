"""The S3 store's default transport: a botocore client, its blocking requests run on daemon threads.

Why not aiobotocore (s3fs's client)? A serverless function pays for every
import on every cold start, and aiohttp, aiobotocore and s3fs together cost
about twice what botocore alone does (aiohttp builds its TLS contexts at
import). botocore is the part every S3 client shares; this transport needs
nothing else.

Requests run on a small pool of daemon threads, at most
``max_pool_connections`` (botocore's connection pool size; 32 unless
``config_kwargs`` says otherwise), started as needed. Daemon threads, not a
:class:`concurrent.futures.ThreadPoolExecutor`: the executor joins its
threads at interpreter exit, so a request stuck on a silent endpoint would
hold the process for botocore's whole read timeout and retries. A request
whose caller stopped waiting before a thread took it up is never sent; one
already running keeps its thread until its attempt in flight ends (botocore's
read timeout at most), which then no longer counts toward the pool's size (a
stall does not hold the pool once the endpoint answers again), and botocore
sends it no second attempt: its caller, and perhaps the runtime, has gone (a
write retried after shutdown returned would land behind the caller's back).
``close()`` returns once every thread has ended (a stalled request: ``_CLOSE_WAIT`` at most),
so that after ``vc.shutdown()`` no thread of the store runs.

The client is built once, on a request's thread, under a lock: building it
loads botocore's service model (a fraction of a second, longer on a loaded
machine), and a request that gives up meanwhile leaves the build to finish
for the next one. After ``fork`` the child builds its own pool and client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import botocore.exceptions
import botocore.parsers
import botocore.session

from vactor_cloud.storage._base import REQUEST, RequestAnswers
from vactor_cloud.storage._s3_answers import NOT_CONNECTED, Attempts, watch_answers, watch_attempts

__all__ = ["BotocoreTransport", "botocore_client_arguments"]

logger = logging.getLogger("vactor_cloud")

#: s3fs's defaults, kept so that the two transports time out alike
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 15
_POOL = 32
#: seconds ``close()`` waits for the request threads to end (the runtime's shutdown may cut it shorter)
_CLOSE_WAIT = 5.0
#: storage options that only tune s3fs's file API, which the store never uses
IGNORED_OPTIONS = frozenset(
    {
        "cache_regions",
        "default_block_size",
        "default_cache_type",
        "default_fill_cache",
        "fixed_upload_size",
        "local_expiry_check",
        "max_concurrency",
        "version_aware",
    }
)


def botocore_client_arguments(options: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(profile, create_client keyword arguments)`` for s3fs-style storage ``options``.

    The mapping follows :class:`s3fs.S3FileSystem`: ``key``/``username``,
    ``secret``/``password``, ``token``, ``endpoint_url``, ``use_ssl``, ``anon``
    (unsigned requests), ``client_kwargs`` (to ``create_client``) and
    ``config_kwargs`` (to :class:`botocore.config.Config`), with s3fs's
    connect and read timeouts unless ``config_kwargs`` sets them.
    """
    from botocore.config import Config  # noqa: PLC0415 - part of botocore.session's import anyway

    config_kwargs = {
        "connect_timeout": _CONNECT_TIMEOUT,
        "read_timeout": _READ_TIMEOUT,
        "max_pool_connections": _POOL,
        **(options.get("config_kwargs") or {}),
    }
    arguments: dict[str, Any] = {
        "aws_access_key_id": options.get("key") or options.get("username"),
        "aws_secret_access_key": options.get("secret") or options.get("password"),
        "aws_session_token": options.get("token"),
        "endpoint_url": options.get("endpoint_url"),
        "use_ssl": options.get("use_ssl"),
    }
    arguments = {name: value for name, value in arguments.items() if value is not None}
    arguments.update(options.get("client_kwargs") or {})
    if options.get("anon"):
        from botocore import UNSIGNED  # noqa: PLC0415

        for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            arguments.pop(name, None)
        config_kwargs["signature_version"] = UNSIGNED
    arguments["config"] = Config(**config_kwargs)
    return options.get("profile"), arguments


#: guards a transport's setup in a process (re-made in a forked child, where it may be held)
_SETUP = threading.Lock()


def _after_fork_in_child() -> None:
    global _SETUP  # the one lock that must be new in each process
    _SETUP = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


_LOADER: Any = None

#: the request a pool thread is running: ``stopped``, the event set when its caller stopped
#: waiting; ``attempts``, what its attempts met (:class:`Attempts`); ``answers``, where the
#: failures botocore retries are noted for it (its ``storage._base.REQUEST``, or None)
_RUNNING = threading.local()


def _running_attempts() -> Attempts | None:
    return getattr(_RUNNING, "attempts", None)


class RequestAbandoned(Exception):
    """A request's caller stopped waiting for it (its deadline, shutdown): no attempt is sent again."""


def _shared_loader(session: Any) -> Any:
    """The process's one botocore data loader (made from the first session's data path)."""
    global _LOADER  # one per process: immutable data, parsed once
    with _SETUP:
        if _LOADER is None:
            _LOADER = session.get_component("data_loader")
        return _LOADER


class _DaemonPool:
    """At most ``size`` daemon threads taking ``(future, function)`` jobs from one queue.

    A thread is started when a job finds every thread busy (up to ``size``),
    and ends after ``idle`` seconds without work or at :meth:`shutdown`: a
    store dropped without ``close()`` leaves no thread behind for long.

    A running job whose caller stopped waiting (:meth:`abandon`: its deadline
    passed) no longer counts toward ``size``, up to ``size`` such jobs: a request
    stuck in a silent socket holds its thread for botocore's read timeout and
    retries (15 s to a minute), and the store must answer again as soon as the
    endpoint does, not once those ran out. The thread ends when its job does if
    the pool has more threads than ``size`` then.
    """

    def __init__(self, size: int, name: str, idle: float = 30.0) -> None:
        self._size = max(1, size)
        self._name = name
        self._idle = idle
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        #: jobs submitted and not finished (queued or running)
        self._pending = 0
        #: running jobs whose caller stopped waiting (see :meth:`abandon`)
        self._abandoned: set[concurrent.futures.Future[Any]] = set()
        #: the threads started and not ended, and (once :meth:`join` waits) the future set when
        #: the last of them ends
        self._alive: set[threading.Thread] = set()
        #: the job each thread runs now (absent: none)
        self._job_of: dict[threading.Thread, concurrent.futures.Future[Any]] = {}
        self._all_ended: concurrent.futures.Future[None] | None = None
        #: (once :meth:`shutdown` was called) the threads that ran their last line, for
        #: :meth:`join` to wait until each has ended
        self._closing = False
        self._ended: list[threading.Thread] = []

    def submit(self, function: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        thread: threading.Thread | None = None
        with self._lock:
            self._pending += 1
            abandoned = len(self._abandoned)
            if self._threads - abandoned < min(self._size, self._pending - abandoned):
                self._threads += 1
                name = f"{self._name}-{self._threads}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                self._alive.add(thread)
        self._jobs.put((future, function))
        if thread is not None:
            try:
                thread.start()
            except BaseException:  # (no thread to be had: at interpreter exit) none to wait for
                with self._lock:
                    self._alive.discard(thread)
                    self._threads -= 1
                raise
        return future

    def abandon(self, future: concurrent.futures.Future[Any]) -> None:
        """The caller of ``future``'s job stopped waiting for it while it ran: stop counting its
        thread toward ``size`` (at most ``size`` jobs at a time are so set aside)."""
        with self._lock:
            if future.running() and len(self._abandoned) < self._size:
                self._abandoned.add(future)
                self._settle_join()

    def shutdown(self) -> None:
        """Let every thread end once it has taken the jobs queued before this."""
        with self._lock:
            threads = self._threads
            self._closing = True
        for _ in range(threads):
            self._jobs.put(None)

    async def join(self, timeout: float) -> bool:
        """(After :meth:`shutdown`) Wait until every thread has ended but those running a job
        whose caller stopped waiting (:meth:`abandon`: a request stalled in a silent socket, which
        ends at botocore's read timeout on its own, and is not waited for), ``timeout`` seconds at
        most, without blocking the event loop; False if a thread still runs a job a caller waits for."""
        with self._lock:
            if self._all_ended is None:
                self._all_ended = concurrent.futures.Future()
            ended = self._all_ended
            self._settle_join()
        until = time.monotonic() + timeout
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ended)), timeout)
        except TimeoutError:
            return False
        with self._lock:
            ending, self._ended = self._ended, []
        # Each has run its last line (the future says so): join returns as the thread ends.
        # (Only those: the threads still alive run a job whose caller stopped waiting.)
        for thread in ending:
            thread.join(max(until - time.monotonic(), 0.0))
        return True

    def _settle_join(self) -> None:
        """(Holding the lock) Tell :meth:`join` once no thread runs but abandoned jobs' threads."""
        ended = self._all_ended
        if ended is not None and not ended.done() and len(self._alive) <= len(self._abandoned):
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                ended.set_result(None)

    def _work(self) -> None:
        try:
            self._take_jobs()
        finally:
            with self._lock:
                me = threading.current_thread()
                self._alive.discard(me)
                if self._closing:
                    self._ended.append(me)
                self._settle_join()

    def _take_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:
                    if self._pending < self._threads:  # more threads than work: this one may go
                        self._threads -= 1
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            future, function = job
            me = threading.current_thread()
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._job_of[me] = future
                try:
                    result = function()
                except BaseException as exc:  # handed to the waiting caller, whatever it is
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del job, function
            with self._lock:
                self._job_of.pop(me, None)
                self._pending -= 1
                if future in self._abandoned:
                    self._abandoned.discard(future)
                    if self._threads > self._size:  # a thread started in this one's place
                        self._threads -= 1
                        return
            del future


def _refuse_abandoned(**_: Any) -> None:
    """botocore's ``before-send``, before every attempt of a request (its retries too): raise
    if the request's caller stopped waiting (botocore then retries no more; nobody reads it)."""
    stopped = getattr(_RUNNING, "stopped", None)
    if stopped is not None and stopped.is_set():
        raise RequestAbandoned("the request's caller stopped waiting for it: not sent again")


#: the most User-Agent strings a client keeps (one per set of features its requests use: a few)
_USER_AGENTS = 32


def _user_agent_built_once(client: Any) -> None:
    """Make ``client`` build its User-Agent header once per set of features, not twice per request.

    botocore builds the header when a request is made and again before it is signed (to name
    the features the request used: retry mode, checksums), each time from a dozen components
    sanitized character by character: about a twentieth of a request's client CPU, for the same
    string every time. The string depends on the client's settings, fixed when it was made, and
    on those features: kept by them. Where botocore's internals differ (another version), its
    own build stays as it is.
    """
    creator: Any = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if build is None or not hasattr(creator, "_client_features"):
        return
    try:
        from botocore.context import get_context  # noqa: PLC0415 - (botocore >= 1.35)
    except ImportError:
        return
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(getattr(context, "features", None) or ()) | frozenset(
            creator._client_features or ()
        )
        agent = built.get(features)
        if agent is None:
            agent = build()
            if len(built) < _USER_AGENTS:
                built[features] = agent
        return agent

    creator.to_string = to_string


class BotocoreTransport:
    """One S3 request at a time per thread, with a botocore client built once per process."""

    #: what a failure in transit looks like here (besides ``OSError``)
    transport_errors: tuple[type[BaseException], ...] = (botocore.exceptions.BotoCoreError,)
    #: an answer whose body arrived cut short: botocore's own errors (the store's ``_DAMAGED_BODY``)
    damaged_body_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, bucket: str, options: Mapping[str, Any]) -> None:
        self.bucket = bucket
        self._profile, self._arguments = botocore_client_arguments(options)
        self._extra: dict[str, Any] = dict(options.get("s3_additional_kwargs") or {})
        if options.get("requester_pays"):
            self._extra["RequestPayer"] = "requester"
        #: per method, the extra parameters its operation accepts
        self._extra_for: dict[str, dict[str, Any]] = {}
        self._pool_size = int(self._arguments["config"].max_pool_connections or _POOL)
        self._lock = threading.Lock()
        self._pid = -1
        self._pool: _DaemonPool | None = None
        self._client: Any = None
        #: see ``Transport.last_failure``: botocore retries a refused connection for up to
        #: half a minute, and the request's deadline would otherwise say only "no answer"
        self.last_failure: tuple[float, BaseException] | None = None

    # -- the client, built once per process ----------------------------------------------
    def _pool_here(self) -> _DaemonPool:
        pid = os.getpid()
        if self._pool is None or self._pid != pid:
            with _SETUP:
                if self._pool is None or self._pid != pid:
                    # After fork the parent's threads, sockets and lock (perhaps held by one of
                    # those threads, which do not exist here) are not ours: start afresh.
                    self._lock = threading.Lock()
                    self._client = None
                    self._pool = _DaemonPool(self._pool_size, "vactor-s3")
                    self._pid = pid
        return self._pool

    def needs_client(self) -> bool:
        """No client built in this process yet (see ``Transport.build_client_here``)."""
        return self._client is None or self._pid != os.getpid()

    async def build_client_here(self) -> None:
        """Build the client on a pool thread (a build cut short by its limit goes on there,
        and the next request finds it done)."""
        await asyncio.wrap_future(self._pool_here().submit(self.client))

    def client(self) -> Any:
        """The botocore S3 client, built on first use (under a lock, on the calling thread)."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._client = self.build_client()
        return client

    def build_client(self) -> Any:
        session = botocore.session.Session(profile=self._profile)
        # Every store of the process reads botocore's data (the S3 model, the endpoint
        # rules: megabytes of parsed JSON) through one loader, which keeps what it parsed:
        # a second client costs milliseconds and no second copy. A session is per client:
        # its credentials and configuration are read from the environment of the moment.
        session.register_component("data_loader", _shared_loader(session))
        # The store reads no timestamp of an answer (versions are ETags); botocore parsed each
        # with dateutil: a GET's and a HEAD's LastModified, every listed key's, every request.
        # Only this client's: others the session makes later (STS, for an assumed role's
        # credentials) parse theirs as botocore does.
        shared = session.get_component("response_parser_factory")
        parsers = botocore.parsers.ResponseParserFactory()
        parsers.set_parser_defaults(timestamp_parser=str)
        session.register_component("response_parser_factory", parsers)
        try:
            client = session.create_client("s3", **self._arguments)
        finally:
            session.register_component("response_parser_factory", shared)
        watch_answers(client, self._note_failure)
        watch_attempts(client, _running_attempts)
        client.meta.events.register_first("before-send.s3", _refuse_abandoned)
        _user_agent_built_once(client)
        return client

    def _note_failure(self, at: float, failure: BaseException) -> None:
        """Before each retry botocore may make: keep what failed (see :func:`watch_answers`),
        for the store and for the request (on its thread)."""
        if not isinstance(failure, RequestAbandoned):
            self.last_failure = (at, failure)
            answers = getattr(_RUNNING, "answers", None)
            if answers is not None:
                answers.last = self.last_failure

    # -- requests -----------------------------------------------------------------------
    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request on a pool thread; ``get_object``'s body comes back read, as bytes."""
        pool = self._pool_here()
        stopped = threading.Event()
        answers = REQUEST.get()  # (the request's, set in this task: carried to its thread)
        future = pool.submit(lambda: self._request(method, params, stopped, answers))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stopped.set()  # botocore sends no further attempt of it
            pool.abandon(future)  # (a job not started yet was cancelled and never runs)
            raise

    def _request(
        self, method: str, params: dict[str, Any], stopped: threading.Event, answers: RequestAnswers | None
    ) -> dict[str, Any]:
        client = self.client()
        if self._extra:
            params = {**self._extra_parameters(client, method), **params}
        _RUNNING.stopped, _RUNNING.answers = stopped, answers
        attempts = _RUNNING.attempts = Attempts()
        try:
            response: dict[str, Any] = getattr(client, method)(Bucket=self.bucket, **params)
        except NOT_CONNECTED as exc:
            outcome = attempts.outcome(exc)
            if outcome is exc:
                raise
            raise outcome from exc  # (``NothingSent``: its cause is ``exc``)
        finally:
            _RUNNING.stopped = _RUNNING.attempts = _RUNNING.answers = None
        if method == "get_object":
            body = response["Body"]
            try:
                response["Body"] = body.read()
            finally:
                body.close()
        return response

    def _extra_parameters(self, client: Any, method: str) -> dict[str, Any]:
        """``s3_additional_kwargs`` and ``RequestPayer`` that ``method`` accepts (as s3fs filters them)."""
        extra = self._extra_for.get(method)
        if extra is None:
            operation = client.meta.method_to_api_mapping[method]
            members = client.meta.service_model.operation_model(operation).input_shape.members
            extra = self._extra_for[method] = {k: v for k, v in self._extra.items() if k in members}
        return extra

    async def close(self) -> None:
        """End the request threads and close the connection pool: once this returns, no thread
        of this transport runs. Requests queued before it are still sent; a request stalled in
        a silent socket is waited for ``_CLOSE_WAIT`` seconds at most (it ends on its own, at
        botocore's read timeout, and sends no second attempt)."""
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if self._pid != os.getpid():
            return  # a forked child's copy: the parent's threads and sockets are not ours to close
        try:
            if pool is not None:
                pool.shutdown()
                # The threads ended just after close returned: after vc.shutdown() threads of
                # the runtime were still running.
                if not await pool.join(_CLOSE_WAIT):
                    logger.warning(
                        "vactor_cloud: S3 request thread(s) of bucket %r still run %g s after close "
                        "(a request stalled in a silent socket): they end at botocore's read timeout",
                        self.bucket,
                        _CLOSE_WAIT,
                    )
        finally:  # (cancelled: the caller's own deadline passed) the connections are closed all the same
            if client is not None:
                _close_connections(client)


def _close_connections(client: Any) -> None:
    """Close ``client``'s connections now. botocore's ``close()`` only empties urllib3's pool
    manager; urllib3 (2.x) leaves each pool's sockets to a finalizer run when the pool is
    collected, or by ``weakref``'s exit hook. A store closed by vactor_cloud's own exit callback
    (a runtime that a daemon thread's call started late) ran after that hook: its sockets were
    left open to the interpreter's end, each a ``ResourceWarning`` under ``-X dev``."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    managers = [getattr(session, "_manager", None), *getattr(session, "_proxy_managers", {}).values()]
    for manager in managers:
        pools: Any = getattr(manager, "pools", None)
        if pools is None:
            continue
        with contextlib.suppress(Exception):  # (another urllib3: botocore's close below still runs)
            for key in pools.keys():  # noqa: SIM118 - urllib3 refuses iteration; keys() is a copy
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
    client.close()

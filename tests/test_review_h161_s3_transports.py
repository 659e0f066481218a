"""The S3 transports and the store's opening hold what no test held (review h161).

A mutation sweep of ``storage/_s3_threads.py`` (the botocore transport), ``storage/_s3_aio.py``
(the s3fs transport), ``storage/_s3_answers.py`` and ``storage/__init__.py`` (``open_store``):
each test here (and in ``test_review_h161_s3_answers``) kills a mutation the rest of the suite
let through (it fails with the mutation applied and passes without); the mutation it holds is
named in its docstring.

TABLE
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

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

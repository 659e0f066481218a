"""What ``vactor bench`` sets the library's figures against, and how it drives them: calls per
second with so many in flight (``_drive``), raw create-only PUTs, the naive GET + If-Match loop
on the :class:`~vactor_cloud.storage.ObjectStore` contract and hand-rolled with boto3, CPU per
call; and the deletion of a prefix the rows and the run leave.

The harness's rows (:mod:`vactor_cloud.cli.bench_harness`) call these; they need nothing of it
but the run's target (:mod:`vactor_cloud.cli.bench_model`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.cli.bench_model import Target
from vactor_cloud.errors import NotFoundError, PreconditionFailedError
from vactor_cloud.storage import IfMatch, ObjectStore

#: nothing public: the harness (vactor_cloud.cli.bench_harness) is the one user of these
__all__: list[str] = []


#: the state payload every benchmark actor carries (1 KB)
_PAYLOAD = "x" * 1000


_CONCURRENCY = 64


def _cpu_per_call(call: Callable[[int], Any], n: int) -> float:
    """Process CPU seconds (all threads) per call over ``n`` sequential calls."""
    started = time.process_time()
    for i in range(n):
        call(i)
    return (time.process_time() - started) / n


async def _drive(call: Callable[[int], Awaitable[Any]], concurrency: int, duration: float) -> float:
    """Calls per second with ``concurrency`` calls in flight on this loop for ``duration`` seconds."""
    deadline = time.perf_counter() + duration
    counter = iter(range(10**12))
    done = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call(next(counter))
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def _raw_puts(store: ObjectStore, prefix: str, data: bytes, duration: float) -> float:
    deadline = time.perf_counter() + duration
    done = 0
    started = time.perf_counter()

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            await store.put(f"{prefix}/{w}-{i}", data, mode="create")
            i += 1
            done += 1

    await asyncio.gather(*(worker(w) for w in range(_CONCURRENCY)))
    rate = done / (time.perf_counter() - started)
    # Leave no clutter behind: later rows list prefixes of this store.
    await _delete_prefix(store, prefix + "/")
    return rate


async def _store_cas_loop(store: ObjectStore, key: str, duration: float) -> float:
    """The naive design: read the state object, modify it, write it back with If-Match; retry on 412."""
    await store.put(key, json.dumps({"n": 0, "payload": _PAYLOAD}).encode(), mode="create")
    deadline = time.perf_counter() + duration
    done = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            blob = await store.get(key)
            state = json.loads(blob.data)
            state["n"] += 1
            try:
                await store.put(key, json.dumps(state).encode(), mode=IfMatch(blob.version))
            except PreconditionFailedError:
                continue
            done += 1

    await asyncio.gather(*(worker() for _ in range(_CONCURRENCY)))
    return done / (time.perf_counter() - started)


def _boto3_cas_loop(target: Target, name: str, threads: int, duration: float) -> float:
    """The same loop hand-rolled with boto3: GET, modify, PUT If-Match, 64 threads."""
    import boto3
    import botocore.config
    import botocore.exceptions

    bucket, _, prefix = target.url.split("://", 1)[1].partition("/")
    key = f"{prefix.strip('/')}/{name}".lstrip("/")
    options = target.options
    client_kwargs = dict(options.get("client_kwargs") or {})
    client = boto3.client(
        "s3",
        endpoint_url=options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=options.get("key"),
        aws_secret_access_key=options.get("secret"),
        region_name=client_kwargs.get("region_name"),
        config=botocore.config.Config(max_pool_connections=threads, retries={"max_attempts": 3}),
    )
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps({"n": 0, "payload": _PAYLOAD}).encode())
    deadline = time.perf_counter() + duration
    counts = [0] * threads
    #: what ended a worker early: raised here once every worker is joined (a thread's exception
    #: was printed and dropped, and the baseline, short of that thread, made the ratio look better)
    failures: list[BaseException] = []
    #: set at an interrupt: each worker stops at its next round (else it went on writing the
    #: object to the row's end, after the bench's cleanup had deleted its prefix)
    interrupted = threading.Event()

    def worker(w: int) -> None:
        while time.perf_counter() < deadline and not failures and not interrupted.is_set():
            got = client.get_object(Bucket=bucket, Key=key)
            state = json.loads(got["Body"].read())
            state["n"] += 1
            try:
                client.put_object(
                    Bucket=bucket, Key=key, Body=json.dumps(state).encode(), IfMatch=got["ETag"]
                )
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    continue
                raise
            counts[w] += 1

    def guarded(w: int) -> None:
        try:
            worker(w)
        except BaseException as exc:
            failures.append(exc)

    started = time.perf_counter()
    workers = [threading.Thread(target=guarded, args=(w,)) for w in range(threads)]
    try:
        for t in workers:
            t.start()
        for t in workers:
            # (joined from a helper thread, waited for in slices on the main thread: SIGTERM's
            # handler runs meanwhile, and an interrupt does not mark a running thread ended)
            _sync.wait_aside(
                functools.partial(t.join, duration + 60), duration + 61, name="vactor-bench-join"
            )
    except BaseException:
        interrupted.set()
        for t in workers:
            if t.is_alive():  # (one round of GET + PUT at most; started ones only)
                t.join(30)
        raise
    elapsed = time.perf_counter() - started
    with contextlib.suppress(Exception):
        client.delete_object(Bucket=bucket, Key=key)
    if failures:
        raise failures[0]
    return sum(counts) / elapsed


async def _delete_prefix(store: ObjectStore, prefix: str = "") -> None:
    keys = await store.list(prefix)
    semaphore = asyncio.Semaphore(_CONCURRENCY)

    async def delete(key: str) -> None:
        async with semaphore:
            with contextlib.suppress(NotFoundError):
                await store.delete(key)

    await asyncio.gather(*(delete(k) for k in keys))

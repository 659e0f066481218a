"""Lost responses on the wire: a loopback proxy drops connections after the server answered.

Through :class:`DroppingProxy` (30% of successful uploads answered into a
closed connection), on moto, LocalStack and fake-gcs-server:

* a plain ``store.put(mode="create")`` misreports some of its own successful
  writes: on S3 botocore retries the ``PutObject`` by itself and the retried
  ``If-None-Match: *`` meets our own object (``AlreadyExistsError``, as
  DESIGN.md §9 describes); the GCS store does not retry conditional puts and
  reports ``RetryableStorageError`` although the object was written;
* the commit path (``ActorLog.put_step`` with writer ids) resolves every such
  case: each of two racing writers learns the truth about every step, exactly
  one wins each step number, and the stored steps are the winners'.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
from chaos_workers import chaos_seed

from vactor_cloud.errors import AlreadyExistsError, RetryableStorageError, StorageError
from vactor_cloud.log import ActorLog, ClassRef, StepRecord, StepTakenError
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy

DROP_SHARE = 0.3
PUTS = 40
STEPS = 25


def _upstream(lane: Lane) -> str:
    endpoint = getattr(lane, "endpoint", None)
    if not isinstance(endpoint, str) or not endpoint.startswith("http://"):
        pytest.skip(f"lane {lane.name} has no HTTP server to put a proxy in front of")
    return endpoint


def test_plain_create_misreports_its_own_writes_when_responses_are_lost(
    store_spec: StoreSpec, store_lane: Lane
) -> None:
    upstream = _upstream(store_lane)
    seed = chaos_seed("wire")
    with DroppingProxy(upstream, drop_share=DROP_SHARE, seed=seed) as proxy:
        routed = proxy.route(store_spec)

        async def run() -> tuple[dict[str, str], dict[str, bytes]]:
            through_proxy, direct = routed.open(), store_spec.open()
            outcomes: dict[str, str] = {}
            stored: dict[str, bytes] = {}
            try:
                for i in range(PUTS):
                    key = f"wire/{i}"
                    try:
                        await through_proxy.put(key, f"mine {i}".encode(), mode="create")
                        outcomes[key] = "ok"
                    except StorageError as exc:
                        outcomes[key] = type(exc).__name__
                for key in outcomes:
                    stored[key] = (await direct.get(key)).data
            finally:
                await through_proxy.close()
                await direct.close()
            return outcomes, stored

        outcomes, stored = asyncio.run(run())
    counts = Counter(outcomes.values())
    print(f"{store_lane.name}: {dict(counts)}, proxy dropped {proxy.stats.dropped} (seed {seed})")
    assert proxy.stats.dropped > 0, f"the proxy dropped nothing (seed {seed})"
    # Every object is ours, whatever the client was told.
    assert all(stored[k] == f"mine {k.split('/')[1]}".encode() for k in outcomes)
    misreported = AlreadyExistsError if store_spec.url.startswith("s3://") else RetryableStorageError
    assert set(counts) <= {"ok", misreported.__name__}, f"unexpected outcomes {counts} (seed {seed})"
    assert counts[misreported.__name__] > 0, f"no write was misreported (seed {seed}): {counts}"


def _record(step: int, writer: str) -> StepRecord:
    return StepRecord(
        step=step,
        parent=None if step == 0 else step - 1,
        class_ref=ClassRef("0" * 64, "tests.Wire"),
        serializer="json",
        state=f'{{"writer": "{writer}"}}'.encode(),
        writer=writer,
        time=time.time(),
    )


def test_put_step_resolves_lost_responses_of_racing_writers(store_spec: StoreSpec, store_lane: Lane) -> None:
    upstream = _upstream(store_lane)
    seed = chaos_seed("wire")
    with DroppingProxy(upstream, drop_share=DROP_SHARE, seed=seed) as proxy:
        routed = proxy.route(store_spec)

        async def writer(name: str) -> dict[int, bool]:
            """Try every step number in turn; remember which ones this writer was told it won."""
            store = routed.open()
            log = ActorLog(store, "wire-actor")
            won: dict[int, bool] = {}
            try:
                for step in range(STEPS):
                    try:
                        await log.put_step(_record(step, f"{name}-{step}"))
                        won[step] = True
                    except StepTakenError as taken:
                        assert taken.winner.writer != f"{name}-{step}"
                        won[step] = False
            finally:
                await store.close()
            return won

        async def run() -> tuple[list[dict[int, bool]], list[str]]:
            results = await asyncio.gather(writer(f"a{uuid.uuid4().hex[:6]}"), writer("b"))
            direct = store_spec.open()
            try:
                log = ActorLog(direct, "wire-actor")
                stored = []
                for step in range(STEPS):
                    record = await log.read_step(step)
                    assert record is not None, f"step {step} missing (seed {seed})"
                    stored.append(record.writer)
            finally:
                await direct.close()
            return list(results), stored

        (a, b), stored = asyncio.run(run())
    print(f"{store_lane.name}: proxy dropped {proxy.stats.dropped} of {proxy.stats.requests} (seed {seed})")
    assert proxy.stats.dropped > 0, f"the proxy dropped nothing (seed {seed})"
    for step in range(STEPS):
        # Exactly one writer was told it won each step, and the stored step is that writer's.
        assert a[step] != b[step], f"step {step}: both or neither won (seed {seed})"
        assert stored[step].startswith("a") == a[step], f"step {step}: told {a[step]}, stored {stored[step]}"

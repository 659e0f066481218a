"""What the log and counters say when a posted batch's commit fails on storage errors.

A posted call's inbox post is a put; the step put of the fold that would carry it may never
have been sent. Counted as "commit outcome unknown (the put was sent)", such a failure told an
operator reading ``outcome_unknown`` that a step write was in doubt when none was sent (and the
caller got ``CallPendingError``: its outcome is learned from ``call_outcome``, not unknown).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from store_helpers import commit_timeout_from_the_post
from test_combining import pending_posts, posting_behind_anothers_lease

import vactor_cloud as vc
from vactor_cloud import counters
from vactor_cloud.errors import CallPendingError, StorageError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture(autouse=True)
def _zero() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


def _moved(before: dict[str, int]) -> dict[str, int]:
    after = vc.stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


@pytest.mark.usefixtures("runtime_off")
def test_a_posted_fold_that_failed_before_its_step_put_is_not_logged_as_a_put_sent(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Our call posts behind another process's lease; once the post is written that process
    gives the lease up, we take it to fold, and every step read fails from then on: our fold
    never reaches its step put. The caller gets ``CallPendingError`` once its bound passed."""
    store, log, _, leases = posting_behind_anothers_lease(store_spec)
    posted = threading.Event()
    step_puts: list[str] = []
    inner_around = store._around

    async def post_then_fail_the_steps(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if posted.is_set() and "/steps/" in key and operation == "put":
            step_puts.append(key)
        if posted.is_set() and "/steps/" in key and operation in ("get", "list", "head"):
            raise StorageError(f"{key}: injected", key)
        result = await inner_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key and not posted.is_set():
            posted.set()  # our post is written: the other process lets its lease go
            await leases.write(await leases.read(), "f" * 16, 0.0, 2)
        return result

    store._around = post_then_fail_the_steps  # type: ignore[method-assign]
    before = vc.stats()
    with (
        caplog.at_level(logging.DEBUG, logger="vactor_cloud"),
        commit_timeout_from_the_post(1.5),
        pytest.raises(CallPendingError),
    ):
        log.add.run("me/1")
    assert posted.is_set() and not step_puts, "the scenario needs a post and no step put after it"
    store._around = inner_around  # type: ignore[method-assign]
    moved = _moved(before)
    assert moved.get("commit_errors") == 1, moved
    assert "outcome_unknown" not in moved, moved
    said = [m for r in caplog.records if r.name == "vactor_cloud" and "injected" in (m := r.getMessage())]
    assert said and not [m for m in said if "the put was sent" in m], said
    assert [m for m in said if "the post was sent; no step put" in m], said
    assert pending_posts("a"), "the post stays, for a later fold to apply"


@pytest.mark.usefixtures("runtime_off")
def test_a_posted_batch_retrying_a_failing_store_backs_off(store_spec: StoreSpec) -> None:
    """A posted batch retries storage errors until ``commit_timeout`` (its calls may be applied
    meanwhile). It retried at most 5 ms apart: 549 failed reads in 1.5 s against a store that
    fails fast, from one caller. The pauses grow (10 ms doubling to 1 s): a dozen or so in
    1.5 s. (A slow machine makes fewer, never more.)"""
    store, log, _, leases = posting_behind_anothers_lease(store_spec)
    posted = threading.Event()
    failed: list[str] = []
    inner_around = store._around

    async def post_then_fail_the_steps(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if posted.is_set() and "/steps/" in key and operation in ("get", "list", "head"):
            failed.append(key)
            raise StorageError(f"{key}: injected", key)
        result = await inner_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key and not posted.is_set():
            posted.set()
            await leases.write(await leases.read(), "f" * 16, 0.0, 2)
        return result

    store._around = post_then_fail_the_steps  # type: ignore[method-assign]
    with commit_timeout_from_the_post(1.5), pytest.raises(CallPendingError):
        log.add.run("me/1")
    store._around = inner_around  # type: ignore[method-assign]
    assert posted.is_set() and failed, "the scenario needs a post and failing reads after it"
    assert len(failed) <= 40, f"{len(failed)} failed reads in 1.5 s: no backoff"

"""Idempotency keys: one application per key, from any process, across lost responses."""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.dedup import RecordedError
from vactor_cloud.errors import RetryableStorageError, StorageError
from vactor_cloud.storage import Blob, ObjectStore, PutMode
from vactor_cloud.testing.lanes import Lane, StoreSpec

JOIN_TIMEOUT = 120.0


@vc.virtual_actor
class Account:
    def __init__(self) -> None:
        self.balance = 0
        self.applied: list[str] = []

    def deposit(self, amount: int, tag: str = "") -> int:
        self.balance += amount
        self.applied.append(tag)
        return self.balance

    def fail(self, message: str) -> None:
        self.balance += 1000  # discarded: the call raises
        raise ValueError(message)

    @vc.virtual_actor.readonly
    def snapshot(self) -> tuple[int, list[str]]:
        return self.balance, list(self.applied)


class CustomError(Exception):
    pass


@vc.virtual_actor(serializer="json")
class JsonAccount:
    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, amount: int) -> list[int]:
        self.balance += amount
        return [self.balance, amount]

    def fail_builtin(self) -> None:
        raise KeyError("missing", 3)

    def fail_custom(self) -> None:
        raise CustomError("custom")


def test_repeated_key_returns_recorded_result_without_running_again(actor_store: StoreSpec) -> None:
    account = Account.get_or_create("acct")
    first = account.deposit.options(idempotency_key="k1").run(10, tag="a")
    again = account.deposit.options(idempotency_key="k1").run(99, tag="b")
    other = account.deposit.options(idempotency_key="k2").run(5, tag="c")
    assert (first, again, other) == (10, 10, 15)
    assert account.snapshot.run() == (15, ["a", "c"])


def test_repeated_key_reraises_recorded_exception_and_changes_nothing(actor_store: StoreSpec) -> None:
    account = Account.get_or_create("acct")
    for _ in range(2):
        with pytest.raises(ValueError, match="no funds"):
            account.fail.options(idempotency_key="f").run("no funds")
    assert account.snapshot.run() == (0, [])


def test_key_is_recorded_across_processes_view_after_restart(actor_store: StoreSpec) -> None:
    account = Account.get_or_create("acct")
    assert account.deposit.options(idempotency_key="k").run(7) == 7
    vc.shutdown()  # a new runtime: nothing cached, the key must come from the step
    actor_store.init()
    assert vc.get_actor("acct").deposit.options(idempotency_key="k").run(7) == 7
    assert vc.get_actor("acct").snapshot.run() == (7, [""])


def test_json_serializer_recorded_results_and_exceptions(actor_store: StoreSpec) -> None:
    account = JsonAccount.get_or_create("json-acct")
    assert account.deposit.options(idempotency_key="d").run(3) == [3, 3]
    with pytest.raises(KeyError) as builtin_first:
        account.fail_builtin.options(idempotency_key="b").run()
    with pytest.raises(CustomError):
        account.fail_custom.options(idempotency_key="c").run()
    vc.shutdown()
    actor_store.init()  # replies now come from the json table, not from memory
    account = vc.get_actor("json-acct")
    assert account.deposit.options(idempotency_key="d").run(50) == [3, 3]
    with pytest.raises(KeyError) as builtin_again:
        account.fail_builtin.options(idempotency_key="b").run()
    assert builtin_again.value.args == builtin_first.value.args == ("missing", 3)
    # A non-builtin exception type is not rebuilt from json (that would run
    # arbitrary constructors); it comes back as RecordedError naming the type.
    with pytest.raises(RecordedError) as custom_again:
        account.fail_custom.options(idempotency_key="c").run()
    assert custom_again.value.type_name == f"{__name__}.CustomError"
    assert "custom" in str(custom_again.value)
    assert not isinstance(custom_again.value, CustomError)


def test_dedup_window_keeps_more_of_count_and_age(actor_store: StoreSpec) -> None:
    from vactor_cloud.dedup import DedupTable, Outcome

    table = DedupTable()
    for i in range(5):
        table.record(f"old{i}", Outcome(True, i), when=0.0)
    for i in range(3):
        table.record(f"new{i}", Outcome(True, i), when=100.0)
    kept = DedupTable.load(table.dump("pickle", (2, 50.0), now=110.0), "pickle")
    # Age keeps the three young keys even though the count limit is 2.
    assert list(kept.entries) == ["new0", "new1", "new2"]
    kept = DedupTable.load(table.dump("pickle", (6, 50.0), now=110.0), "pickle")
    # The count keeps the newest six even though three of them are old.
    assert list(kept.entries) == ["old2", "old3", "old4", "new0", "new1", "new2"]


# -- same key from 8 processes at once ---------------------------------------------------------


def _deposit_with_key(spec: StoreSpec, barrier: Any, results: Any, index: int) -> None:
    spec.init()
    account = vc.get_actor("shared")
    barrier.wait(JOIN_TIMEOUT)  # 8 interpreters starting on a busy machine can take over a minute
    try:
        results.put(
            (index, "ok", account.deposit.options(idempotency_key="same-key").run(25, tag=str(index)))
        )
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((index, "error", repr(exc)))
    vc.shutdown()


def test_same_key_from_8_processes_applies_once_with_identical_results(
    actor_store: StoreSpec, store_lane: Lane, process_context: multiprocessing.context.ForkServerContext
) -> None:
    if not store_lane.multiprocess:
        pytest.skip(f"lane {store_lane.name!r} stores are not shared between processes")
    account = Account.get_or_create("shared")
    barrier = process_context.Barrier(8)
    results = process_context.Queue()
    procs = [
        process_context.Process(target=_deposit_with_key, args=(actor_store, barrier, results, i))
        for i in range(8)
    ]
    for proc in procs:
        proc.start()
    replies = []
    try:
        for _ in procs:
            replies.append(results.get(timeout=JOIN_TIMEOUT))
    except queue.Empty:
        pytest.fail(f"only {len(replies)} of 8 processes answered: {replies}")
    finally:
        for proc in procs:
            proc.join(JOIN_TIMEOUT)
            if proc.is_alive():
                proc.kill()
    assert [r[1] for r in replies] == ["ok"] * 8, replies
    assert {r[2] for r in replies} == {25}
    balance, applied = account.snapshot.run()
    assert balance == 25
    assert len(applied) == 1
    assert all(proc.exitcode == 0 for proc in procs)


# -- lost response on the commit -------------------------------------------------------------


class LostResponseStore(ObjectStore):
    """Wraps a store; when armed, the next step put is applied and then reported as failed.

    ``blind`` makes reads of that step fail too, so the writer cannot learn
    that its put landed and has to report the error to the caller.
    """

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.armed = False
        self.blind = False
        self.lost_key: str | None = None

    async def _get(self, key: str) -> Blob:
        if self.blind and key == self.lost_key:
            raise RetryableStorageError("injected: read failed", key)
        return await self.inner.get(key)

    async def _head(self, key: str) -> str | None:
        return await self.inner.head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version = await self.inner.put(key, data, mode=mode)
        if self.armed and "/steps/" in key:
            self.armed = False
            self.lost_key = key
            raise StorageError("injected: connection reset after the put was applied", key)
        return version

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await self.inner.list(prefix, start_after=start_after, limit=limit)

    async def _delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def close(self) -> None:
        await self.inner.close()


def _lossy_runtime() -> LostResponseStore:
    runtime = vc.get_runtime()
    store = LostResponseStore(runtime.store)
    runtime.store = store  # before any actor core exists, so every log uses it
    return store


def test_lost_commit_response_is_resolved_as_own_commit(actor_store: StoreSpec) -> None:
    store = _lossy_runtime()
    account = Account.get_or_create("lossy")
    store.armed = True
    assert account.deposit.options(idempotency_key="pay-1").run(40) == 40
    assert store.lost_key is not None
    assert account.snapshot.run() == (40, [""])


def test_lost_commit_response_then_caller_retry_applies_once(actor_store: StoreSpec) -> None:
    store = _lossy_runtime()
    account = Account.get_or_create("lossy")
    store.armed = True
    store.blind = True
    # The writer cannot tell whether its put landed: the caller sees an error...
    with pytest.raises(StorageError) as caught:
        account.deposit.options(idempotency_key="pay-1").run(40, tag="first")
    # ...and is told so: the bare read error said nothing of the write sent before it.
    notes = getattr(caught.value, "__notes__", [])
    assert any("may or may not have been applied" in note for note in notes), notes
    store.blind = False
    # ...and retries with the same key (a serverless platform would): the
    # recorded result comes back and the deposit is not applied again.
    assert account.deposit.options(idempotency_key="pay-1").run(40, tag="retry") == 40
    assert account.snapshot.run() == (40, ["first"])

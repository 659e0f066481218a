"""FaultyStore does what its documentation says for each fault kind, deterministically by seed."""

from __future__ import annotations

import asyncio
import pickle
import threading
import uuid
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud.errors import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.storage import MemoryStore, open_store
from vactor_cloud.testing.faults import (
    FAULT_KINDS,
    FaultConfig,
    FaultRule,
    FaultyStore,
    HoldEvery,
    HoldOne,
)

ALL = frozenset({"get", "head", "put", "list", "delete"})


def _store(*rules: FaultRule, seed: int = 1) -> tuple[FaultyStore, MemoryStore]:
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    return FaultyStore(inner, FaultConfig(rules, seed)), inner


def test_fail_before_raises_and_applies_nothing() -> None:
    store, inner = _store(
        FaultRule("fail_before", at=(1,)), FaultRule("fail_before", at=(2,), retryable=False)
    )

    async def run() -> None:
        with pytest.raises(RetryableStorageError):
            await store.put("k", b"x", mode="create")
        with pytest.raises(StorageError) as info:
            await store.put("k", b"x", mode="create")
        assert not isinstance(info.value, RetryableStorageError)
        assert await inner.head("k") is None
        await store.put("k", b"x", mode="create")
        assert (await inner.get("k")).data == b"x"

    asyncio.run(run())
    assert store.injected == {"fail_before": 2}


@pytest.mark.parametrize(
    ("kind", "error", "applied"),
    [
        ("lost_response", RetryableStorageError, True),
        ("conflict_before", ConflictError, False),
        ("conflict_after", ConflictError, True),
        ("rate_limited", RateLimitedError, False),
        ("timeout_before", StorageTimeoutError, False),
        ("timeout_after", StorageTimeoutError, True),
    ],
)
def test_write_faults_raise_typed_errors_and_apply_as_documented(
    kind: str, error: type[Exception], applied: bool
) -> None:
    store, inner = _store(FaultRule(kind, at=(1,)))  # type: ignore[arg-type]

    async def run() -> None:
        with pytest.raises(error):
            await store.put("k", b"x", mode="create")
        assert (await inner.head("k") is not None) is applied

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["truncate_read", "corrupt_read"])
def test_damaged_reads_leave_the_stored_object_intact(kind: str) -> None:
    store, inner = _store(FaultRule(kind, operations=frozenset({"get"}), at=(1,)))  # type: ignore[arg-type]
    data = bytes(range(256))

    async def run() -> None:
        await inner.put("k", data)
        damaged = (await store.get("k")).data
        assert damaged != data
        if kind == "truncate_read":
            assert data.startswith(damaged)
        else:
            assert len(damaged) == len(data)
        assert (await store.get("k")).data == data  # only the first read was damaged

    asyncio.run(run())


def test_delay_still_applies() -> None:
    store, _ = _store(FaultRule("delay", operations=ALL, probability=1.0, delay=0.001))

    async def run() -> None:
        await store.put("k", b"x", mode="create")
        assert (await store.get("k")).data == b"x"
        with pytest.raises(NotFoundError):
            await store.get("missing")

    asyncio.run(run())
    assert store.injected["delay"] == 3


def test_key_filter_limit_and_seeded_schedule_are_deterministic() -> None:
    rule = FaultRule("fail_before", operations=ALL, key_contains="/steps/", probability=0.5, limit=5)

    async def pattern(seed: int) -> list[bool]:
        store, _ = _store(rule, seed=seed)
        out = []
        for i in range(40):
            try:
                await store.put(f"a/steps/{i}", b"x")
                await store.put(f"a/HEAD{i}", b"x")  # never matches
                out.append(False)
            except RetryableStorageError as exc:
                assert "/steps/" in exc.key
                out.append(True)
        return out

    first, again, other = (asyncio.run(pattern(s)) for s in (3, 3, 4))
    assert first == again
    assert first != other
    assert sum(first) == 5  # the limit


def test_config_is_plain_data() -> None:
    config = FaultConfig(
        (FaultRule("lost_response", operations=ALL, probability=0.2, retryable=False),), seed=9, name="x"
    )
    assert pickle.loads(pickle.dumps(config)) == config
    assert FaultConfig.from_json(config.to_json()) == config
    child = config.derive("worker-1")
    assert child.rules == config.rules and child.seed != config.seed
    assert child == config.derive("worker-1")


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultRule("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="get only"):
        FaultRule("corrupt_read")
    with pytest.raises(ValueError, match="probability"):
        FaultRule("delay", probability=2.0)
    assert "crash_after" in FAULT_KINDS


@pytest.mark.parametrize("outcome", ["applied", "lost the race", "missing"])
def test_a_scheduled_crash_after_lands_whatever_the_answer(
    outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash test schedules its kill at the k-th matching request; a put that lost its
    race or a get of a missing key still counts, so the kill must land there too (a
    scheduled kill that silently did not happen failed the crash suite on CI)."""
    from vactor_cloud.testing import faults

    kills: list[str] = []
    monkeypatch.setattr(faults, "_kill_self", lambda: kills.append(outcome))
    operation = "get" if outcome == "missing" else "put"
    store, inner = _store(FaultRule("crash_after", operations=frozenset({operation}), at=(1,)))

    async def run() -> None:
        if outcome == "lost the race":
            await inner.put("k", b"first", mode="create")
        if operation == "put":
            try:
                await store.put("k", b"x", mode="create")
            except StorageError:
                assert outcome == "lost the race"
        else:
            with pytest.raises(NotFoundError):
                await store.get("k")

    asyncio.run(run())
    assert kills == [outcome]


# -- delete_many --------------------------------------------------------------------------------
def _fill(inner: MemoryStore, keys: list[str]) -> None:
    async def put_all() -> None:
        for key in keys:
            await inner.put(key, b"x")

    asyncio.run(put_all())


def test_delete_many_faults_are_decided_once_per_request_of_the_wrapped_store() -> None:
    # memory has no batch delete: each key is a request, and a fault hits that key alone
    store, inner = _store(FaultRule("fail_before", operations=frozenset({"delete"}), at=(2,)))
    keys = [f"m/{n}" for n in range(4)]
    _fill(inner, keys)

    async def run() -> None:
        with pytest.raises(RetryableStorageError) as info:
            await store.delete_many(keys)
        assert info.value.key == "m/1"
        assert await inner.list("") == ["m/1"]  # the others were deleted all the same

    asyncio.run(run())
    assert store.seen["delete"] == 4
    assert store.requests["delete"] == inner.requests["delete"] + 1 == 4


def test_lost_response_on_a_batch_delete_deletes_every_key_of_it_then_raises() -> None:
    store, inner = _store(
        FaultRule("lost_response", operations=frozenset({"delete"}), key_contains="/mail/", at=(1,))
    )
    store.delete_batch = 3  # as if the wrapped store took three keys a request (S3 takes 1000)
    keys = ["a/steps/1", "a/mail/1", "a/steps/2", "b/steps/1", "b/steps/2"]
    _fill(inner, [*keys, "kept"])

    async def run() -> None:
        with pytest.raises(RetryableStorageError) as info:
            await store.delete_many(keys)
        # the first request's keys matched (one of them is a post's); named by its first key
        assert info.value.key == "a/steps/1"
        assert "and 2 more keys" in str(info.value)
        assert await inner.list("") == ["kept"]

    asyncio.run(run())
    assert dict(store.injected) == {"lost_response": 1}
    assert store.seen["delete"] == 2  # two requests: three keys, then two
    assert store.requests["delete"] == 2


def test_a_batch_delete_whose_keys_do_not_match_the_rule_is_left_alone() -> None:
    store, inner = _store(FaultRule("fail_before", operations=frozenset({"delete"}), key_contains="/mail/"))
    store.delete_batch = 10
    _fill(inner, ["a/steps/1", "a/steps/2"])

    async def run() -> None:
        await store.delete_many(["a/steps/1", "a/steps/2"])
        assert await inner.list("") == []

    asyncio.run(run())
    assert not store.injected


# -- HoldOne: one request held until the test lets it go ------------------------------------------
async def _until(event: threading.Event) -> None:
    for _ in range(2000):  # 10 s at most
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never set")


def test_hold_one_holds_the_next_matching_request_after_skip_before_sending_it() -> None:
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    store = HoldOne(inner, "put", "/steps/", skip=1)

    async def run() -> None:
        await store.put("a/steps/1", b"1", mode="create")  # not armed: goes
        store.hold()
        await store.put("a/mail/1", b"m", mode="create")  # another key: goes
        await store.put("a/steps/2", b"2", mode="create")  # skipped
        held = asyncio.ensure_future(store.put("a/steps/3", b"3", mode="create"))
        await _until(store.held)
        await store.put("a/steps/4", b"4", mode="create")  # one request only: the next goes
        assert await inner.head("a/steps/3") is None  # held before it was sent
        assert not held.done()
        store.release.set()
        await held
        assert (await inner.get("a/steps/3")).data == b"3"

    asyncio.run(run())


def test_hold_one_with_answer_first_applies_the_request_then_holds_its_answer() -> None:
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    store = HoldOne(inner, "delete", "/mail/", answer_first=True)
    store.delete_batch = 2  # one request deletes both (as on S3); a key of it matches
    _fill(inner, ["a/steps/1", "a/mail/1"])

    async def run() -> None:
        store.hold()
        held = asyncio.ensure_future(store.delete_many(["a/steps/1", "a/mail/1"]))
        await _until(store.held)
        assert await inner.list("a/") == []  # applied; its answer not given yet
        assert not held.done()
        store.release.set()
        await held

    asyncio.run(run())


def test_hold_one_gives_up_holding_after_its_timeout_and_may_be_armed_again() -> None:
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    store = HoldOne(inner, "get", "k", timeout=0.05)
    _fill(inner, ["k"])

    async def run() -> None:
        store.hold()
        assert (await store.get("k")).data == b"x"  # nobody released it: goes after 0.05 s
        assert store.held.is_set()
        store.hold("head", "k")  # a new hold: held and release cleared
        assert not store.held.is_set()
        assert await store.head("k") is not None
        assert store.held.is_set()

    asyncio.run(run())
    with pytest.raises(ValueError, match="unknown operation 'post'"):
        HoldOne(inner, "post", "k")


def test_a_faulty_store_reports_what_its_inner_store_can_hold_and_how_it_lists(tmp_path: Path) -> None:
    """Apart from its faults a FaultyStore behaves as its inner store: it says so too. It said
    every store holds "a" and "a/b" (a directory cannot), lists at one moment, and takes keys
    of any length, so the conformance suite tested a local store's wrapper for what it cannot
    do, and a runtime on a wrapped S3 store under a long prefix took keys it cannot hold."""
    local = open_store(f"file://{tmp_path}")
    wrapped = FaultyStore(local, FaultConfig())
    assert (wrapped.nested_keys, wrapped.snapshot_list_keys) == (local.nested_keys, local.snapshot_list_keys)
    assert not wrapped.nested_keys
    memory = MemoryStore(f"faults-{uuid.uuid4().hex}")
    memory.max_key_bytes = 100  # as an S3 store under a 923-byte prefix
    try:
        with pytest.raises(ValueError, match="keys under this prefix can be at most 100 bytes"):
            vc.init(settings=vc.Settings(storage=HoldOne(memory, "put", "")))
    finally:
        vc.shutdown()


def test_hold_one_says_when_a_held_request_was_cancelled_and_never_sends_it() -> None:
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    store = HoldOne(inner, "put", "k")

    async def run() -> None:
        store.hold()
        held = asyncio.ensure_future(store.put("k", b"1", mode="create"))
        await _until(store.held)
        assert not store.ended.is_set()
        held.cancel()
        await _until(store.ended)
        assert held.cancelled()  # (the cancel ended the wait and the request with it)
        store.release.set()
        assert await inner.head("k") is None

    asyncio.run(run())


# -- HoldEvery: every matching request held until the test lets them go --------------------------
def test_hold_every_holds_each_matching_request_until_released_and_counts_them_in_flight() -> None:
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    store = HoldEvery(inner, "delete", "/inbox/")
    store.delete_batch = 2  # one request deletes both (as on S3); a key of it matches
    _fill(inner, ["a/inbox/1", "a/inbox/2", "a/inbox/3", "a/steps/1"])

    async def run() -> None:
        first = asyncio.ensure_future(store.delete("a/inbox/1"))
        await _until(store.held)
        second = asyncio.ensure_future(store.delete_many(["a/steps/1", "a/inbox/2"]))
        await store.delete("a/mail/1")  # another key: goes
        for _ in range(2000):  # 10 s at most
            if store.in_flight == 2:
                break
            await asyncio.sleep(0.005)
        assert store.in_flight == 2 and not first.done() and not second.done()
        assert len(await inner.list("a/")) == 4  # held before they were sent
        store.release.set()
        await asyncio.gather(first, second)
        await store.delete("a/inbox/3")  # after the release: goes at once
        assert await inner.list("a/") == []
        assert (store.in_flight, store.most_in_flight) == (0, 2)
        assert store.ended.is_set() and not store.timed_out.is_set()
        store.check()

    asyncio.run(run())


def test_hold_every_ends_its_hold_after_one_timeout_and_says_what_it_held() -> None:
    """A test whose code waits for a request it holds waits one timeout in all, then learns it."""
    inner = MemoryStore(f"faults-{uuid.uuid4().hex}")
    store = HoldEvery(inner, "get", "k", timeout=0.05)
    _fill(inner, ["k"])

    async def run() -> None:
        assert (await store.get("k")).data == b"x"  # nobody released it: goes after 0.05 s
        assert store.timed_out.is_set() and store.ended.is_set()
        with pytest.raises(AssertionError, match=r"a get of a key containing 'k' was held 0\.05 s"):
            store.check()
        store.timeout = 3600.0
        assert (await store.get("k")).data == b"x"  # the hold is over: no second wait
        store.hold()  # armed again: events cleared
        assert not (store.held.is_set() or store.timed_out.is_set() or store.ended.is_set())
        held = asyncio.ensure_future(store.get("k"))
        await _until(store.held)
        assert not held.done()
        store.release.set()
        assert (await held).data == b"x"

    asyncio.run(run())
    with pytest.raises(ValueError, match="unknown operation 'post'"):
        HoldEvery(inner, "post", "k")


@pytest.mark.parametrize("wrapper", ["faults", "latency"])
def test_every_store_wrapper_reports_each_capability_of_its_inner_store(tmp_path: Path, wrapper: str) -> None:
    """A test wrapper (faults, latency) says what its inner store can hold and how it answers,
    each of :data:`vactor_cloud.storage.CAPABILITIES`. ``LatencyStore`` kept the defaults of all
    but three: around a local or memory store it said a create conflict may be its own lost
    first attempt (a compacted step's late commit became "outcome unknown"), and around an S3
    store under a long prefix it took keys the bucket cannot hold."""
    from vactor_cloud.storage import CAPABILITIES
    from vactor_cloud.testing.latency import Latency, LatencyStore

    memory = MemoryStore(f"faults-{uuid.uuid4().hex}")
    memory.max_key_bytes = 100
    memory.snapshot_list_keys = 7
    for inner in (open_store(f"file://{tmp_path}"), memory):
        faulty = wrapper == "faults"
        wrapped = FaultyStore(inner, FaultConfig()) if faulty else LatencyStore(inner, Latency(0.0))
        for name in CAPABILITIES:
            assert getattr(wrapped, name) == getattr(inner, name), (name, inner.describe())

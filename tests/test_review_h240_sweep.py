"""Review h240: a mutation sweep of the fault injector the chaos, crash and wire-fault suites rely
on (``testing/faults.py``, ``testing/latency.py``), of the store contract's base
(``storage/_base.py``), the memory store, storage URL parsing (``storage/__init__.py``) and
``subtask.py``.

148 hand-made mutations, one at a time, each run against the modules that test that code (memory
and local lanes): the injector's against ``test_faults``, ``test_latency_store`` and
``test_review_h166_wrapper_capabilities``; the base's against the conformance suite,
``test_storage_edges``, ``test_review_storage``, ``test_review_store_base_exceptions`` and (for
its deadlines) the timeout-text modules; the memory store's against the conformance suite; the
URL parsing's against ``test_review_h161_open_store`` and ``test_settings``; ``subtask.py``'s
against ``test_subtask`` and its review modules. 87 were killed there. Of the 61 left, 48 are
killed by the tests here (each test's docstring names its mutations), 8 by a module outside the
group run for them (named), 2 are equivalent, 3 are not killed (notes c-e). None showed a defect
of the unmutated code. "killed by" names the module (``test_`` / ``test_review_`` left off) whose
test failed first; "h240" a test here, by words of its name; "(bounded wait)": the mutant makes a
request wait past the test's bound (20 s), which fails clearly.

The chaos suite already fails a phase that injected nothing (``test_chaos``: "no fault was
injected: the phase tested nothing"), the wire-fault tests a proxy that dropped nothing, and the
crash suite a victim not killed by SIGKILL (F29 and F40 would fail there; not run in this sweep:
multi-process tests); a kind that injects the wrong thing is caught by the unit tests of
``test_faults`` and the ones here.

==== ========================================================== ======== ====================================
id   mutation                                                   survived killed by / why
==== ========================================================== ======== ====================================
F01  _decide: a rule matches every operation                    yes      h240 (own operations)
F02  _decide: key_contains ignored                              no       faults
F03  _decide: every key of a batch must contain key_contains    no       faults
F04  _decide: matching operations not counted                   no       faults
F05  _decide: schedule 'at' off by one                          no       faults
F06  _decide: probability compare inverted                      no       faults
F07  _decide: half the probability (injects less)               no       faults
F08  _decide: limit + 1 faults                                  no       faults
F09  _decide: the last rule that fires wins                     yes      h240 (first rule)
F10  _decide: fired not counted (no limit)                      no       faults
F11  _decide: injected not counted                              no       faults
F12  _decide: seen not counted                                  no       faults
F13  fail_before applies the write, then raises                 no       faults
F14  rate_limited applies the write, then raises                no       faults
F15  conflict_before applies the write, then raises             no       faults
F16  timeout_before applies the write, then raises              no       faults
F17  lost_response raises before applying                       no       faults
F18  lost_response: retryable=False ignored                     yes      h240 (lost, not retryable)
F19  fail_before: retryable=False ignored                       no       faults
F20  injected timeout: a delete not a write in flight           yes      h240 (timeout in flight)
F21  conflict_after raises before applying                      no       faults
F22  delay: the operation not applied                           no       faults
F23  delay: never sleeps                                        yes      h240 (delay sleeps)
F24  truncate/corrupt_read: bytes returned intact               no       faults
F25  truncate_read may return every byte                        yes      h240 (truncated read)
F26  corrupt_read flips no bit                                  no       faults
F27  _damage: empty object not guarded (ValueError)             yes      h240 (truncated read)
F28  crash_after: no kill when the request raised               no       faults
F29  crash_before: no kill                                      yes      h240 (crash before)
F30  batch delete matched by its first key only                 no       faults
F31  batched delete_unchanged forwarded as delete_many          yes      h240 (batched conditional)
F32  delete_unchanged forwarded as delete                       no       h166_wrapper_capabilities
F33  HoldOne: skip never counted down                           no       faults
F34  HoldOne: stays armed (holds every request)                 no       faults
F35  HoldOne: answer_first ignored                              no       faults
F36  HoldOne: holds 30 s past its timeout                       yes      h240 (hold ends (bounded))
F37  HoldEvery: in_flight never decremented                     no       faults
F38  HoldEvery: timed_out never set                             no       faults
F39  Hold*: every key of a batch must match                     no       faults
F40  install: runtime keeps its store                           yes      h240 (install)
F41  FaultRule.to_json drops 'at'                               yes      h240 (rule json)
F42  derive keeps the seed                                      no       faults
F43  probability out of [0, 1] accepted                         no       faults
F44  read-only kinds on any operation accepted                  no       faults
F45  trouble_meanwhile: the injector's own failures not told    yes      h240 (injector trouble)
F46  FaultConfig.from_json drops the seed                       no       faults
F47  random stream not seeded by the config                     no       faults
F48  a two-key batch not named as such                          yes      h240 (two-key batch)
L01  latency: no wait before the request                        no       latency_store
L02  latency: jitter only added                                 yes      h240 (jitter both ways)
L03  latency: a negative total not clamped to 0                 yes      equivalent (a)
L04  Latency.parse: /100, not /1000                             no       latency_store
L05  Latency.parse: three parts accepted                        no       latency_store
L06  latency: batched delete_unchanged as delete_many           no       h166_wrapper_capabilities
L07  latency install: runtime keeps its store                   no       latency_store
L08  Latency: negative jitter accepted                          yes      h240 (latency jitter)
L09  latency: no wait after the answer                          no       latency_store
L10  Latency.describe: jitter left out                          yes      h240 (latency jitter)
B01  get not counted                                            yes      h240 (counted once)
B02  put not counted                                            yes      h240 (counted once)
B03  get not bounded by request_timeout                         no       h142_timeout_text
B04  put not bounded                                            no       h142_timeout_text
B05  list not bounded                                           yes      h240 (bounded (bounded wait))
B06  delete not bounded                                         yes      h240 (bounded (bounded wait))
B07  head not bounded                                           yes      h240 (bounded (bounded wait))
B08  put's timeout: write_in_flight False                       no       h142_timeout_text
B09  delete's timeout: write_in_flight False                    yes      h240 (bounded (bounded wait))
B10  put: key not checked                                       no       store_conformance
B11  _check_key: a leading '/' accepted                         no       store_conformance
B12  _check_key: lone surrogates accepted                       no       store_conformance
B13  _bounded: a client timeout passed through once expired     yes      h240 (client's own timeout)
B14  _bounded: a wrapped store's timeout rewrapped              no       h145_timeout_passed_through
B15  _bounded: write_in_flight always False                     no       h142_timeout_text
B16  _bounded: storage_timeout counter not called               yes      h144_timeout_log (outside the group)
B17  _bounded: _failed_lately not noted                         no       h149_deadline_reason
B18  _bounded: the operation's last failure not noted           no       h149_deadline_reason
B19  _bounded: REQUEST not reset                                yes      equivalent (b)
B20  trouble_meanwhile: an operation's old failure told         yes      h240 (old failures)
B21  trouble_meanwhile: another's old failure told              yes      h240 (old failures)
B22  _in_batches: a timeout does not stop the batches           yes      delete_many (outside the group)
B23  _in_batches: a non-storage error raised last               yes      delete_many (outside the group)
B24  _in_batches: no bound on senders                           yes      delete_many (outside the group)
B25  _in_batches: one key per batch                             yes      faults (outside the group)
B26  delete_many: keys not deduplicated                         yes      h240 (named twice)
B27  delete_many: keys not checked                              no       store_conformance
B28  delete_unchanged batch not counted                         no       store_conformance
B29  default _delete_unchanged: its head not counted            yes      h240 (default conditional)
B30  default _delete_unchanged: version not compared            yes      h240 (default conditional)
B31  default _delete_many: errors swallowed                     yes      h240 (batch error)
B32  default _delete_many_unchanged: errors swallowed           yes      h240 (batch error)
B33  listed_at_one_moment: a Listing of many pages trusted      yes      h240 (one moment)
B34  listed_at_one_moment: a full page trusted                  yes      h240 (one moment)
B35  _plain: instance-wrapped requests ignored                  yes      h240 (not inline)
B36  default _delete_many: first error raised, others left runn yes      h240 (batch error)
B37  _in_batches: timed_out not read                            yes      delete_many (outside the group)
B38  delete_many batch not counted                              no       store_conformance
B39  delete_many batch not bounded                              yes      h240 (bounded (bounded wait))
B40  delete_unchanged batch: write_in_flight False              yes      h240 (bounded (bounded wait))
M01  IfMatch on a missing key succeeds                          no       store_conformance
M02  an unknown put mode accepted                               no       storage_edges
M03  list includes start_after                                  no       store_conformance
M04  list: limit + 1 keys                                       no       store_conformance
M05  list: no versions                                          no       store_conformance
M06  delete leaves the key listed                               no       store_conformance
M07  delete_unchanged ignores the version                       no       store_conformance
M08  put_now not counted                                        yes      h240 (_now counted)
M09  put_now: key not checked                                   no       store_conformance
M10  get_now not counted                                        yes      h240 (_now counted)
M11  list_now not counted                                       yes      h240 (_now counted)
M12  inline even when a request is overridden                   yes      h240 (not inline)
M13  overwrite lists the key twice                              no       store_conformance
M14  stores of one name do not share                            no       store_conformance
M15  listing said to take two pages                             no       store_conformance
M16  wipe forgets nothing                                       yes      h240 (wipe)
U01  scheme typo: 'S3:/b' not caught                            no       h161_open_store
U02  scheme typo: file's advice loses its third slash           no       h161_open_store
U03  file://LOCALHOST/p not /p                                  no       h161_open_store
U04  file://localhost/p is ./localhost/p                        no       h161_open_store
U05  URL padded with white space accepted                       no       h161_open_store
U06  empty URL accepted                                         no       h161_open_store
U07  scheme not lowered                                         no       h161_open_store
U08  s3a:// refused                                             no       h161_open_store
U09  gcs:// refused                                             no       h161_open_store
U10  any ImportError told as a missing extra                    no       h161_open_store
U11  True accepted where a number is wanted                     no       h161_open_store
U12  an option None refused                                     no       h161_open_store
U13  unknown options accepted                                   no       h161_open_store
U14  memory://name/ another space than memory://name            no       h161_open_store
U15  open_store: options not checked                            no       h161_open_store
U16  scheme typo checked on full URLs too                       no       h161_open_store
U17  scheme typo advice keeps the slash                         no       h161_open_store
S01  children launched on the IO loop accepted                  yes      h240 (IO loop)
S02  read-only methods memoize                                  yes      h240 (read-only)
S03  a checkpoint of another child used                         no       subtask
S04  an unverified checkpoint's position memoized               yes      not killed (c)
S05  a mismatched checkpoint's position memoized                yes      h232_sweep (outside the group)
S06  a child's result dropped                                   no       subtask
S07  a checkpoint write's error dropped                         yes      workflow (outside the group)
S08  the last failing child's error raised                      no       h140_subtask
S09  failures not raised                                        no       subtask
S10  another run's checkpoint not used                          no       h140_subtask
S11  retried children re-pickled from live arguments            no       h198_batch_subtask
S12  options() ignores max_retries                              yes      h240 (subtask options)
S13  max_retries of another type accepted                       yes      h240 (subtask options)
S14  options() ignores executor                                 yes      h240 (subtask options)
S15  checkpoint writes not waited for                           yes      not killed (d)
S16  an unverified raced checkpoint stops the loop              yes      not killed (e)
S17  a non-callable accepted                                    yes      h240 (subtask options)
==== ========================================================== ======== ====================================

Notes:

(a) ``asyncio.sleep`` of a negative time returns at once, as ``sleep(0)`` does.
(b) Each bounded request sets its own ``REQUEST`` before it is sent and reads only the one it set;
    a value left set after a request is read by nobody.
(c) The checkpoint that does not verify stays at its key: the child's result, written create-only
    again, meets it, is read back, does not verify, and the child's own result counts: the same
    result, one more put (seen only by a count of requests).
(d) ``checkpoint_written`` waits for each write anyway (``result()``); only a Ctrl-C during that
    wait, which ``wait_futures`` takes in slices on the main thread, tells the two apart.
(e) Needs two runs of one call racing, the first's checkpoint at one position not verifying and a
    later position's taken by the other run: not set up here.
"""

from __future__ import annotations

import asyncio
import time
import types
import uuid
from collections.abc import Awaitable, Callable

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import RetryableStorageError, StorageError, StorageTimeoutError
from vactor_cloud.runtime import get_runtime
from vactor_cloud.storage import Blob, MemoryStore, ObjectStore
from vactor_cloud.storage._base import Listing, OperationTrouble
from vactor_cloud.testing import faults, latency
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore

ALL = frozenset({"get", "head", "put", "list", "delete"})


def _faulty(*rules: FaultRule, seed: int = 1) -> tuple[FaultyStore, MemoryStore]:
    inner = MemoryStore(f"h240-{uuid.uuid4().hex}")
    return FaultyStore(inner, FaultConfig(rules, seed)), inner


# -- the fault injector -------------------------------------------------------------------------
def test_a_rule_counts_and_fires_on_its_own_operations_only() -> None:
    """F01: a rule for puts that fired on (and counted) a get or a list injected into requests
    the chaos phase said it spared."""
    store, inner = _faulty(FaultRule("fail_before", operations=frozenset({"put"}), at=(1,)))

    async def run() -> None:
        await inner.put("k", b"0")
        assert (await store.get("k")).data == b"0"
        assert await store.head("k") is not None
        assert await store.list("") == ["k"]
        await store.delete("k")
        with pytest.raises(RetryableStorageError):
            await store.put("k", b"1")  # the rule's first put
        assert await inner.head("k") is None

    asyncio.run(run())
    assert dict(store.injected) == {"fail_before": 1}


def test_when_several_rules_fire_the_first_is_injected() -> None:
    """F09: the last rule that fired was injected (a lost response where the first rule said
    the request never left)."""
    store, inner = _faulty(
        FaultRule("fail_before", at=(1,)), FaultRule("lost_response", at=(1,), retryable=False)
    )

    async def run() -> None:
        with pytest.raises(RetryableStorageError):
            await store.put("k", b"x", mode="create")
        assert await inner.head("k") is None

    asyncio.run(run())
    assert dict(store.injected) == {"fail_before": 1}


def test_a_lost_response_with_retryable_false_raises_a_plain_storage_error_after_applying() -> None:
    """F18: ``retryable=False`` ignored for a lost response (always retryable)."""
    store, inner = _faulty(FaultRule("lost_response", at=(1,), retryable=False))

    async def run() -> None:
        with pytest.raises(StorageError) as info:
            await store.put("k", b"x", mode="create")
        assert not isinstance(info.value, RetryableStorageError)
        assert (await inner.get("k")).data == b"x"

    asyncio.run(run())


@pytest.mark.parametrize(("operation", "write"), [("put", True), ("delete", True), ("get", False)])
def test_an_injected_timeout_says_whether_a_write_was_in_flight(operation: str, write: bool) -> None:
    """F20: a delete's timeout said no write was in flight."""
    store, inner = _faulty(FaultRule("timeout_before", operations=frozenset({operation}), at=(1,)))

    async def run() -> None:
        await inner.put("k", b"0")
        with pytest.raises(StorageTimeoutError) as info:
            if operation == "put":
                await store.put("k", b"1")
            elif operation == "delete":
                await store.delete("k")
            else:
                await store.get("k")
        assert info.value.write_in_flight is write

    asyncio.run(run())


def _sleeps_recorded(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType) -> list[float]:
    """The seconds each ``asyncio.sleep`` of ``module`` was asked for; none waits (one turn of
    the loop each)."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(module, "asyncio", types.SimpleNamespace(sleep=sleep))
    return waits


def test_a_delay_sleeps_a_random_time_up_to_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """F23: a delay that never waited (every chaos phase's "delay" kind tested nothing)."""
    waits = _sleeps_recorded(monkeypatch, faults)
    store, _ = _faulty(FaultRule("delay", operations=ALL, probability=1.0, delay=0.5))

    async def run() -> None:
        for n in range(5):
            await store.put(f"k{n}", b"x")

    asyncio.run(run())
    assert len(waits) == 5
    assert all(0.0 < w <= 0.5 for w in waits), waits


@pytest.mark.parametrize("data", [b"", b"x", b"xy"])
def test_a_truncated_read_is_never_the_whole_object_and_an_empty_one_stays_empty(data: bytes) -> None:
    """F25: a cut that may keep every byte (a one-byte object came back whole); F27: an empty
    object's damaged read raised ValueError instead of returning it."""
    for kind in ("truncate_read", "corrupt_read"):
        for seed in range(8):
            store, inner = _faulty(FaultRule(kind, operations=frozenset({"get"}), at=(1,)), seed=seed)
            damaged = asyncio.run(_read_back(store, inner, data))
            assert damaged == b"" if not data else damaged != data, (kind, seed, damaged)


async def _read_back(store: FaultyStore, inner: MemoryStore, data: bytes) -> bytes:
    await inner.put("k", data)
    return (await store.get("k")).data


class _Killed(Exception):
    pass


def test_a_crash_before_kills_before_the_request_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """F29: a crash_before that never killed (the crash suite's "before" points)."""

    def kill() -> None:
        raise _Killed

    monkeypatch.setattr(faults, "_kill_self", kill)
    store, inner = _faulty(FaultRule("crash_before", key_contains="/steps/", at=(2,)))

    async def run() -> None:
        await store.put("a/steps/1", b"1")
        with pytest.raises(_Killed):
            await store.put("a/steps/2", b"2")
        assert await inner.head("a/steps/2") is None

    asyncio.run(run())


def test_a_batched_conditional_delete_through_the_injector_keeps_a_key_written_again() -> None:
    """F31: the injector forwarded a batch of conditional deletes as plain deletes (a key
    written again since was deleted)."""
    store, inner = _faulty()
    store.delete_batch = 3

    async def run() -> None:
        versions = {key: await inner.put(key, b"0") for key in ("a", "b", "c")}
        await inner.put("b", b"again")
        await store.delete_unchanged(versions)
        assert await inner.list("") == ["b"]

    asyncio.run(run())


def test_a_hold_nobody_releases_ends_after_its_timeout() -> None:
    """F36: a hold that outlived its timeout (30 s more) passed ``test_faults``, whose wait is
    unbounded; here the held request must be answered within a bounded wait (20 s for a 0.05 s
    hold), and the hold must say it ended."""
    inner = MemoryStore(f"h240-{uuid.uuid4().hex}")
    store = faults.HoldOne(inner, "get", "k", timeout=0.05)

    async def run() -> None:
        await inner.put("k", b"x")
        store.hold()
        assert (await asyncio.wait_for(store.get("k"), 20)).data == b"x"

    asyncio.run(run())
    assert store.held.is_set() and store.ended.is_set() and not store.release.is_set()


@pytest.mark.usefixtures("runtime_off")
def test_install_puts_the_injector_in_the_runtimes_place() -> None:
    """F40: ``install`` returned an injector the runtime never used (every chaos worker's
    faults went nowhere)."""
    vc.init(f"memory://h240-{uuid.uuid4().hex}")
    runtime = get_runtime()
    inner = runtime.store
    store = faults.install(FaultConfig())
    assert runtime.store is store and store.inner is inner


def test_every_field_of_a_rule_survives_json() -> None:
    """F41: a rule's schedule (``at``) lost on its way to a child process as JSON (a crash
    test's scheduled kill then never fires)."""
    rule = FaultRule(
        "crash_after",
        operations=frozenset({"put", "delete"}),
        key_contains="/steps/",
        probability=0.5,
        at=(3, 5),
        limit=1,
        delay=0.2,
        retryable=False,
    )
    config = FaultConfig((rule,), seed=4, name="n")
    assert FaultConfig.from_json(config.to_json()) == config


def test_an_injected_failure_is_told_by_the_injector_for_an_operation_out_of_time() -> None:
    """F45: the injector told only its wrapped store's troubles (which saw none of the injected
    failures): an operation out of time said nothing failed."""
    store, _ = _faulty(FaultRule("fail_before", at=(1,)))

    async def run() -> None:
        with pytest.raises(RetryableStorageError):
            await store.put("k", b"x")

    asyncio.run(run())
    told = store.trouble_meanwhile(60.0)
    assert told is not None and "injected" in told


def test_a_fault_on_a_batch_of_two_keys_names_the_other_key_too() -> None:
    """F48: a fault on a request of two keys named only its first."""
    store, inner = _faulty(FaultRule("lost_response", operations=frozenset({"delete"}), at=(1,)))
    store.delete_batch = 2

    async def run() -> None:
        await inner.put("a", b"x")
        await inner.put("b", b"x")
        with pytest.raises(RetryableStorageError, match=r"and 1 more keys"):
            await store.delete_many(["a", "b"])
        assert await inner.list("") == []

    asyncio.run(run())


def test_latency_jitter_spreads_round_trips_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """L02: jitter only ever added (every round trip at least ``seconds``)."""
    waits = _sleeps_recorded(monkeypatch, latency)
    store = latency.LatencyStore(MemoryStore(f"h240-{uuid.uuid4().hex}"), latency.Latency(0.1, 0.05), seed=3)

    async def run() -> None:
        for n in range(20):
            await store.put(f"k{n}", b"x")

    asyncio.run(run())
    trips = [a + b for a, b in zip(waits[::2], waits[1::2], strict=True)]
    assert len(trips) == 20 and all(0.05 <= t <= 0.15 for t in trips), trips
    assert min(trips) < 0.1 < max(trips), trips


def test_a_latency_refuses_a_negative_jitter_and_names_its_jitter() -> None:
    """L08: a negative jitter accepted; L10: the jitter left out of the store's name."""
    with pytest.raises(ValueError, match="jitter"):
        latency.Latency(0.02, -0.005)
    assert latency.Latency.parse("20,5").describe() == "20 ms +- 5 ms"
    assert latency.Latency.parse("20").describe() == "20 ms"


# -- the store contract's base ------------------------------------------------------------------
def test_every_request_is_counted_once_by_its_kind() -> None:
    """B01, B02 (and the batch deletes' counts): a get or a put not counted in ``requests``
    (what RequestTrace and the stats count)."""
    store = MemoryStore(f"h240-{uuid.uuid4().hex}")

    async def run() -> None:
        version = await store.put("a", b"x")
        await store.put("b", b"x")
        await store.get("a")
        await store.head("a")
        await store.list("")
        await store.delete("b")
        await store.delete_many(["c"])
        await store.delete_unchanged({"a": version})

    asyncio.run(run())
    assert store.requests.snapshot() == {"put": 2, "get": 1, "head": 1, "list": 1, "delete": 3}


_REQUESTS: dict[str, tuple[str, bool]] = {
    # the call: (the operation its request is, whether its timeout leaves a write in flight)
    "get": ("get", False),
    "head": ("head", False),
    "put": ("put", True),
    "list": ("list", False),
    "delete": ("delete", True),
    "delete_many": ("delete", True),
    "delete_unchanged": ("delete", True),
}


@pytest.mark.parametrize("call", sorted(_REQUESTS))
def test_every_request_is_bounded_by_the_request_timeout(call: str) -> None:
    """B03-B09, B15, B39, B40: a request of the store (held, never answered) not bounded by
    ``request_timeout``, or its timeout not saying a write may be in flight. Each is held 60 s;
    the test waits 20 s at most (0.05 s when bounded)."""
    operation, write = _REQUESTS[call]
    inner = MemoryStore(f"h240-{uuid.uuid4().hex}")
    store = faults.HoldEvery(inner, operation, "", timeout=60.0)
    store.request_timeout = 0.05
    requests: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: store.get("k"),
        "head": lambda: store.head("k"),
        "put": lambda: store.put("k", b"y"),
        "list": lambda: store.list(""),
        "delete": lambda: store.delete("k"),
        "delete_many": lambda: store.delete_many(["k"]),
        "delete_unchanged": lambda: store.delete_unchanged({"k": "1"}),
    }

    async def run() -> None:
        await inner.put("k", b"x")
        with pytest.raises(StorageTimeoutError) as info:
            await asyncio.wait_for(requests[call](), 20)
        assert info.value.write_in_flight is write
        assert "Settings.timeout" in str(info.value)
        assert (await inner.get("k")).data == b"x"  # (held before it was sent)

    asyncio.run(run())
    assert store.held.is_set()


class _CancelledIntoItsOwnTimeout(MemoryStore):
    """A get whose client, cancelled when the request's time is up, raises its own timeout."""

    async def _get(self, key: str) -> Blob:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise StorageTimeoutError("the client's own timeout", key) from None
        raise AssertionError("never answered")


def test_a_request_whose_time_ran_out_is_told_as_such_whatever_its_client_raised() -> None:
    """B13: once this request's own time ran out, a timeout its client raised on being
    cancelled went up as it was (not counted, not saying which limit to raise)."""
    store = _CancelledIntoItsOwnTimeout(f"h240-{uuid.uuid4().hex}")
    store.request_timeout = 0.05

    async def run() -> None:
        with pytest.raises(StorageTimeoutError, match=r"Settings\.timeout"):
            await asyncio.wait_for(store.get("k"), 20)

    asyncio.run(run())


def test_failures_older_than_the_operations_time_are_not_told_for_it() -> None:
    """B20, B21: a failure of the operation's own requests, or of the store's others, from
    before the operation's ``within`` seconds told as having met it."""
    store = MemoryStore(f"h240-{uuid.uuid4().hex}")
    operation = OperationTrouble()
    long_ago = time.monotonic() - 100
    operation.last = (long_ago, "its own, long ago")
    assert store.trouble_meanwhile(10.0, operation) is None
    store._failed_lately = (long_ago, "another's, long ago")
    assert store.trouble_meanwhile(10.0, operation) is None
    assert store.trouble_meanwhile(10.0) is None
    told = store.trouble_meanwhile(1000.0, operation)
    assert told is not None and "its own, long ago" in told


class _ReadsBeforeDeleting(MemoryStore):
    """A store whose server ignores a delete's condition: the base's default reads first."""

    conditional_deletes = False
    _delete_unchanged = ObjectStore._delete_unchanged


def test_the_default_conditional_delete_reads_the_version_counted_then_deletes_only_that() -> None:
    """B29: the version read before a delete not counted as a head; B30: not compared (an
    object written again since deleted)."""
    store = _ReadsBeforeDeleting(f"h240-{uuid.uuid4().hex}")

    async def run() -> None:
        old = await store.put("a", b"0")
        await store.put("a", b"again")
        kept = dict(store.requests.snapshot())
        await store.delete_unchanged({"a": old})
        assert await store.list("") == ["a"]
        assert store.requests["head"] - kept.get("head", 0) == 1
        await store.delete_unchanged({"a": await store.head("a") or ""})
        assert await store.list("") == []

    asyncio.run(run())


class _OneDeleteFails(MemoryStore):
    """Deletes three keys a request by the base's defaults (a delete per key, gathered): the
    key "bad" fails at once, "slow" lands a few turns of the loop later."""

    delete_batch = 3

    async def _delete(self, key: str) -> None:
        await self._fail_or_wait(key)
        await super()._delete(key)

    async def _delete_unchanged(self, key: str, version: str) -> None:
        await self._fail_or_wait(key)
        await super()._delete_unchanged(key, version)

    async def _fail_or_wait(self, key: str) -> None:
        if key == "bad":
            raise RetryableStorageError("injected", key)
        if key == "slow":
            for _ in range(5):
                await asyncio.sleep(0)


@pytest.mark.parametrize("call", ["delete_many", "delete_unchanged"])
def test_a_failed_delete_of_a_batch_is_raised_once_the_others_finished(call: str) -> None:
    """B31, B32: the error of one key of a batch swallowed by the defaults; B36: raised while
    another key's delete was still under way."""
    store = _OneDeleteFails(f"h240-{uuid.uuid4().hex}")

    async def run() -> None:
        versions = {key: await store.put(key, b"x") for key in ("bad", "slow", "c")}
        with pytest.raises(RetryableStorageError):
            if call == "delete_many":
                await store.delete_many(versions)
            else:
                await store.delete_unchanged(versions)
        assert await store.list("") == ["bad"]

    asyncio.run(run())


def test_a_key_named_twice_in_delete_many_is_deleted_by_one_request() -> None:
    """B26: a key named twice sent twice."""
    store = MemoryStore(f"h240-{uuid.uuid4().hex}")

    async def run() -> None:
        await store.put("a", b"x")
        await store.delete_many(["a", "a"])

    asyncio.run(run())
    assert store.requests["delete"] == 1


def test_a_listing_of_many_pages_or_of_a_full_page_is_not_one_moment() -> None:
    """B33: a listing that took two pages taken for one moment; B34: a plain listing as long as
    one page (more may have followed) taken for one."""
    store = MemoryStore(f"h240-{uuid.uuid4().hex}")
    assert store.listed_at_one_moment("", Listing(["a"], 1))
    assert not store.listed_at_one_moment("", Listing(["a"], 2))
    store.snapshot_list_keys = 2
    assert store.listed_at_one_moment("", ["a"])
    assert not store.listed_at_one_moment("", ["a", "b"])


def test_a_store_with_a_request_wrapped_on_the_instance_is_not_inline() -> None:
    """B35: a request wrapped on the instance (a request tracer) bypassed by the synchronous
    path; M12: a subclass overriding one bypassed too."""
    store = MemoryStore(f"h240-{uuid.uuid4().hex}")
    assert store.inline
    store.put = store.put  # type: ignore[method-assign]
    assert not store.inline
    assert not _ReadsBeforeDeleting(f"h240-{uuid.uuid4().hex}").inline


def test_the_memory_stores_synchronous_requests_are_counted_as_the_others() -> None:
    """M08, M10, M11: put_now, get_now or list_now not counted (the runtime's hot paths use
    them: a trace of a call's requests missed them)."""
    store = MemoryStore(f"h240-{uuid.uuid4().hex}")
    store.put_now("a", b"x")
    assert store.get_now("a").data == b"x"
    assert store.list_now("") == ["a"]
    assert store.requests.snapshot() == {"put": 1, "get": 1, "list": 1}


# -- sub-tasks ----------------------------------------------------------------------------------
def _double(x: int) -> int:
    return 2 * x


def test_a_subtask_is_checked_when_made_and_options_replace_what_they_name() -> None:
    """S12, S14: ``options`` ignoring the retries or the executor it names; S13, S17: a
    ``max_retries`` of another type or a function that is no callable accepted."""
    task = vc.subtask(_double)
    other = task.options(executor="process", max_retries=2)
    assert (other.executor, other.max_retries) == ("process", 2)
    assert (task.options().executor, task.options().max_retries) == (None, 0)
    with pytest.raises(ValueError, match="max_retries"):
        vc.subtask(_double, max_retries=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        vc.subtask(42)  # type: ignore[arg-type]


@pytest.mark.usefixtures("runtime_off")
def test_children_launched_on_the_io_loop_are_refused() -> None:
    """S01: children launched on the IO loop (which they would block) accepted."""
    vc.init(f"memory://h240-{uuid.uuid4().hex}")

    async def launch() -> int:
        return vc.subtask(_double).run(1)

    with pytest.raises(RuntimeError, match="launch them from a method"):
        _sync.submit(launch()).result(20)


def test_a_wiped_memory_space_is_empty_for_the_next_store_of_its_name() -> None:
    """M16: ``MemoryStore.wipe`` forgot nothing (tests that wipe their space between runs
    read the last run's objects)."""
    name = f"h240-{uuid.uuid4().hex}"
    MemoryStore(name).put_now("a", b"x")
    MemoryStore.wipe(name)
    assert MemoryStore(name).list_now("") == []


@vc.virtual_actor
class _ReadsWithChildren:
    @vc.virtual_actor.readonly
    def doubled(self, n: int) -> list[int]:
        return vc.subtask(_double).map(range(n))


@pytest.mark.usefixtures("runtime_off")
def test_children_of_a_read_only_method_leave_no_checkpoint() -> None:
    """S02: a read-only method's children memoized (checkpoints written for a call that never
    commits)."""
    vc.init(f"memory://h240-{uuid.uuid4().hex}")
    assert _ReadsWithChildren.get_or_create("a").doubled.run(3) == [0, 2, 4]
    keys = _sync.sync(get_runtime().store.list(""))
    assert keys and not [k for k in keys if "/tasks/" in k], keys

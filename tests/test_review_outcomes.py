"""Outcomes of posted calls (parts ``outcomes`` / ``posted``), from a hostile review (review-h13):
each test failed on the code it was written against."""

from __future__ import annotations

import pickle
import struct
import sys
import time
import tracemalloc
import types
import uuid

import cloudpickle
import pytest
from actors import OrderLog
from test_review_posting import _fold_with_a_result_this_process_cannot_load

import vactor_cloud as vc
from vactor_cloud.batch import PendingCall
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallPendingError, CommitOutcomeUnknownError, IntegrityError
from vactor_cloud.log import OUTCOMES_MAGIC
from vactor_cloud.poster import Posted
from vactor_cloud.posting import Post, decode_outcomes, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _entry(call_id: bytes, ok: int, value: bytes) -> bytes:
    return struct.pack(">I", len(call_id)) + call_id + bytes([ok]) + struct.pack(">Q", len(value)) + value


_ONE = pickle.dumps(1)
_MALFORMED = {
    "truncated": encode_outcomes({"a": Outcome(True, 1), "b": Outcome(True, 2)})[:-3],
    "no count": OUTCOMES_MAGIC + b"\x00\x00",
    "huge count": OUTCOMES_MAGIC + struct.pack(">I", 2**32 - 1) + _entry(b"a", 1, _ONE),
    "huge id length": OUTCOMES_MAGIC + struct.pack(">I", 1) + struct.pack(">I", 2**32 - 1) + b"a",
    "huge value length": OUTCOMES_MAGIC
    + struct.pack(">I", 1)
    + struct.pack(">I", 1)
    + b"a\x01"
    + struct.pack(">Q", 2**64 - 1)
    + _ONE,
    "ok byte 2": OUTCOMES_MAGIC + struct.pack(">I", 1) + _entry(b"a", 2, _ONE),
    "same id twice": OUTCOMES_MAGIC + struct.pack(">I", 2) + _entry(b"a", 1, _ONE) * 2,
    "id not utf-8": OUTCOMES_MAGIC + struct.pack(">I", 1) + _entry(b"\xff\xfe", 1, _ONE),
    "trailing bytes": encode_outcomes({"a": Outcome(True, 1)}) + b"\x00",
    "one pickle, not a dict": pickle.dumps([("a", (True, 1))]),
    "one pickle, rows not pairs": pickle.dumps({"a": (True, 1, 2)}),
    "one pickle, id not text": pickle.dumps({1: (True, 1)}),
    "one pickle, cut short": pickle.dumps({"a": (True, 1)})[:-4],
    "one pickle, not a pickle": b"\x80\x05garbage",
}


@pytest.mark.parametrize("name", list(_MALFORMED))
def test_malformed_outcomes_are_an_integrity_error_at_once(name: str) -> None:
    """Malformed bytes in a step's outcomes (either encoding) must say IntegrityError, as for any
    stored object that is not what it should be: they raised ValueError, struct.error,
    AttributeError or UnpicklingError, which reached ``call_outcome``'s caller raw. Huge count
    and length fields must not make the reader hang or allocate: what it allocates is measured
    (it was timed, under 1 s, which a loaded host's scheduling could fail; a reader that
    allocated what a huge field says would fail either way). A hang meets the bound below."""
    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            outcomes = decode_outcomes(_MALFORMED[name])
            for call_id in outcomes:
                outcomes[call_id]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"decoding {len(_MALFORMED[name])} bytes allocated {peak} bytes"
    assert time.monotonic() - started < 60  # a hang guard


def test_a_value_that_is_no_pickle_is_an_integrity_error_of_that_call_alone() -> None:
    """Each outcome is read when it is looked up: bytes that are no pickle fail that lookup
    (IntegrityError), never another call's, and never pass for "no outcome for this call"
    (a KeyError out of the unpickling made ``get`` answer None)."""

    class Raises:
        def __reduce__(self) -> tuple[object, ...]:
            return (dict.__getitem__, ({}, "missing"))  # unpickling raises KeyError

    data = (
        OUTCOMES_MAGIC
        + struct.pack(">I", 3)
        + _entry(b"bad", 1, b"\x80\x05garbage")
        + _entry(b"key", 1, bytes(cloudpickle.dumps(Raises())))
        + _entry(b"good", 1, _ONE)
    )
    outcomes = decode_outcomes(data)
    assert outcomes["good"] == Outcome(True, 1)
    with pytest.raises(IntegrityError):
        outcomes["bad"]
    with pytest.raises(IntegrityError):
        outcomes.get("key")


@pytest.mark.usefixtures("runtime_off")
def test_an_outcome_of_ours_that_does_not_load_fails_that_call_alone_not_its_batch(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post may carry several of our calls. When the outcome of one does not load here (its
    class is not in this process), the others' callers must still get their own results: a
    poster loaded every outcome of its batch before delivering any, and the one that did not
    load ended the whole batch with ``CallPendingError`` (the others' results lost to their
    callers though they loaded). Now that call alone ends so (its cause the load error, and
    ``call_outcome`` can tell later); the others get their own outcomes."""
    store_spec.init(settings=vc.Settings(storage="", combine_after=1, combine_window=60.0))
    OrderLog.get_or_create("a").add.run("me/0")
    core = vc.get_runtime().core("a")
    record = core.record
    assert record is not None
    module = types.ModuleType("review_h13_only_in_the_other_service")
    exec("class Receipt:\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ids = [uuid.uuid4().hex for _ in range(4)]
    data = encode_outcomes(
        {
            ids[0]: Outcome(True, "mine"),
            ids[1]: Outcome(True, module.Receipt()),
            ids[2]: Outcome(False, ValueError("raised")),
        }
    )
    del sys.modules[module.__name__]
    raw = decode_outcomes(data)
    assert list(raw) == ids[:3]
    batch = [PendingCall("add", (), {}, False, vc.ActorFuture(), call_id) for call_id in ids]
    post = Post("actors/a/mail/x", "0" * 16, 0, time.time(), ())
    posted = Posted(post, record.step)
    core._deliver_posted(posted, batch, record, raw)
    assert batch[0].future.result(timeout=1) == "mine"
    with pytest.raises(CallPendingError) as pending:
        batch[1].future.result(timeout=1)
    assert isinstance(pending.value.__cause__, ModuleNotFoundError)
    assert pending.value.call_ids == [ids[1]]
    with pytest.raises(ValueError, match="raised"):
        batch[2].future.result(timeout=1)
    with pytest.raises(CommitOutcomeUnknownError):
        batch[3].future.result(timeout=1)


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_of_a_step_whose_outcomes_are_malformed_raises_integrity_error(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step whose ``outcomes`` part has its magic but not its layout (here a byte too many):
    ``call_outcome`` raised ``ValueError("outcomes: trailing bytes")``; the poster, still not a
    raw error, ``CallPendingError`` (the step may be read again; it stays malformed)."""
    log, ids = _fold_with_a_result_this_process_cannot_load(
        store_spec, monkeypatch, unloadable=None, encode=lambda o: encode_outcomes(o) + b"\x00"
    )
    with pytest.raises(CallPendingError):
        log.add.run("me/1")
    with pytest.raises(IntegrityError):
        vc.get_actor("a").call_outcome(ids["ours"])

"""An actor deleted while another process holds its folder lease and keeps folding (review h129).

Process A holds the folder lease and serves (folds process B's posts while its own callers are
quiet); B calls all the time, contended (each call posted, folded by A); process C deletes the
actor meanwhile. Every call B was told applied is in the state the tombstone ends; every call B
was told "deleted" is in no step; no step after the first tombstone applies a call; nothing
hangs; and the id made again works from A and B.
"""

from __future__ import annotations

import threading
import time

from delete_helpers import newest, steps, tombstones
from store_helpers import init, other_process
from test_combining import commit_behind_its_back
from test_delete_actor import Account, call_on

from vactor_cloud import _sync
from vactor_cloud.deletion import delete, is_deleted
from vactor_cloud.errors import ActorDeletedError
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0


def test_a_delete_while_another_process_folds_applies_nothing_after_it_and_nothing_hangs(
    spec: StoreSpec,
) -> None:
    # (lease_seconds at its default, 2 s: the holder learns of the deleter's take-over at its
    # next renewal, past half the lease, and until then its folds win every race; with 30 s
    # the delete took 16 s in 2 runs of 12, with 2 s it takes up to about 1 s)
    settings = {"combine_after": 1, "combine_window": 60.0}
    runtime = init(spec, **settings)
    Account.get_or_create("d").add.run("a/0")
    commit_behind_its_back("d")
    assert Account.get_or_create("d").add.run("a/1") > 0  # lost: took the lease and folded
    assert runtime.core("d")._holding()
    poster = other_process(spec, **settings)
    deleter = other_process(spec)
    acked: list[str] = []
    deleted: list[str] = []
    failures: list[BaseException] = []

    def call_from_b() -> None:
        until = time.monotonic() + HANG
        i = 0
        while time.monotonic() < until:
            token = f"b/{i}"
            i += 1
            try:
                call_on(poster, "d", "add", token)
            except ActorDeletedError:
                deleted.append(token)
                return
            except BaseException as exc:
                failures.append(exc)
                return
            acked.append(token)
            time.sleep(0.005)  # (a caller's pace: thousands of steps while the delete goes through)

    b = threading.Thread(target=call_from_b)
    b.start()
    try:
        until = time.monotonic() + HANG
        while len(acked) < 3 and b.is_alive() and time.monotonic() < until:
            time.sleep(0.01)
        assert len(acked) >= 3, (acked, failures)
        tombstone = _sync.sync(delete(deleter.log("d"), deleter.settings, keep=deleter.keep), HANG)
        assert tombstone is not None
        b.join(HANG)
        assert not b.is_alive(), "B's call hung after the delete"
    finally:
        b.join(HANG)
        deleter.close()
    assert not failures, failures
    assert deleted, "B's call after the delete was not told deleted"
    first = tombstones(runtime, "d")[0]
    assert first == tombstone.step
    log = runtime.log("d")
    before = _sync.sync(log.read_step(first - 1))
    assert before is not None and not is_deleted(before)
    state = pickle_state(before)
    assert [t for t in state if t.startswith("b/")] == acked
    assert not set(deleted) & set(state)
    for step in steps(runtime, "d"):
        if step > first:
            record = _sync.sync(log.read_step(step))
            assert record is not None and is_deleted(record), step
    # A's cache may hold the old actor (warm: get_or_create makes no request): then its next
    # call reads the tombstone and fails (docs/concepts.md), and get_or_create again makes the
    # actor. (A fold of A's on the tombstone, when it made one, taught it already.)
    try:
        first_call = Account.get_or_create("d").add.run("new/a")
    except ActorDeletedError:
        first_call = Account.get_or_create("d").add.run("new/a")
    assert first_call == 1
    fresh = Account.get_or_create("d")
    assert call_on(poster, "d", "add", "new/b") == 2
    assert fresh.applied.run() == ["new/a", "new/b"]
    assert not is_deleted(newest(runtime, "d"))
    poster.close()


def pickle_state(record: object) -> list[str]:
    """The tokens of the ``Account`` state a step holds."""
    import pickle

    state = pickle.loads(record.state)  # type: ignore[attr-defined]
    tokens = state["tokens"] if isinstance(state, dict) else state.tokens
    return list(tokens)

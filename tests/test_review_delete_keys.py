"""A delete retried after an unknown outcome, from another process or after a compaction, must
not delete the actor created since: the delete's key (``delete_actor(id, idempotency_key=...)``,
or the one the library chose and ``CommitOutcomeUnknownError`` names) is recorded by the
tombstone and carried into the next actors under the id, a bounded window of them.

Runtimes started one after another on one store stand in for processes: the one whose delete
met the unknown outcome is shut down (a serverless function that died) before another creates
the actor again, and a third, fresh, retries the delete."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from cli_harness import Vactor
from delete_helpers import steps, tombstones
from store_helpers import init, other_process
from test_delete_faults import TombstoneAnswerLost
from test_review_delete_races import foreign_post

import vactor_cloud as vc
from vactor_cloud import _sync, deletion
from vactor_cloud.cli import EXIT_OK
from vactor_cloud.compaction import compact
from vactor_cloud.errors import RetryableStorageError, StorageTimeoutError
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    def arm(self, key: str, after: float) -> None:
        vc.current_call().schedule("add", after=after, key=key, args=(key,))

    @vc.virtual_actor.readonly
    def seen(self) -> list[str]:
        return list(self.tokens)


class TombstoneNeverLanded(FaultyStore):
    """Every step put is dropped (it never lands) and reported as an answer lost, and every read
    of a step after the first such put fails: the delete cannot learn that its tombstone is not
    there."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, FaultConfig())
        self.tripped = False

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if "/steps/" not in key:
            return await run()
        if operation == "put":
            self.tripped = True
            raise StorageTimeoutError(f"{key}: put got no answer (injected)", key, write_in_flight=True)
        if operation == "get" and self.tripped:
            raise RetryableStorageError(f"{key}: get failed (injected)", key)
        return await run()


def _delete_in_doubt(spec: StoreSpec, actor_id: str, fault: type[FaultyStore], **kwargs: Any) -> Any:
    """Create ``actor_id`` (one call), then delete it from a runtime whose store ``fault`` wraps:
    ``CommitOutcomeUnknownError``, returned. That runtime is shut down (its process died)."""
    init(spec)
    assert Tally.get_or_create(actor_id).add.run("old/0") == 1
    vc.shutdown()
    runtime = init(spec)
    runtime.store = fault(runtime.store)
    with pytest.raises(vc.CommitOutcomeUnknownError) as unknown:
        vc.delete_actor(actor_id, **kwargs)
    vc.shutdown()
    return unknown.value


def _create_again(spec: StoreSpec, actor_id: str, token: str = "new/0") -> None:
    """Another process creates the actor again and has a call acknowledged."""
    init(spec)
    assert Tally.get_or_create(actor_id).add.run(token) == 1
    vc.shutdown()


def test_a_retry_from_another_process_with_the_key_leaves_the_actor_created_since(spec: StoreSpec) -> None:
    """The tombstone landed, its answer was lost; another process created the actor again and a
    call on it was acknowledged; a third process retried the delete as the error said. Before,
    that retry deleted the new actor and its acknowledged call (nothing told it the first delete
    had landed). With the key the error names, it says False and the new actor stays."""
    unknown = _delete_in_doubt(spec, "tally-1", TombstoneAnswerLost)
    key = unknown.idempotency_key
    assert key and f"idempotency_key={key!r}" in str(unknown)
    assert pickle.loads(pickle.dumps(unknown)).idempotency_key == key  # (it crosses processes)
    _create_again(spec, "tally-1")
    runtime = init(spec)
    assert vc.delete_actor("tally-1", idempotency_key=key) is False
    assert tombstones(runtime, "tally-1") == [2]
    assert vc.get_actor("tally-1").add.run("new/1") == 2
    assert vc.get_actor("tally-1").seen.run() == ["new/0", "new/1"]


def test_a_retry_with_the_key_finishes_the_clean_up_the_delete_in_doubt_never_ran(spec: StoreSpec) -> None:
    """The delete in doubt ended before its clean-up: the old actor's timer stayed in the due
    index (``vactor timers ls`` listed it). The retry with the key, finding the actor made
    since, deletes it, as a delete finding the tombstone does; the new actor's own stays."""
    init(spec)
    Tally.get_or_create("tally-10").arm.run("old", 3600)
    vc.shutdown()
    runtime = init(spec)
    runtime.store = TombstoneAnswerLost(runtime.store)
    with pytest.raises(vc.CommitOutcomeUnknownError) as unknown:
        vc.delete_actor("tally-10")
    vc.shutdown()
    init(spec)
    Tally.get_or_create("tally-10").arm.run("new", 7200)
    vc.shutdown()
    runtime = init(spec)

    def due() -> list[str]:
        return sorted(e.key for e in _sync.sync(list_index(runtime.store)) if e.actor_id == "tally-10")

    assert due() == ["new", "old"]
    assert vc.delete_actor("tally-10", idempotency_key=unknown.value.idempotency_key) is False
    assert due() == ["new"]


def test_a_retry_with_the_key_after_a_compaction_leaves_the_actor_created_since(spec: StoreSpec) -> None:
    """As above, the new actor compacted to its newest step first (the tombstone and the old
    actor's steps deleted): the key is carried by the new actor's steps, not read from the
    tombstone. Before, nothing was left to tell, and the retry deleted the new actor."""
    unknown = _delete_in_doubt(spec, "tally-2", TombstoneAnswerLost, idempotency_key="drop-tally-2")
    assert unknown.idempotency_key == "drop-tally-2"
    _create_again(spec, "tally-2")
    runtime = init(spec, fresh_window=0.0)
    vc.get_actor("tally-2").compact(keep_last=1, min_age=0)
    assert steps(runtime, "tally-2") == [4] and tombstones(runtime, "tally-2") == []
    vc.shutdown()
    runtime = init(spec)
    assert vc.delete_actor("tally-2", idempotency_key="drop-tally-2") is False
    assert tombstones(runtime, "tally-2") == []
    assert vc.get_actor("tally-2").seen.run() == ["new/0"]


def test_a_retry_with_the_key_deletes_when_the_first_tombstone_never_landed(spec: StoreSpec) -> None:
    """The tombstone put was lost on its way: the retry with the key commits one (True)."""
    unknown = _delete_in_doubt(spec, "tally-3", TombstoneNeverLanded)
    assert tombstones(init(spec), "tally-3") == []
    vc.shutdown()
    runtime = init(spec)
    assert vc.delete_actor("tally-3", idempotency_key=unknown.idempotency_key) is True
    assert tombstones(runtime, "tally-3") == [2]
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("tally-3")


def test_a_delete_with_another_key_of_an_actor_deleted_already_says_false(spec: StoreSpec) -> None:
    """Deleted by one key, a delete by another finds the tombstone: False, nothing written."""
    runtime = init(spec)
    Tally.get_or_create("tally-4").add.run("a")
    assert vc.delete_actor("tally-4", idempotency_key="k1") is True
    assert vc.delete_actor("tally-4", idempotency_key="k2") is False
    assert vc.delete_actor("tally-4") is False
    assert tombstones(runtime, "tally-4") == [2]


def test_the_same_process_retrying_without_a_key_after_a_compaction_says_false(spec: StoreSpec) -> None:
    """The process whose delete met the unknown outcome retries without a key, after another
    process created the actor again and compacted it: the retry reuses the key of the delete
    in doubt. Before, it remembered the tombstone's step number, which the compaction had
    deleted: the retry deleted the new actor (True)."""
    init(spec)
    Tally.get_or_create("tally-5").add.run("old/0")
    vc.shutdown()
    runtime = init(spec)
    store = TombstoneAnswerLost(runtime.store)
    runtime.store = store
    with pytest.raises(vc.CommitOutcomeUnknownError):
        vc.delete_actor("tally-5")
    store.healed = True
    other = other_process(spec)
    try:
        other.create(Tally.definition, "tally-5", (), {})
        _sync.sync(compact(other.log("tally-5"), keep_last=1, min_age=0, fresh_window=0.0))
    finally:
        other.close()
    assert tombstones(runtime, "tally-5") == []
    assert vc.delete_actor("tally-5") is False
    assert steps(runtime, "tally-5") == [3]


def test_a_late_retry_with_the_key_after_a_chain_of_deletes_says_false(spec: StoreSpec) -> None:
    """Deleted by k1, created again, deleted by k2, created again: a late retry by k1 (or by k2)
    says False, and the newest actor stays."""
    runtime = init(spec, fresh_window=0.0)
    Tally.get_or_create("tally-6").add.run("a")
    assert vc.delete_actor("tally-6", idempotency_key="k1") is True
    Tally.get_or_create("tally-6").add.run("b")
    assert vc.delete_actor("tally-6", idempotency_key="k2") is True
    Tally.get_or_create("tally-6").add.run("c")
    vc.get_actor("tally-6").compact(keep_last=1, min_age=0)
    assert vc.delete_actor("tally-6", idempotency_key="k1") is False
    assert vc.delete_actor("tally-6", idempotency_key="k2") is False
    assert vc.get_actor("tally-6").seen.run() == ["c"]
    assert tombstones(runtime, "tally-6") == []


def test_a_retry_with_a_key_older_than_the_window_deletes_the_newest_actor(spec: StoreSpec) -> None:
    """The id keeps the keys of its last ``DELETE_KEY_WINDOW`` deletes: with one fewer deletes
    after it, a key is still known (False); once that many committed after it, a retry with
    it deletes the actor now under the id (documented)."""
    init(spec)
    window = deletion.DELETE_KEY_WINDOW
    assert window == 8  # (what docs/protocol.md, docs/concepts.md and delete_actor's docstring say)

    def create_and_delete(key: str) -> None:
        Tally.get_or_create("tally-7").add.run(key)
        assert vc.delete_actor("tally-7", idempotency_key=key) is True

    create_and_delete("k0")
    for n in range(1, window):
        create_and_delete(f"k{n}")
    Tally.get_or_create("tally-7").add.run("live")
    assert vc.delete_actor("tally-7", idempotency_key="k0") is False
    assert vc.delete_actor("tally-7", idempotency_key=f"k{window}") is True
    Tally.get_or_create("tally-7").add.run("last")
    assert vc.delete_actor("tally-7", idempotency_key="k1") is False
    assert vc.delete_actor("tally-7", idempotency_key="k0") is True


def test_a_process_that_creates_the_actor_again_after_its_delete_in_doubt_deletes_that_one(
    spec: StoreSpec,
) -> None:
    """This process's delete was left in doubt (its tombstone landed), then this process created
    the actor again: its next delete without a key means the actor it made, and deletes it. (The
    key of the delete in doubt, which a keyless delete here reuses, was kept until a delete
    returned: that delete said False and left the actor, as the step number remembered before
    did.)"""
    init(spec)
    Tally.get_or_create("tally-8").add.run("old/0")
    vc.shutdown()
    runtime = init(spec)
    store = TombstoneAnswerLost(runtime.store)
    runtime.store = store
    with pytest.raises(vc.CommitOutcomeUnknownError):
        vc.delete_actor("tally-8")
    store.healed = True
    assert Tally.get_or_create("tally-8").add.run("new/0") == 1
    assert vc.delete_actor("tally-8") is True
    assert tombstones(runtime, "tally-8") == [2, 5]


def test_vactor_delete_with_the_key_of_a_delete_that_committed_leaves_the_actor_created_since(
    vactor: Vactor, store: str
) -> None:
    """The error's message names ``vactor delete ID --idempotency-key K`` for a retry from the
    command line: with the key of a delete that committed, the actor made since stays."""
    vc.init(store)
    try:
        Tally.get_or_create("tally-9").add.run("old/0")
        assert vc.delete_actor("tally-9", idempotency_key="drop-9") is True
        Tally.get_or_create("tally-9").add.run("new/0")
    finally:
        vc.shutdown()
    again = vactor("--json", "delete", "tally-9", "--yes", "--idempotency-key", "drop-9")
    assert again.code == EXIT_OK, again.err
    assert '"already_deleted": true' in again.out
    said = vactor("delete", "tally-9", "--yes", "--idempotency-key", "drop-9")
    assert "was deleted already by the delete with this key" in said.out
    assert "left as it is" in said.out
    vc.init(store)
    assert vc.get_actor("tally-9").seen.run() == ["new/0"]
    vc.shutdown()
    done = vactor("delete", "tally-9", "--yes", "--idempotency-key", "drop-9b")
    assert done.code == EXIT_OK and "deleted actor 'tally-9'" in done.out


def test_vactor_delete_with_the_key_of_a_committed_delete_asks_no_confirmation_and_names_no_actor(
    vactor: Vactor, store: str
) -> None:
    """A retry of a delete that committed deletes nothing: ``vactor delete`` with its key asked
    to confirm deleting the actor created since, naming it ("Delete actor 'tally-12' (Tally,
    newest step 3)?"), and without ``--yes`` on a pipe refused to go on at all. It now says the
    delete with the key was done, and that the actor made since is left as it is."""
    vc.init(store)
    try:
        Tally.get_or_create("tally-12").add.run("old/0")
        assert vc.delete_actor("tally-12", idempotency_key="drop-12") is True
        Tally.get_or_create("tally-12").add.run("new/0")
    finally:
        vc.shutdown()
    said = vactor("delete", "tally-12", "--idempotency-key", "drop-12")  # (stdin: no terminal)
    assert said.code == EXIT_OK, said.err
    assert "was deleted already by the delete with this key" in said.out
    vc.init(store)
    assert vc.get_actor("tally-12").seen.run() == ["new/0"]
    vc.shutdown()
    refused = vactor("delete", "tally-12", "--idempotency-key", "drop-12b")  # another key: asks
    assert refused.code != EXIT_OK and "--yes" in refused.err


def test_the_async_twin_takes_the_key_and_refuses_a_bad_one(spec: StoreSpec) -> None:
    """``delete_actor_async`` with the key of a delete that committed says False and leaves the
    actor made since; a key that is no key is refused before anything is sent."""
    init(spec)
    Tally.get_or_create("tally-11").add.run("old/0")
    assert vc.delete_actor("tally-11", idempotency_key="k") is True
    Tally.get_or_create("tally-11").add.run("new/0")
    assert asyncio.run(vc.delete_actor_async("tally-11", idempotency_key="k")) is False
    with pytest.raises(ValueError, match="idempotency_key"):
        vc.delete_actor("tally-11", idempotency_key="")
    assert vc.get_actor("tally-11").seen.run() == ["new/0"]


def test_steps_without_delete_keys_or_with_a_damaged_list_read_as_recording_none() -> None:
    """Steps written before delete keys have none; a value of another shape records none, and
    an entry that is no digest string is passed over (a retry then deletes, as documented)."""
    assert deletion.delete_keys({}) == []
    assert deletion.delete_keys({deletion.DELETE_KEYS: "0" * 32}) == []
    digest = deletion.key_digest("k")
    assert deletion.delete_keys({deletion.DELETE_KEYS: [7, None, digest]}) == [digest]
    assert len(digest) == 32 and digest == hashlib.sha256(b"k").hexdigest()[:32]


def test_the_key_is_carried_through_folds_on_the_tombstone_and_on_the_actor_made_since(
    spec: StoreSpec,
) -> None:
    """A fold on the tombstone (another tombstone) and a fold of a post on the actor made since
    copy the delete keys as a commit does: the retry with the key still says False."""
    runtime = init(spec)
    Tally.get_or_create("tally-12").add.run("a")
    assert vc.delete_actor("tally-12", idempotency_key="k") is True
    core = runtime.core("tally-12")
    foreign_post(runtime, "tally-12", "late/0")
    assert core._lease_for_fold()
    core._commit([])  # (a fold on the tombstone: another tombstone)
    assert tombstones(runtime, "tally-12") == [2, 3]
    Tally.get_or_create("tally-12")
    foreign_post(runtime, "tally-12", "posted/0")
    assert core._lease_for_fold()
    core._commit([])  # (a fold of the post on the new actor)
    assert vc.get_actor("tally-12").seen.run() == ["posted/0"]
    assert vc.delete_actor("tally-12", idempotency_key="k") is False
    assert vc.get_actor("tally-12").seen.run() == ["posted/0"]

"""A writer whose put loses to a forged step knows its calls were not applied where the store
can tell (review h116).

On a signed store a forger can take the next step number with an object of their own. A
writer whose cache holds the step before it sends its create, meets "already exists", and
cannot read the object there. On S3 and GCS that object may be its own put, retried by the
HTTP client after a lost answer (and damaged when read back): the outcome is unknown. On the
local and memory stores a create answered "already exists" wrote nothing
(``definite_create_conflicts``): the object was someone else's, and the calls were not
applied. That writer said ``CommitOutcomeUnknownError`` all the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from store_helpers import init, raw_get, raw_put

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.errors import CommitOutcomeUnknownError, IntegrityError, StorageError
from vactor_cloud.testing.lanes import StoreSpec

KEY = b"k" * 32


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


@pytest.fixture
def signed(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    init(store_spec, signing_key=KEY, fresh_window=600.0)  # (the cache is trusted: no re-read)
    yield store_spec
    vc.shutdown()


def _forge_next_step(actor_id: str) -> str:
    """An unsigned copy of step 1 at step 2 (what a forger without the key writes); its key."""
    log = vc.get_runtime().log(actor_id)
    source, target = log.step_key(1), log.step_key(2)
    env = codec.decode(source, raw_get(source), signing_key=KEY)
    raw_put(target, codec.encode(target, dict(env.meta), env.parts))
    return target


@pytest.mark.vactor_lanes("memory", "local")
def test_a_warm_writer_beaten_by_a_forged_step_says_not_applied_where_already_exists_is_definite(
    signed: StoreSpec,
) -> None:
    handle = Tally.get_or_create("squat")
    assert handle.add.run() == 1  # cached at step 1
    forged = _forge_next_step("squat")
    unknown = vc.stats()["outcome_unknown"]
    with pytest.raises(IntegrityError, match="not signed") as caught:  # (as a new process says)
        handle.add.run()
    assert caught.value.key == forged
    assert vc.stats()["outcome_unknown"] == unknown
    _sync.sync(vc.get_runtime().store.delete(forged))
    assert handle.count.run() == 1  # not applied


@pytest.mark.vactor_lanes("moto")
def test_a_warm_writer_beaten_by_a_forged_step_on_s3_leaves_the_outcome_open(signed: StoreSpec) -> None:
    """There "already exists" may answer the client's own retry of our put: not known."""
    handle = Tally.get_or_create("squat")
    assert handle.add.run() == 1
    forged = _forge_next_step("squat")
    with pytest.raises(CommitOutcomeUnknownError, match="not signed") as caught:
        handle.add.run()
    assert forged in str(caught.value)


@pytest.mark.vactor_lanes("memory", "local")
def test_a_first_put_that_failed_then_met_an_unreadable_step_leaves_the_outcome_open(
    signed: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where "already exists" is definite, it proves only that *that* request wrote nothing: a
    first create that failed (a timeout, a lost answer) may have written the object a retry then
    meets and cannot read. Its calls may be applied: ``CommitOutcomeUnknownError``, never the
    "not applied" of a forged step (``ForeignStepError``)."""
    handle = Tally.get_or_create("own")
    assert handle.add.run() == 1  # cached at step 1
    store = vc.get_runtime().store
    target = vc.get_runtime().log("own").step_key(2)
    calls: list[str] = []
    put_now = store.put_now  # (the warm commit's first create, on the calling thread)

    def failing_first(key: str, data: bytes, **options: object) -> object:
        calls.append(key)
        if key == target:  # (landed, and damaged: an unsigned copy; then the answer fails)
            _forge_next_step("own")
            raise StorageError(f"{key}: the connection was reset (injected)", key)
        return put_now(key, data, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put_now", failing_first)
    with pytest.raises(CommitOutcomeUnknownError, match="may or may not have been applied"):
        handle.add.run()
    assert calls == [target]

"""A hostile review of the commit path and exactly-once (review-h46): each test failed on the
code it was written against, unless its docstring says it guards behaviour found sound.

What is attacked: a HEAD that names a compacted step number where an object still sits (a
stalled writer's late put, left by a crash), a class body missing from storage, and keyed
calls across an idempotency checkpoint rollover.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.compaction import compact
from vactor_cloud.runtime import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.init(store_spec.url, **store_spec.options)
    yield store_spec
    vc.shutdown()


def reopen(spec: StoreSpec) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url))


def _raw(key: str) -> bytes:
    return _sync.sync(vc.get_runtime().store.get(key)).data


def _put(key: str, data: bytes) -> None:
    _sync.sync(vc.get_runtime().store.put(key, data))


# -- HEAD naming a compacted step ------------------------------------------------------------
def test_a_head_naming_a_compacted_step_where_a_leftover_sits_loads_the_newest_step(
    spec: StoreSpec,
) -> None:
    """A stalled writer's late put re-creates a freed step number below the watermark; a
    crash before it deletes that object again leaves it there (the watermark says it is no
    step of the history). A HEAD naming that number (restored from a backup, or replayed:
    a signed HEAD of this very actor passes its HMAC) made a cold load take the leftover
    for the newest step: a reader got the old state, and a writer committed on top of it,
    one number past it (free, compacted), within ``fresh_window`` so with no watermark
    check: the caller was told its call committed while no reader ever saw it."""
    handle = Ledger.get_or_create("leftover")
    for _ in range(10):
        handle.add.run()
    log = vc.get_runtime().log("leftover")
    old_step = _raw(log.step_key(3))
    _sync.sync(vc.get_runtime().heads.flush())
    current_head = _raw(log.head_key)
    report = _sync.sync(compact(log, keep_last=2, min_age=0.0))
    assert report.watermark == 9
    _put(log.step_key(3), old_step)  # the leftover of a crashed late put
    # HEAD as it was at step 3 (restored, or replayed: signed, it passes the same key's HMAC)
    head = codec.decode(log.head_key, current_head, signing_key=None)
    stale = codec.encode(log.head_key, {**head.meta, "step": 3}, signing_key=None)
    _put(log.head_key, stale)

    reopen(spec)
    assert vc.get_actor("leftover").value.run() == 10
    reopen(spec)
    assert vc.get_actor("leftover").add.run() == 11
    reopen(spec)
    assert vc.get_actor("leftover").value.run() == 11
    log = vc.get_runtime().log("leftover")
    # committed as the step after the newest, not on the freed number past the leftover
    assert _sync.sync(log.read_step(11)) is not None
    assert _sync.sync(log.read_step(4)) is None

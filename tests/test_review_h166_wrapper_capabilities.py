"""Store wrappers follow what the wrapped store learns (review-h166).

The fault-injection and latency wrappers copied the wrapped store's ``conditional_deletes`` when
built. The S3 store turns it off at its first conditional delete when the endpoint ignores the
condition (``S3Store._conditions_honoured``): a wrapper built before then said True for ever,
and whoever asked it (the conformance suite's probe, a reader deciding whether a delete is
atomic) was told a compare-and-delete was atomic that was not. Each test failed before.
"""

from __future__ import annotations

import uuid

import pytest

from vactor_cloud._sync import sync
from vactor_cloud.storage import ObjectStore
from vactor_cloud.storage._memory import MemoryStore
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.latency import Latency, LatencyStore


class _LearnsConditionsIgnored(MemoryStore):
    """A store that finds out at its first conditional delete that the endpoint ignores the
    condition, as the S3 store's probe does against such an endpoint."""

    conditional_deletes = True

    async def _delete_unchanged(self, key: str, version: str) -> None:
        self.conditional_deletes = False
        await super()._delete_unchanged(key, version)


def _wrapped(kind: str, inner: ObjectStore) -> ObjectStore:
    return FaultyStore(inner, FaultConfig()) if kind == "faults" else LatencyStore(inner, Latency(0.0))


@pytest.mark.parametrize("kind", ["faults", "latency"])
def test_a_wrapper_says_what_its_store_learnt_after_it_was_built(kind: str) -> None:
    inner = _LearnsConditionsIgnored(f"h166-{uuid.uuid4().hex}")
    wrapper = _wrapped(kind, inner)
    assert wrapper.conditional_deletes is True

    async def delete_once() -> None:
        version = await wrapper.put("probe", b"x")
        await wrapper.delete_unchanged({"probe": version})

    sync(delete_once())
    assert inner.conditional_deletes is False
    assert wrapper.conditional_deletes is False

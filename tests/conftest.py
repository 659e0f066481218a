"""Fixtures of this suite. The store fixtures (``store_spec``, ``actor_store``, ...) come from the
vactor_cloud pytest plugin (entry point ``pytest11``), loaded because the package is installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import Lane, StoreSpec


@pytest.fixture
def shared(store_spec: StoreSpec, store_lane: Lane) -> Iterator[StoreSpec]:
    """``actor_store`` for tests where several OS processes share the store (skips memory)."""
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process")
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()

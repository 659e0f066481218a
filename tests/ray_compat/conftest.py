"""Ray's own virtual-actor tests, ported (issue #15): shared markers and the reasons tests are marked.

Each test says at its top what the port changed. The Ray cluster fixture
``workflow_start_regular`` (and its ``num_cpus`` parametrization) became the
shipped ``actor_store`` fixture: a fresh, empty store per test, on every lane.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vactor_cloud.testing.lanes import StoreSpec


def pytest_configure(config: pytest.Config) -> None:
    # Ray ran test_wf_in_actor_chain five times with pytest-repeat; this suite does not
    # depend on that plugin, so the marker is registered and the test runs once.
    config.addinivalue_line("markers", "repeat(n): pytest-repeat's marker (no-op here)")


@pytest.fixture
def ray_actor_store(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """Ray's ``workflow_start_regular`` where a test needs Ray's creation semantics: a fresh store
    whose ``get_or_create`` returns before ``__init__`` commits (``Settings(wait_for_init=False)``)."""
    import vactor_cloud

    store_spec.init(settings=vactor_cloud.Settings(wait_for_init=False))
    try:
        yield store_spec
    finally:
        vactor_cloud.shutdown()

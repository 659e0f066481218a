"""Ray's own virtual-actor tests, ported (issue #15): shared markers and the reasons tests are marked.

Each test says at its top what the port changed. The Ray cluster fixture
``workflow_start_regular`` (and its ``num_cpus`` parametrization) became the
shipped ``actor_store`` fixture: a fresh, empty store per test, on every lane.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Ray ran test_wf_in_actor_chain five times with pytest-repeat; this suite does not
    # depend on that plugin, so the marker is registered and the test runs once.
    config.addinivalue_line("markers", "repeat(n): pytest-repeat's marker (no-op here)")

"""Every backend lane runs the shipped conformance suite unchanged."""

from vactor_cloud.testing.store_conformance import StoreConformance


class TestStoreConformance(StoreConformance):
    """Inherits every test; the plugin runs each once per lane (``--lanes`` to restrict)."""

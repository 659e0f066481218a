"""What every testing wrapper of a store (injected faults, added latency) shares: the store it
forwards to, and the capabilities it follows rather than copies."""

from __future__ import annotations

from vactor_cloud.storage import ObjectStore


class ForwardingStore(ObjectStore):
    """A store that forwards its requests to ``inner``: its capabilities are ``inner``'s, copied
    when built (:meth:`ObjectStore.take_capabilities_of`), but for :attr:`conditional_deletes`,
    which a store may learn once built (the S3 store's first conditional delete may find the
    endpoint ignoring the condition): read from ``inner`` each time."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.take_capabilities_of(inner)

    @property
    def conditional_deletes(self) -> bool:
        """The wrapped store's, as it learns it (see ``take_capabilities_of``)."""
        return self.inner.conditional_deletes

    @conditional_deletes.setter
    def conditional_deletes(self, value: bool) -> None:
        self.inner.conditional_deletes = value

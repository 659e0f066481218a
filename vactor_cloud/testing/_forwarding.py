"""What every testing wrapper of a store (injected faults, added latency) shares: the store it
forwards to, and the capabilities it follows rather than copies."""

from __future__ import annotations

import builtins

from vactor_cloud.storage import Blob, ObjectStore, PutMode


class ForwardingStore(ObjectStore):
    """A store that forwards its requests to ``inner``: its capabilities are ``inner``'s, copied
    when built (:meth:`ObjectStore.take_capabilities_of`), but for :attr:`conditional_deletes`,
    which a store may learn once built (the S3 store's first conditional delete may find the
    endpoint ignoring the condition): read from ``inner`` each time.

    The five requests every store makes are forwarded as they are (a subclass overrides the
    ones it changes); the batched deletes fall back on them, as on any store."""

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

    async def _get(self, key: str) -> Blob:
        return await self.inner.get(key)

    async def _head(self, key: str) -> str | None:
        return await self.inner.head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await self.inner.put(key, data, mode=mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> builtins.list[str]:
        return await self.inner.list(prefix, start_after=start_after, limit=limit)

    async def _delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def close(self) -> None:
        await self.inner.close()

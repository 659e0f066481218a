"""In-process store: a dict and a lock. Stores with the same name share data."""

from __future__ import annotations

import itertools
import threading

from vactor_cloud.errors import AlreadyExistsError, NotFoundError, PreconditionFailedError
from vactor_cloud.storage._base import Blob, IfMatch, ObjectStore, PutMode, select_keys

__all__ = ["MemoryStore"]

_SPACES: dict[str, dict[str, Blob]] = {}
_LOCK = threading.Lock()
_VERSIONS = itertools.count(1)


class MemoryStore(ObjectStore):
    """Objects held in this process's memory (``memory://name``); for tests and examples.

    Every write gets a fresh version from one process-wide counter, so
    versions are never reused. Nothing survives the process.
    """

    definite_create_conflicts = True

    def __init__(self, name: str = "default") -> None:
        super().__init__(f"memory://{name}")
        with _LOCK:
            self._objects = _SPACES.setdefault(name, {})

    async def _get(self, key: str) -> Blob:
        with _LOCK:
            blob = self._objects.get(key)
        if blob is None:
            raise NotFoundError(f"{self.url}/{key}: no such object", key)
        return blob

    async def _head(self, key: str) -> str | None:
        with _LOCK:
            blob = self._objects.get(key)
        return None if blob is None else blob.version

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        with _LOCK:
            current = self._objects.get(key)
            if mode == "create" and current is not None:
                raise AlreadyExistsError(f"{self.url}/{key}: already exists", key)
            if isinstance(mode, IfMatch) and (current is None or current.version != mode.version):
                found = "no object" if current is None else f"version {current.version}"
                raise PreconditionFailedError(
                    f"{self.url}/{key}: expected version {mode.version}, found {found}", key
                )
            version = str(next(_VERSIONS))
            self._objects[key] = Blob(data, version)
            return version

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        with _LOCK:
            keys = list(self._objects)
        return select_keys(keys, prefix, start_after, limit)

    async def _delete(self, key: str) -> None:
        with _LOCK:
            self._objects.pop(key, None)

    @staticmethod
    def wipe(name: str) -> None:
        """Forget every object of the space ``name``."""
        with _LOCK:
            _SPACES.pop(name, None)

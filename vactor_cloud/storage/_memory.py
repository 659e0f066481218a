"""In-process store: a dict, a sorted key list and a lock. Stores with the same name share data.

The sorted list makes a LIST cost what it returns (a bisection to
``start_after``, then ``limit`` keys), as on the other backends.
"""

from __future__ import annotations

import bisect
import itertools
import threading

from vactor_cloud.errors import AlreadyExistsError, NotFoundError, PreconditionFailedError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.storage._base import Blob, IfMatch, Listing, ObjectStore, PutMode

__all__ = ["MemoryStore"]


class _Space:
    __slots__ = ("keys", "objects")

    def __init__(self) -> None:
        self.objects: dict[str, Blob] = {}
        self.keys: list[str] = []


_SPACES: dict[str, _Space] = {}
_LOCK = threading.Lock()


renew_in_a_forked_child(globals(), "_LOCK")
_VERSIONS = itertools.count(1)


class MemoryStore(ObjectStore):
    """Objects held in this process's memory (``memory://name``); for tests and examples.

    Every write gets a fresh version from one process-wide counter, so
    versions are never reused. Nothing survives the process.
    """

    definite_create_conflicts = True
    conditional_deletes = True

    def __init__(self, name: str = "default") -> None:
        super().__init__(f"memory://{name}")
        with _LOCK:
            self._space = _SPACES.setdefault(name, _Space())
            self._objects = self._space.objects

    async def _get(self, key: str) -> Blob:
        return self._get_now(key)

    def _get_now(self, key: str) -> Blob:
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
        return self._put_now(key, data, mode)

    @property
    def inline(self) -> bool:
        # Not when a request method is overridden (a test's stalling or failing subclass)
        # or wrapped on the instance (a request tracer): those must see every request.
        return self._plain(MemoryStore)

    def put_now(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        """``put`` done synchronously on the calling thread (it never waits: a dict and a lock)."""
        self._check_key(key)
        self.requests.add("put")
        return self._put_now(key, bytes(data), mode)

    def get_now(self, key: str) -> Blob:
        self._check_key(key)
        self.requests.add("get")
        return self._get_now(key)

    def list_now(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[str]:
        self.requests.add("list")
        return self._list_now(prefix, start_after, limit)

    def _put_now(self, key: str, data: bytes, mode: PutMode) -> str:
        if not isinstance(mode, IfMatch) and mode not in ("create", "overwrite"):
            raise ValueError(f"unknown put mode {mode!r}")
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
            if current is None:
                bisect.insort(self._space.keys, key)
            self._objects[key] = Blob(data, version)
            return version

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return self._list_now(prefix, start_after, limit)

    def _list_now(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        out: list[str] = []
        versions: dict[str, str] = {}
        with _LOCK:
            keys = self._space.keys
            index = bisect.bisect_left(keys, prefix)
            if start_after is not None:
                index = max(index, bisect.bisect_right(keys, start_after))
            while index < len(keys) and (limit is None or len(out) < limit):
                key = keys[index]
                if not key.startswith(prefix):
                    break
                out.append(key)
                versions[key] = self._objects[key].version
                index += 1
        return Listing(out, 1, versions)

    async def _delete(self, key: str) -> None:
        with _LOCK:
            if self._objects.pop(key, None) is not None:
                keys = self._space.keys
                del keys[bisect.bisect_left(keys, key)]

    async def _delete_unchanged(self, key: str, version: str) -> None:
        with _LOCK:  # (compared and deleted at one moment)
            current = self._objects.get(key)
            if current is not None and current.version == version:
                del self._objects[key]
                keys = self._space.keys
                del keys[bisect.bisect_left(keys, key)]

    @staticmethod
    def wipe(name: str) -> None:
        """Forget every object of the space ``name``."""
        with _LOCK:
            _SPACES.pop(name, None)

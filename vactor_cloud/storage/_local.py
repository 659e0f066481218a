"""A directory on this machine's filesystem, safe for many processes on it.

Each file holds a 16-byte random version token followed by the object's
bytes; the token changes on every write, so versions are never reused (inode
numbers and mtimes can be). Writes go to a temp file that is fsynced first:

* create: ``os.link(temp, target)`` fails atomically if the target exists;
* overwrite: ``os.replace(temp, target)``;
* if-match: under an ``flock`` on a per-key lock file, compare the token,
  then ``os.replace``.

A reader therefore sees a whole old object or a whole new one. A process
killed mid-write leaves its ``.tmp-*`` file behind (never listed, never
read); :meth:`LocalStore.remove_stale_temp_files` removes those older than
a generous age, and every compaction runs it on the actor's directory. This is safe
for processes of one machine; network filesystems without atomic ``link`` or
``flock`` are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from vactor_cloud.errors import (
    AlreadyExistsError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
)
from vactor_cloud.storage._base import Blob, IfMatch, ObjectStore, PutMode, select_keys

__all__ = ["LocalStore"]

_TOKEN = 16
_LOCKS = ".vactor-locks"
_TMP = ".tmp-"


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (``file:///path`` or a plain path).

    A key cannot be both an object and a prefix of others ("a" and "a/b"):
    the filesystem cannot hold a file and a directory of one name.
    """

    nested_keys = False
    definite_create_conflicts = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        super().__init__(f"file://{self.root}")

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.url}: invalid key {key!r}", key)
        return self.root / key

    # -- sync implementations, run in a worker thread ---------------------
    def _read(self, key: str) -> Blob:
        try:
            raw = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{self.url}/{key}: no such object", key) from None
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: read failed: {exc}", key) from exc
        if len(raw) < _TOKEN:
            raise StorageError(f"{self.url}/{key}: not written by vactor_cloud (no version)", key)
        return Blob(raw[_TOKEN:], raw[:_TOKEN].hex())

    def _read_version(self, key: str) -> str | None:
        try:
            with self._path(key).open("rb") as f:
                token = f.read(_TOKEN)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: read failed: {exc}", key) from exc
        return token.hex()

    def _write_temp(self, target: Path, data: bytes) -> tuple[Path, str]:
        target.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_bytes(_TOKEN)
        temp = target.parent / f"{_TMP}{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, token)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        return temp, token.hex()

    def _write(self, key: str, data: bytes, mode: PutMode) -> str:
        target = self._path(key)
        try:
            temp, version = self._write_temp(target, data)
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: write failed: {exc}", key) from exc
        try:
            if mode == "create":
                try:
                    os.link(temp, target)
                except FileExistsError:
                    raise AlreadyExistsError(f"{self.url}/{key}: already exists", key) from None
            elif mode == "overwrite":
                os.replace(temp, target)
            else:
                with self._key_lock(key):
                    current = self._read_version(key)
                    if current != mode.version:
                        found = "no object" if current is None else f"version {current}"
                        raise PreconditionFailedError(
                            f"{self.url}/{key}: expected version {mode.version}, found {found}", key
                        )
                    os.replace(temp, target)
            self._sync_dir(target.parent)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: write failed: {exc}", key) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return version

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        locks = self.root / _LOCKS
        locks.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()
        fd = os.open(locks / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _scan(self, prefix: str) -> list[str]:
        # Walk only the deepest directory the prefix names, not the whole root.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith("."):
                    continue
                keys.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
        return keys

    def _sweep_temp(self, prefix: str, older_than: float) -> int:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        cutoff = time.time() - older_than
        removed = 0
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(_TMP):
                    continue
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def _remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(self._path(key))

    # -- async API --------------------------------------------------------
    async def _get(self, key: str) -> Blob:
        return await asyncio.to_thread(self._read, key)

    async def _head(self, key: str) -> str | None:
        return await asyncio.to_thread(self._read_version, key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if not isinstance(mode, IfMatch) and mode not in ("create", "overwrite"):
            raise ValueError(f"unknown put mode {mode!r}")
        return await asyncio.to_thread(self._write, key, data, mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        keys = await asyncio.to_thread(self._scan, prefix)
        return select_keys(keys, prefix, start_after, limit)

    async def _delete(self, key: str) -> None:
        await asyncio.to_thread(self._remove, key)

    async def remove_stale_temp_files(self, prefix: str, *, older_than: float) -> int:
        """Remove ``.tmp-*`` files under ``prefix`` last modified more than ``older_than`` s ago.

        A process killed between writing its temp file and linking (or
        renaming) it into place leaves the temp file behind: a full copy of
        the object, never read and never listed. A live write holds its temp
        file for milliseconds; ``older_than`` should be far longer (compaction
        uses an hour), so that a write in progress is never disturbed.
        """
        try:
            return await asyncio.to_thread(self._sweep_temp, prefix, older_than)
        except OSError as exc:
            raise StorageError(f"{self.url}/{prefix}: sweeping temp files failed: {exc}", prefix) from exc

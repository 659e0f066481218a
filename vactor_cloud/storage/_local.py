"""A directory on this machine's filesystem, safe for many processes on it.

Each file holds a 16-byte random version token followed by the object's
bytes; the token changes on every write, so versions are never reused (inode
numbers and mtimes can be). Writes go to a temp file that is fsynced first:

* create: ``os.link(temp, target)`` fails atomically if the target exists;
* overwrite: ``os.replace(temp, target)``;
* if-match: under an ``flock`` on a per-key lock file, compare the token,
  then ``os.replace`` (a child forked meanwhile closes its copy of the lock
  file's descriptor, which would otherwise keep the lock held: ``_lock_files``).

Deletes, conditional and plain, unlink (and overwrites and if-match writes
rename) under an ``flock`` on one of 64 lock files chosen by the key's hash (a
conditional delete compares the token under it too): a plain delete and a
create of the key again, an overwrite or an if-match write landing between a
conditional delete's compare and its unlink would have it unlink the new
object. (About 8 µs a request: a post's delete from 22 µs to 31 µs, median.)
Creates take none: a link cannot replace a file; nor does a plain delete that
finds no file there (nothing to race with).

A listing names the versions of the objects this store object read (their
keys, the identity of each file read (inode, size, ctime, mtime) and its
token, remembered): a ``stat`` of each tells whether the file is still the
one read; one replaced since (a new inode, a new ctime) is opened for its
token. The token stays the one version there is (``get``, ``head``,
if-match and conditional deletes compare it); the identity only saves a
listing an open per key (see ``Listing.versions`` for its one miss).

A reader therefore sees a whole old object or a whole new one; a file cut
short of its token (an unsynced mailbox write torn by a machine crash) reads
as :class:`~vactor_cloud.errors.TruncatedObjectError`, never as data. Keys
with a component starting with ``.`` are refused: ``.`` and ``..`` are path
components, and the other such names are this store's own (temp files,
locks), which listings skip. A process
killed mid-write leaves its ``.tmp-*`` file behind (never listed, never
read); :meth:`LocalStore.remove_stale_temp_files` removes those older than
a generous age, and every compaction runs it on the actor's directory. This is safe
for processes of one machine; network filesystems without atomic ``link`` or
``flock`` are not supported.

Layout: LIST must cost what it returns, and a directory of 100,000 files can
only be read whole (``readdir`` has no order and no seek by name). So a key
component longer than two characters is split into a chain of directories,
two characters each, ending in ``+``, and a last segment of one or two
characters: ``steps/00000000000000012345`` is stored as
``st+/ep+/s/00+/00+/00+/00+/00+/00+/00+/01+/23+/45``. A directory then holds
at most one entry per two-character chunk (100 for digits), a LIST reads the
directories on its way in key order and stops at ``limit``, and keys still
sort as their paths do (the walk merges siblings by the key prefix they
stand for). A name of the form ``xy+`` is always a chain directory, never a
key's own segment, because names of three or more characters are always
split (a last segment that would be ``.`` or ``..`` takes the chunk before it).

Mailboxes are the exception: the last component of a key whose parent
component is ``mail`` (an actor's posted calls, ``actors/<id>/mail/<name>``)
is stored whole, one file in the ``mail`` directory, and a post is written
without fsync (only a post: an actor named ``mail`` has its ``HEAD`` and
``gc`` stored whole too, synced as any other object). Posts are few at a
time and short-lived (a post is written, folded into a step and deleted
within milliseconds), so the directory stays
small enough to read whole, and a post matters only while the process that
wrote it waits on this machine (a crash of the machine ends that process
too; a post that reads back damaged after one is never applied). Chains
would cost a ``mkdir`` per two characters on every write and an ``rmdir``
each on every delete. The ordered walk lists them like any file (a whole
name is never of the chain form ``xy+``).

Where requests run: the runtime makes its hot-path requests (step puts,
posters' step reads and post puts, a folder's listing and post reads) on its
own calling thread (``ObjectStore.inline``: a request is a few system calls,
cheaper than a trip to the IO loop). Through the async API, reads, small
listings, deletes and unsynced mailbox writes run on the IO loop itself;
synced writes and reads over 256 KiB go to a worker thread. A mailbox is
listed from its one directory (no walk from the root). Requests made
inline are not bounded by ``Settings.timeout``.

A root that already holds objects in the flat layout of earlier versions (no
``.vactor-layout`` marker) is read and written flat, listed by the same
ordered walk; new roots get the marker on their first write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import heapq
import itertools
import os
import platform
import random
import secrets
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

from vactor_cloud.errors import (
    AlreadyExistsError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    TruncatedObjectError,
)
from vactor_cloud.storage._base import (
    ACTORS_DIR,
    STORES_BELOW,
    Blob,
    IfMatch,
    Listing,
    ObjectStore,
    PutMode,
)

__all__ = ["LocalStore"]

_TOKEN = 16
_LOCKS = ".vactor-locks"
#: how many lock files conditional deletes share (``LocalStore._delete_lock``)
_DELETE_STRIPES = 64
_TMP = ".tmp-"
_LAYOUT = ".vactor-layout"
_LAYOUT_CHUNKED = b"chunked-2\n"
#: characters per chain directory: a directory of digit names holds at most 10**2 chains
_CHUNK = 2
_CHAIN = "+"
#: writes of a key whose chain directory a concurrent delete keeps pruning
_WRITE_ATTEMPTS = 50
#: a key component with this name stores the component after it whole; unsynced, under
#: ``actors/<id>/`` (see above)
_MAILBOX = "mail"
_ACTORS = f"{ACTORS_DIR}/"
#: bytes one readdir reads at once (the C library's getdents buffer: glibc 32 KB, musl 2 KB)
_ONE_READDIR = 32768 if platform.libc_ver()[0] == "glibc" else 2048
#: bytes of a directory entry besides its name (struct linux_dirent64, rounded up)
_DIRENT = 32
#: objects up to this size are read on the IO loop itself (larger ones on a worker thread)
_INLINE_BYTES = 256 * 1024
#: listings of at most this many keys (or of a mailbox) run on the IO loop itself
_INLINE_LIST = 1000
#: the most objects whose version a store remembers from reading them (``LocalStore._versions_read``;
#: a sixteenth more until the oldest are forgotten, that many at once)
_VERSIONS_READ = 16384


def encode_component(name: str) -> list[str]:
    """The path segments that store one key component in the chunked layout."""
    if len(name) <= _CHUNK:
        return [name]
    cut = len(name) - (len(name) % _CHUNK or _CHUNK)
    if name[cut:] in (".", ".."):
        # No file can be named "." or "..": the last chunk joins the tail, which
        # then ends in "." and so can never be mistaken for a chain.
        cut -= _CHUNK
    return [name[i : i + _CHUNK] + _CHAIN for i in range(0, cut, _CHUNK)] + [name[cut:]]


#: descriptors of the per-key lock files this process holds (or is about to hold) an ``flock``
#: through. An ``flock`` belongs to the open file, which a forked child's copy of the descriptor
#: keeps open: the lock stayed held for as long as the child lived (nothing there closes it),
#: and every if-match write of the key waited, the parent's and the child's. The child closes
#: its copies; ``_lock_files_guard``, held across the fork, keeps a descriptor from being
#: opened but not yet listed then (reentrant: a signal handler that forks, run on a thread
#: holding it, must not wait for itself).
_lock_files: set[int] = set()
_lock_files_guard = threading.RLock()


def _open_lock_file(path: str | os.PathLike[str], flags: int) -> int:
    with _lock_files_guard:
        fd = os.open(path, flags, 0o644)
        _lock_files.add(fd)
    return fd


def _close_lock_file(fd: int) -> None:
    with _lock_files_guard:
        _lock_files.discard(fd)
        os.close(fd)


def _close_lock_files_in_child() -> None:
    global _lock_files_guard  # (held across the fork by the forking thread: ``_lock_files_guard.acquire``)
    for fd in _lock_files:
        with contextlib.suppress(OSError):
            os.close(fd)  # (never ``LOCK_UN``: that would release the parent's lock too)
    _lock_files.clear()
    _lock_files_guard = threading.RLock()


def _hold_lock_files_guard() -> None:
    _lock_files_guard.acquire()  # (the global, not a bound method: a child has a new one, and may fork too)


def _release_lock_files_guard() -> None:
    _lock_files_guard.release()


os.register_at_fork(
    before=_hold_lock_files_guard,
    after_in_parent=_release_lock_files_guard,
    after_in_child=_close_lock_files_in_child,
)


class ListingStats:
    """What LISTs read: directories opened and entries seen (for tests and benchmarks)."""

    def __init__(self) -> None:
        self.directories = 0
        self.entries = 0

    def reset(self) -> None:
        self.directories = 0
        self.entries = 0


_R = TypeVar("_R")

#: what tells one file from another at a path without opening it: inode, device, size, ctime and
#: mtime (every write renames or links a fresh temp file into place: a new inode, a new ctime)
_FileIdentity = tuple[int, int, int, int, int]


def _identity(status: os.stat_result) -> _FileIdentity:
    return (status.st_ino, status.st_dev, status.st_size, status.st_ctime_ns, status.st_mtime_ns)


async def _off_loop(function: Callable[..., _R], *args: Any) -> _R:
    """``function(*args)`` on the loop's default executor; on the loop itself once the
    interpreter is exiting (``concurrent.futures``' exit hook may run before the runtime's:
    its executors then refuse work, and a last HEAD move would fail for nothing)."""
    loop = asyncio.get_running_loop()
    try:
        pending = loop.run_in_executor(None, function, *args)
    except RuntimeError:
        return function(*args)
    return await pending


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (``file:///path`` or a plain path).

    A key cannot be both an object and a prefix of others ("a" and "a/b"):
    the filesystem cannot hold a file and a directory of one name.
    """

    nested_keys = False
    definite_create_conflicts = True
    conditional_deletes = True
    #: a listing walks directories (a chunk of the key each, in the chunked layout) one
    #: after another: a file created in one already walked is missed, one created in one
    #: not walked yet is seen, whatever the count (but see ``listed_at_one_moment``)
    snapshot_list_keys = 0

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self._root = str(self.root).rstrip("/")
        super().__init__(f"file://{self.root}")
        self._chunked: bool | None = None
        self.listing = ListingStats()
        #: key -> (the identity of the file read there, its version): the objects this store
        #: read, whose versions its listings name (``_listed_versions``); at most
        #: ``_VERSIONS_READ``, the oldest read forgotten first. (Not forgotten on a delete: a
        #: reader may still hold what it read, and must see another object written there.)
        self._versions_read: dict[str, tuple[_FileIdentity, str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # A copy elsewhere (a worker process) has read nothing: what this one remembers (up to
        # some 9 MB) stays here.
        state = self.__dict__.copy()
        state["_versions_read"] = {}
        return state

    # -- layout -------------------------------------------------------------
    @staticmethod
    def holds_no_store(root: str | os.PathLike[str], root_names: Collection[str]) -> bool:
        """Whether the directory ``root`` holds files but no store: no layout marker, and none of
        its entries (but this store's own, named ``.*``) is one of ``root_names``, the first
        components of a store's keys (a flat root holds them as they are). An empty directory
        is a store yet to be written."""
        path = Path(root).expanduser()
        if (path / _LAYOUT).exists():
            return False
        names = [name for name in os.listdir(path) if not name.startswith(".")]
        return bool(names) and not any(name in root_names for name in names)

    @staticmethod
    def directories_holding_a_store(root: str | os.PathLike[str]) -> list[Path]:
        """The directories right under ``root`` that hold a store (a layout marker, or a flat
        ``actors`` directory), at most :data:`STORES_BELOW`, by name."""
        found: list[Path] = []
        with os.scandir(Path(root).expanduser()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                path = Path(entry.path)
                if (path / _LAYOUT).is_file() or (path / ACTORS_DIR).is_dir():
                    found.append(path)
                    if len(found) == STORES_BELOW:
                        break
        return found

    async def stores_below(self) -> list[str] | None:
        try:
            return [f"file://{path}" for path in self.directories_holding_a_store(self.root)]
        except OSError:
            return None

    def _layout_chunked(self, *, writing: bool = False) -> bool:
        """Whether keys are stored chunked; decided once per store, from the root."""
        if self._chunked is not None:
            return self._chunked
        marker = self.root / _LAYOUT
        if marker.exists():
            if marker.read_bytes() != _LAYOUT_CHUNKED:
                raise StorageError(f"{self.url}: unknown directory layout {marker.read_bytes()!r}", _LAYOUT)
            self._chunked = True
            return True
        try:
            holds_objects = any(not e.name.startswith(".") for e in os.scandir(self.root))
        except FileNotFoundError:
            holds_objects = False
        if holds_objects:
            # A chunked root writes its marker before its first object: seen
            # now, it was there when that object was; absent, the root is flat.
            self._chunked = marker.exists()
            return self._chunked
        if not writing:
            return True  # empty: nothing to read either way; decide on the first write
        self.root.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place (create-only): a
        # writer racing this one never reads a marker that exists but is still empty.
        temp = self.root / f"{_LAYOUT}.tmp-{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, _LAYOUT_CHUNKED)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(temp, marker)
                self._sync_dir(self.root)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self._chunked = True
        return True

    def _path(self, key: str, *, writing: bool = False) -> Path:
        return Path(self._fspath(key, writing=writing))

    def _fspath(self, key: str, *, writing: bool = False) -> str:
        """The file that stores ``key`` (a string: pathlib costs more than the request here)."""
        self._check_key(key)
        parts = key.split("/")
        if "" in parts or "\x00" in key:
            raise StorageError(
                f"{self.url}: invalid key {key!r}: an empty component or a NUL byte cannot be stored "
                "in a local directory",
                key,
            )
        if any(part[0] == "." for part in parts):
            # "." and ".." are path components (an alias, an escape); other names starting with
            # "." are this store's own files (temp files, locks), never listed: refused alike.
            raise StorageError(
                f"{self.url}: invalid key {key!r}: a component starting with '.' cannot be stored "
                "in a local directory (a path component, or a name the store keeps for its own files)",
                key,
            )
        root = self._root
        if not self._layout_chunked(writing=writing):
            return f"{root}/{key}"
        if len(parts) > 1 and parts[-2] == _MAILBOX:
            segments = [segment for part in parts[:-1] for segment in encode_component(part)]
            segments.append(parts[-1])
        else:
            segments = [segment for part in parts for segment in encode_component(part)]
        return f"{root}/{'/'.join(segments)}"

    @staticmethod
    def _ephemeral(key: str) -> bool:
        """A post in an actor's mailbox, ``actors/<id>/mail/<name>``: written without fsync (see
        the module's docstring). Only that key: an actor may be named ``mail`` (its ``gc``,
        its timers' due-index entries ``timers/<due>/mail/<key>`` are no posts)."""
        head, _, _ = key.rpartition("/")
        owner, _, box = head.rpartition("/")
        return box == _MAILBOX and owner.startswith(_ACTORS) and "/" not in owner[len(_ACTORS) :]

    # -- sync implementations: on the calling thread, the IO loop or a worker thread -
    def _read(self, key: str, *, small: bool = False) -> Blob | None:
        """The object at ``key``. ``small``: None (nothing read) if it is larger than
        ``_INLINE_BYTES`` (the caller reads it again from a worker thread)."""
        try:
            fd = os.open(self._fspath(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # (a prefix only)
            raise NotFoundError(f"{self.url}/{key}: no such object", key) from None
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: read failed: {exc}", key) from exc
        try:
            status = os.fstat(fd)
            if stat.S_ISDIR(status.st_mode):  # a directory of longer keys: no object here
                raise NotFoundError(f"{self.url}/{key}: no such object", key)
            size = status.st_size
            if small and size > _INLINE_BYTES:
                return None
            # The token first, then the object: slicing the token off a whole read would copy
            # the object (a large state) once more.
            token = os.read(fd, _TOKEN)
            chunks: list[bytes] = []
            if len(token) == _TOKEN:
                while chunk := os.read(fd, size - _TOKEN + 1 if not chunks else 1 << 20):
                    chunks.append(chunk)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except NotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: read failed: {exc}", key) from exc
        finally:
            os.close(fd)
        if len(token) < _TOKEN:
            raise self._torn(key, len(token))
        version = token.hex()
        self._remember_version(key, _identity(status), version)
        return Blob(data, version)

    def _remember_version(self, key: str, identity: _FileIdentity, version: str) -> None:
        # No lock: one held by another thread as this process forks stayed held in the child,
        # whose first read then waited for good. Each dict operation is atomic; two threads
        # forgetting the oldest at once (one finds some gone), or one iterating as another
        # inserts, are harmless: the bound is kept within a few entries.
        #
        # The oldest are forgotten a sixteenth of the bound at a time: a plain dict keeps the
        # slots of the keys deleted from its front until it is resized, and a walk from its
        # front (``next(iter())``) crosses them all; one walk a read past the bound cost 7 µs
        # a read (an ordered dict's constant-time pop costs 0.4 µs more on every read).
        remembered = self._versions_read
        remembered.pop(key, None)  # (to the end: the oldest is forgotten first)
        remembered[key] = (identity, version)
        if len(remembered) > _VERSIONS_READ + _VERSIONS_READ // 16:
            with contextlib.suppress(RuntimeError):  # (another thread inserted meanwhile)
                for oldest in list(itertools.islice(remembered, len(remembered) - _VERSIONS_READ)):
                    remembered.pop(oldest, None)

    def _listed_versions(self, keys: list[str], paths: dict[str, str]) -> dict[str, str]:
        """The versions of those of ``keys`` this store read (``_versions_read``), for a
        listing that found their files at ``paths``: a file whose identity (a ``stat``, no
        open) is still the one read is at the version read; another one's version is read
        from it (an object replaced since). Others are left out: a reader holds none of them,
        and a token read per key would make every listing cost an open per key. (A file
        replaced within one tick of the filesystem's clock by one of the same size that took
        over the freed inode number keeps the identity read: it is listed at the old version,
        the one case a replacement is missed.)"""
        remembered = self._versions_read
        versions: dict[str, str] = {}
        for key in keys if paths else ():
            read = remembered.get(key)
            path = paths.get(key)
            if read is None or path is None:
                continue
            identity, version = read
            try:
                if _identity(os.stat(path, follow_symlinks=False)) != identity:
                    version = self._read_version_remembered(key, path)
            except (OSError, TruncatedObjectError):  # (deleted meanwhile, torn: no version)
                remembered.pop(key, None)
                continue
            versions[key] = version
        return versions

    def _read_version_remembered(self, key: str, path: str) -> str:
        """The version of the file at ``path``, remembered with the identity of the file it was
        read from (the same descriptor: a file renamed into place meanwhile cannot pair one
        file's identity with another's token)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            status = os.fstat(fd)
            token = os.read(fd, _TOKEN)
        finally:
            os.close(fd)
        if len(token) < _TOKEN:
            raise self._torn(key, len(token))
        version = token.hex()
        self._remember_version(key, _identity(status), version)
        return version

    def _torn(self, key: str, length: int) -> TruncatedObjectError:
        return TruncatedObjectError(
            f"{self.url}/{key}: {length} bytes, shorter than the {_TOKEN}-byte write token: "
            "a write torn by a crash, or a file vactor_cloud did not write (no version)",
            key,
        )

    def _read_version(self, key: str) -> str | None:
        """The version (write token) of the object at ``key``; None: no object. A file too
        short to hold its token has none: ``TruncatedObjectError``, as its ``get`` raises (its
        first bytes as hex were no version a write handed out: ``""`` for every empty file)."""
        try:
            with open(self._fspath(key), "rb") as f:
                token = f.read(_TOKEN)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # (a prefix only)
            return None
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: read failed: {exc}", key) from exc
        if len(token) < _TOKEN:
            raise self._torn(key, len(token))
        return token.hex()

    def _write_temp(self, target: str, data: bytes, sync: bool = True) -> tuple[str, str]:
        parent = os.path.dirname(target)
        token = secrets.token_bytes(_TOKEN)
        temp = f"{parent}/{_TMP}{secrets.token_hex(8)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            os.makedirs(parent, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.write(fd, token)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # (a full disk must not fill up with partial temp files)
            raise
        return temp, token.hex()

    def _write(self, key: str, data: bytes, mode: PutMode) -> str:
        if not isinstance(mode, IfMatch) and mode not in ("create", "overwrite"):
            raise ValueError(f"unknown put mode {mode!r}")
        try:
            target = self._fspath(key, writing=True)
            sync = not self._ephemeral(key)
            for attempt in range(_WRITE_ATTEMPTS):
                try:
                    temp, version = self._write_temp(target, data, sync)
                    break
                except FileNotFoundError:
                    # A delete pruned the empty chain directory between our mkdir
                    # and our open: make it again. (Under many pruning deleters this can
                    # happen again and again: later attempts step aside a little first.)
                    if attempt == _WRITE_ATTEMPTS - 1:
                        raise
                    if attempt >= 4:
                        time.sleep(random.random() * 0.001 * attempt)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: write failed: {exc}", key) from exc
        try:
            if mode == "create":
                try:
                    os.link(temp, target)
                except FileExistsError:
                    if os.path.isdir(target):  # no object here: the directory of longer keys
                        raise StorageError(
                            f"{self.url}/{key}: the key is a prefix of other keys ({key}/...), which a "
                            "local directory cannot hold beside them",
                            key,
                        ) from None
                    raise AlreadyExistsError(f"{self.url}/{key}: already exists", key) from None
            elif mode == "overwrite":
                # Under the key's lock if an if-match writer ever used one: an overwrite between
                # its version check and its rename would be lost. And under the conditional
                # deletes' lock of its stripe (so is an if-match): between one's compare and its
                # unlink, the object written would be unlinked.
                with self._key_lock_if_used(key), self._delete_lock(key):
                    os.replace(temp, target)
            else:
                with self._key_lock(key), self._delete_lock(key):
                    try:
                        current = self._read_version(key)
                    except TruncatedObjectError:
                        current = None
                        found = "a torn object, which has no version (an overwrite or a delete replaces it)"
                    else:
                        found = "no object" if current is None else f"version {current}"
                    if current != mode.version:
                        raise PreconditionFailedError(
                            f"{self.url}/{key}: expected version {mode.version}, found {found}", key
                        )
                    os.replace(temp, target)
            if sync:
                # Outside the key's lock: another process's delete may have removed the object
                # and pruned its directory since the rename. The write landed (then was deleted):
                # nothing is left to make durable.
                with contextlib.suppress(FileNotFoundError):
                    self._sync_dir(os.path.dirname(target))
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"{self.url}/{key}: write failed: {exc}", key) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return version

    @contextlib.contextmanager
    def _key_lock_if_used(self, key: str) -> Iterator[None]:
        """The key's lock if its lock file exists (an if-match write made it), else nothing.

        (Not created here: overwrites and deletes of keys never written by if-match, such
        as compacted steps, leave no lock file. An if-match writer that creates the lock
        file after our check and also read the version before our write can still race
        us: a window of a few system calls, against the whole check-and-rename before.)"""
        name = hashlib.sha256(key.encode()).hexdigest()
        try:
            fd = _open_lock_file(self.root / _LOCKS / name, os.O_RDWR)
        except FileNotFoundError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            _close_lock_file(fd)

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        locks = self.root / _LOCKS
        locks.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()
        fd = _open_lock_file(locks / name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            _close_lock_file(fd)

    @staticmethod
    def _sync_dir(path: str | Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _entries(
        self,
        directory: str,
        decoded: str,
        in_chain: bool,
        prefix: str,
        start_after: str | None,
        chunked: bool,
        paths: dict[str, str],
    ) -> list[tuple[str, bool, str, bool]]:
        """One directory's entries as ``(key prefix, is file, path, in chain)``, sorted and pruned.

        A file's key prefix is its key; a directory's is what every key under
        it starts with. ``paths`` gets the path of each file whose version this store
        remembers (``_listed_versions``).
        """
        out: list[tuple[str, bool, str, bool]] = []
        self.listing.directories += 1
        try:
            with os.scandir(directory) as scanned:
                entries = list(scanned)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # (a prefix only)
            return out
        self.listing.entries += len(entries)
        for entry in entries:
            name = entry.name
            if not in_chain and name[:1] == ".":
                continue  # temp files, locks, the layout marker, hidden keys
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir and chunked and len(name) == _CHUNK + 1 and name[-1] == _CHAIN:
                lower, is_file, chain = decoded + name[:_CHUNK], False, True
            elif in_chain and name.startswith(_TMP):
                continue  # a temp file of a write in progress
            elif is_dir:
                lower, is_file, chain = decoded + name + "/", False, False
            else:
                lower, is_file, chain = decoded + name, True, False
            if is_file:
                if not lower.startswith(prefix) or (start_after is not None and lower <= start_after):
                    continue
                if lower in self._versions_read:
                    paths[lower] = entry.path
            else:
                if not (lower.startswith(prefix) or prefix.startswith(lower)):
                    continue
                if start_after is not None and lower < start_after and not start_after.startswith(lower):
                    continue  # every key under it sorts before start_after
            out.append((lower, is_file, entry.path, chain))
        out.sort()
        return out

    def _walk(
        self,
        directory: str,
        decoded: str,
        in_chain: bool,
        prefix: str,
        start_after: str | None,
        chunked: bool,
        paths: dict[str, str],
    ) -> Iterator[str]:
        """Keys under ``directory`` in key order, reading subdirectories only when reached.

        Sibling ranges can interleave (``abc-x`` and ``abcd`` both live under
        the chain ``abc+``, and ``abc/y``, under the directory ``abc``, sorts
        between them), so the children are merged; a child is opened only
        once every key already in the merge sorts after the prefix it stands
        for.
        """
        heap: list[tuple[str, int, Iterator[str]]] = []
        for index, (lower, is_file, path, chain) in enumerate(
            self._entries(directory, decoded, in_chain, prefix, start_after, chunked, paths)
        ):
            if lower > prefix and not lower.startswith(prefix):
                break  # sorted: nothing from here on carries the prefix
            while heap and heap[0][0] < lower:
                yield heap[0][0]
                following = next(heap[0][2], None)
                if following is None:
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (following, heap[0][1], heap[0][2]))
            children = (
                iter((lower,))
                if is_file
                else self._walk(path, lower, chain, prefix, start_after, chunked, paths)
            )
            first = next(children, None)
            if first is not None:
                heapq.heappush(heap, (first, index, children))
        while heap:
            yield heap[0][0]
            following = next(heap[0][2], None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following, heap[0][1], heap[0][2]))

    def _scan(self, prefix: str, start_after: str | None, limit: int | None) -> Listing:
        try:
            paths: dict[str, str] = {}
            keys = self._scan_directories(prefix, start_after, limit, paths)
            return Listing(keys, 1, self._listed_versions(keys, paths))
        except StorageError:
            raise
        except OSError as exc:  # (an I/O error, a directory made unreadable)
            raise StorageError(f"{self.url}/{prefix}: listing failed: {exc}", prefix) from exc

    def _scan_directories(
        self, prefix: str, start_after: str | None, limit: int | None, paths: dict[str, str]
    ) -> list[str]:
        chunked = self._layout_chunked()
        keys: list[str] = []
        if limit is not None and limit <= 0:
            return keys
        if chunked and prefix.endswith(f"/{_MAILBOX}/"):
            mailbox = self._scan_mailbox(prefix, start_after, limit, paths)
            if mailbox is not None:
                return mailbox
        for key in self._walk(str(self.root), "", False, prefix, start_after, chunked, paths):
            keys.append(key)
            if limit is not None and len(keys) >= limit:
                break
        return keys

    def _scan_mailbox(
        self, prefix: str, start_after: str | None, limit: int | None, paths: dict[str, str]
    ) -> list[str] | None:
        """A listing of the mailbox ``prefix`` (``.../mail/``) from its one directory, without
        walking the chains above it (they hold nothing else under this prefix); None when
        the directory holds something other than files (then the ordered walk lists it)."""
        try:
            directory = os.path.dirname(self._fspath(prefix + "x"))  # where its posts are
        except StorageError:
            return None
        self.listing.directories += 1
        try:
            with os.scandir(directory) as scanned:
                entries = list(scanned)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # (a prefix only)
            return []
        self.listing.entries += len(entries)
        keys: list[str] = []
        for entry in entries:
            name = entry.name
            if name[:1] == ".":
                continue  # temp files of writes in progress
            try:
                if not entry.is_file(follow_symlinks=False):
                    return None
            except OSError:
                continue
            key = prefix + name
            if start_after is None or key > start_after:
                keys.append(key)
                if key in self._versions_read:
                    paths[key] = entry.path
        keys.sort()
        return keys if limit is None else keys[:limit]

    def _sweep_temp(self, prefix: str, older_than: float) -> int:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base) if base else self.root  # the chunked layout maps prefixes too
        cutoff = time.time() - older_than
        removed = 0
        for dirpath, dirnames, filenames in os.walk(start):
            # (the locks' directory only: a directory starting with "." below an actor is a chain's,
            # the rest of a key component, "ab.cd" being ab+/.c+/d)
            dirnames[:] = [d for d in dirnames if d != _LOCKS]
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
        path = self._fspath(key)
        if not os.path.lexists(path):
            # Nothing there: done as of this look, with nothing to race (no lock taken, no
            # lock directory made: a delete in a missing root made it, and failed on a
            # read-only mount).
            self._prune(path)
            return
        # Under the key's lock if an if-match writer ever used one for it: a delete between its
        # version check and its rename would be undone (the object brought back). And under the
        # conditional deletes' lock of its stripe: between one's compare and its unlink, this
        # delete and a create of the key again would have it unlink the new object.
        try:
            with (
                self._key_lock_if_used(key),
                self._delete_lock(key),
                contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError),
            ):
                os.unlink(path)
        except OSError as exc:  # (a read-only remount, an I/O error)
            raise StorageError(f"{self.url}/{key}: delete failed: {exc}", key) from exc
        self._prune(path)

    def _remove_unchanged(self, key: str, version: str) -> None:
        """Delete ``key`` if it is at ``version``: compared and unlinked under the key's lock (if
        an if-match writer used one) and under the conditional deletes' lock of its stripe, so
        that two deletes of one version never both find it (the second one would unlink an
        object created in between: creates take no lock, but cannot replace a file). A torn
        object has no version: left."""
        path = self._fspath(key)
        try:
            with self._key_lock_if_used(key), self._delete_lock(key):
                try:
                    current = self._read_version(key)
                except TruncatedObjectError:
                    return
                if current != version:
                    return
                with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    os.unlink(path)
        except OSError as exc:  # (a read-only remount, an I/O error)
            raise StorageError(f"{self.url}/{key}: delete failed: {exc}", key) from exc
        self._prune(path)

    @contextlib.contextmanager
    def _delete_lock(self, key: str) -> Iterator[None]:
        """One of :data:`_DELETE_STRIPES` lock files, chosen by ``key``'s hash: conditional deletes
        of one key take turns (a lock file per key, as ``_key_lock`` makes, would leave a file
        behind for every event ever deleted)."""
        stripe = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % _DELETE_STRIPES
        path = f"{self._root}/{_LOCKS}/deletes-{stripe:02d}"
        try:
            fd = _open_lock_file(path, os.O_RDWR | os.O_CREAT)
        except FileNotFoundError:  # (the locks' directory, made once: every delete takes a lock)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = _open_lock_file(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            _close_lock_file(fd)

    def _prune(self, path: str) -> None:
        # Prune every directory left empty up to the root, chains and the plain
        # directory of a component's last chunk alike, so that later listings
        # do not open them (a due index keyed by time would otherwise keep a
        # dozen empty directories per fired timer, walked by every LIST). An
        # object store has no empty directories to keep; rmdir fails on one
        # that is not empty, and a writer that loses its directory to this
        # makes it again (see _write).
        parent = os.path.dirname(path)
        while self._chunked and len(parent) > len(self._root):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    # -- async API --------------------------------------------------------
    # Requests that never wait on the disk (reads, listings and deletes answered from
    # the page cache, unsynced mailbox writes) run on the IO loop itself: a trip to a
    # worker thread and back costs more CPU than the request. Synced writes (fsync of
    # the file and its directory) go to a worker thread.
    async def _get(self, key: str) -> Blob:
        blob = self._read(key, small=True)
        if blob is None:
            blob = await _off_loop(self._read, key)
        assert blob is not None
        return blob

    async def _head(self, key: str) -> str | None:
        return self._read_version(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if self._ephemeral(key) and not isinstance(mode, IfMatch):
            return self._write(key, data, mode)
        return await _off_loop(self._write, key, data, mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        if (limit is not None and limit <= _INLINE_LIST) or self._ephemeral(prefix + "x"):
            return self._scan(prefix, start_after, limit)
        return await _off_loop(self._scan, prefix, start_after, limit)

    async def _delete(self, key: str) -> None:
        self._remove(key)

    async def _delete_unchanged(self, key: str, version: str) -> None:
        self._remove_unchanged(key, version)

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        """A mailbox of the chunked layout is one directory (``_scan_mailbox``), read by one
        ``getdents`` call while its entries fit the C library's buffer (glibc: 32 KB; the
        kernel makes a call atomic with respect to creates in the directory): one moment
        while the names take at most a quarter of it (the rest for temp files of writes in
        flight). Any other listing walks directories: not one moment."""
        if not keys:
            return True
        if not (prefix.endswith(f"/{_MAILBOX}/") and self._layout_chunked()):
            return False
        budget = _ONE_READDIR // 4
        return sum(_DIRENT + len(key.encode()) - len(prefix) for key in keys) <= budget

    # -- synchronous requests (ObjectStore.inline) ---------------------------
    @property
    def inline(self) -> bool:
        # The runtime may make requests on its calling threads: a request is a few system
        # calls (a synced write waits for the disk there, as it would on a worker thread).
        return self._plain(LocalStore)

    def get_now(self, key: str) -> Blob:
        self._check_key(key)
        self.requests.add("get")
        blob = self._read(key)
        assert blob is not None
        return blob

    def put_now(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        self._check_key(key)
        self.requests.add("put")
        return self._write(key, bytes(data), mode)

    def list_now(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[str]:
        self.requests.add("list")
        return self._scan(prefix, start_after, limit)

    async def remove_stale_temp_files(self, prefix: str, *, older_than: float) -> int:
        """Remove ``.tmp-*`` files under ``prefix`` last modified more than ``older_than`` s ago.

        A process killed between writing its temp file and linking (or
        renaming) it into place leaves the temp file behind: a full copy of
        the object, never read and never listed. A live write holds its temp
        file for milliseconds; ``older_than`` should be far longer (compaction
        uses an hour), so that a write in progress is never disturbed.
        """
        try:
            return await _off_loop(self._sweep_temp, prefix, older_than)
        except OSError as exc:
            raise StorageError(f"{self.url}/{prefix}: sweeping temp files failed: {exc}", prefix) from exc

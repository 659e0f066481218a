"""Backend lanes: each lane knows how to start its server and hand out fresh, empty stores.

A lane is what a test needs to talk to one backend: ``start()`` brings the
server up (or raises :class:`LaneUnavailable` with the reason), and
``new_store()`` returns a :class:`StoreSpec` for an empty bucket or prefix that
no other test uses. A :class:`StoreSpec` is plain data, so it can be passed to
child processes, which open the same store with ``spec.open()``.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from vactor_cloud.storage import ObjectStore, open_store

__all__ = ["Lane", "LaneUnavailable", "LocalLane", "MemoryLane", "StoreSpec"]


class LaneUnavailable(RuntimeError):
    """A lane's server could not be started; the message says why."""


@dataclass(frozen=True)
class StoreSpec:
    """How to open one test store: a URL, fsspec options and environment for child processes."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def open(self) -> ObjectStore:
        os.environ.update(self.env)
        return open_store(self.url, **self.options)

    def init(self, **kwargs: Any) -> None:
        """``vactor_cloud.init()`` on this store, in this process (a test, or a child process).

        ``kwargs`` go to ``init`` (``signing_key=``, ``settings=``, ...).
        """
        import vactor_cloud

        os.environ.update(self.env)
        vactor_cloud.init(self.url, **self.options, **kwargs)


class Lane:
    """One backend under test. Subclasses override ``start``, ``stop`` and ``new_store``."""

    name: str = ""
    #: True when stores of this lane can be shared by several OS processes.
    multiprocess: bool = True

    def start(self) -> None:
        """Bring the server up; raise :class:`LaneUnavailable` with the reason if it cannot."""

    def stop(self) -> None:
        """Stop the server and remove what it left behind."""

    def new_store(self) -> StoreSpec:
        raise NotImplementedError

    def drop_store(self, spec: StoreSpec) -> None:
        """Forget a store handed out by ``new_store`` (best effort)."""


class MemoryLane(Lane):
    name = "memory"
    multiprocess = False

    def new_store(self) -> StoreSpec:
        return StoreSpec(f"memory://test-{uuid.uuid4().hex}")

    def drop_store(self, spec: StoreSpec) -> None:
        from vactor_cloud.storage import MemoryStore

        MemoryStore.wipe(spec.url.removeprefix("memory://"))


class LocalLane(Lane):
    """Stores are directories under one temporary root, removed with it at ``stop``.

    A dropped store's directory is removed by a thread of the lane's own while the next tests
    run: a local store keeps each key in a directory per two characters, so a session's stores
    are tens of thousands of entries, and removing them all at ``stop`` made the session's last
    teardown take half a minute. ``stop`` waits for that thread (bounded), then removes the root
    and whatever is left under it.
    """

    name = "local"
    #: how long ``stop`` waits for the removal of the dropped stores before removing the root
    drain_timeout = 300.0

    def __init__(self) -> None:
        self._root: tempfile.TemporaryDirectory[str] | None = None
        self._dropped: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._remover: threading.Thread | None = None

    def start(self) -> None:
        self._root = tempfile.TemporaryDirectory(prefix="vactor-local-lane-")
        # Started now, not at the first drop: a test that counts the process's threads sees
        # the same ones before and after.
        self._remover = threading.Thread(
            target=self._remove_dropped, name="vactor-local-lane-remover", daemon=True
        )
        self._remover.start()

    def _remove_dropped(self) -> None:
        while (path := self._dropped.get()) is not None:
            # (A process the test left running may still write there: what it adds, or what
            # cannot be removed now, goes with the root at ``stop``.)
            shutil.rmtree(path, ignore_errors=True)

    def stop(self) -> None:
        remover, self._remover = self._remover, None
        if remover is not None:
            self._dropped.put(None)
            remover.join(self.drain_timeout)
        if self._root is not None:
            self._root.cleanup()
            self._root = None

    def new_store(self) -> StoreSpec:
        assert self._root is not None, "LocalLane.start() was not called"
        return StoreSpec(f"file://{self._root.name}/{uuid.uuid4().hex}")

    def drop_store(self, spec: StoreSpec) -> None:
        """Queue the store's directory for removal by the lane's remover thread."""
        if self._remover is None or self._root is None:
            return
        path = spec.url.removeprefix("file://")
        if os.path.dirname(path) == self._root.name:  # (only what this lane handed out)
            self._dropped.put(path)

"""Every request a store sends, with its key and interval (:class:`RequestTrace`), and the
longest chain of them sent one after another (:func:`sequential_round_trips`).

Used by ``vactor bench`` (:mod:`vactor_cloud.cli.bench_harness`: the round trips of a cold
call) and by tests that count a protocol's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vactor_cloud.storage import ObjectStore

__all__ = ["Request", "RequestTrace", "sequential_round_trips"]


@dataclass(frozen=True)
class Request:
    kind: str
    key: str
    started: float
    ended: float


class RequestTrace:
    """Records every request a store sends, with its key and interval, while installed."""

    def __init__(self, store: ObjectStore, *, latency: float = 0.0) -> None:
        self.store = store
        #: added to every request, so that requests issued together overlap even on a
        #: store that answers at once (memory): round trips then show the protocol's shape
        self.latency = latency
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def _wrap(self, kind: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(type(self.store), kind)

        async def traced(key: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                return await method(self.store, key, *args, **kwargs)
            finally:
                with self._lock:
                    self.requests.append(Request(kind, key, started, time.perf_counter()))

        return traced

    def _wrap_delete_many(self) -> Callable[[Iterable[str]], Coroutine[Any, Any, None]]:
        method = type(self.store).delete_many

        async def traced(keys: Iterable[str]) -> None:
            keys = list(keys)
            started = time.perf_counter()
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                await method(self.store, keys)
            finally:
                ended = time.perf_counter()
                with self._lock:
                    # One row per key, as kind "delete": what was deleted, and when.
                    self.requests.extend(Request("delete", key, started, ended) for key in keys)

        return traced

    def _wrap_delete_unchanged(self) -> Callable[[Mapping[str, str]], Coroutine[Any, Any, None]]:
        method = type(self.store).delete_unchanged

        async def traced(versions: Mapping[str, str]) -> None:
            versions = dict(versions)
            started = time.perf_counter()
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                await method(self.store, versions)
            finally:
                ended = time.perf_counter()
                with self._lock:
                    # One row per key, as kind "delete" (as ``delete_many``'s).
                    self.requests.extend(Request("delete", key, started, ended) for key in versions)

        return traced

    @contextlib.contextmanager
    def installed(self) -> Iterator[RequestTrace]:
        kinds = ("get", "head", "put", "list", "delete")
        for kind in kinds:
            setattr(self.store, kind, self._wrap(kind))
        self.store.delete_many = self._wrap_delete_many()  # type: ignore[method-assign,assignment]
        self.store.delete_unchanged = self._wrap_delete_unchanged()  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            for kind in (*kinds, "delete_many", "delete_unchanged"):
                with contextlib.suppress(AttributeError):
                    delattr(self.store, kind)

    def on_path(self) -> list[Request]:
        """Requests other than HEAD moves (those happen in the background, off the critical path)."""
        return [r for r in self.requests if not (r.kind == "put" and r.key.endswith("/HEAD"))]


def sequential_round_trips(requests: list[Request]) -> int:
    """The longest chain of requests each of which started after the previous one ended."""
    ordered = sorted(requests, key=lambda r: r.started)
    depth: list[int] = []
    for i, request in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j].ended <= request.started]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)

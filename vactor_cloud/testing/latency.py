"""LatencyStore: an :class:`ObjectStore` wrapper that makes every request take as long as a real bucket's.

On a loopback emulator or a local directory a request costs CPU but almost
no waiting, so contention, cold start and fan-out look different from S3 or
GCS, where a request takes 10-50 ms and the server is rarely the bottleneck.
Wrapping the store adds that wait to every request, on any backend::

    store = LatencyStore(open_store(url), Latency.parse("20,5"))   # 20 ms +- 5 ms
    # or, inside a vactor_cloud process, right after init():
    install(Latency.parse("20"))

Half of each delay is spent before the request reaches the wrapped store and
half after it answered, as on a network: the operation takes effect in the
middle of the caller's wait, so two racing writers overlap as they would
against a remote bucket. Apart from the wait the wrapper behaves exactly
like the wrapped store (same keys, versions, errors).
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from vactor_cloud.storage import Blob, ObjectStore, PutMode
from vactor_cloud.storage._base import OperationTrouble
from vactor_cloud.testing._forwarding import ForwardingStore

__all__ = ["Latency", "LatencyStore", "install"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Latency:
    """A request's round trip: ``seconds``, plus or minus up to ``jitter`` seconds (uniform)."""

    seconds: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.jitter < 0:
            raise ValueError(f"latency and jitter must be >= 0, got {self.seconds}, {self.jitter}")

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"MS"`` or ``"MS,JITTER"`` in milliseconds, as ``vactor bench --latency`` takes it."""
        parts = text.split(",")
        if len(parts) > 2:
            raise ValueError(f"latency {text!r}: expected MS or MS,JITTER")
        try:
            values = [float(p) / 1000 for p in parts]
        except ValueError:
            raise ValueError(f"latency {text!r}: expected MS or MS,JITTER (numbers)") from None
        return cls(*values)

    def describe(self) -> str:
        ms = f"{self.seconds * 1e3:g} ms"
        return ms if not self.jitter else f"{ms} +- {self.jitter * 1e3:g} ms"


class LatencyStore(ForwardingStore):
    """Forwards every operation to ``inner`` half a round trip late, and answers half a round trip later."""

    def __init__(self, inner: ObjectStore, latency: Latency, *, seed: int | None = None) -> None:
        super().__init__(inner)
        self.latency = latency
        self._rng = random.Random(seed)
        #: how a half round trip is waited (a test may wait on its own cue instead)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def describe(self) -> str:
        return f"{self.inner.describe()} (+{self.latency.describe()} per request)"

    def trouble_meanwhile(self, within: float, operation: OperationTrouble | None = None) -> str | None:
        return self.inner.trouble_meanwhile(within, operation)

    async def close(self) -> None:
        await self.inner.close()

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        return self.inner.listed_at_one_moment(prefix, keys)

    async def _delayed(self, run: Callable[[], Awaitable[T]]) -> T:
        jitter = self.latency.jitter
        total = max(0.0, self.latency.seconds + (self._rng.uniform(-jitter, jitter) if jitter else 0.0))
        await self.sleep(total / 2)
        try:
            return await run()
        finally:
            await self.sleep(total / 2)

    async def _get(self, key: str) -> Blob:
        return await self._delayed(lambda: self.inner.get(key))

    async def _head(self, key: str) -> str | None:
        return await self._delayed(lambda: self.inner.head(key))

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await self._delayed(lambda: self.inner.put(key, data, mode=mode))

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> builtins.list[str]:
        return await self._delayed(lambda: self.inner.list(prefix, start_after=start_after, limit=limit))

    async def _delete(self, key: str) -> None:
        await self._delayed(lambda: self.inner.delete(key))

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        await self._delayed(lambda: self.inner.delete_many(keys))

    async def _delete_unchanged(self, key: str, version: str) -> None:
        await self._delayed(lambda: self.inner.delete_unchanged({key: version}))

    async def _delete_many_unchanged(self, versions: dict[str, str]) -> None:
        await self._delayed(lambda: self.inner.delete_unchanged(versions))


def install(latency: Latency) -> LatencyStore:
    """Wrap the current vactor_cloud runtime's store in a :class:`LatencyStore` and return it.

    Call it right after ``vactor_cloud.init()``, before the first actor is
    touched: actors already loaded keep the unwrapped store.
    """
    from vactor_cloud.runtime import get_runtime

    runtime = get_runtime()
    store = LatencyStore(runtime.store, latency)
    runtime.store = store
    return store

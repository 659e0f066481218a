"""Review h184: a shutdown releases the folder lease it holds (``Folder.shutdown_lease``, run by
``Runtime.aclose``) and waits for that release, within ``close(timeout)``.

h133 and h135 pin what the release names and a stalled renewal before it; nothing failed if
the shutdown went on (closed the store, returned) with the release still in flight, nor if a
stalled release held the shutdown for good.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from test_combining import Switchable
from test_review_actor_cache import HANG
from test_review_h133_lease_at_shutdown import a_holder

from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec


class HeldRelease:
    """Holds the puts of the lease (at shutdown: its release) of ``store`` until ``gate`` is set;
    notes whether one had landed when the store was closed."""

    def __init__(self, store: Switchable) -> None:
        self.store = store
        self.releasing = threading.Event()
        self.gate = threading.Event()
        self.landed = threading.Event()
        self.landed_at_close: list[bool] = []
        self.inner_around = store._around
        self.inner_close = store.close
        store._around = self.around  # type: ignore[method-assign]
        store.close = self.close  # type: ignore[method-assign]

    async def around(self, operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation != "put" or not key.endswith("/lease"):
            return await self.inner_around(operation, key, run, **kw)
        self.releasing.set()
        await asyncio.to_thread(self.gate.wait, HANG)
        result = await self.inner_around(operation, key, run, **kw)
        self.landed.set()
        return result

    async def close(self) -> None:
        self.landed_at_close.append(self.landed.is_set())
        await self.inner_close()


def closing_with_the_release_held(
    store_spec: StoreSpec, timeout: float
) -> tuple[Any, HeldRelease, threading.Thread]:
    """A holder of "a"'s folder lease whose release PUT is held (``HeldRelease``), its runtime
    closing (``timeout``) on a thread of its own. The holder's lease store, the store's hold,
    the thread."""
    runtime, _, leases = a_holder(store_spec)
    store = runtime.store
    assert isinstance(store, Switchable)
    held = HeldRelease(store)
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": timeout}, daemon=True)
    closer.start()
    return leases, held, closer


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_returns_once_its_lease_release_landed(store_spec: StoreSpec) -> None:
    leases, held, closer = closing_with_the_release_held(store_spec, HANG)
    assert held.releasing.wait(HANG), "the shutdown did not release the lease"
    # (A bounded look: a shutdown that waits never ends here, one that does not may take longer
    # to end than this and pass; the order noted at the store's close below tells always.)
    closer.join(0.5)
    assert closer.is_alive(), "the shutdown returned with its lease release in flight"
    held.gate.set()
    closer.join(HANG)
    assert not closer.is_alive()
    assert held.landed_at_close == [True], "the store was closed before the lease release landed"
    assert _sync.sync(leases.read()).expires == 0


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_whose_lease_release_stalls_ends_within_its_timeout(store_spec: StoreSpec) -> None:
    _, held, closer = closing_with_the_release_held(store_spec, 0.3)
    try:
        assert held.releasing.wait(HANG), "the shutdown did not release the lease"
        closer.join(HANG)
        assert not closer.is_alive(), "the shutdown waited on a stalled lease release"
        assert held.landed_at_close == [False]  # (the store closed all the same)
    finally:
        held.gate.set()

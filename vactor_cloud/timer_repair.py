"""Repairing the timers' due index from the actors' steps: :func:`repair_timer_index`
(``vactor timers repair``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from vactor_cloud.errors import (
    ActorNotFoundError,
)
from vactor_cloud.history import iter_actor_ids
from vactor_cloud.runtime import Runtime, get_runtime
from vactor_cloud.timers import (
    repair_index,
)

__all__ = ["repair_timer_index"]


# -- repair ---------------------------------------------------------------------------------------


#: actor ids ``repair_timer_index()`` of every actor lists, then repairs, at a time, each in an
#: operation of its own (``Settings.deadline`` bounds each: some 50 LISTs, then a read of each)
_REPAIR_CHUNK = 1_000


def repair_timer_index(actor_ids: Iterable[str] | None = None, *, runtime: Runtime | None = None) -> int:
    """Write the due-index entry of every pending timer (of ``actor_ids``, default every actor).

    For entries lost to a crash between a commit and its index write.
    Without ``actor_ids`` it pages through the actor ids (a LIST per page, an actor
    with many steps skipped in one) and repairs them 1,000 at a time, each chunk
    listed once the one before is repaired, and each listing and each repair an
    operation of its own (``Settings.deadline`` bounds each, not the whole job): a
    job for a schedule, not a request path. Returns how many timers were (re)indexed.
    """
    runtime = runtime or get_runtime()

    async def read_extra(actor_id: str) -> dict[str, Any]:
        try:
            record = await runtime.core(actor_id).revalidate()
        except ActorNotFoundError:  # (objects but no step: a creation never committed)
            return {}
        return record.extra

    if actor_ids is not None:
        return runtime.run(repair_index(runtime.store, list(actor_ids), read_extra))
    # Run as one operation, the job had one deadline for every actor: past it (a bucket of a
    # few thousand actors), StorageTimeoutError, every time.
    ids = iter_actor_ids(runtime.store)
    written = 0
    try:
        while True:
            chunk = runtime.run(_next_ids(ids, _REPAIR_CHUNK))
            written += runtime.run(repair_index(runtime.store, chunk, read_extra))
            if len(chunk) < _REPAIR_CHUNK:
                return written
    finally:
        with contextlib.suppress(Exception):  # (one cut short mid-page is still running)
            runtime.run(ids.aclose())


async def _next_ids(ids: AsyncIterator[str], count: int) -> list[str]:
    """The next ``count`` ids of ``ids``, or what is left."""
    chunk: list[str] = []
    while len(chunk) < count:
        actor_id = await anext(ids, None)
        if actor_id is None:
            break
        chunk.append(actor_id)
    return chunk

"""A timer runner's claim on one actor's due timers (``split="claims"``): taken, released, bounded in time.

:func:`claim_actor` takes the create-only ``timer-claims/<actor>`` holding a lease (as
:mod:`vactor_cloud.timer_hints` encodes it), or takes over an expired one;
:func:`release_actor` deletes it after the fire (:mod:`vactor_cloud.timer_firing`), unless
another runner took it over; :func:`cut_off_after` bounds the taking by the lease's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from vactor_cloud import keys
from vactor_cloud.checked_read import read_checked
from vactor_cloud.errors import (
    AlreadyExistsError,
    DamagedObjectError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
)
from vactor_cloud.lease import expiry_too_far_ahead
from vactor_cloud.storage import IfMatch, ObjectStore
from vactor_cloud.timer_hints import encode_hint, read_hint, still_torn

__all__ = ["claim_actor", "cut_off_after", "release_actor"]

logger = logging.getLogger("vactor_cloud")
_T = TypeVar("_T")


# -- claims ---------------------------------------------------------------------------------------


async def claim_actor(
    store: ObjectStore, actor_id: str, runner: str, lease: float, signing_key: bytes | None = None
) -> str | None:
    """Take this runner's lease on ``actor_id``'s due timers: the version of the claim put (for
    :func:`release_actor`); None if another runner holds one (with ``signing_key``, one signed
    for this actor's claim: any other is taken over).

    A put whose answer was lost (an error, a timeout, a 412 or 409 that a retry of it met)
    may have landed: the claim is read back, and if it holds this put's bytes it is this
    runner's, at the version read. Else the put's error is raised (412: None). A claim torn
    by a crash (``TruncatedObjectError``) is deleted and created anew."""
    key = keys.timer_claim_key(actor_id)
    body = encode_hint(key, "timer-claim", {"runner": runner, "until": time.time() + lease}, signing_key)
    for attempt in range(_CLAIM_ROUNDS):
        try:
            return await store.put(key, body, mode="create")
        except AlreadyExistsError:
            pass
        except StorageError as exc:
            return await _own_claim_or_raise(store, key, body, exc)
        try:
            blob, held, _ = await read_hint(store, key, "timer-claim", signing_key)
        except NotFoundError:
            continue  # released meanwhile: try to create it again
        except TruncatedObjectError:
            # Torn by a crash (a local store's unsynced file): unreadable, so expired, and of no
            # version an if-match could name, nor the conditional delete of its runner's
            # release. Left, it failed every claim of the actor, its timers never fired.
            # Looked at again first (HEAD): whole by then (another runner removed it and took
            # its claim since the reads; or it is whole at rest, its reads cut on the way), it
            # is judged as any claim, in the next round (the last round raises). Still torn, it
            # is removed, then created: unconditionally, as it has no version; a claim another
            # runner took between the HEAD and the delete goes with it, and both take the actor
            # this once: work done twice, never a second firing.
            torn = await still_torn(store, key)
            if torn is False and attempt == _CLAIM_ROUNDS - 1:
                raise
            if torn:
                with contextlib.suppress(NotFoundError):
                    await store.delete(key)
            continue
        if blob.data == body:  # (our create landed; its retry met it)
            return blob.version
        try:
            if held is None:
                raise ValueError(key)
            until, now = float(held["until"]), time.time()
            live = (
                until > now
                and held.get("runner") != runner
                and not expiry_too_far_ahead(until, now, lease, f"the timer claim on {actor_id!r}")
            )
        except (ValueError, KeyError, TypeError):
            live = False  # unreadable: treat as expired
        if live:
            return None
        try:
            return await store.put(key, body, mode=IfMatch(blob.version))
        except (PreconditionFailedError, NotFoundError):
            return await _own_claim(store, key, body)
        except StorageError as exc:
            return await _own_claim_or_raise(store, key, body, exc)
    return None


#: rounds of :func:`claim_actor` (create, else read and judge the claim there)
_CLAIM_ROUNDS = 2


async def _own_claim(store: ObjectStore, key: str, body: bytes) -> str | None:
    """The version of the claim at ``key`` if it holds ``body`` (this put's bytes: a time and a
    runner id, never written twice); None if it does not or cannot be read."""
    try:
        blob = await read_checked(store, key, lambda blob: blob)
    except (StorageError, DamagedObjectError):
        return None
    return blob.version if blob.data == body else None


async def _own_claim_or_raise(store: ObjectStore, key: str, body: bytes, error: StorageError) -> str:
    """:func:`_own_claim` after the put of ``body`` at ``key`` failed with ``error``: raised
    if the claim there is not this put's."""
    version = await _own_claim(store, key, body)
    if version is None:
        raise error
    return version


async def release_actor(store: ObjectStore, actor_id: str, version: str) -> None:
    """Delete this runner's claim on ``actor_id`` (put at ``version``), unless another runner
    took it over meanwhile (this runner's fire outlasted its lease): that one's is left."""
    try:
        await store.delete_unchanged({keys.timer_claim_key(actor_id): version})
    except StorageError as exc:  # the lease expires by itself
        logger.debug("could not release the timer claim on %r: %s", actor_id, exc)


async def cut_off_after(
    start: Callable[[], Coroutine[Any, Any, _T]], seconds: float, key: str, what: str
) -> _T:
    """``start()``, cut off past ``seconds`` (``StorageTimeoutError``: its write may or may not have
    landed): the taking of a claim bounded by the lease's budget, not by ``Settings.deadline``
    alone (30 s by default: a claim put that answered after the lease was a claim expired as
    taken, and the actor was fired beside the runner that took it over)."""
    # (a task of its own, waited for by ``asyncio.wait``: ``asyncio.timeout`` needs a current
    # task, and ``Runtime.run`` starts a coroutine's first step eagerly, outside any)
    task = asyncio.ensure_future(start())  # (made here: one made before, never run, was never awaited)
    try:
        try:
            await asyncio.wait({task}, timeout=seconds)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
    except BaseException:
        # Cancelled (the runtime shut down, Ctrl-C, the operation's deadline) as the task
        # ended, or again while it waited above for the task it cancelled: nobody else takes
        # the task's outcome. Left, a failed one's exception went to the loop ("Task exception
        # was never retrieved") and a put that landed went unseen.
        _abandoned(task, key, what)
        raise
    if not task.cancelled():
        return task.result()
    raise StorageTimeoutError(
        f"{what} ({key}) took more than {seconds:g} s, a third of the lease: cut off (it may or "
        "may not have been written), tried again later",
        key,
        write_in_flight=True,
    )


def _abandoned(task: asyncio.Future[Any], key: str, what: str) -> None:
    """Take the outcome of :func:`cut_off_after`'s ``task``, which its caller no longer waits for
    (now, or when it ends), and log it (debug). A claim that landed so holds the actor for its
    lease at most, as one cut off that lands: its runner takes it back at its next tick."""

    def taken(task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.debug("%s (%s) failed after its tick stopped waiting for it: %s", what, key, error)
        else:
            logger.debug(
                "%s (%s) landed after its tick stopped waiting for it: it holds for its lease at most",
                what,
                key,
            )

    if task.done():
        taken(task)
    else:
        task.add_done_callback(taken)

"""Review h152, a mutation sweep of ``vactor_cloud/lease.py``: the folder lease object's reads
and conditional writes, driven through :class:`LeaseStore` on a store (the premise, a put
answered wrongly or a lease written by a clock that runs ahead, cannot be produced on cue by
a runtime). Each test fails with the mutation its docstring names applied.

The sweep of ``lease.py`` (17 mutations; the suite's lease tests run on memory and local,
except for the last five, judged against this module only: the ``time`` not written, the
lost-answer cases, one token for all, the skew bound):
killed by the suite already: the lease's length not read (``test_delete_faults``), the
clock-skew check dropped (``test_review_clocks``), a lease that fails to verify read as free
without reading it again (``test_review_h142_reads_cut_short``), every write a create
(``test_combining``). Survivors, each killed by a test here:

* a lease that fails to verify read as free *without* its version (so taken by a create that
  can never succeed): ``test_a_lease_damaged_at_rest_is_taken_over``;
* ``time`` not written (the lease's length then unknown):
  ``test_a_lease_longer_than_the_clock_skew_is_held``;
* the declared length not capped at ``LONGEST_LEASE``:
  ``test_a_forged_lease_declaring_a_long_length_is_not_believed``;
* ``CLOCK_SKEW`` left out of the bound: ``test_a_lease_from_a_clock_running_ahead_is_held``;
* a conflict answered for our own write (a retried put that had landed) taken for another's:
  ``test_a_conflict_answer_for_our_own_landed_write_is_ours``;
* a lost answer always raised, always taken for ours, or the new lease keeping the old
  version: ``test_a_lost_answer_is_resolved_by_reading_the_token_back``;
* a conflict answer for another's take believed ours (the token not compared, or one token
  for all): ``test_another_process_take_is_not_believed_ours``;
* a lease of a newer format read as free (and overwritten):
  ``test_a_lease_of_a_newer_format_is_not_taken_for_free``.

Also five of the delete's lease (``deletion._DeleterLease``, against the delete modules): a
take's lost answer not noted, and the release's retry dropped, killed by ``test_delete_faults``;
the release, unsure of its take, not checking whose lease it found, killed by
``test_a_delete_unsure_of_its_take_releases_only_a_lease_in_its_own_name``; left: renewal at
the full length instead of half (tuning: the delete's lease is a hint for progress), and
``hand_over`` not clearing the original (both then release one version: the second refused).

Left, equivalent: ``Lease.valid`` ignoring its ``now`` (no caller passes one); the ``kind``
check (no other object carries a lease's fields, and a signature binds its key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import pytest

from vactor_cloud import codec
from vactor_cloud.deletion import _DeleterLease
from vactor_cloud.errors import FormatVersionError, PreconditionFailedError, RetryableStorageError
from vactor_cloud.keys import lease_key
from vactor_cloud.lease import _ABSENT, CLOCK_SKEW, Lease, LeaseStore
from vactor_cloud.settings import Settings
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

T = TypeVar("T")
ACTOR = "h152-lease"


def _run(store_spec: StoreSpec, body: Callable[[ObjectStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = store_spec.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _lease_bytes(holder: str, expires: float, written: float, token: str = "ab" * 8) -> bytes:
    meta = {"kind": "lease", "holder": holder, "expires": expires, "step": 3, "token": token, "time": written}
    return codec.encode(lease_key(ACTOR), meta, {})


class _AnswersWrongly:
    """A store whose next lease put lands (or not) and then raises ``error``."""

    def __init__(self, inner: ObjectStore, error: Exception, lands: bool) -> None:
        self.inner = inner
        self.error: Exception | None = error
        self.lands = lands

    async def get(self, key: str) -> Any:
        return await self.inner.get(key)

    async def put(self, key: str, data: bytes, **kw: Any) -> Any:
        error, self.error = self.error, None
        if error is None:
            return await self.inner.put(key, data, **kw)
        if self.lands:
            await self.inner.put(key, data, **kw)
        raise error


def test_a_lease_damaged_at_rest_is_taken_over(store_spec: StoreSpec) -> None:
    """Mutation: ``LeaseStore.read`` answering a lease that never verifies with no version. The
    take is then a create on an object that exists: refused every time, and the damaged lease
    (a hint, never the truth) blocked every process from ever holding it."""

    async def body(store: ObjectStore) -> Lease | None:
        good = _lease_bytes("other", time.time() + 30, time.time())
        await store.put(lease_key(ACTOR), good[:-1] + bytes([good[-1] ^ 1]))
        leases = LeaseStore(store, ACTOR, None)
        seen = await leases.read()
        assert not seen.valid()
        return await leases.write(seen, "me", 30, 4)

    taken = _run(store_spec, body)
    assert taken is not None and taken.holder == "me", "a damaged lease could not be taken over"


def test_a_lease_longer_than_the_clock_skew_is_held(store_spec: StoreSpec) -> None:
    """Mutations: the lease's length (``expires - time``) not read, or ``time`` not written.
    A lease of ``lease_seconds`` longer than ``CLOCK_SKEW`` was then taken for one expiring too
    far ahead, so for an expired one: free to take while its holder still folds."""

    async def body(store: ObjectStore) -> Lease:
        leases = LeaseStore(store, ACTOR, None)
        mine = await leases.write(_ABSENT, "holder", CLOCK_SKEW * 2, 1)
        assert mine is not None
        return await leases.read()

    seen = _run(store_spec, body)
    assert seen.valid() and seen.holder == "holder", "a long lease, just written, was read as free"


def test_a_forged_lease_declaring_a_long_length_is_not_believed(store_spec: StoreSpec) -> None:
    """Mutation: the declared length not capped at ``LONGEST_LEASE``. A lease object claiming
    to have been written at the epoch and to expire in ten days was believed, for ten days."""

    async def body(store: ObjectStore) -> Lease:
        await store.put(lease_key(ACTOR), _lease_bytes("squatter", time.time() + 10 * 86400, 0.0))
        return await LeaseStore(store, ACTOR, None).read()

    assert not _run(store_spec, body).valid(), "a lease ten days ahead was believed"


def test_a_lease_from_a_clock_running_ahead_is_held(store_spec: StoreSpec) -> None:
    """Mutation: ``CLOCK_SKEW`` left out of the bound (``ahead <= length``). A 30 s lease written
    by a process whose clock runs 100 s ahead (within the skew allowed) was taken for an
    expired one while its holder folded."""
    skew = CLOCK_SKEW / 3

    async def body(store: ObjectStore) -> Lease:
        written = time.time() + skew
        await store.put(lease_key(ACTOR), _lease_bytes("ahead", written + 30, written))
        return await LeaseStore(store, ACTOR, None).read()

    seen = _run(store_spec, body)
    assert seen.valid() and seen.holder == "ahead", "a lease from a clock within the skew was read as free"


def test_a_conflict_answer_for_our_own_landed_write_is_ours(store_spec: StoreSpec) -> None:
    """Mutation: an ``AlreadyExists``/``PreconditionFailed`` answer taken for another's write
    without reading the token back. A put retried after its first attempt landed is answered
    so: the lease was ours, held in the store, and nobody folded (every poster waited for it
    to expire)."""

    async def body(store: ObjectStore) -> tuple[Lease | None, Lease]:
        wrong = _AnswersWrongly(store, PreconditionFailedError("lost", lease_key(ACTOR)), lands=True)
        leases = LeaseStore(cast(ObjectStore, wrong), ACTOR, None)
        taken = await leases.write(_ABSENT, "me", 30, 1)
        return taken, await leases.read()

    taken, stored = _run(store_spec, body)
    assert stored.holder == "me"
    assert taken is not None and taken.token == stored.token, "our own landed take was taken for another's"


@pytest.mark.parametrize("lands", [True, False])
def test_a_lost_answer_is_resolved_by_reading_the_token_back(store_spec: StoreSpec, lands: bool) -> None:
    """Mutations: a put whose answer was lost (a storage error) always raised, or always taken
    for ours. Landed, it is ours (and renewable by its version); not landed, the error reaches
    the caller, who does not believe it holds the lease."""

    async def body(store: ObjectStore) -> Lease | Exception | None:
        wrong = _AnswersWrongly(store, RetryableStorageError("lost", lease_key(ACTOR)), lands=lands)
        leases = LeaseStore(cast(ObjectStore, wrong), ACTOR, None)
        try:
            taken = await leases.write(_ABSENT, "me", 30, 1)
        except RetryableStorageError as exc:
            return exc
        assert taken is not None
        renewed = await leases.write(taken, "me", 30, 2)
        assert renewed is not None, "a lease taken through a lost answer could not be renewed"
        return taken

    outcome = _run(store_spec, body)
    if lands:
        assert isinstance(outcome, Lease) and outcome.holder == "me"
    else:
        assert isinstance(outcome, RetryableStorageError), f"a put that did not land returned {outcome!r}"


def test_a_lease_of_a_newer_format_is_not_taken_for_free(store_spec: StoreSpec) -> None:
    """Mutation: ``FormatVersionError`` caught with the unreadable leases (free). A newer
    vactor_cloud's lease, overwritten by this one, lost its holder's hold; it is refused instead
    ("upgrade"), as every other object of a newer format is."""

    async def body(store: ObjectStore) -> Lease:
        meta = {"kind": "lease", "holder": "newer", "expires": time.time() + 30, "step": 1, "token": "cd" * 8}
        newer = codec.encode(lease_key(ACTOR), meta, {}, version=codec.FORMAT_VERSION + 1)
        await store.put(lease_key(ACTOR), newer)
        return await LeaseStore(store, ACTOR, None).read()

    with pytest.raises(FormatVersionError):
        _run(store_spec, body)


def test_another_process_take_is_not_believed_ours(store_spec: StoreSpec) -> None:
    """Mutations: a conflict answer taken for ours without comparing the token read back, or
    every write carrying the same token. Two processes taking a free lease at once then both
    believed they held it (the lease's one job: one folder at a time)."""

    async def body(store: ObjectStore) -> tuple[Lease | None, Lease | None, Lease]:
        first = LeaseStore(store, ACTOR, None)
        second = LeaseStore(store, ACTOR, None)
        free = await second.read()
        a = await first.write(free, "a", 30, 1)
        b = await second.write(free, "b", 30, 1)  # (on the free lease it read before a's take)
        return a, b, await first.read()

    a, b, stored = _run(store_spec, body)
    assert a is not None and stored.holder == "a"
    assert b is None, "a take refused by the store was believed ours"


def test_a_delete_unsure_of_its_take_releases_only_a_lease_in_its_own_name(store_spec: StoreSpec) -> None:
    """Mutation (``deletion._DeleterLease.release``): a take whose answer was lost (``maybe``)
    read back and released without checking whose lease it found. The delete then released
    the lease another process had taken meanwhile, and was folding under: posters took it over
    while its holder still folded (progress lost to churn, every poster racing it)."""

    async def body(store: ObjectStore) -> Lease:
        leases = LeaseStore(store, ACTOR, None)
        deleter = _DeleterLease(leases, "deleter", Settings())
        deleter.maybe = True  # (its take's answer lost, and its read back failed too)
        assert await leases.write(_ABSENT, "folder", 30, 1) is not None  # (the take did not land)
        await deleter.release(2)
        return await leases.read()

    stored = _run(store_spec, body)
    assert stored.valid() and stored.holder == "folder", "a delete released another process's lease"

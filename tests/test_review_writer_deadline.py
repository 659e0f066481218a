"""A writer call against a store that stalls ends near ``Settings.deadline``, retries included.

Found by review h100 on fake-gcs-server stopped with SIGSTOP: with ``timeout=1`` and
``deadline=3`` a writer call failed after 6.4 s. Before its step's put, a commit retried a
storage error up to five times in a row, each attempt bounded by the request timeout, and the
only time limit on the retries was ``commit_timeout`` (120 s): with the defaults a call against
a stalled store took about 50 s, where ``Settings.deadline`` (30 s) says "retries included".
Now the retries stop once the commit is ``deadline`` old (or, after a lost race, once its
failures in a row are); a lost race or a posted batch are retried as before.

The store here fails every read of the actor after a pause, as a stalled one answers late (the
first at once, so that the retry the test needs is made on a loaded host too); the test counts
attempts, not seconds: a loaded host makes the pauses longer and the attempts fewer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import counters
from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: each failing read's wait (a stalled store's answer that never came, shortened)
PAUSE = 0.15
#: the deadline: two failing reads' time
DEADLINE = 2 * PAUSE


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


class StalledReads(FaultyStore):
    """Every read of an actor's objects fails as a timed-out request, ``PAUSE`` after it was sent
    (the first one at once: after ``PAUSE``, a loaded host's scheduling could take the rest of the
    deadline, and the first failure came too late for any retry)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, FaultConfig())
        self.failed = 0
        #: failing reads from now on, until ``healed`` (counted in ``failed``)
        self.stalled = False
        #: ...and after this many failed reads, answering again
        self.heal_after: int | None = None

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        healed = self.heal_after is not None and self.failed >= self.heal_after
        if self.stalled and not healed and operation in ("get", "head", "list") and key.startswith("actors/"):
            self.failed += 1
            await asyncio.sleep(PAUSE if self.failed > 1 else 0.0)
            raise StorageTimeoutError(f"{key}: no answer within the timeout (injected)", key)
        return await run()


def _cached_then_stalled(spec: StoreSpec, actor_id: str, deadline: float) -> StalledReads:
    """``actor_id`` loaded in this process's cache, which every commit checks first
    (``fresh_window=0``: a probe read before the put); then every read of it stalls, and calls
    have ``deadline`` (the setup had it too, and a loaded host's get_or_create ran past 0.3 s)."""
    spec.init(settings=vc.Settings(storage="", timeout=5.0, fresh_window=0.0))
    runtime = vc.get_runtime()
    store = StalledReads(runtime.store)
    runtime.store = store
    assert Tally.get_or_create(actor_id).add.run() == 1
    retune(deadline=deadline)
    store.stalled = True
    counters.reset()
    return store


def test_a_writer_call_against_a_stalled_store_stops_retrying_at_the_deadline(spec: StoreSpec) -> None:
    store = _cached_then_stalled(spec, "t", DEADLINE)
    with pytest.raises(StorageTimeoutError):
        Tally.get_or_create("t").add.run()
    retries = vc.stats()["commit_retries_transient"]
    # Within the deadline there is time for one retry, two at most (each attempt waits PAUSE
    # at least); before, five were made whatever the deadline.
    assert 0 < retries <= 2 and store.failed <= 3, (retries, store.failed)


def test_a_short_hiccup_within_the_deadline_is_still_retried(spec: StoreSpec) -> None:
    store = _cached_then_stalled(spec, "h", 30.0)
    store.heal_after = 2  # two failed reads; then the store answers again
    assert Tally.get_or_create("h").add.run() == 2
    assert vc.stats()["commit_retries_transient"] == 2

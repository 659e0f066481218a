"""History and time travel through the Python API, on every lane."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.history import iter_actor_ids
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Ledger:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.entries: list[int] = []

    def add(self, amount: int) -> int:
        self.entries.append(amount)
        return sum(self.entries)

    @vc.virtual_actor.readonly
    def total(self) -> int:
        return sum(self.entries)

    @vc.virtual_actor.readonly
    def window(self, at_step: int) -> list[int]:
        """A method with its own ``at_step`` parameter: the keyword must reach it."""
        return self.entries[:at_step]


@pytest.fixture
def actors(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreSpec]:
    for key, value in store_spec.env.items():
        monkeypatch.setenv(key, value)
    vc.init(store_spec.url, **store_spec.options)
    try:
        yield store_spec
    finally:
        vc.shutdown()


def _delete_steps_below(actor_id: str, watermark: int) -> None:
    """What compaction leaves behind (DESIGN.md §5): a raised gc watermark, older steps gone."""
    log = vc.get_runtime().log(actor_id)

    async def run() -> None:
        await log.store.put(log.gc_key, codec.encode(log.gc_key, {"kind": "gc", "min_step": watermark}))
        for step in range(watermark):
            await log.store.delete(log.step_key(step))

    _sync.sync(run())


def test_history_is_newest_first_with_call_summaries(actors: StoreSpec) -> None:
    ledger = Ledger.get_or_create("ann", "Ann")
    for amount in (5, 7, 11):
        ledger.add.run(amount)
    entries = ledger.history()
    assert [e.step for e in entries] == [3, 2, 1, 0]
    assert [(c.method, c.args, c.result) for c in entries[0].calls] == [("add", "11", "23")]
    assert entries[-1].calls[0].method == "__init__"
    assert entries[-1].calls[0].args == "'Ann'"
    assert entries[0].class_name.endswith(":Ledger")
    assert len({e.writer for e in entries}) == 4
    assert entries[0].time >= entries[-1].time
    assert [e.step for e in ledger.history(limit=2)] == [3, 2]
    assert ledger.history(limit=0) == []
    assert entries[0].to_json()["calls"][0]["result"] == "23"


def test_state_at_is_the_past_state_and_read_only(actors: StoreSpec) -> None:
    ledger = Ledger.get_or_create("bob", "Bob")
    ledger.add.run(1)
    ledger.add.run(2)
    past = ledger.state_at(1)
    assert past.entries == [1]
    assert past.total() == 1
    with pytest.raises(AttributeError, match="read-only"):
        past.owner = "Eve"
    assert ledger.state_at(2).entries == [1, 2]
    assert ledger.total.run() == 3


def test_run_at_step_runs_a_readonly_method_on_an_old_state(actors: StoreSpec) -> None:
    ledger = Ledger.get_or_create("cy", "Cy")
    for amount in (10, 20, 30):
        ledger.add.run(amount)
    assert ledger.total.run(at_step=1) == 10
    assert ledger.total.run(at_step=2) == 30
    assert ledger.total.options(at_step=0).run() == 0
    assert vc.get(ledger.total.run_async(at_step=3)) == 60
    assert ledger.total.run() == 60


def test_a_method_parameter_named_at_step_keeps_the_keyword(actors: StoreSpec) -> None:
    ledger = Ledger.get_or_create("di", "Di")
    for amount in (1, 2, 3):
        ledger.add.run(amount)
    assert ledger.window.run(at_step=2) == [1, 2]  # the method's own parameter
    assert ledger.window.options(at_step=1).run(at_step=5) == [1]  # step 1's state


def test_at_step_is_refused_for_writers_and_bad_steps(actors: StoreSpec) -> None:
    ledger = Ledger.get_or_create("ed", "Ed")
    with pytest.raises(ValueError, match="writer method"):
        ledger.add.run(1, at_step=0)
    with pytest.raises(ValueError, match="step number"):
        ledger.total.run(at_step=-1)
    with pytest.raises(vc.StepNotFoundError, match="not written yet"):
        ledger.total.run(at_step=7)
    assert ledger.history()[0].step == 0  # nothing was written


def test_a_compacted_step_says_so_and_names_the_remaining_steps(actors: StoreSpec) -> None:
    ledger = Ledger.get_or_create("flo", "Flo")
    for amount in range(5):
        ledger.add.run(amount)
    _delete_steps_below("flo", 3)
    with pytest.raises(vc.StepNotFoundError, match=r"step 1 was compacted.*steps 3\.\.5 remain") as err:
        ledger.state_at(1)
    assert err.value.compacted and err.value.remaining == (3, 5)
    with pytest.raises(LookupError, match="compacted"):
        ledger.total.run(at_step=0)
    assert [e.step for e in ledger.history()] == [5, 4, 3]
    assert ledger.state_at(3).entries == [0, 1, 2]


def test_list_actors_pages_by_id_with_class_and_newest_step(actors: StoreSpec) -> None:
    ids = ["a-1", "a", "a0", "b.2", "ab"]
    for actor_id in ids:
        Ledger.get_or_create(actor_id, actor_id)
    Ledger.get_or_create("a").add.run(4)
    found = vc.list_actors()
    in_key_order = sorted(ids, key=lambda i: f"{i}/")  # "a-1/" sorts before "a/"
    assert [i.actor_id for i in found] == in_key_order
    by_id = {i.actor_id: i for i in found}
    assert by_id["a"].step == 1 and by_id["ab"].step == 0
    assert by_id["a"].class_name.endswith(":Ledger")
    assert [i.actor_id for i in vc.list_actors("a")] == ["a-1", "a", "a0", "ab"]
    pages: list[list[str]] = []
    page = vc.list_actors(limit=2)
    while page and len(pages) < 10:
        pages.append([i.actor_id for i in page])
        page = vc.list_actors(start_after=page[-1].actor_id, limit=2)
    assert pages == [in_key_order[0:2], in_key_order[2:4], in_key_order[4:]]
    assert vc.list_actors("zzz") == []


def test_history_and_state_of_a_missing_actor_raise_actor_not_found(actors: StoreSpec) -> None:
    from vactor_cloud.history import history, state_at

    with pytest.raises(vc.ActorNotFoundError):
        history("nobody")
    with pytest.raises(vc.ActorNotFoundError):
        state_at("nobody", 0)


def test_actor_ids_page_through_one_listing_skipping_each_actors_objects() -> None:
    store = MemoryStore("actor-id-paging")
    listed: list[tuple[str, str | None, int | None]] = []
    real_list = store._list

    async def recording(prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed.append((prefix, start_after, limit))
        return await real_list(prefix, start_after, limit)

    store._list = recording  # type: ignore[method-assign]

    async def body() -> tuple[list[str], list[str]]:
        for i in range(40):
            steps = 500 if i % 10 == 3 else 2  # a few actors with long logs
            for step in range(steps):
                await store.put(f"actors/a{i:02d}/steps/{step:020d}", b"s")
            await store.put(f"actors/a{i:02d}/HEAD", b"h")
        await store.put("actors/not-an-actor", b"x")
        first: list[str] = []
        async for actor_id in iter_actor_ids(store):
            first.append(actor_id)
            if len(first) == 5:
                break
        listed.clear()
        resumed = [actor_id async for actor_id in iter_actor_ids(store, start_after="a30")]
        return first, resumed

    try:
        first, resumed = asyncio.run(body())
    finally:
        MemoryStore.wipe("actor-id-paging")
    assert first == [f"a{i:02d}" for i in range(5)]
    assert resumed == [f"a{i:02d}" for i in range(31, 40)]
    # Every LIST is bounded, and one per page or per long log, not one per key or per actor.
    assert all(limit is not None for _, _, limit in listed)
    assert len(listed) <= 3, listed

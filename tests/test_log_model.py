"""A Hypothesis state machine over the commit log against a dict model.

Rules create actors, commit (single calls, group-committed batches, raising
calls, idempotent calls), read, compact, and reopen the runtime (fresh caches,
as a new process would). After every rule the visible values must equal the
model's, and compaction must leave a gapless tail ending at the newest step.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.runtime import Settings
from vactor_cloud.storage import MemoryStore

ACTOR_IDS = st.sampled_from(["a", "b", "c"])


class Refused(Exception):
    pass


@vc.virtual_actor
class Account:
    def __init__(self, start: int) -> None:
        self.value = start

    def add(self, amount: int) -> int:
        self.value += amount
        return self.value

    def add_then_fail(self, amount: int) -> None:
        self.value += amount
        raise Refused("nothing of this call may be committed")

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return int(self.value)


class LogModel(RuleBasedStateMachine):
    """Subclasses choose the store (``url()``/``cleanup()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.watermarks: dict[str, int] = {}
        self.storage = self.url()
        self.start()

    def url(self) -> str:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass

    def start(self) -> None:
        # fresh_window=0: every commit validates, so compaction may use min_age=0.
        vc.init(self.storage, settings=Settings(storage=self.storage, fresh_window=0.0, head_interval=0.05))

    def teardown(self) -> None:
        vc.shutdown()
        self.cleanup()

    @rule(actor_id=ACTOR_IDS, start=st.integers(-5, 5))
    def create(self, actor_id: str, start: int) -> None:
        handle = Account.get_or_create(actor_id, start)
        self.values.setdefault(actor_id, start)
        assert handle.get.run() == self.values[actor_id]

    @precondition(lambda self: bool(self.values))
    @rule(data=st.data(), amount=st.integers(-3, 3))
    def commit(self, data: st.DataObject, amount: int) -> None:
        actor_id = data.draw(st.sampled_from(sorted(self.values)))
        self.values[actor_id] += amount
        assert vc.get_actor(actor_id).add.run(amount) == self.values[actor_id]

    @precondition(lambda self: bool(self.values))
    @rule(
        data=st.data(),
        amounts=st.lists(st.integers(-3, 3), min_size=2, max_size=6),
        fail_at=st.integers(0, 8),
    )
    def commit_batch(self, data: st.DataObject, amounts: list[int], fail_at: int) -> None:
        actor_id = data.draw(st.sampled_from(sorted(self.values)))
        handle = vc.get_actor(actor_id)
        futures = []
        for position, amount in enumerate(amounts):
            method = handle.add_then_fail if position == fail_at else handle.add
            futures.append(method.run_async(amount))
        for position, (amount, future) in enumerate(zip(amounts, futures, strict=True)):
            if position == fail_at:
                with pytest.raises(Refused):
                    future.result(30)
            else:
                self.values[actor_id] += amount
                assert future.result(30) == self.values[actor_id]

    @precondition(lambda self: bool(self.values))
    @rule(data=st.data(), key=st.sampled_from(["k1", "k2"]), amount=st.integers(1, 3))
    def commit_idempotent(self, data: st.DataObject, key: str, amount: int) -> None:
        actor_id = data.draw(st.sampled_from(sorted(self.values)))
        result = vc.get_actor(actor_id).add.options(idempotency_key=key).run(amount)
        if (actor_id, key) not in self.keys:
            self.values[actor_id] += amount
            self.keys[(actor_id, key)] = self.values[actor_id]
        assert result == self.keys[(actor_id, key)]

    @precondition(lambda self: bool(self.values))
    @rule(data=st.data(), keep_last=st.integers(1, 3))
    def compact(self, data: st.DataObject, keep_last: int) -> None:
        actor_id = data.draw(st.sampled_from(sorted(self.values)))
        report = vc.get_actor(actor_id).compact(keep_last=keep_last, min_age=0)
        # Forward only: an earlier compaction with a smaller keep_last may have gone further.
        expected = max(self.watermarks.get(actor_id, 0), report.newest - keep_last + 1)
        assert report.watermark == expected
        self.watermarks[actor_id] = expected
        remaining = _sync.sync(vc.get_runtime().log(actor_id).list_steps())
        assert remaining == list(range(report.watermark, report.newest + 1))

    @rule()
    def reopen(self) -> None:
        vc.shutdown()
        self.start()

    @invariant()
    def values_match_the_model(self) -> None:
        for actor_id, value in self.values.items():
            assert vc.get_actor(actor_id).get.run() == value

    @invariant()
    def the_log_is_a_gapless_chain(self) -> None:
        for actor_id in self.values:
            log = vc.get_runtime().log(actor_id)
            numbers = _sync.sync(log.list_steps())
            assert numbers == list(range(numbers[0], numbers[-1] + 1))
            newest = _sync.sync(log.read_step(numbers[-1]))
            assert newest is not None and newest.parent == (numbers[-1] - 1 if numbers[-1] else None)
            assert numbers[0] >= _sync.sync(log.read_gc())


class MemoryLogModel(LogModel):
    def url(self) -> str:
        self._name = f"log-model-{uuid.uuid4().hex}"
        return f"memory://{self._name}"

    def cleanup(self) -> None:
        MemoryStore.wipe(self._name)


class LocalLogModel(LogModel):
    def url(self) -> str:
        self._root = tempfile.mkdtemp(prefix="vactor-log-model-")
        return self._root

    def cleanup(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


# Bounded so that both run in well under 30 s (local files cost a fsync per write).
_memory_budget = settings(
    max_examples=40, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_local_budget = settings(
    max_examples=12, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

TestMemoryLogModel = _memory_budget(MemoryLogModel).TestCase
TestLocalLogModel = _local_budget(LocalLogModel).TestCase

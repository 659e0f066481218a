"""Review h93: a nested call whose outcome is not known yet is not the outer call's own.

A method that calls another actor, whose call was posted under contention and given up on
(``CallPendingError``: it may still be applied), fails with that error. Its caller heard
the inner ``CallPendingError`` as it was: naming the inner actor and the inner call id, a
``CommitOutcomeUnknownError``, so the outer caller took its own call for one that may still
apply, and asked ``call_outcome`` for an id its handle never knew. The outer call was not
applied (its method raised): its caller now hears ``NestedCallPendingError``, naming its own
call and the nested one, the nested error its ``__cause__``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from test_posting import Tally, _commit_behind_its_back

import vactor_cloud as vc
from vactor_cloud.errors import CallPendingError, CommitOutcomeUnknownError, VactorError
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@vc.virtual_actor
class Relay:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, target: str, item: Any) -> int:
        """Add ``item`` to tally ``target``, keyed by this call's id (the same in its retries)."""
        self.sent.append(item)
        call = vc.current_call()
        assert call is not None
        vc.get_actor(target).add.options(idempotency_key=f"{call.call_id}/add").run(item)
        return len(self.sent)

    @vc.virtual_actor.readonly
    def peek(self, target: str) -> list[Any]:
        return list(vc.get_actor(target).get.run())

    @vc.virtual_actor.readonly
    def read(self) -> list[Any]:
        return list(self.sent)


@pytest.fixture
def impatient(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """A runtime whose posted calls are given up on at once (one commit attempt), and whose
    cache is trusted (a put goes out without a probe, and loses to a commit behind its back)."""
    settings = Settings(storage=store_spec.url, fresh_window=300.0, max_commit_attempts=1, combine_after=1)
    store_spec.init(settings=settings)
    try:
        yield store_spec
    finally:
        vc.shutdown()


def test_a_nested_pending_call_fails_the_outer_call_as_not_applied_naming_both(
    impatient: StoreSpec,
) -> None:
    Tally.get_or_create("inner").add.run("a")
    relay = Relay.get_or_create("outer")
    _commit_behind_its_back(impatient, "inner", "b")
    with pytest.raises(VactorError) as raised:
        relay.send.options(idempotency_key="k").run("inner", "c")
    error = raised.value
    inner = error.__cause__
    assert isinstance(inner, CallPendingError), repr(inner)
    (inner_id,) = inner.call_ids
    assert not isinstance(error, CommitOutcomeUnknownError), repr(error)  # its outcome is known
    assert "'outer'" in str(error) and "not applied" in str(error) and inner_id in str(error), str(error)
    assert type(error).__name__ == "NestedCallPendingError"
    assert (error.actor_id, error.nested_actor_id, error.nested_call_ids) == ("outer", "inner", [inner_id])
    copy = pickle.loads(pickle.dumps(error))  # (as a folded call's outcome travels)
    assert (type(copy), str(copy), copy.nested_call_ids) == (type(error), str(error), [inner_id])
    assert relay.read.run() == []
    # The key recorded nothing: once the nested call applies (a patient runtime folds its
    # post), the retry with the key runs the method again; its nested call, keyed by the
    # call id, is answered from the inner table and applies once.
    vc.shutdown()
    impatient.init(settings=Settings(storage=impatient.url, fresh_window=300.0, combine_after=1))
    Tally.get_or_create("inner").get.run()
    _commit_behind_its_back(impatient, "inner", "d")
    assert Relay.get_or_create("outer").send.options(idempotency_key="k").run("inner", "c") == 1
    assert vc.get_actor("inner").get.run() == ["a", "b", "d", "c"]
    assert vc.get_actor("outer").read.run() == ["c"]


def test_a_read_only_method_whose_nested_call_is_pending_names_itself(impatient: StoreSpec) -> None:
    """A read-only method that calls a writer: the same, though it has nothing to apply."""
    Tally.get_or_create("inner").add.run("a")
    relay = Relay.get_or_create("outer")
    _commit_behind_its_back(impatient, "inner", "b")

    @vc.virtual_actor
    class Prober:
        @vc.virtual_actor.readonly
        def probe(self, target: str) -> list[Any]:
            return list(vc.get_actor(target).add.run("p"))

    with pytest.raises(VactorError) as raised:
        Prober.get_or_create("prober").probe.run("inner")
    assert type(raised.value).__name__ == "NestedCallPendingError", repr(raised.value)
    assert isinstance(raised.value.__cause__, CallPendingError)
    assert "'prober'" in str(raised.value), str(raised.value)
    assert relay.read.run() == []


def test_through_two_actors_the_outer_caller_hears_of_its_own_call_and_the_one_in_doubt(
    impatient: StoreSpec,
) -> None:
    """A calls B, which calls C, whose call is pending: A's caller hears of A's call (not B's,
    which was not applied either), and of C's call in doubt."""
    Tally.get_or_create("inner").add.run("a")
    Relay.get_or_create("middle")
    _commit_behind_its_back(impatient, "inner", "b")

    @vc.virtual_actor
    class Front:
        def forward(self, item: Any) -> int:
            return int(vc.get_actor("middle").send.run("inner", item))

    with pytest.raises(VactorError) as raised:
        Front.get_or_create("front").forward.run("c")
    error = raised.value
    assert type(error).__name__ == "NestedCallPendingError", repr(error)
    assert (error.actor_id, error.nested_actor_id) == ("front", "inner"), str(error)
    assert str(error).startswith("actor 'front'"), str(error)
    assert isinstance(error.__cause__, VactorError) and error.__cause__.actor_id == "middle"
    assert isinstance(error.__cause__.__cause__, CallPendingError)
    assert vc.get_actor("middle").read.run() == []

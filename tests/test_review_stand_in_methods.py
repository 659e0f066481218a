"""Methods of a handle unpickled where its class is not defined ("stand-ins": docs/protocol.md,
"Handles in pickles"), review h102.

Such a method is a writer taking any arguments at the call site: this process cannot check
them. Where the call runs, the actor's class is known (loaded from its stored body), and the
call is held to what a call through a handle of that class may do: a public method of the
class, with arguments that fit it. Otherwise it fails there, reaching its caller, changing
nothing and committing no step.

The setup is that of ``test_review_pickled_handles``: process A (this test's runtime) knows
the id as a ``Gauge`` (a stale cache), process B made it a ``Meter`` again, and A unpickles a
``Meter`` handle with ``Meter`` not registered here.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from test_review_warm_after_delete import WARM, as_a, as_b

import vactor_cloud as vc
from vactor_cloud import definition as definition_module
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.n = 0
        self.notes: list[str] = []

    def add(self, amount: int) -> int:
        self.notes.append(f"add {amount}")  # changed before the arguments are used
        self.n += amount
        return self.n

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n

    #: shared by every instance in a process (``kinds`` returns it, not a copy)
    KINDS = ["add"]

    @vc.virtual_actor.readonly
    def kinds(self) -> list[str]:
        return self.KINDS

    @staticmethod
    def helper() -> int:
        """Not a method a handle calls (static)."""
        return 42


@vc.virtual_actor
class Gauge2:
    def __init__(self) -> None:
        self.n = 0


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


def _stand_in_ledger(spec: StoreSpec, actor_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A ``Ledger`` handle unpickled in A, whose cache says the id holds a ``Gauge2``, after B
    made it a ``Ledger`` again (n == 1), ``Ledger`` not defined in A."""
    as_a(spec, WARM)
    ledger = Ledger.get_or_create(actor_id)
    assert ledger.add.run(1) == 1
    data = pickle.dumps(ledger)

    def again(cls: Any) -> Any:
        def action() -> None:
            assert vc.delete_actor(actor_id) is True
            cls.get_or_create(actor_id)
            if cls is Ledger:
                vc.get_actor(actor_id).add.run(1)

        return action

    as_b(spec, again(Gauge2))
    with pytest.raises(vc.ActorClassChangedError):
        ledger.add.run(1)  # A learns the id holds a Gauge2
    as_b(spec, again(Ledger))
    monkeypatch.delitem(definition_module._REGISTRY, Ledger.name)
    return pickle.loads(data)


def _ledger_as_b(spec: StoreSpec, actor_id: str) -> tuple[int, int]:
    """(n, steps in history) as B sees them."""

    def look() -> tuple[int, int]:
        handle = vc.get_actor(actor_id)
        return int(handle.peek.run()), len(list(handle.history()))

    result: tuple[int, int] = as_b(spec, look)
    return result


def test_a_stand_in_with_arguments_that_do_not_fit_fails_with_a_type_error_and_changes_nothing(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in = _stand_in_ledger(spec, "si-args", monkeypatch)
    before = _ledger_as_b(spec, "si-args")
    assert before[0] == 1
    with pytest.raises(TypeError, match="add"):
        stand_in.add.run(1, 2, 3)
    with pytest.raises(TypeError, match="add"):
        stand_in.add.options(max_retries=3).run(nope=1)
    assert _ledger_as_b(spec, "si-args") == before
    assert stand_in.add.run(2) == 3  # the handle still works


def test_a_stand_in_naming_no_method_of_the_class_fails_with_an_attribute_error(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A static method, a state field, a name the class lacks: none is a method a handle calls
    (a handle of the class raises ``AttributeError``); through a stand-in the static method
    ran as a writer and committed a step."""
    stand_in = _stand_in_ledger(spec, "si-name", monkeypatch)
    before = _ledger_as_b(spec, "si-name")
    for name in ("helper", "notes", "missing"):
        with pytest.raises(AttributeError, match=name):
            getattr(stand_in, name).run()
    assert _ledger_as_b(spec, "si-name") == before


def test_a_stand_in_of_a_read_only_method_commits_no_step(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown here, ``peek`` is a writer at the call site; where it runs it is the class's
    read-only method: it answers, and no step is committed for it."""
    stand_in = _stand_in_ledger(spec, "si-read", monkeypatch)
    before = _ledger_as_b(spec, "si-read")
    assert stand_in.peek.run() == 1
    assert _ledger_as_b(spec, "si-read") == before

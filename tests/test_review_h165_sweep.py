"""Review h165: a mutation sweep of the small modules (bytecode, method_select, call_queue,
child_reports, tracing, counters), the mypy plugin and the typed handle.

TABLE

The call queue's and the child reports' tests are modules of their own
(``test_review_h165_call_queue``, ``test_review_h165_child_reports``).
"""

from __future__ import annotations

import pickle

import pytest

import vactor_cloud as vc
from vactor_cloud import bytecode
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


# -- bytecode: code of another Python refused, saying which ---------------------------------------


def test_code_of_another_python_is_refused_naming_that_python_and_the_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refusal's text ends with the Python to load it with, quotes of the ``AttributeError``'s
    text cut off, and keeps the ``AttributeError`` as its cause. (Mutations: the quote kept, the
    cause dropped.)"""
    monkeypatch.setattr(bytecode, "_CONSTRUCTOR", bytecode._checked_constructor("cpython-99"))
    data = bytecode.dumps([lambda x: x + 1])
    with pytest.raises(vc.OtherPythonError) as caught:
        bytecode.loads(data)
    message = str(caught.value)
    assert message.startswith("CodeType compiled by cpython-99: "), message
    assert message.endswith("load it with cpython-99"), message
    assert isinstance(caught.value.__cause__, AttributeError)
    with pytest.raises(AttributeError) as plain:
        pickle.loads(data)
    assert str(bytecode.other_python(plain.value)) == message


def test_an_attribute_error_of_the_objects_own_is_raised_as_it_is() -> None:
    broken = b"cbuiltins\nno_such_name\n."  # (a global of a module that has none of that name)
    with pytest.raises(AttributeError) as caught:
        bytecode.loads(broken)
    assert not isinstance(caught.value, vc.OtherPythonError)
    assert bytecode.other_python(caught.value) is caught.value


# -- method_select: vc.method(h, lambda a: a.name) is h.name -------------------------------------


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.total = 0

    def addEntry(self, amount: int) -> int:  # noqa: N802 (a user's camelCase name)
        self.total += amount
        return self.total

    def addentry(self, amount: int) -> int:
        return -1

    @vc.virtual_actor.readonly
    def Total(self) -> int:  # noqa: N802
        return self.total


def test_method_selects_the_method_of_the_exact_name(actor_store: StoreSpec) -> None:
    """(Mutation: the name looked up changed on the way, here lower-cased: another method ran.)"""
    ledger = Ledger.get_or_create("l")
    assert vc.method(ledger, lambda a: a.addEntry).run(5) == 5
    assert vc.method(ledger, lambda a: a.Total).run() == 5
    assert vc.method(ledger, lambda a: a.addEntry).run_async(2).result(30) == 7

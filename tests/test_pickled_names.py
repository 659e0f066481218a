"""Exceptions a method may raise are stored pickled in outcomes, by the name of their class's
module: each public one is pickled under the module its documentation names, which stays
importable whichever module defines it (another version of the library reads the outcome)."""

from __future__ import annotations

import pickle
import pickletools

import pytest

import vactor_cloud
from vactor_cloud import errors, inbox


def _globals_named(data: bytes) -> set[str]:
    """The module names a pickle's global references name (their ``module`` part)."""
    names: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == "STACK_GLOBAL":
            names.add(strings[-2])
        elif op.name == "GLOBAL":
            names.add(str(arg).split(" ")[0])
    return names


def _public_exceptions() -> list[type[BaseException]]:
    found = {
        obj
        for module in (vactor_cloud, errors, inbox)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith("vactor_cloud")
    }
    return sorted(found, key=lambda cls: cls.__qualname__)


def test_the_event_in_doubt_error_is_pickled_under_the_module_its_docs_name() -> None:
    error = inbox.EventInDoubtError("could not tell", "actors/a/events/x", "x")
    data = pickle.dumps(error)
    assert _globals_named(data) == {"vactor_cloud.inbox"}, _globals_named(data)
    again = pickle.loads(data)
    assert type(again) is inbox.EventInDoubtError and again.event_id == "x"


@pytest.mark.parametrize("cls", _public_exceptions(), ids=lambda cls: cls.__qualname__)
def test_each_public_exception_is_pickled_under_a_module_that_exports_it(cls: type[BaseException]) -> None:
    """Whatever module defines it, the module its pickles name holds it by that name."""
    module = __import__(cls.__module__, fromlist=["_"])
    assert getattr(module, cls.__qualname__) is cls
    assert cls.__module__ in {"vactor_cloud", "vactor_cloud.errors", "vactor_cloud.inbox"}, cls.__module__

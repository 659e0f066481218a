"""Review h176: ``vactor call`` on a method that is a callable object: one whose ``__getattr__``
raises something other than ``AttributeError``, and one that takes arguments.

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

from typing import Any

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR, EXIT_USAGE


class _Looker:
    """A callable object as a method, whose ``__getattr__`` raises ``LookupError`` for
    ``__func__`` (which the CLI looks up on a method: a bound method's function). One raising
    so for ``__wrapped__``, ``__code__``, ``__signature__`` or the library's marks fails at
    ``@virtual_actor`` already (``inspect.signature``, and the library's ``getattr``)."""

    def __getattr__(self, name: str) -> Any:
        if name == "__func__":
            raise LookupError(f"no setting {name!r}")
        raise AttributeError(name)

    def __call__(self) -> int:
        vc.get_actor("nobody-here")
        return 1


class _Adder:
    """A callable object as a method taking an argument: Python calls it as ``obj(amount)``,
    without the actor's ``self``."""

    def __call__(self, amount: int) -> int:
        return amount + 1


@vc.virtual_actor
class Gadget:
    def __init__(self) -> None:
        self.done = 0

    look = _Looker()
    add_one = _Adder()

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.done


@pytest.fixture
def gadget(store: str) -> str:
    vc.init(store)
    Gadget.get_or_create("gadget")
    vc.shutdown()
    return store


def test_a_method_whose_getattr_raises_fails_with_its_own_error(gadget: str, vactor: Vactor) -> None:
    """Before, two lookups of ``__func__`` raised the object's ``LookupError``: the library's
    (for the method's mutable defaults), so that every call of it raised that, "look() raised
    LookupError: no setting '__func__'"; and, that fixed, the command's, classifying the
    method's ``ActorNotFoundError``: "vactor: error: LookupError: no setting '__func__' (run
    with --debug for the traceback)", an error of the command's own."""
    result = vactor("call", "gadget", "look")
    assert result.code == EXIT_ERROR, result.err
    assert "look() raised ActorNotFoundError" in one_line_error(result)


def test_a_callable_object_method_takes_its_first_parameter(gadget: str, vactor: Vactor) -> None:
    """Before: the first parameter of a callable object's signature (``amount``: the call
    is ``obj(amount)``, no actor ``self``) was taken as ``self``: ``vactor call gadget add_one
    41`` was refused ("too many positional arguments", "it takes add_one()"), and with no
    argument the call was sent and failed inside the actor (exit 1, "missing 'amount'")."""
    result = vactor("call", "gadget", "add_one", "41")
    assert (result.code, result.out.strip()) == (0, "42"), result.err
    missing = vactor("call", "gadget", "add_one")
    assert missing.code == EXIT_USAGE, missing.err
    line = one_line_error(missing)
    assert "amount" in line and "add_one(amount: int) -> int" in line, line


def test_a_callable_object_method_through_a_handle(gadget: str) -> None:
    """Before: ``handle.add_one.run(41)`` was refused (``TypeError``: too many positional
    arguments) and ``run()`` was sent, to fail in the actor."""
    vc.init(gadget)
    handle = vc.get_actor("gadget")
    assert handle.add_one.run(41) == 42
    with pytest.raises(TypeError, match="amount"):
        handle.add_one.run()

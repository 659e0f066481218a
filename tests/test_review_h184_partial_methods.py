"""Review h184: ``functools.partial`` and ``functools.partialmethod`` as actor methods, through a
handle's ``run()`` and ``vactor call``.

A ``functools.partial`` in a class body is called as it is, ``instance.name(*args)`` passing no
``self``, up to Python 3.13 (3.13's ``partial.__get__`` warns, FutureWarning, and returns the
partial unbound); from 3.14 it is a method descriptor and binds. Run on 3.11 and, by hand, on
3.13 (``PYTHONPATH`` holding the 3.11 venv's packages: h184's report).

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR

#: (3.13 warns at each ``instance.add_ten``, as it would in any class: a FutureWarning kept)
pytestmark = pytest.mark.filterwarnings("ignore:functools.partial will be a method descriptor:FutureWarning")


def add(base: int, amount: int) -> int:
    return base + amount


def forward(actor_id: str) -> int:
    """Calls an actor that does not exist: raises ``ActorNotFoundError``."""
    result: int = vc.get_actor(actor_id).count.run()
    return result


def offset(self: Any, base: int, amount: int) -> int:
    return base + amount + self.done


@vc.virtual_actor
class Partials:
    def __init__(self) -> None:
        self.done = 0

    add_ten = functools.partial(add, 10)
    forward_nowhere = functools.partial(forward, "nobody-here")
    add_thirty = functools.partialmethod(offset, 30)

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.done


@pytest.fixture
def partials(store: str) -> str:
    vc.init(store)
    Partials.get_or_create("partials")
    vc.shutdown()
    return store


def test_a_partial_method_through_a_handle(partials: str) -> None:
    """Before, on Python 3.13 (whose partial has a ``__get__``, taken for one that binds the
    instance): ``run(5)`` was refused, "add_ten(): too many positional arguments", its
    ``amount`` taken for ``self``."""
    vc.init(partials)
    handle = vc.get_actor("partials")
    assert handle.add_ten.run(5) == 15
    with pytest.raises(TypeError, match="amount"):
        handle.add_ten.run()


def test_a_partialmethod_method_through_a_handle(partials: str) -> None:
    """Before: a ``functools.partialmethod`` (no callable itself, a descriptor) was no method:
    "Partials (actor 'partials') has no method 'add_thirty'; its methods: count, ..."."""
    vc.init(partials)
    assert vc.get_actor("partials").add_thirty.run(5) == 35


def test_partial_methods_through_vactor_call(partials: str, vactor: Vactor) -> None:
    for method, expected in (("add_ten", "15"), ("add_thirty", "35")):
        result = vactor("call", "partials", method, "5")
        assert (result.code, result.out.strip()) == (0, expected), (method, result.err)


def test_a_partial_methods_own_error_is_the_methods_in_vactor_call(partials: str, vactor: Vactor) -> None:
    """Before: the ``ActorNotFoundError`` raised by the partial's function (no ``__code__`` of
    its own, nor ``__wrapped__``) was not recognised as the method's: the command exited with
    the not-found code, as if the actor called were missing."""
    result = vactor("call", "partials", "forward_nowhere")
    assert result.code == EXIT_ERROR, result.err
    assert "forward_nowhere() raised ActorNotFoundError" in one_line_error(result)

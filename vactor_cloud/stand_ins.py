"""Stand-ins: the methods of a class this process does not define, for a handle unpickled here.

A handle made for such a class (sent by another process) calls its methods by name alone:
:func:`_stand_in` makes one, a writer taking any arguments, and :func:`_is_stand_in` tells
one apart. :class:`~vactor_cloud.handle.ActorHandle` makes them;
:class:`~vactor_cloud.method_calls.MethodCalls` and ``ActorMethod.options`` ask which they are.
"""

from __future__ import annotations

import inspect
from typing import Any

from vactor_cloud.definition import MethodInfo


def _any_arguments(self: Any, *args: Any, **kwargs: Any) -> None:
    """(The signature of a method of a class this process does not define: see ``_stand_in``.)"""


def _is_stand_in(info: MethodInfo) -> bool:
    """Whether ``info`` is a method of a class this process does not define (``_stand_in``)."""
    return info.function is _any_arguments


def _stand_in(owner: str, name: str) -> MethodInfo:
    """The method ``name`` of the class ``owner``, which this process does not define, for a
    handle unpickled here: a writer taking any arguments, made for ``owner``, refused where it
    runs on an actor of another class. Not the method of that name of the class this process
    knows the id by: if the id holds an ``owner`` again, unknown to this process, its method
    runs (a read-only one of the known class made it a read, and a writer's change was lost)."""
    signature = inspect.signature(_any_arguments)
    return MethodInfo(
        name=name, function=_any_arguments, readonly=False, event=None, signature=signature, owner=owner
    )

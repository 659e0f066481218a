"""``method(handle, lambda a: a.name)``: a handle's method with its types, for any type checker.

``handle.name`` is typed only with the mypy plugin (Python's types cannot map
a class's methods onto a handle). Naming the method through a lambda on the
actor's instance type lets pyright and Pylance infer the parameters and
return type from the class itself (mypy users have the plugin for both
forms). At runtime the lambda runs once on a stand-in object that records
the attribute name.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from vactor_cloud.handle import ActorHandle, ActorMethod

__all__ = ["method"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class _MethodName:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"it calls {self.name}(); name it: `lambda a: a.{self.name}`, then .run(...)")


class _Recorder:
    """Stands in for the actor's instance: ``recorder.x`` is ``_MethodName("x")``."""

    def __getattr__(self, name: str) -> _MethodName:
        return _MethodName(name)


@overload
def method(  # first: an async method's coroutine is awaited by the runtime
    handle: ActorHandle[T], select: Callable[[T], Callable[P, Coroutine[Any, Any, R]]]
) -> ActorMethod[P, R]: ...


@overload
def method(handle: ActorHandle[T], select: Callable[[T], Callable[P, R]]) -> ActorMethod[P, R]: ...


def method(handle: ActorHandle[Any], select: Callable[[Any], Any]) -> ActorMethod[Any, Any]:
    """The method that ``select`` names, e.g. ``method(h, lambda a: a.deposit).run(5)``.

    Same as ``handle.deposit`` at runtime (``AttributeError`` naming the
    actor's methods if there is none); ``TypeError`` if ``select`` does more
    than name one attribute of its argument.
    """
    wrong = "select must name one method of the actor, as in `lambda a: a.deposit` (not called)"
    try:
        chosen = select(_Recorder())
    except (TypeError, AttributeError) as exc:  # it called the method, or went past its name
        raise TypeError(f"{wrong}: {exc}") from None
    if not isinstance(chosen, _MethodName):
        raise TypeError(wrong)
    found: ActorMethod[Any, Any] = getattr(handle, chosen.name)
    return found

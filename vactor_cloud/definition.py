"""What ``@virtual_actor`` knows of a class: an :class:`ActorDefinition` (its methods, serializer, body).

The decorator leaves the user's class untouched (it can still be
instantiated and unit-tested directly) and marks methods with plain
attributes, so that a class body loaded back from storage is understood the
same way as the local one.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import cloudpickle

from vactor_cloud.errors import ActorDefinitionError, StateProtocolError
from vactor_cloud.log import ClassRef
from vactor_cloud.state import SERIALIZERS, defines_state_protocol

__all__ = ["ActorDefinition", "MethodInfo", "lookup_local_class", "mark_event_handler", "mark_readonly"]

F = TypeVar("F", bound=Callable[..., Any])

_READONLY = "__vactor_readonly__"
_EVENT = "__vactor_event__"
_OPTIONS = "__vactor_options__"

#: import name ("module:qualname") -> the actor class defined in this process
_REGISTRY: dict[str, ActorDefinition] = {}
_PICKLE_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One public method of an actor class."""

    name: str
    function: Callable[..., Any]
    readonly: bool
    event: str | None
    signature: inspect.Signature

    #: (fewest, most) positional arguments when the method takes plain positional
    #: parameters only: such a call is checked without binding (binding costs CPU per call)
    arity: tuple[int, int] | None = None

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """``TypeError`` now, before anything is queued or written, if the call cannot bind."""
        arity = self.arity
        if arity is not None and not kwargs and arity[0] <= len(args) <= arity[1]:
            return
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None


class ActorDefinition:
    """What the runtime needs to know of an actor class (no I/O, no runtime)."""

    def __init__(self, cls: type, *, serializer: str = "pickle") -> None:
        self.name = f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', repr(cls))}"
        if not isinstance(cls, type):
            raise ActorDefinitionError(f"@virtual_actor decorates classes, not {cls!r}")
        if serializer not in SERIALIZERS:
            raise ActorDefinitionError(f"unknown serializer {serializer!r}; choose one of {SERIALIZERS}")
        has_get, has_set = defines_state_protocol(cls)
        if has_get != has_set:
            present, missing = (
                ("__getstate__", "__setstate__") if has_get else ("__setstate__", "__getstate__")
            )
            raise StateProtocolError(
                f"{cls.__qualname__} defines {present} but not {missing}: define both "
                "(the state is what __getstate__ returns, restored with __setstate__), "
                "or neither (the state is the instance __dict__)"
            )
        setattr(cls, _OPTIONS, {"serializer": serializer})
        self.cls = cls
        self.serializer = serializer
        self.methods = _collect_methods(cls)
        self._ref: ClassRef | None = None
        self._body: bytes | None = None

    @classmethod
    def from_stored(cls, raw: type) -> ActorDefinition:
        """Rebuild the definition of a class body loaded from storage (not registered)."""
        options = getattr(raw, _OPTIONS, {}) or {}
        definition = cls.__new__(cls)
        ActorDefinition.__init__(definition, raw, serializer=options.get("serializer", "pickle"))
        return definition

    def register(self) -> None:
        _REGISTRY[self.name] = self

    # -- the class body as stored --------------------------------------------------
    def body(self) -> tuple[ClassRef, bytes]:
        """The class pickled *by value* (so processes without its module can load it) and its ref."""
        if self._ref is None or self._body is None:
            module = sys.modules.get(self.cls.__module__)
            by_value = module is not None and self.cls.__module__ not in ("__main__", "builtins")
            with _PICKLE_LOCK:
                if by_value:
                    cloudpickle.register_pickle_by_value(module)
                try:
                    body = bytes(cloudpickle.dumps(self.cls, protocol=pickle.HIGHEST_PROTOCOL))
                except Exception as exc:
                    raise ActorDefinitionError(
                        f"{self.name}: the class body cannot be pickled for storage: {exc}"
                    ) from exc
                finally:
                    if by_value:
                        cloudpickle.unregister_pickle_by_value(module)
            body = _with_content_tracker_id(self.cls, body)
            self._body = body
            self._ref = ClassRef(hashlib.sha256(body).hexdigest(), self.name)
        return self._ref, self._body

    def __repr__(self) -> str:
        # getattr: tracebacks show the repr of an instance whose __init__ refused the class.
        return f"<actor definition {getattr(self, 'name', '(not defined)')}>"


def _with_content_tracker_id(cls: type, body: bytes) -> bytes:
    """Make the pickled class body the same bytes in every process.

    cloudpickle tags a class pickled by value with a random per-process
    "tracker id" (so that one process unpickling it twice gets one class).
    Left random, every process would store its own copy of an unchanged
    class under a new content hash, an extra PUT on each process's first
    commit. The id is replaced with one derived from the rest of the bytes:
    same class source, same body, same hash; a changed class gets a new id.
    """
    tracker_of = getattr(getattr(cloudpickle, "cloudpickle", None), "_get_or_create_tracker_id", None)
    if tracker_of is None:
        return body
    tracker = str(tracker_of(cls)).encode("ascii")
    if len(tracker) < 16 or body.count(tracker) != 1:
        return body
    placeholder = b"0" * len(tracker)
    stable = hashlib.sha256(body.replace(tracker, placeholder)).hexdigest()[: len(tracker)]
    return body.replace(tracker, stable.encode("ascii"))


def _collect_methods(cls: type) -> dict[str, MethodInfo]:
    methods: dict[str, MethodInfo] = {}
    for klass in reversed(cls.__mro__[:-1]):  # without object, base classes first
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            if not callable(function) or isinstance(value, staticmethod | classmethod | type):
                methods.pop(name, None)
                continue
            try:
                signature = inspect.signature(function)
            except (TypeError, ValueError):
                continue
            methods[name] = MethodInfo(
                name=name,
                function=function,
                readonly=bool(getattr(function, _READONLY, False)),
                event=getattr(function, _EVENT, None),
                signature=signature,
                arity=_arity(signature),
            )
    return methods


def _arity(signature: inspect.Signature) -> tuple[int, int] | None:
    """(fewest, most) positional arguments after ``self``, if every parameter is a plain positional one."""
    params = list(signature.parameters.values())[1:]
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind not in plain for p in params):
        return None
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return required, len(params)


def lookup_local_class(name: str) -> ActorDefinition | None:
    """The class registered under ``module:qualname`` in this process, or ``None``.

    Only classes this process has already defined (``@virtual_actor`` ran)
    are found. The name comes from storage: importing the module it names
    would let whoever can write the bucket run any importable module's
    top-level code in every reader (a forged step naming ``this:X``
    imports ``this``). Import your actor modules before using their actors;
    otherwise the class body is loaded from storage (when allowed).
    """
    return _REGISTRY.get(name)


def mark_readonly(method: F) -> F:
    """Mark a method read-only (see ``virtual_actor.readonly``)."""
    setattr(method, _READONLY, True)
    return method


def mark_event_handler(name: str) -> Callable[[F], F]:
    """Mark a method as the handler of external events called ``name``."""
    if not isinstance(name, str) or not name:
        raise ActorDefinitionError("on_event() needs a non-empty event name")

    def mark(method: F) -> F:
        setattr(method, _EVENT, name)
        return method

    return mark

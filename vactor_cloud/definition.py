"""What ``@virtual_actor`` knows of a class: an :class:`ActorDefinition` (its methods, serializer, body).

The decorator leaves the user's class untouched (it can still be
instantiated and unit-tested directly) and marks methods with plain
attributes, so that a class body loaded back from storage is understood the
same way as the local one.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import copyreg
import functools
import hashlib
import importlib
import inspect
import io
import logging
import os
import pickle
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import cloudpickle

from vactor_cloud.bytecode import BYTECODE
from vactor_cloud.class_tag import class_tag
from vactor_cloud.errors import ActorDefinitionError, StateProtocolError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.ids import validate_event_name
from vactor_cloud.log_records import ClassRef
from vactor_cloud.state import SERIALIZERS, builtin_base, defines_state_protocol

__all__ = [
    "PROCESS_ONLY_MODULES",
    "RESERVED_METHOD_NAMES",
    "ActorDefinition",
    "FreshDefaults",
    "MethodInfo",
    "lookup_local_class",
    "mark_event_handler",
    "mark_readonly",
    "with_fresh_defaults",
]

logger = logging.getLogger("vactor_cloud")

F = TypeVar("F", bound=Callable[..., Any])

_READONLY = "__vactor_readonly__"
_EVENT = "__vactor_event__"
_OPTIONS = "__vactor_options__"

#: import name ("module:qualname") -> the actor class defined in this process
_REGISTRY: dict[str, ActorDefinition] = {}
#: class tag -> the import name of the class defined in this process that has it (one each)
_TAGS: dict[str, str] = {}
_PICKLE_LOCK = threading.Lock()


renew_in_a_forked_child(globals(), "_PICKLE_LOCK")

#: The public attributes of ``ActorHandle``: ``handle.<name>`` is the handle's own, so an actor
#: method of one of these names could never be called through a handle; such a class is refused.
RESERVED_METHOD_NAMES = frozenset(
    {
        "actor_id",
        "call_outcome",
        "cancel_timer",
        "compact",
        "compact_async",
        "history",
        "process_events",
        "process_events_async",
        "ready",
        "send_event",
        "send_event_async",
        "state_at",
        "timers",
        "wait_for_event",
        "wait_for_event_async",
    }
)
#: modules that exist in no other process under their name: their globals are stored by value
PROCESS_ONLY_MODULES = frozenset({"__main__", "__mp_main__"})


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
    #: the class it is a method of (``ActorDefinition.name``): a call made through it runs only
    #: on an actor of that class (the id may hold an actor of another class since)
    owner: str = ""

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """``TypeError`` now, before anything is queued or written, if the call cannot bind."""
        arity = self.arity
        if arity is not None and not kwargs and arity[0] <= len(args) <= arity[1]:
            return
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None

    def at_step_is_an_option(self) -> bool:
        """Whether ``run(at_step=N)`` selects a step rather than passing ``at_step`` to the method:
        unless the method declares ``at_step``, or is a writer (which no step option fits) that
        takes any keyword (``**fields``)."""
        parameters = self.signature.parameters
        if "at_step" in parameters:
            return False
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        return self.readonly or not takes_any


def check_step_number(step: object, what: str = "at_step") -> None:
    """``ValueError`` unless ``step`` (``what``, in the message) is a step number (an ``int``
    >= 0, not a ``bool``)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{what} must be a step number (an int >= 0), got {step!r}")


def check_at_step(info: MethodInfo, at_step: object) -> None:
    """``ValueError`` now, before anything is queued, unless ``at_step`` can time-travel ``info``."""
    check_step_number(at_step)
    if not info.readonly:
        raise ValueError(
            f"{info.name}() is a writer method; at_step= runs read-only methods on a past state. "
            f"To inspect the state itself use handle.state_at({at_step})"
        )


class ActorDefinition:
    """What the runtime needs to know of an actor class (no I/O, no runtime)."""

    #: the class each state is handed to before it is stored, as every load will (its own
    #: ``__setstate__`` may raise on it), or None: no code of the class runs at load (a class
    #: attribute too: a copy pickled by an earlier version has none of its own)
    restores: type | None = None

    def __init__(
        self, cls: type, *, serializer: str = "pickle", stored: bool = False, name: str | None = None
    ) -> None:
        #: ``module:QualName``; for a body loaded from storage, the name its steps give it (the
        #: class rebuilt from the body may spell another: cloudpickle rebuilds a class defined
        #: in a function as its bare name), which is what calls through it are made for
        module = getattr(cls, "__module__", "?")
        if module == "__mp_main__":  # the script's module in a spawned child: ``__main__`` in its parent
            module = "__main__"
        spelt = f"{module}:{getattr(cls, '__qualname__', repr(cls))}"
        self.name: str = name or spelt
        if not isinstance(cls, type):
            if isinstance(getattr(cls, "definition", None), ActorDefinition):  # an ActorClass
                raise ActorDefinitionError(
                    f"{getattr(cls, '__qualname__', cls)} is an actor class already: decorate the class "
                    "once (@virtual_actor, or @virtual_actor(serializer=...))"
                )
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
        base = builtin_base(cls)
        if base is not object and not has_get:
            raise StateProtocolError(
                f"{cls.__qualname__} extends {base.__qualname__}, whose contents are not in the "
                "instance __dict__ that is stored as the state: they would be lost at the first "
                "commit. Define __getstate__ and __setstate__ (returning and restoring them)"
            )
        slots = _instance_slots(cls)
        if slots and not has_get:
            raise StateProtocolError(
                f"{cls.__qualname__} keeps attributes in __slots__ ({', '.join(slots)}), which are "
                "not in the instance __dict__ that is stored as the state: they would be lost at "
                "the first commit. Define __getstate__ and __setstate__, or drop __slots__"
            )
        setattr(cls, _OPTIONS, {"serializer": serializer})
        self.cls = cls
        self.serializer = serializer
        self.restores = cls if has_set else None
        self.methods: dict[str, MethodInfo] = _collect_methods(cls, self.name)
        _note_init_defaults(cls)
        #: what a durable timer may call: the public writer methods
        self.writer_names: frozenset[str] = frozenset(
            name for name, info in self.methods.items() if not info.readonly
        )
        if not stored:  # a body already in storage stays readable (its shadowed methods as before)
            _refuse_reserved_names(cls, self.methods)
            _refuse_generator_methods(cls, self.methods)
            _refuse_unhandled_events(cls, self.methods)
        self._ref: ClassRef | None = None
        self._body: bytes | None = None
        self._bytecode: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The stored body and its hash are this process's cache. A copy of the definition (in
        # the body of a class whose methods use this actor class) carried them only if this
        # process had stored this class first: that body held this one's bytes, and its hash
        # differed from process to process (a copy of an unchanged body stored by each).
        return {**vars(self), "_ref": None, "_body": None, "_bytecode": None}

    @classmethod
    def from_stored(cls, raw: type, name: str | None = None) -> ActorDefinition:
        """Rebuild the definition of a class body loaded from storage (not registered), named
        ``name`` (the name the steps give the class), or as the rebuilt class spells itself."""
        options = getattr(raw, _OPTIONS, {}) or {}
        definition = cls.__new__(cls)
        serializer = options.get("serializer", "pickle")
        ActorDefinition.__init__(definition, raw, serializer=serializer, stored=True, name=name)
        return definition

    def register(self) -> None:
        """Make this the class of its name in this process. ``ActorDefinitionError`` if another
        class defined here has the same tag (``vactor_cloud.class_tag``: 4 bytes of a hash of
        the name, what a posted call carries): a fold would take a call made for the one for a
        call of the other, and apply it to the wrong class."""
        tag = class_tag(self.name)
        other = _TAGS.setdefault(tag, self.name)  # (atomic: two threads defining classes)
        if other == self.name:
            _REGISTRY[self.name] = self
            return
        raise ActorDefinitionError(
            f"{self.name}: its class tag {tag} (4 bytes of a hash of the name, carried by the calls "
            f"it posts under contention) is the tag of {other}, defined in this process too: a "
            "call made for one could be applied to an actor of the other. Rename one of the "
            "two classes (or move it to another module)"
        )

    # -- the class body as stored --------------------------------------------------
    def body(self) -> tuple[ClassRef, bytes]:
        """The class as stored, and its ref (content-addressed: ``sha256`` of the bytes).

        Pickled *by value* (its module registered with cloudpickle), so that a process
        without the module can load it: its methods, and the functions and classes of its
        module they use. Not the module's *data*: a global that a method reads and that is
        not a number, ``None``, a module, a function, a class or an actor class (a token,
        a lock, a client, a dict ...) is stored by name only, and looked up in the module
        when the body is loaded (undefined there if the module is not imported). A class of
        ``__main__`` (no other process has its module) keeps such values by value where
        they can be pickled. A class that cannot be pickled so is stored by reference
        (``module:qualname``), with a warning naming what failed. See docs/security.md.
        """
        if self._ref is None or self._body is None:
            module = sys.modules.get(self.cls.__module__)
            by_value = module is not None and self.cls.__module__ != "builtins"
            body: bytes | None = None
            failure: Exception | None = None
            with _PICKLE_LOCK:
                if module is not None and by_value:
                    cloudpickle.register_pickle_by_value(module)
                try:
                    body = _dumps_by_value(self.cls, module if by_value else None)
                except Exception as exc:
                    failure = exc
                finally:
                    if module is not None and by_value:
                        cloudpickle.unregister_pickle_by_value(module)
            if body is None:
                body = self._by_reference(failure)
            else:
                body = _with_content_tracker_id(self.cls, body)
                self._bytecode = BYTECODE
            self._body = body
            self._ref = ClassRef(hashlib.sha256(body).hexdigest(), self.name)
        return self._ref, self._body

    @property
    def bytecode(self) -> str | None:
        """Whose bytecode the stored body holds: :data:`BYTECODE` for a body pickled by value
        (its methods' code objects, which only that Python runs right), None for one stored by
        reference (a name: any Python loads it)."""
        self.body()
        return self._bytecode

    def _by_reference(self, failure: Exception | None) -> bytes:
        """The class stored as its name only, after pickling it by value failed."""
        parts = _unpicklable_parts(self.cls)
        what = f" (what cannot be pickled: {', '.join(parts)})" if parts else ""
        logger.warning(
            "%s: the class body cannot be pickled by value for storage: %s%s. It is stored by "
            "reference: only a process that imports %s can run this actor. Keep such objects "
            "out of the class (create them in a module-level function or on first use) to "
            "store the class by value",
            self.name,
            failure,
            what,
            self.cls.__module__,
        )
        try:
            return pickle.dumps(_ClassByName(self.cls.__module__, self.cls.__qualname__), protocol=4)
        except Exception as exc:  # pragma: no cover - a str pair always pickles
            raise ActorDefinitionError(f"{self.name}: the class cannot be stored: {exc}") from exc

    def __repr__(self) -> str:
        # getattr: tracebacks show the repr of an instance whose __init__ refused the class.
        return f"<actor definition {getattr(self, 'name', '(not defined)')}>"


class _BodyPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, keeping the data globals of the class's module out of its methods.

    A function of the module (pickled by value) normally carries every global it reads.
    Here a global that is data (see :func:`_kept_by_value`) is stored by name only, and
    restored from the module on load (:func:`_restore_function`). For a module no other
    process has (``__main__``), data that pickles is kept by value (the code exists nowhere
    else), and what does not pickle (a lock) by name.
    """

    def __init__(self, file: io.BytesIO, module: types.ModuleType) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.module = module
        self.snapshot = module.__name__ in PROCESS_ONLY_MODULES or getattr(module, "__spec__", None) is None

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind.__name__ == "ActorClass" and kind.__module__ == "vactor_cloud.actor":
            # An actor class a method uses, stored by value as ever: its own ``__reduce__`` names
            # it by reference (a pool task's argument), and loading a body must import nothing.
            return (copyreg.__newobj__, (kind,), vars(obj), None, None)  # type: ignore[attr-defined]
        return super().reducer_override(obj)

    def _dynamic_function_reduce(self, func: types.FunctionType) -> Any:
        reduced = super()._dynamic_function_reduce(func)
        if func.__globals__ is not vars(self.module) or not isinstance(reduced, tuple) or len(reduced) != 6:
            return reduced
        make, newargs, state, _, _, _ = reduced
        fstate, slotstate = state
        module_globals = slotstate["__globals__"]
        by_name = tuple(
            sorted(
                name
                for name, value in module_globals.items()
                if not _kept_by_value(name, value, self.module.__name__)
                and not (self.snapshot and _picklable(value))
            )
        )
        if not by_name:
            return reduced
        slotstate = dict(slotstate)
        slotstate["__globals__"] = {k: v for k, v in module_globals.items() if k not in by_name}
        restore = (fstate, slotstate, self.module.__name__, by_name)
        return (make, newargs, restore, None, None, _restore_function)


def _dumps_by_value(cls: type, module: types.ModuleType | None) -> bytes:
    if module is None:
        return bytes(cloudpickle.dumps(cls, protocol=pickle.HIGHEST_PROTOCOL))
    file = io.BytesIO()
    _BodyPickler(file, module).dump(cls)
    return file.getvalue()


def _kept_by_value(name: str, value: Any, module_name: str) -> bool:
    """Whether a module global a stored method reads goes into the stored body: code (modules,
    functions, classes, actor classes: cloudpickle stores an importable one by reference) and
    numbers. Any other value (a str, a lock, a client, a container ...) is data: stored by name."""
    if name.startswith("__") and name.endswith("__"):
        return True  # the module's own __name__, __file__ ...: cloudpickle keeps them anyway
    if type(value) in (int, float, complex, bool, type(None)):
        return True
    if isinstance(
        value, types.ModuleType | types.FunctionType | types.BuiltinFunctionType | types.MethodType | type
    ):
        return True
    return isinstance(getattr(value, "definition", None), ActorDefinition)  # an @virtual_actor class


def _picklable(value: Any) -> bool:
    try:
        cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


#: (module, names) already reported missing in this process
_REPORTED: set[tuple[str, tuple[str, ...]]] = set()
os.register_at_fork(after_in_child=_REPORTED.clear)  # (a forked child warns once too)


def _restore_function(func: types.FunctionType, state: tuple[Any, ...]) -> None:
    """Unpickle a stored method: cloudpickle's own restore, then the module's data globals
    it reads, looked up by name in the module if this process has imported it (never imported
    here: storage does not choose what this process imports)."""
    fstate, slotstate, module_name, names = state
    cloudpickle.cloudpickle._function_setstate(func, (fstate, slotstate))
    module = None if module_name in PROCESS_ONLY_MODULES else sys.modules.get(module_name)
    found = vars(module) if module is not None else {}
    missing = []
    for name in names:
        if name in func.__globals__:
            continue
        if name in found:
            func.__globals__[name] = found[name]
        else:
            missing.append(name)
    report = (module_name, tuple(missing))
    if missing and report not in _REPORTED:
        _REPORTED.add(report)
        where = (
            f"the class was defined in {module_name} of another program"
            if module is None and module_name in PROCESS_ONLY_MODULES
            else f"module {module_name} is not imported in this process"
        )
        logger.warning(
            "%s.%s, loaded from storage, reads module-level values that are not stored with the "
            "class (%s) and %s: they are undefined here (NameError if used); import the module "
            "before using the actor (see docs/security.md)",
            module_name,
            func.__qualname__,
            ", ".join(missing),
            where,
        )


class _ClassByName:
    """A class stored by reference: loading it imports its module (see ``_load_class_by_name``)."""

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_class_by_name, (self.module, self.qualname))


def _load_class_by_name(module_name: str, qualname: str) -> type:
    """The class of a body stored by reference; loading it runs the class's module, which
    registers the class (``@virtual_actor``) in this process."""
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    target = getattr(target, "cls", target)  # the module holds the @virtual_actor wrapper
    if not isinstance(target, type):
        raise TypeError(f"{module_name}:{qualname} is not a class here")
    return target


def _unpicklable_parts(cls: type) -> list[str]:
    """What of ``cls`` cannot be pickled: class attributes and the globals its methods read."""
    parts: list[str] = []
    for attr, value in vars(cls).items():
        if attr.startswith("__") and attr.endswith("__"):
            continue
        function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if isinstance(function, types.FunctionType):
            for name in function.__code__.co_names:
                if name in function.__globals__ and not _picklable(function.__globals__[name]):
                    parts.append(f"the global {name} (read by {attr})")
        elif not _picklable(value):
            parts.append(f"{cls.__qualname__}.{attr}")
    return sorted(set(parts))


def _instance_slots(cls: type) -> list[str]:
    """The ``__slots__`` attributes of ``cls``'s instances (``__dict__`` and ``__weakref__`` aside)."""
    names: list[str] = []
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


def _refuse_reserved_names(cls: type, methods: dict[str, MethodInfo]) -> None:
    shadowed = sorted(set(methods) & RESERVED_METHOD_NAMES)
    if shadowed:
        raise ActorDefinitionError(
            f"{cls.__qualname__}: method name(s) {', '.join(shadowed)} are taken by the actor "
            "handle itself (handle.<name> would be the handle's own, never this method): rename "
            f"the method(s). Reserved names: {', '.join(sorted(RESERVED_METHOD_NAMES))}"
        )


def _refuse_generator_methods(cls: type, methods: dict[str, MethodInfo]) -> None:
    # Calling a generator function runs none of its body: the call would commit nothing and
    # fail only on its result (a generator cannot be passed by value), far from the cause.
    generators = sorted(
        name
        for name, info in methods.items()
        if inspect.isgeneratorfunction(info.function) or inspect.isasyncgenfunction(info.function)
    )
    if generators:
        raise ActorDefinitionError(
            f"{cls.__qualname__}: method(s) {', '.join(generators)} are generators (they `yield`): "
            "calling one runs none of its body, and a generator cannot be passed back by value. "
            "Return the values instead (a list), or make it a plain or `async def` method"
        )


#: what a mark (``on_event``, ``readonly``) can be put on: a function, or what wraps one
_MARKABLE = (types.FunctionType, staticmethod, classmethod, functools.partial, functools.partialmethod)


def _refuse_unhandled_events(cls: type, methods: dict[str, MethodInfo]) -> None:
    # A private method is no actor method (no event reaches it), and of two methods marked for
    # one event only one is called: either way events of that name would wait in the inbox, or
    # a handler never run, with nothing to say why.
    for klass in reversed(cls.__mro__[:-1]):
        for name, value in vars(klass).items():
            marked = isinstance(value, _MARKABLE) and name.startswith("_")
            event = _mark(value, value, _EVENT) if marked else None
            if event is not None:
                raise ActorDefinitionError(
                    f"{cls.__qualname__}.{name} is marked on_event({event!r}) but its name starts "
                    "with '_': a private method is no actor method, so no event would ever reach "
                    "it: rename it (without the leading '_')"
                )
    handlers: dict[str, list[str]] = {}
    for name, info in methods.items():
        if info.event is not None:
            handlers.setdefault(info.event, []).append(name)
    for event, names in handlers.items():
        if len(names) > 1:
            raise ActorDefinitionError(
                f"{cls.__qualname__}: methods {', '.join(names)} are all marked on_event({event!r}): "
                "an event is handled by one method, and the others would never run: keep one (a "
                "subclass replaces its base's handler by defining a method of the same name)"
            )


def _with_content_tracker_id(cls: type, body: bytes) -> bytes:
    """Make the pickled class body the same bytes in every process.

    cloudpickle tags each class it pickles by value with a random per-process
    "tracker id" (so that one process unpickling it twice gets one class):
    the class itself, and every class its methods use that is pickled by value
    with it (another actor class, a plain class of its module). Left random,
    every process would store its own copy of an unchanged class under a new
    content hash, an extra PUT on each process's first commit (for a class
    using another actor class, the copy was stored until its ids were all
    made stable too). Each id is replaced with one derived from the rest of
    the bytes (every id cut out, each one's place kept): same class source,
    same body, same hash; a changed class gets new ids. The class's own id is
    derived as it was when it was the only one (a body with no other keeps its
    bytes, and its hash, from before).
    """
    pickler = getattr(cloudpickle, "cloudpickle", None)
    tracker_of = getattr(pickler, "_get_or_create_tracker_id", None)
    if tracker_of is None:
        return body
    own = str(tracker_of(cls)).encode("ascii")
    if len(own) < 16 or body.count(own) != 1:
        return body
    tracked = getattr(pickler, "_DYNAMIC_CLASS_TRACKER_BY_CLASS", None)
    lock = getattr(pickler, "_DYNAMIC_CLASS_TRACKER_LOCK", None)
    known: list[bytes] = []
    if tracked is not None and lock is not None:
        with lock:
            known = [str(tracker).encode("ascii") for tracker in list(tracked.values())]
    others = sorted({t for t in known if t != own and len(t) == len(own) and t in body}, key=body.find)
    trackers = [own, *others]
    blank = body
    for k, tracker in enumerate(trackers):
        blank = blank.replace(tracker, str(k).rjust(len(own), "0").encode("ascii"))
    for k, tracker in enumerate(trackers):
        salt = b"" if k == 0 else b"\0%d" % k
        body = body.replace(tracker, hashlib.sha256(blank + salt).hexdigest()[: len(own)].encode("ascii"))
    return body


def _collect_methods(cls: type, owner: str) -> dict[str, MethodInfo]:
    methods: dict[str, MethodInfo] = {}
    for klass in reversed(cls.__mro__[:-1]):  # without object, base classes first
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            if isinstance(value, functools.partialmethod):  # (a descriptor, no callable itself)
                function = value.__get__(None, klass)  # (a function taking the instance first)
            if not callable(function) or isinstance(value, staticmethod | classmethod | type):
                methods.pop(name, None)
                continue
            try:
                signature = _as_a_method(function, inspect.signature(function))
            except (TypeError, ValueError):
                continue
            _note_fresh_defaults(function, signature)
            methods[name] = MethodInfo(
                name=name,
                function=function,
                readonly=bool(_mark(value, function, _READONLY)),
                event=_mark(value, function, _EVENT),
                signature=signature,
                arity=_arity(signature),
                owner=owner,
            )
    return methods


def _mark(value: Any, function: Any, attribute: str) -> Any:
    """The mark ``attribute`` (``virtual_actor.readonly``, ``on_event``) of the class attribute
    ``value``, collected as ``function``: the function's own; for a ``functools.partial`` or
    ``partialmethod`` (of a partial...), the partial object's (marked after wrapping), else the
    wrapped function's (marked before; a static or class method's function too), outermost
    first. A ``partialmethod`` is collected as the function its ``__get__`` makes, which
    carries neither: a read-only one was a writer (each call committed a step and kept what it
    changed in the instance), and an event handler's event was handled by nothing."""
    todo = [function, value]
    while todo:
        item = todo.pop(0)
        if (found := getattr(item, attribute, None)) is not None:
            return found
        if isinstance(item, functools.partial | functools.partialmethod):
            todo.append(item.func)
        elif isinstance(item, staticmethod | classmethod):
            todo.append(item.__func__)
    return None


def _as_a_method(function: Callable[..., Any], signature: inspect.Signature) -> inspect.Signature:
    """``signature`` of a class attribute ``function`` with the instance first, as every
    method's is read (``self`` then the call's arguments). A callable object that is no
    descriptor (no ``__get__``: an instance of a class with ``__call__``, a
    ``functools.partial``) is called as it is, ``instance.name(*args)`` passing no ``self``:
    its signature gets a place for one, or its first parameter was taken for ``self``, and a
    call passing it was refused (``too many positional arguments``) while one leaving it out
    was sent and failed in the actor."""
    if _binds(function):  # a function, or a descriptor: bound to the instance
        return signature
    name = "self"
    while name in signature.parameters:
        name = f"_{name}"
    instance = inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY)
    return signature.replace(parameters=[instance, *signature.parameters.values()])


def _binds(function: Callable[..., Any]) -> bool:
    """Whether ``instance.name`` binds the class attribute ``function`` to the instance. A
    ``functools.partial`` has no ``__get__`` up to Python 3.12; 3.13's warns (FutureWarning)
    and returns the partial unbound, which was taken for a binding one (its first parameter
    for ``self``: each call refused, "too many positional arguments"); 3.14's binds."""
    if not hasattr(type(function), "__get__"):
        return False
    if not isinstance(function, functools.partial):
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return type(function).__get__(function, object(), object) is not function  # type: ignore[attr-defined]


#: Defaults of these types are copied for each call a handle makes (:class:`FreshDefaults`).
#: Other defaults are passed as they are: an immutable value needs no copy, and a sentinel
#: (``_MISSING = object()``) is compared by identity.
MUTABLE_DEFAULT_TYPES = (list, dict, set, bytearray, collections.deque)
#: kinds of module object that ``copy.deepcopy`` never copies anyway (:func:`_named_objects`)
_ATOMIC = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)


@dataclass(frozen=True, slots=True)
class FreshDefaults:
    """The mutable defaults of one method, as they were when the class was decorated.

    Python evaluates a default once, when ``def`` runs: a method that mutates its default
    (``def add(self, x, seen=[])``) hands what one call left to the next call, on every
    actor of the class in this process, and not on those of another process (which folds
    the calls posted to it). A call made through a handle that omits such an argument is
    given a deep copy of the default as defined instead.
    """

    #: (default, whether mutable) of every positional-only parameter, up to the last one with a
    #: mutable default (``inspect.Parameter.empty`` for one with none: a call cannot omit it)
    positional_only: tuple[tuple[Any, bool], ...]
    #: (index after ``self``, name, default) of positional-or-keyword parameters
    positional: tuple[tuple[int, str, Any], ...]
    #: (name, default) of keyword-only parameters
    keyword: tuple[tuple[str, Any], ...]
    #: the module objects the method's body names, by id: a copy keeps them (:func:`_named_objects`)
    named: dict[int, Any]

    @classmethod
    def of(cls, signature: inspect.Signature, named: dict[int, Any]) -> FreshDefaults | None:
        """The mutable defaults of a method of this ``signature`` (``self`` first), or ``None``;
        a default that is one of the ``named`` objects is no mutable default (it is shared on
        purpose: ``if default is _marker``)."""
        only: list[tuple[Any, bool]] = []
        last_only = -1
        positional: list[tuple[int, str, Any]] = []
        keyword: list[tuple[str, Any]] = []
        for index, parameter in enumerate(list(signature.parameters.values())[1:]):
            default = parameter.default
            mutable = isinstance(default, MUTABLE_DEFAULT_TYPES)
            if mutable:
                try:
                    default = copy.deepcopy(default, dict(named))  # as defined, whatever a call does later
                except Exception:
                    mutable = False  # (a default that cannot be copied is passed as it is)
                mutable = mutable and default is not parameter.default
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                only.append((default, mutable))
                last_only = index if mutable else last_only
            elif mutable and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                positional.append((index, parameter.name, default))
            elif mutable and parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                keyword.append((parameter.name, default))
        if last_only < 0 and not positional and not keyword:
            return None
        return cls(tuple(only[: last_only + 1]), tuple(positional), tuple(keyword), named)

    def fill(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``args`` and a new ``kwargs``, with a fresh copy of every mutable default they omit."""
        kwargs = dict(kwargs)
        omitted = self.positional_only[len(args) :]
        # (one omitted with no default: the call cannot bind, and fails as it is)
        if omitted and all(default is not inspect.Parameter.empty for default, _ in omitted):
            args = (*args, *(self._copy(default) if mutable else default for default, mutable in omitted))
        for index, name, default in self.positional:
            if index >= len(args) and name not in kwargs:
                kwargs[name] = self._copy(default)
        for name, default in self.keyword:
            if name not in kwargs:
                kwargs[name] = self._copy(default)
        return args, kwargs

    def _copy(self, default: Any) -> Any:
        """A deep copy of ``default`` holding the very module objects the method names."""
        return copy.deepcopy(default, dict(self.named) if self.named else None)


#: a method's function -> its mutable defaults as defined (only methods that have some)
_FRESH_DEFAULTS: weakref.WeakKeyDictionary[Callable[..., Any], FreshDefaults] = weakref.WeakKeyDictionary()


def _named_objects(function: types.FunctionType) -> dict[int, Any]:
    """The objects of its module that ``function`` (or the one it wraps, ``functools.wraps``)
    names in its body, by id. A default that is one, or holds one, is compared by identity
    (``_marker = []`` and ``if default is _marker``; ``opts=[_MISSING]`` and
    ``opts[0] is _MISSING``): copied, the call took the other branch."""
    named: dict[int, Any] = {}
    for each in {function, inspect.unwrap(function)}:
        if not isinstance(each, types.FunctionType):
            continue
        codes = [each.__code__]
        while codes:
            code = codes.pop()
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
            for value in (each.__globals__[n] for n in code.co_names if n in each.__globals__):
                if not isinstance(value, _ATOMIC):
                    named[id(value)] = value  # (held: its id names no other object while kept)
    return named


def _note_fresh_defaults(function: Callable[..., Any], signature: inspect.Signature) -> None:
    if isinstance(function, types.FunctionType) and function not in _FRESH_DEFAULTS:
        fresh = FreshDefaults.of(signature, _named_objects(function))
        if fresh is not None:
            _FRESH_DEFAULTS[function] = fresh


def _note_init_defaults(cls: type) -> None:
    """Note the mutable defaults of the class's own ``__init__`` (not ``object``'s)."""
    init = getattr(cls, "__init__", None)
    if isinstance(init, types.FunctionType):
        with contextlib.suppress(TypeError, ValueError):
            _note_fresh_defaults(init, inspect.signature(init))


def with_fresh_defaults(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to call ``method`` of an actor with (a bound method, or a class's
    ``__init__`` as the class holds it): ``args`` and ``kwargs`` given a fresh copy of each
    mutable default they omit (see :class:`FreshDefaults`)."""
    # (``isinstance``, not ``getattr(method, "__func__", method)``: a method that is a callable
    # object whose ``__getattr__`` raises another error than ``AttributeError`` raised it from
    # every call, as though the method had)
    function = method.__func__ if isinstance(method, types.MethodType) else method
    fresh = _FRESH_DEFAULTS.get(function) if isinstance(function, types.FunctionType) else None
    return (args, kwargs) if fresh is None else fresh.fill(args, kwargs)


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
    return _put_mark(method, _READONLY, True, "@virtual_actor.readonly")


def _put_mark(method: F, attribute: str, value: object, what: str) -> F:
    """``method`` marked (``attribute`` set to ``value``); ``ActorDefinitionError`` saying what
    ``what`` (the decorator) marks if it cannot carry the mark (a property, a slotted object)."""
    try:
        setattr(method, attribute, value)
    except (AttributeError, TypeError):
        raise ActorDefinitionError(
            f"{what} marks a method (a function defined in the class), not {method!r}: a property "
            "or another attribute is no actor method; make it a method"
        ) from None
    return method


def mark_event_handler(name: str) -> Callable[[F], F]:
    """Mark a method as the handler of external events called ``name``."""
    if not isinstance(name, str) or not name:
        raise ActorDefinitionError("on_event() needs a non-empty event name")
    try:
        validate_event_name(name)  # a name no event can carry would never be handled
    except ValueError as exc:
        raise ActorDefinitionError(f"on_event(): {exc}") from None

    def mark(method: F) -> F:
        return _put_mark(method, _EVENT, name, f"@virtual_actor.on_event({name!r})")

    return mark


def superseded(definition: ActorDefinition) -> bool:
    """Whether another class was registered under ``definition``'s name since it was loaded:
    the class defined again (a notebook's cell run again, edited), or its module imported
    after its body was loaded from storage. This process's own class runs the actors of its
    name (``ActorCore.definition_for``), so the one registered now takes over (one dict
    lookup: a call's commit and a handle's method lookup ask it)."""
    local = _REGISTRY.get(definition.name)
    return local is not None and local is not definition

"""How an actor instance becomes bytes and back.

The state is what ``__getstate__`` returns when the class defines it, else
the instance ``__dict__``. It is serialized with the actor's serializer:

* ``"pickle"`` (default): cloudpickle; any Python object, but reading it runs
  code, so only read stores you trust (or sign them, see ``init(signing_key=)``).
* ``"json"``: plain data only (dict, list, str, int, float, bool, None);
  reading it never runs code.
"""

from __future__ import annotations

import copyreg
import io
import json
import pickle
import sys
from typing import Any

import cloudpickle

from vactor_cloud import bytecode
from vactor_cloud.errors import IntegrityError, StateSerializationError

__all__ = [
    "SERIALIZERS",
    "builtin_base",
    "capture_state",
    "defines_state_protocol",
    "dumps_instance_state",
    "dumps_state",
    "expect_serializer",
    "loads_state",
    "restore_instance",
]

SERIALIZERS = ("pickle", "json")


def defines_state_protocol(cls: type) -> tuple[bool, bool]:
    """Whether ``cls`` (not ``object``) defines ``__getstate__`` and ``__setstate__``."""
    has_get = getattr(cls, "__getstate__", object.__getstate__) is not object.__getstate__
    has_set = hasattr(cls, "__setstate__")
    return has_get, has_set


def capture_state(instance: Any) -> Any:
    cls = type(instance)
    if defines_state_protocol(cls)[0]:
        return instance.__getstate__()
    return dict(instance.__dict__)


#: ``type.__flags__`` bit of classes defined in Python (``Py_TPFLAGS_HEAPTYPE``)
_HEAPTYPE = 1 << 9


def builtin_base(cls: type) -> type:
    """The nearest base of ``cls`` implemented in C (``object``, ``dict``, ``list`` ...): it
    decides the instance layout, and makes the empty instance (``__init__`` not run)."""
    for klass in cls.__mro__:
        if not klass.__flags__ & _HEAPTYPE:
            return klass
    return object  # pragma: no cover - every MRO ends with object


def restore_instance(cls: type[Any], state: Any) -> Any:
    base = builtin_base(cls)
    # As copyreg does: the C base's __new__, not the class's own (whose __init__ is not run either).
    instance = object.__new__(cls) if base is object else base.__new__(cls)  # type: ignore[call-overload]
    if defines_state_protocol(cls)[1]:
        instance.__setstate__(state)
    else:
        if not isinstance(state, dict):
            raise StateSerializationError(
                f"{cls.__qualname__}: stored state is a {type(state).__name__}, not an attribute dict; "
                "define __setstate__ to read it"
            )
        instance.__dict__.update(state)
    return instance


#: what a class defines to decide how its instances are rebuilt: code that runs at load time, or
#: (``__getstate__``) what the rebuild is handed, which the default one may not take (a tuple)
_REBUILDERS = (
    "__reduce__",
    "__reduce_ex__",
    "__getstate__",
    "__setstate__",
    "__new__",
    "__getnewargs__",
    "__getnewargs_ex__",
)


#: :func:`_rebuilt_by_own_code` of the classes met so far (by id: a class may be unhashable)
_REBUILT: dict[int, tuple[type, bool]] = {}


def _rebuilt_by_own_code(cls: type) -> bool:
    """:func:`_rebuilds`, remembered per class (a dict lookup per object pickled)."""
    known = _REBUILT.get(id(cls))
    if known is not None and known[0] is cls:
        return known[1]
    if len(_REBUILT) >= 1024:
        _REBUILT.clear()
    answer = _rebuilds(cls)
    _REBUILT[id(cls)] = (cls, answer)
    return answer


def _rebuilds(cls: type) -> bool:
    """Whether unpickling an instance of ``cls`` runs code the caller wrote: a class defined in
    Python (outside the standard library, whose ``Fraction``, ``UUID``, enums and named tuples
    load back) that defines how its instances are rebuilt. Such an instance may pickle and
    never unpickle (a ``__reduce__`` naming a callable that raises, a ``__new__`` that needs
    arguments), as an exception may; so may one whose ``__getstate__`` returns what the default
    rebuild does not take, or one whose class has a reducer in ``copyreg.dispatch_table``."""
    if cls.__flags__ & _HEAPTYPE and any(k is cls for k in copyreg.dispatch_table) and _own(cls):
        return True  # (pickle looks its type up there, not its bases)
    for klass in cls.__mro__:
        if not klass.__flags__ & _HEAPTYPE:
            continue
        for name in _REBUILDERS:
            method = klass.__dict__.get(name)
            if method is not None and _own(getattr(method, "__func__", method)):
                return True
    return False


def _own(thing: Any) -> bool:
    """Whether ``thing`` (a class or function) comes from outside the standard library."""
    module = getattr(thing, "__module__", None) or ""
    top = module.partition(".")[0]
    # (named tuples' methods are made in a module of their own, "namedtuple_<name>")
    return top not in sys.stdlib_module_names and not top.startswith("namedtuple_")


class _StatePickler(bytecode.Pickler):
    """cloudpickle, noting whether it pickled what may pickle and not unpickle: an exception
    (the usual one: an ``__init__`` taking other arguments than it passes on) or an instance of
    a class with its own rebuilding code (:func:`_rebuilt_by_own_code`), so a state holding one
    is read back before it is stored. Others are not: reading every state back would cost as
    much as writing it (a class of ``__main__``, pickled by value, 0.2 ms)."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        self.may_not_load = False

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException) or _rebuilt_by_own_code(type(obj)):
            self.may_not_load = True
        return super().reducer_override(obj)


def dumps_state(
    state: Any,
    serializer: str,
    what: str = "state",
    restore: type | None = None,
    *,
    actor: tuple[str, type] | None = None,
) -> bytes:
    """Serialize; :class:`StateSerializationError` says what could not be serialized, or what
    pickled but does not unpickle (stored, it could never be read back).

    ``restore`` is an actor class that defines ``__setstate__`` (``ActorDefinition.restores``),
    whose instance the state is: the state is read back and handed to it (on an instance of its
    own) before it is stored, as every load will; one it raises on is refused like a state that
    does not unpickle. Other states are read back only when :class:`_StatePickler` met something
    that may not load: reading every state back would cost as much as writing it.

    ``actor`` is the actor id and class whose ``state`` this is (captured by
    :func:`capture_state`): the error then names them, and the attribute (or the entry of
    what ``__getstate__`` returned) holding the culprit, so a user need not bisect a state.
    """
    return _dumps_read_back(state, serializer, what, restore, actor=actor)[0]


def dumps_instance_state(
    instance: Any, serializer: str, restore: type | None, actor_id: str
) -> tuple[bytes, Any]:
    """The state of the actor ``instance`` serialized (see :func:`dumps_state`), and the
    instance the actor's next call runs on: the one read back from those bytes whenever they
    were read back (the class defines ``__setstate__``, the state holds an object that
    rebuilds itself, or the serializer is json), as another process, or this one after
    evicting the actor, would restore it; else ``instance`` itself (its ``__dict__`` of plain
    objects pickles faithfully).

    Kept instead, ``instance`` carried what ``__getstate__`` leaves out (``self.scratch = ...``)
    into the next calls of this process only: what a call saw depended on the cache.
    """
    data, restored = _dumps_read_back(
        capture_state(instance), serializer, "state", restore, actor=(actor_id, type(instance))
    )
    return data, instance if restored is None else restored


def _dumps_read_back(
    state: Any,
    serializer: str,
    what: str = "state",
    restore: type | None = None,
    *,
    actor: tuple[str, type] | None = None,
) -> tuple[bytes, Any]:
    """``dumps_state``'s work, and the instance it read back (None if it read none back)."""
    check = restore is not None
    try:
        if serializer == "json":
            data = json.dumps(state, separators=(",", ":"), allow_nan=False).encode("utf-8")
            loaded = json.loads(data) if actor is not None else None
            if actor is not None and loaded != state:
                # json.dumps writes the key 1 as "1" and a tuple as a list: the cached instance
                # kept {1: ...} while every reader and other process got {"1": ...}, and a call
                # there adding 1 again stored "1" twice (one value lost on load).
                raise TypeError(
                    "it would be read back as something else: json stores a dict key that is not "
                    "a str as a str, and a tuple as a list"
                )
            if not check:
                # The next call runs on what was read back, as every other process will: json
                # reads a defaultdict, an IntEnum or a str subclass back as plain data that
                # compares equal, and a cached instance that kept them ran calls (a defaultdict's
                # missing key) that fail everywhere else.
                return data, None if actor is None else restore_instance(actor[1], loaded)
        elif _plain(state):
            # Plain data pickles to the same bytes with or without cloudpickle (whose
            # hooks see only functions, classes and the like), minus cloudpickle's setup;
            # and it always unpickles.
            data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
            if not check:
                return data, None
        else:
            with io.BytesIO() as file:
                pickler = _StatePickler(file, protocol=pickle.HIGHEST_PROTOCOL)
                pickler.dump(state)
                data = file.getvalue()
            if not (check or pickler.may_not_load):
                return data, None
    except (TypeError, ValueError, pickle.PicklingError, AttributeError, RecursionError) as exc:
        hint = (
            "the json serializer takes only dict (with str keys), list, str, int, float, bool and None"
            if serializer == "json"
            else "make it picklable, or define __getstate__/__setstate__"
        )
        subject = _subject(what, actor, state, serializer)
        raise StateSerializationError(f"cannot serialize {subject}: {exc}; {hint}") from exc
    try:
        copy = loads_state(data, serializer)
    except Exception as exc:
        subject = _subject(what, actor, state, serializer)
        raise StateSerializationError(
            f"{subject} pickles but does not unpickle ({type(exc).__name__}: {exc}): stored, "
            "it could never be read back. The usual causes: an exception class whose __init__ takes "
            "other arguments than it passes to Exception.__init__ (pass them all to "
            "super().__init__(), or define __reduce__), or a class whose own __reduce__, __setstate__ "
            "or __new__ fails when an instance is loaded, or whose __getstate__ returns what its "
            "__setstate__ (or, without one, the default: a dict) does not take"
        ) from exc
    restored = None
    if check:
        assert restore is not None
        try:
            restored = restore_instance(restore, copy)
        except Exception as exc:
            name = restore.__qualname__
            of = f" of actor {actor[0]!r}" if actor is not None else ""
            raise StateSerializationError(
                f"{name}.__setstate__ raises on the {what}{of} {name}.__getstate__ returned "
                f"({type(exc).__name__}: {exc}): stored, the actor could never be loaded again. "
                "Make __setstate__ take every state __getstate__ returns"
            ) from exc
    elif actor is not None:
        # Read back for an object that rebuilds itself (its own __getstate__ may leave a cache
        # out): the next call runs on what every other process will load, at no extra cost.
        restored = restore_instance(actor[1], copy)
    return data, restored


def _subject(what: str, actor: tuple[str, type] | None, state: Any, serializer: str) -> str:
    """What failed to serialize, for an error: "the actor's state", or with ``actor`` known
    "the state of actor 'a' (Cls), in its attribute 'conn'"."""
    if actor is None:
        return f"the actor's {what}"
    actor_id, cls = actor
    subject = f"the {what} of actor {actor_id!r} ({cls.__qualname__})"
    culprit = _culprit(state, serializer)
    if culprit is None:
        return subject
    if defines_state_protocol(cls)[0]:
        return f"{subject}, in the entry {culprit!r} of what its __getstate__ returned"
    return f"{subject}, in its attribute {culprit!r}"


def _culprit(state: Any, serializer: str) -> Any:
    """The first key of a dict ``state`` whose value alone does not serialize and read back,
    else None. Only on the error path: it serializes the values one by one."""
    if not isinstance(state, dict):
        return None
    for key, value in state.items():
        try:
            if serializer == "json":
                if json.loads(json.dumps(value, allow_nan=False)) != value:
                    return key
            else:
                pickle.loads(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:
            return key
    return None


_ATOMS = frozenset({str, int, float, bool, type(None), bytes})
_CONTAINERS = frozenset({dict, list, tuple})
#: how many values ``_plain`` looks at before it gives up (a large state goes to cloudpickle)
_PLAIN_BUDGET = 64


def _plain(state: Any) -> bool:
    """Whether ``state`` is a small tree of builtin scalars in dicts, lists and tuples."""
    stack = [state]
    budget = _PLAIN_BUDGET
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind in _ATOMS:
            continue
        if kind not in _CONTAINERS:
            return False
        budget -= len(value)
        if budget < 0:
            return False
        if kind is dict:
            for key, item in value.items():
                if type(key) not in _ATOMS:
                    return False
                stack.append(item)
        else:
            stack.extend(value)
    return True


def expect_serializer(stored: str, expected: str, where: str) -> str:
    """The serializer to decode a stored object with: always ``expected`` (the class's).

    What an object's metadata says about its own encoding is written by
    whoever wrote the object; trusting it would let a forged step of a
    json actor name ``"pickle"`` and run code in the reader. The class
    decides; a stored value that disagrees is an :class:`IntegrityError`,
    raised before any byte of the state is decoded. ``where`` names the
    object (its key, or the actor and step) for the message.
    """
    if stored != expected:
        raise IntegrityError(
            where,
            f"stored with serializer {stored!r}, but the actor's class uses {expected!r}; refused "
            "without decoding (a forged or foreign object, or a class whose serializer changed)",
        )
    return expected


def loads_state(data: bytes, serializer: str) -> Any:
    """Deserialize ``data`` with ``serializer``, which must come from the class (see
    :func:`expect_serializer`), never from the stored object."""
    if serializer == "json":
        return json.loads(data.decode("utf-8"))
    if serializer == "pickle":
        return bytecode.loads(data)
    raise StateSerializationError(f"unknown serializer {serializer!r}; this vactor_cloud knows {SERIALIZERS}")

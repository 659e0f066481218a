"""Code pickled by value names the Python that compiled it, and no other Python builds it.

cloudpickle stores a lambda, a function or class of a script's ``__main__`` and a class
defined in a function by value: with their code objects, whose bytecode only one Python
version runs. A state holding an instance of a dataclass of a script, written by Python 3.11
and read by 3.12, crashed the reading interpreter (a segmentation fault) the first time a
method of that instance ran; 3.13 raised ``SystemError: unknown opcode``.

:func:`dumps` pickles as cloudpickle does, except that each code object is built by a
constructor that looks itself up by the reading Python's bytecode tag
(``sys.implementation.cache_tag``): ``getattr(types, {WRITER: "CodeType"}.get(READER, ...))``.
The pickle needs nothing but the standard library and cloudpickle to load (a process of an
earlier vactor_cloud reads it too), and a Python of another version fails to load it with an
``AttributeError`` whose message says why, before any of its code exists. :func:`loads`
raises that as :class:`~vactor_cloud.errors.OtherPythonError` (an ``ImportError``: like a
class this process lacks, the object is whole and another process loads it).

Plain data (no code) pickles to the same bytes as with cloudpickle.
"""

from __future__ import annotations

import importlib
import io
import pickle
import sys
import types
from collections import ChainMap
from typing import Any

import cloudpickle

from vactor_cloud.errors import OtherPythonError

__all__ = ["BYTECODE", "Pickler", "dumps", "loads"]

#: The bytecode this Python runs (``cpython-311``); None for an implementation with no such
#: tag, whose code objects are pickled as cloudpickle does. A class body stored by value
#: records it too, and a process of another refuses to load that body (``runtime.py``).
BYTECODE: str | None = sys.implementation.cache_tag

#: the words an ``AttributeError`` raised by another Python's load starts with
_MARK = "CodeType compiled by "

_cloud_code_reduce = cloudpickle.CloudPickler.dispatch_table[types.CodeType]


class _Reduced:
    """An object that pickles as ``function(*args)``: the pieces of the checked constructor."""

    __slots__ = ("args", "function")

    def __init__(self, function: Any, *args: Any) -> None:
        self.function = function
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args

    def value(self) -> Any:
        """What loading it makes, here."""
        return self.function(*(a.value() if isinstance(a, _Reduced) else a for a in self.args))

    def __call__(self, *args: Any) -> Any:  # (pickle takes only a callable for a constructor)
        return self.value()(*args)


def _checked_constructor(writer: str) -> _Reduced:
    """``types.CodeType`` when loaded by a Python whose tag is ``writer``; else, at load, an
    ``AttributeError`` that says why."""
    reader = _Reduced(
        getattr, _Reduced(getattr, _Reduced(importlib.import_module, "sys"), "implementation"), "cache_tag"
    )
    refusal = (
        f"{_MARK}{writer}: the object holds code pickled by value (a lambda, a function or "
        f"class of a script's __main__, a class defined in a function), which another Python "
        f"version runs wrongly or crashes on; load it with {writer}"
    )
    name = _Reduced(dict.get, {writer: "CodeType"}, reader, refusal)
    return _Reduced(getattr, _Reduced(importlib.import_module, "types"), name)


#: one per process: a pickle holds it once (pickle's memo), however many code objects it has
_CONSTRUCTOR = None if BYTECODE is None else _checked_constructor(BYTECODE)


def _code_reduce(code: types.CodeType) -> Any:
    constructor, args = _cloud_code_reduce(code)
    return (constructor if _CONSTRUCTOR is None else _CONSTRUCTOR), args


class Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]
    """cloudpickle's pickler whose code objects load only on the Python that compiled them."""

    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.CloudPickler.dispatch_table)


def dumps(value: Any) -> bytes:
    """``value`` pickled by cloudpickle (highest protocol), its code checked at load."""
    with io.BytesIO() as file:
        Pickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        return file.getvalue()


def loads(data: bytes) -> Any:
    """``pickle.loads``; :class:`OtherPythonError` for code of another Python version."""
    try:
        return pickle.loads(data)
    except AttributeError as exc:
        found = other_python(exc)
        if found is exc:
            raise
        raise found from exc


def other_python(exc: AttributeError) -> Exception:
    """``exc``, or the :class:`OtherPythonError` it stands for."""
    message = str(exc)
    start = message.find(_MARK)
    if start < 0:
        return exc
    return OtherPythonError(message[start:].rstrip("'\""))

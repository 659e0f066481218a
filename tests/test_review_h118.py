"""An outside review of this session's library changes: each case is a behaviour an outside
reviewer tried to break.

* A mutable default that is a named object of the method's module, compared by identity (the
  old ``_marker = []`` sentinel idiom), or holding one (``[_MISSING]``), keeps that identity:
  the fresh copy per call (``with_fresh_defaults``) copies what the ``def`` line wrote, not a
  module object the method's body names.
"""

from __future__ import annotations

from typing import Any

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

#: a sentinel in the old idiom: an empty list, compared by identity
_marker: list[Any] = []
#: a sentinel, compared by identity, inside a default
_MISSING: Any = object()


@vc.virtual_actor
class Lookup:
    def __init__(self) -> None:
        self.table = {"a": 1}

    @vc.virtual_actor.readonly
    def get(self, key: str, default: Any = _marker) -> Any:
        if default is _marker:
            raise KeyError(key)
        return default

    @vc.virtual_actor.readonly
    def first_given(self, options: list[Any] = [_MISSING]) -> bool:  # noqa: B006 - the point
        return options[0] is _MISSING

    def add(self, x: int, seen: list[int] = []) -> list[int]:  # noqa: B006 - still fresh
        seen.append(x)
        return seen


def test_a_named_module_object_as_a_default_keeps_its_identity(actor_store: StoreSpec) -> None:
    """``def get(self, key, default=_marker): if default is _marker: raise KeyError``: the
    handle's call got a copy of ``_marker``, so ``get("zz")`` returned ``[]`` instead of raising
    (and a sentinel inside a default list was copied: ``options[0] is _MISSING`` was False)."""
    lookup = Lookup.get_or_create("l")
    try:
        got = lookup.get.run("zz")
    except KeyError:
        got = "raised"
    assert got == "raised"
    assert lookup.get.run("zz", 5) == 5
    assert lookup.first_given.run() is True
    assert lookup.first_given.run([None]) is False
    assert lookup.add.run(1) == [1]
    assert lookup.add.run(2) == [2]

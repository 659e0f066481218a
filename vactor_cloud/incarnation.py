"""Which actor under an id a step belongs to: its **incarnation**.

An id may hold one actor after another (``delete_actor``, then ``get_or_create``). The
creation after a tombstone at step T puts ``extra["born"] = T + 1`` (its own step number),
and every later step carries it forward with the rest of ``extra``; an actor never deleted
has none (incarnation 0). What lives beside the steps and outlives a delete (a failed-call
record a call that raced the delete wrote after the delete's clean-up) names the
incarnation it was written in, so the next actor under the id tells it from its own
without a request: the step it runs on says which actor it is.

Format: docs/protocol.md, "Deleting an actor".
"""

from __future__ import annotations

from typing import Any

__all__ = ["BORN", "born_in", "born_of"]

#: the ``extra`` key of the incarnation (the step number of the actor's creation), and the
#: key under which records written beside the steps name it
BORN = "born"


def born_of(extra: dict[str, Any]) -> int:
    """The incarnation a step with this ``extra`` belongs to (0: the id's first actor)."""
    value = extra.get(BORN, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def born_in(meta: dict[str, Any]) -> int:
    """The incarnation a record's ``meta`` names; 0 when it names none (written by the id's
    first actor, or before incarnations). ``ValueError`` for a value that is no step number."""
    value = meta.get(BORN, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{BORN} {value!r} is no step number")
    return value

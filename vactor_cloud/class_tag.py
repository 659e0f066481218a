"""Which class a call was made for: a call names a method of a class (the one its handle
looked the method up in), and runs on no actor of another class (``ActorClassChangedError``:
the id was deleted and made again, with another class, since its caller read it).

A call made in this process knows its class by name (``module:QualName``). A posted call
carries the class's **tag** instead, 4 bytes of a keyed hash of the name written as 8 hex
digits, to keep post names short (docs/protocol.md, "Posting and folding"). A name has a
``:`` and a tag has none, so one field holds either.
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["class_tag", "made_for", "tag_of"]

TAG_BYTES = 4


@functools.lru_cache(maxsize=256)
def class_tag(name: str) -> str:
    """The tag of the class ``name`` (``module:QualName``): 8 hex digits."""
    return hashlib.blake2b(name.encode("utf-8"), digest_size=TAG_BYTES, person=b"vactor-class").hexdigest()


def tag_of(for_class: str | None) -> str | None:
    """The tag a post carries for a call made for ``for_class`` (a name or a tag)."""
    return for_class if for_class is None or ":" not in for_class else class_tag(for_class)


def made_for(for_class: str | None, name: str) -> bool:
    """Whether a call made for ``for_class`` (a name, a tag, or None: any class) may run on
    an actor of the class ``name``."""
    return for_class is None or for_class == name or (":" not in for_class and for_class == class_tag(name))

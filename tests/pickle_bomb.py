"""A value whose unpickling runs code, as a malicious pickle would: proof of "never unpickled"."""

from __future__ import annotations

from typing import Any

#: every unpickling of a Bomb appends here
UNPICKLED: list[str] = []


def _detonate(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Bomb:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_detonate, ("bomb",))

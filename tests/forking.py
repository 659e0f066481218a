"""Tests of methods that fork: run a call that forks inside its body, in the parent and the child.

Every child path ends in ``os._exit`` (a child must never return into pytest); the parent reads
what the child said through a pipe, bounded by ``HANG``."""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from typing import Any

#: how long the parent waits for a child's word before calling it a hang
HANG = 60.0


def read_until_closed(read: int) -> bytes:
    """Everything written to the pipe ``read`` until every writer closed it."""
    said = b""
    while True:
        ready, _, _ = select.select([read], [], [], HANG)
        assert ready, "the child neither answered nor ended"
        chunk = os.read(read, 4096)
        if not chunk:
            return said
        said += chunk


def run_in_both(call: Callable[[], Any]) -> tuple[Any, str]:
    """``call()``, whose body forks: the parent's result, and what the child said (its result,
    ``returned ...``, if it got one shaped ``("child", ...)``; else the error its call raised)."""
    read, write = os.pipe()
    try:
        got = call()
    except BaseException as exc:  # only the child gets here
        os.write(write, f"{type(exc).__name__}: {exc}\n".encode()[:4000])
        os._exit(0)
    if isinstance(got, tuple) and got and got[0] == "child":
        os.write(write, f"returned {got!r}\n".encode())
        os._exit(0)
    os.close(write)
    try:
        return got, read_until_closed(read).decode()
    finally:
        os.close(read)

"""A method that forks (``os.fork()`` in its body) and returns in the child as well.

The child then held the parent's batch on its own thread, went on to commit it, and the call
was applied twice: the child's commit raced the parent's, and the loser ran the body again on
the winner's step (forking once more). Now the child stops before committing anything and its
caller hears why; the parent applies the call once. The test failed before the fix (the child
returned ``('child', 2)``)."""

from __future__ import annotations

import os
import select

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory", "local", "moto"),
]

#: how long the parent waits for the child's word before calling it a hang
HANG = 60.0


@vc.virtual_actor
class Forker:
    def __init__(self) -> None:
        self.n = 0

    def fork_and_count(self) -> tuple[str, int]:
        self.n += 1
        return ("child" if os.fork() == 0 else "parent", self.n)

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


def _child_says(read: int) -> bytes:
    said = b""
    while True:
        ready, _, _ = select.select([read], [], [], HANG)
        assert ready, "the forked child neither answered nor ended"
        chunk = os.read(read, 4096)
        if not chunk:
            return said
        said += chunk


def test_a_method_that_forks_is_applied_once_and_the_child_hears_why(actor_store: StoreSpec) -> None:
    a = Forker.get_or_create("forker")
    read, write = os.pipe()
    try:
        got = a.fork_and_count.run()
    except BaseException as exc:  # only the child gets here
        os.write(write, f"{type(exc).__name__}: {exc}\n".encode()[:4000])
        os._exit(0)
    if got[0] == "child":  # (before the fix: the child committed the call as well)
        os.write(write, f"returned {got!r}\n".encode())
        os._exit(0)
    os.close(write)
    try:
        said = _child_says(read).decode()
    finally:
        os.close(read)
    assert got == ("parent", 1)
    assert said.startswith("RuntimeError: fork_and_count() of actor 'forker' forked"), said
    assert "committed nothing" in said and "must not call it again" in said
    assert a.count.run() == 1

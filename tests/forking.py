"""Tests of methods that fork: run a call that forks inside its body, in the parent and the child.

Every child path ends in ``os._exit`` (a child must never return into pytest); the parent reads
what the child said through a pipe, bounded by ``HANG``."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
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


def reaped(pid: int, within: float = HANG / 3) -> int:
    """The exit status of the child ``pid``, reaped (no zombie left). A child still running
    after ``within`` seconds is killed and reaped before the test fails: none outlives it."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
    except BaseException:
        _kill(pid)
        raise
    _kill(pid)
    raise AssertionError(f"the child {pid} was still running after {within} s (killed)")


@contextlib.contextmanager
def children_reaped() -> Iterator[list[int]]:
    """Within the block, ``os.fork`` notes each child it makes (forked in a method's body, the
    parent never learns its id: nothing waited for it, and it stayed a zombie until the test
    process ended); after it, each is reaped (:func:`reaped`), unless the test reaped it."""
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid > 0:
            forked.append(pid)
        return pid

    os.fork = fork
    try:
        yield forked
    finally:
        os.fork = real_fork
        for pid in forked:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # reaped by the test (its id may be another process's by now)
            if not done:
                reaped(pid)  # (still ours, unreaped: killed if it does not end)


def _kill(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

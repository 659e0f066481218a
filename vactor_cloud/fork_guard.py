"""The end of a child forked by the program's code that vactor runs: an actor method, writer or
read-only, an actor's ``__init__`` at its creation, or a sub-task's function (``os.fork()``
there, returning or raising in the child too).

Whatever runs such code does so for the parent: the call is the parent's to apply (or answer),
the sub-task's result the parent's to checkpoint. The child cannot go back to what called the
code either: that is the parent's runtime (locks another of its threads held at the fork, an
IO loop the child does not have), or a pool's thread, the child's only thread, which waits for
work that never comes. So such a child says why on stderr and exits with status 70 (EX_SOFTWARE)
at once, running nothing more. Code that forks and ends its child itself (``os._exit()``,
``multiprocessing``'s fork start method, ``subprocess``) never comes back to the guard.

Usage: ``forks = forks_now()`` before running the code, ``end_a_forked_child(forks, ...)``
after it (in a ``finally``). An async method's functions run in threads (``asyncio.to_thread``,
``run_in_executor(None, ...)``) run on a ``guarded_executor.GuardedExecutor``, which does so for each.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["STATUS", "end_a_forked_child", "forks_now"]

#: the exit status of a child ended here (``EX_SOFTWARE``)
STATUS = 70

#: forks this process's line has been through: one more in each forked child
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


def forks_now() -> int:
    """What :func:`end_a_forked_child` compares with, taken before the code runs."""
    return _forks


def end_a_forked_child(forks: int, what: str, whose: str) -> None:
    """In a child forked since ``forks`` was taken, end the process: ``what`` forked (``"m() of
    actor 'a'"``), ``whose`` says what becomes of its work (``"the call is the parent's, which
    applies it; this child committed nothing and"``), on stderr. Else nothing."""
    if _forks == forks:
        return
    message = (
        f"vactor_cloud: {what} forked (os.fork()) and came back (returned or raised) in the child "
        f"process {os.getpid()} too: {whose} exits now (status {STATUS}), as it cannot go on "
        "inside the parent's runtime. "
        "End the child where it was forked (os._exit()), or start processes outside actor methods, "
        "__init__ and sub-tasks\n"
    )
    with contextlib.suppress(OSError):
        os.write(2, message.encode("utf-8", "replace"))
    os._exit(STATUS)

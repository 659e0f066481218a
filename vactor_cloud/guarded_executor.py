"""The default executor of an async actor method's own event loop: it ends a child forked in a
function it runs in a thread, as ``fork_guard`` ends one that comes back inside a method.

A module of its own, imported only when a method first uses its loop's default executor
(``asyncio.to_thread``, ``run_in_executor(None, ...)``): importing ``ThreadPoolExecutor``
registers ``concurrent.futures``' exit hook, and where it stands among the interpreter's exit
hooks decides whether a thread pool's leftover work runs before or after vactor's own exit hook.
Imported with vactor_cloud, it ran before it: calls such a pool still made at exit ran on a
runtime started after vactor's hook, which then left HEAD unmoved.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from vactor_cloud.fork_guard import forks_now

__all__ = ["GuardedExecutor"]

P = ParamSpec("P")
T = TypeVar("T")


class GuardedExecutor(ThreadPoolExecutor):
    """The default executor of the event loop an async actor method runs on: ``end_child(forks)``
    (:func:`end_a_forked_child` with what the method is) after each function it runs.

    A function run in a thread (``asyncio.to_thread``) that forks and returns in the child left
    the child's only thread, the executor's worker, handing the result to a loop the child does
    not have and then waiting for the executor's next work, for good: a process hung for ever.
    """

    def __init__(self, end_child: Callable[[int], None], thread_name_prefix: str) -> None:
        super().__init__(thread_name_prefix=thread_name_prefix)
        self._end_child = end_child

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(self._guarded, fn, *args, **kwargs)

    def _guarded(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        forks = forks_now()
        try:
            return fn(*args, **kwargs)
        finally:
            self._end_child(forks)

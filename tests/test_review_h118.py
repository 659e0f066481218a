"""An outside review of this session's library changes: each case is a behaviour an outside
reviewer tried to break.

* A mutable default that is a named object of the method's module, compared by identity (the
  old ``_marker = []`` sentinel idiom), or holding one (``[_MISSING]``), keeps that identity:
  the fresh copy per call (``with_fresh_defaults``) copies what the ``def`` line wrote, not a
  module object the method's body names.
* A forked child's at-fork reset forgets the parent's IO loop even when cutting the child's copy
  of it off from the parent's kernel objects fails.
* ``vactor events``' inbox probes, 32 at once: one failing leaves none of the others running.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import StorageError
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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_whose_loop_copy_cannot_be_cut_off_still_gets_its_own_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The at-fork reset gives the child's copy of the parent's loop an epoll of its own first;
    ``select.epoll()`` failing there (out of descriptors, EMFILE) ended the reset before it
    forgot the parent's loop: the child's every call waited for a loop thread it does not
    have (here: its ``sync`` timed out). A failed cut-off now leaves the reset whole."""
    assert _sync.sync(_answer(), timeout=30) == 42

    def no_descriptors() -> Any:
        raise OSError(errno.EMFILE, "Too many open files (injected)")

    monkeypatch.setattr(select, "epoll", no_descriptors)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            monkeypatch.undo()
            ok = _sync.sync(_answer(), timeout=10) == 42
            os.write(write_end, b"ok" if ok else b"wrong")
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode()[:500])
        finally:
            os._exit(code)
    os.close(write_end)
    monkeypatch.undo()
    ready: list[Any] = []
    try:
        ready, _, _ = select.select([read_end], [], [], 60)
        report = os.read(read_end, 1024) if ready else b"<no answer from the child within 60 s>"
    finally:
        os.close(read_end)
        if not ready:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert report == b"ok"
    assert _sync.sync(_answer(), timeout=30) == 42


async def _answer() -> int:
    return 42


def test_a_failed_inbox_probe_leaves_no_other_probe_running() -> None:
    """``vactor events ls``/``drain`` ask 32 inboxes at once: one LIST failing raised at once
    while the other LISTs of its batch ran on, orphans nobody waited for (still running as the
    command reported its error and shut the runtime down). They are cancelled and waited for
    now, before the first failure is raised."""
    from vactor_cloud.cli import events

    running: set[str] = set()

    class Store:
        async def list(self, prefix: str, limit: int) -> list[str]:
            running.add(prefix)
            try:
                if "bad" in prefix:
                    for _ in range(3 if "bad1" in prefix else 0):  # (bad2 fails first)
                        await asyncio.sleep(0)
                    raise StorageError(f"{prefix}: refused (injected)", prefix)
                await asyncio.Event().wait()  # (a slow LIST: never answers)
                return []
            finally:
                running.discard(prefix)

    async def probe() -> tuple[str, set[str]]:
        try:
            await events._with_events(Store(), ["slow1", "bad1", "slow2", "bad2"])  # type: ignore[arg-type]
        except StorageError as exc:
            return str(exc), set(running)
        return "no error", set(running)

    error, left = asyncio.run(asyncio.wait_for(probe(), 30))
    assert "bad2" in error
    assert left == set()

"""The local store makes every write but a post durable before it acknowledges it, and says
when a delete failed (review h139).

In a mutation sweep of ``_local.py`` (review h139), dropping the temp file's ``fsync`` before its
link or rename, or the directory's after it, or moving the file's after the rename, was caught
only indirectly: by tests that inject a failing ``fsync`` and then miss the failure. These
tests hold the order itself (file synced, then linked or renamed, then the directory synced:
otherwise a step acknowledged as committed may be gone, or empty, after a power cut). A
delete whose ``unlink`` failed was reported done by no test at all.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path

import pytest

from vactor_cloud.errors import StorageError
from vactor_cloud.storage import IfMatch, LocalStore

#: a key synced as any object is (a step), and one that is not (a post)
STEP = "actors/abc/steps/00000000000000000007"


def _record_durability_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``fsync`` (of a ``file`` or a ``dir``), ``link`` and ``replace`` calls, in order."""
    calls: list[str] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def link(src: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append("link")
        real_link(src, dst)

    def replace(src: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.parametrize("mode", ["create", "overwrite", "if-match"])
def test_a_put_syncs_its_file_before_the_rename_and_its_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Killed mutations: the temp file's ``os.fsync`` skipped, the directory's skipped."""
    store = LocalStore(tmp_path)
    version = asyncio.run(store.put(STEP, b"before"))  # (the layout marker, the directories)
    calls = _record_durability_calls(monkeypatch)
    put_mode = IfMatch(version) if mode == "if-match" else mode
    if mode == "create":
        asyncio.run(store.delete(STEP))
    asyncio.run(store.put(STEP, b"the step's bytes", mode=put_mode))  # type: ignore[arg-type]
    renamed = "link" if mode == "create" else "replace"
    assert renamed in calls, calls
    at = calls.index(renamed)
    assert "fsync file" in calls[:at], f"the file was not synced before its {renamed}: {calls}"
    assert "fsync dir" in calls[at + 1 :], f"the directory was not synced after the {renamed}: {calls}"
    assert asyncio.run(store.get(STEP)).data == b"the step's bytes"


def test_a_put_made_inline_syncs_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime's hot path (``put_now``) writes through the same code: synced alike."""
    store = LocalStore(tmp_path)
    store.put_now("actors/abc/HEAD", b"0")
    calls = _record_durability_calls(monkeypatch)
    store.put_now(STEP, b"step", mode="create")
    assert calls.index("fsync file") < calls.index("link") < calls.index("fsync dir"), calls


def test_a_delete_the_file_system_refuses_is_reported_and_the_object_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed mutation: ``_remove``'s ``OSError`` (a read-only remount, an I/O error) swallowed:
    the delete was reported done and the object stayed (a post folded again, a step a
    compaction believes gone)."""
    store = LocalStore(tmp_path)
    asyncio.run(store.put(STEP, b"kept"))
    real_unlink = os.unlink

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        if not os.path.basename(path).startswith("."):
            raise OSError(errno.EROFS, "Read-only file system", path)
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(StorageError, match="delete failed") as caught:
        asyncio.run(store.delete(STEP))
    assert caught.value.key == STEP
    with pytest.raises(StorageError, match="delete failed"):
        asyncio.run(store.delete_many([STEP]))
    monkeypatch.undo()
    assert asyncio.run(store.get(STEP)).data == b"kept"

"""The local store makes every write but a post durable before it is acknowledged (review h139).

A mutation sweep of ``_local.py`` (review h139) found no test that failed when the temp
file's ``fsync`` before its link or rename was dropped, nor when the directory's ``fsync``
after it was: the only test watching ``fsync`` checked that posts skip it. Without them a
step acknowledged as committed may be gone, or empty, after a power cut. These tests record
the system calls of each put mode, in order, and hold both.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

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

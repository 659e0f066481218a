"""Writes and plain deletes on the local store take the conditional deletes' stripe lock
(review-h166).

``_remove_unchanged`` compares an object's version and unlinks it under one of the stripe
locks, so that two conditional deletes never both find one version; a plain delete took no
lock. Landing between a conditional delete's compare and its unlink, it removed the object,
a create then wrote a new one under the key (an inbox event id sent again), and the
conditional delete unlinked that one: an acknowledged write lost. So did an overwrite landing
there, and an if-match write of a key no if-match had locked before. Each case failed before.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from vactor_cloud.errors import PreconditionFailedError
from vactor_cloud.storage import IfMatch
from vactor_cloud.storage._local import LocalStore

_KEY = "actors/a/inbox/evt-1"
_BOUND = 10.0  # seconds any step may wait before the test gives up (never reached when it holds)


#: what lands between the conditional delete's compare and its unlink, and writes a new object
#: (its version) that the delete must leave
_MEANWHILE = {
    "a plain delete and a create again": lambda store, first: (
        store._remove(_KEY),
        store.put_now(_KEY, b"second", mode="create"),
    )[1],
    "an overwrite": lambda store, first: store.put_now(_KEY, b"second"),
    "an if-match write": lambda store, first: store.put_now(_KEY, b"second", mode=IfMatch(first)),
}


@pytest.mark.parametrize("meanwhile", list(_MEANWHILE))
def test_a_write_between_a_conditional_deletes_compare_and_unlink_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    store = LocalStore(tmp_path)
    first = store.put_now(_KEY, b"first", mode="create")
    compared, go, second_done, second_locking = (threading.Event() for _ in range(4))
    read_version, delete_lock = store._read_version, store._delete_lock

    def paused_after_compare(key: str) -> str | None:
        version = read_version(key)
        if threading.current_thread().name == "conditional":
            compared.set()
            go.wait(_BOUND)
        return version

    def watched_lock(key: str) -> Any:
        if threading.current_thread().name == "writer":
            second_locking.set()
        return delete_lock(key)

    monkeypatch.setattr(store, "_read_version", paused_after_compare)
    monkeypatch.setattr(store, "_delete_lock", watched_lock)
    written: list[str] = []
    failed: list[BaseException] = []

    def write() -> None:
        try:
            written.append(_MEANWHILE[meanwhile](store, first))
        except BaseException as exc:  # (an if-match refused once the delete went first)
            failed.append(exc)
        second_done.set()

    conditional = threading.Thread(target=store._remove_unchanged, args=(_KEY, first), name="conditional")
    writer = threading.Thread(target=write, name="writer")
    conditional.start()
    try:
        assert compared.wait(_BOUND)
        writer.start()
        # Either the write waits for the stripe lock (the conditional delete's compare and
        # unlink are one step), or it ran through meanwhile.
        for _ in range(int(_BOUND / 0.01)):
            if second_done.is_set() or second_locking.is_set():
                break
            second_done.wait(0.01)
    finally:
        go.set()
        conditional.join(_BOUND)
        if writer.ident is not None:
            writer.join(_BOUND)
    assert not conditional.is_alive() and not writer.is_alive()
    if failed:  # the delete went first: an if-match write then finds no object, and says so
        [refused] = failed
        assert isinstance(refused, PreconditionFailedError) and meanwhile == "an if-match write"
        assert store._read_version(_KEY) is None
        return
    [second] = written
    assert store.get_now(_KEY).version == second

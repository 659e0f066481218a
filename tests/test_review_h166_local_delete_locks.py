"""A plain delete on the local store takes the conditional deletes' stripe lock (review-h166).

``_remove_unchanged`` compares an object's version and unlinks it under one of the stripe
locks, so that two conditional deletes never both find one version; a plain delete took no
lock. Landing between a conditional delete's compare and its unlink, it removed the object,
a create then wrote a new one under the key (an inbox event id sent again), and the
conditional delete unlinked that one: an acknowledged write lost. The test failed before.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from vactor_cloud.storage._local import LocalStore

_KEY = "actors/a/inbox/evt-1"
_BOUND = 10.0  # seconds any step may wait before the test gives up (never reached when it holds)


def test_a_plain_delete_between_a_conditional_deletes_compare_and_unlink_loses_no_new_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
        if threading.current_thread().name == "plain":
            second_locking.set()
        return delete_lock(key)

    monkeypatch.setattr(store, "_read_version", paused_after_compare)
    monkeypatch.setattr(store, "_delete_lock", watched_lock)
    written: list[str] = []

    def delete_then_send_again() -> None:
        store._remove(_KEY)
        written.append(store.put_now(_KEY, b"second", mode="create"))
        second_done.set()

    conditional = threading.Thread(target=store._remove_unchanged, args=(_KEY, first), name="conditional")
    plain = threading.Thread(target=delete_then_send_again, name="plain")
    conditional.start()
    try:
        assert compared.wait(_BOUND)
        plain.start()
        # Either the plain delete waits for the stripe lock (the conditional one's compare and
        # unlink are one step), or it ran through (deleted, and the id was sent again) meanwhile.
        for _ in range(int(_BOUND / 0.01)):
            if second_done.is_set() or second_locking.is_set():
                break
            second_done.wait(0.01)
    finally:
        go.set()
        conditional.join(_BOUND)
        if plain.is_alive() or plain.ident is not None:
            plain.join(_BOUND)
    assert not conditional.is_alive() and not plain.is_alive()
    [second] = written
    assert store.get_now(_KEY).version == second

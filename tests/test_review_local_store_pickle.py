"""A local store object pickled (to a worker process, by a user's own code) carries no memory of
what it read: the versions it remembers for its listings (up to some 9 MB) belong to the
objects this process holds, not to a copy elsewhere, which has read nothing."""

from __future__ import annotations

import pickle
from pathlib import Path

from vactor_cloud.storage import open_store


def test_a_pickled_local_store_leaves_its_remembered_versions_behind(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/store")
    empty = len(pickle.dumps(store))
    for i in range(200):
        store.put_now(f"actors/a/inbox/{i:04d}", b"x")
        store.get_now(f"actors/a/inbox/{i:04d}")
    copy = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < empty + 1000  # (it grew by some 18 KB with the 200 keys before)
    assert copy.list_now("actors/a/inbox/").versions == {}  # read nothing yet: names none
    assert copy.get_now("actors/a/inbox/0007").data == b"x"
    assert set(copy.list_now("actors/a/inbox/").versions or ()) == {"actors/a/inbox/0007"}
    assert len(store.list_now("actors/a/inbox/").versions or ()) == 200  # (the original's kept)

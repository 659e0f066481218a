"""A forked child starts each module's process-wide lock and the records it guards afresh
(``vactor_cloud.forked_child``): a lock another thread of the parent held at the fork is a new
one in the child (the first use there waited for ever), and records of what the parent's other
threads were doing are empty there (they spoke of threads the child does not have).

Each module that registers its lock is checked here in one forked child: its lock held by
another thread of the parent at the fork, a record of each kind it keeps non-empty. (Mutation:
a module's registration dropped, or registering its lock without a record; the helper not
making the lock anew, or not emptying the records.)
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import MutableMapping

import pytest
from child_processes import fork_and_report, held_by_another_thread

from vactor_cloud.forked_child import renew_in_a_forked_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: how long a child may take to answer before it is called a hang
HANG = 30.0

#: (module, the object in it that holds the lock or None for the module's own, its lock, the
#: records the lock guards that a forked child empties)
RENEWED = [
    ("vactor_cloud.batch", None, "_applying_lock", ("_applying",)),
    ("vactor_cloud.counters", None, "_lock", ()),
    ("vactor_cloud.definition", None, "_PICKLE_LOCK", ()),
    ("vactor_cloud.mailkey", None, "_KEYS_LOCK", ()),
    ("vactor_cloud.reentrancy", None, "_blocked_lock", ("_blocked",)),
    ("vactor_cloud.storage._memory", None, "_LOCK", ()),
    ("vactor_cloud.subtask_executors", None, "_pools_lock", ("_pools",)),
    ("vactor_cloud.timers", "_memory", "lock", ()),
    ("vactor_cloud.workflow", None, "_rerunning_lock", ("_rerunning", "_listing", "_rerun_done")),
    ("vactor_cloud.workflow_steps", "_recorded", "_lock", ()),
]

#: a key no code of the library uses, put in each record for the fork and taken out after it
_MARK = ("review-h219", "forked")


@pytest.mark.parametrize(
    ("module", "holder", "lock", "records"),
    RENEWED,
    ids=[m if h is None else f"{m}.{h}" for m, h, _, _ in RENEWED],
)
def test_a_forked_child_has_a_new_lock_and_empty_records(
    module: str, holder: str | None, lock: str, records: tuple[str, ...]
) -> None:
    found = importlib.import_module(module)
    namespace = vars(found if holder is None else getattr(found, holder))
    held = namespace[lock]
    kept: list[MutableMapping[object, object]] = [namespace[name] for name in records]

    def in_the_child() -> bytes | None:
        mine = namespace[lock]
        if mine is held or not mine.acquire(blocking=False):
            return f"{module}.{lock}: the parent's lock, held by a thread that is not here".encode()
        mine.release()
        left = [name for name in records if namespace[name]]
        return f"{module}: {left} not emptied".encode() if left else None

    for record in kept:
        record[_MARK] = object()
    try:
        with held_by_another_thread(held, HANG):
            report = fork_and_report(in_the_child, HANG)
    finally:
        for record in kept:
            record.pop(_MARK, None)
    assert report == b"ok"
    assert namespace[lock] is held  # (the parent's own is left as it was)


def test_a_name_that_is_no_lock_is_refused_when_registered() -> None:
    namespace = {"__name__": "somewhere", "_lock": threading.Lock(), "_records": {}}
    with pytest.raises(TypeError, match="'_lokc' names no lock of 'somewhere'"):
        renew_in_a_forked_child(namespace, "_lokc")
    with pytest.raises(TypeError, match="'_records' names no lock"):
        renew_in_a_forked_child(namespace, "_records")

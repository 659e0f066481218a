"""Hostile review: memory stays bounded in a long-lived process.

Each test measures a process-lifetime structure after many actors, stores or calls, with a
bound the library keeps; each failed before its fix.
"""

from __future__ import annotations

import gc

import pytest

import vactor_cloud as vc
from vactor_cloud import mailkey
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_a_store_that_posted_is_freed_with_its_runtime(store_spec: StoreSpec) -> None:
    """The mail keys are remembered per store object, weakly keyed; each MailKeys held its store
    strongly, so the entry (and the store: its transport, its pools) never went. A process that
    inits a runtime per job (or ``subtask`` workers adopting one per recipe) kept every store
    whose actors ever posted."""
    before = len(mailkey._KEYS)
    for _ in range(200):
        store_spec.init()
        vc.get_runtime().core("poster")._posts()  # the first post of an actor makes its PostBox
        vc.shutdown()
    gc.collect()
    assert len(mailkey._KEYS) - before <= 2

"""Two mutations h160's runtime sweep left unpinned, now pinned (review-h166).

M15: the cache's byte bound off by one (``_evict``'s ``<=`` made ``<``): an eviction that
brought the cache back to exactly ``Settings.max_cache_bytes`` went on evicting the next idle
actor. The bound is "at most" (settings.py): exactly the bound is within it, one byte more is
not. (The same mutation of the checks that call ``_evict``, ``weigh``'s and ``core()``'s ``>``
made ``>=``, is equivalent: ``_evict`` returns at once when within both bounds.)
M11: Ctrl-C inside the worker pool's ``submit`` after a thread took the task (the test's
docstring). Each test failed with its mutation applied.
"""

from __future__ import annotations

import threading
import time

import pytest

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_a_cache_evicts_down_to_exactly_its_byte_bound_and_no_further(store_spec: StoreSpec) -> None:
    store_spec.init(settings=vc.Settings(max_cache_bytes=1000))
    runtime = runtime_module.get_runtime()
    older, newer = runtime.core("older"), runtime.core("newer")  # (idle: nothing queued)
    runtime.weigh(older, 1)
    runtime.weigh(newer, 999)
    arriving = runtime.core("arriving")  # (weighs nothing yet: the cache is at its bound)
    assert runtime.cached() == (3, 1000)
    assert runtime.in_cache(older) and runtime.in_cache(newer)
    runtime.weigh(arriving, 1)  # one byte past: the least recently used idle one goes...
    assert not runtime.in_cache(older)
    assert runtime.in_cache(newer), "evicted though the cache was back at its bound"  # ...alone
    assert runtime.cached() == (2, 1000)


#: the longest a wait for what must happen lasts before it is called a hang
HANG = 20.0


@pytest.mark.usefixtures("runtime_off")
def test_a_task_taken_by_a_thread_as_ctrl_c_lands_in_submit_is_still_waited_for(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """M11: ``spawn`` ended the piece of work of a task whose ``submit`` raised (Ctrl-C) even
    when the task was queued and a thread had taken it (``if not queued[0]`` dropped): the task
    ran on, but shutdown no longer counted it and went on (closing the store under it). The
    interrupt lands in ``WorkerPool.submit`` once the thread it started took the task."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    pool = runtime.executor
    running, release, finished = threading.Event(), threading.Event(), threading.Event()
    interrupted: list[bool] = []
    start = pool._start

    def start_then_ctrl_c(thread: threading.Thread) -> None:
        start(thread)
        if not interrupted:
            assert running.wait(HANG)  # (the thread took the task: it runs)
            interrupted.append(True)
            raise KeyboardInterrupt

    def task() -> None:
        running.set()
        try:
            release.wait(HANG)
        finally:
            finished.set()

    monkeypatch.setattr(pool, "_start", start_then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            runtime.spawn(task)
        assert interrupted, "no thread was started for the task: the interrupt never landed"
        assert runtime._work.wait_done(time.monotonic()) == 1  # (the task, running: waited for)
    finally:
        release.set()
    assert finished.wait(HANG)
    assert runtime._work.wait_done(time.monotonic() + HANG) == 0

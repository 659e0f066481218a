"""Child-process entry points for tests/test_review_processes.py (importable by spawned children)."""

from __future__ import annotations

import concurrent.futures
import threading
import time

from child_processes import report_stacks_on_request
from runtime_workers import Counter, init_from_spec

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()


def _calls_once_the_interpreter_exits(actor_id: str, count: int, errors_file: str) -> None:
    """Wait until the main thread returned and the interpreter began to exit (Python then runs
    its exit hooks, and lets this thread finish), then call the actor ``count`` times."""
    runtime = vc.get_runtime()
    deadline = time.monotonic() + 30.0
    while not getattr(threading, "_SHUTTING_DOWN", True) and time.monotonic() < deadline:
        time.sleep(0.005)
    errors = []
    for _ in range(count):
        try:
            vc.get_actor(actor_id).incr.run(1)
        except Exception as exc:
            errors.append(repr(exc))
    if vc.get_runtime() is not runtime:
        errors.append("the runtime was shut down while this thread was calling")
    with open(errors_file, "w") as f:
        f.write("\n".join(errors))


def return_leaving_a_thread_that_calls(spec: StoreSpec, actor_id: str, count: int, errors_file: str) -> None:
    """The main thread returns while a (non-daemon) thread of its still has calls to make."""
    init_from_spec(spec, settings=vc.Settings(storage="", head_interval=3600.0, head_max_delay=3600.0))
    Counter.get_or_create(actor_id)
    threading.Thread(target=_calls_once_the_interpreter_exits, args=(actor_id, count, errors_file)).start()


def return_leaving_pool_work_that_calls(spec: StoreSpec, actor_id: str, count: int, errors_file: str) -> None:
    """The main thread returns while a task it gave a thread pool still has calls to make."""
    init_from_spec(spec, settings=vc.Settings(storage="", head_interval=3600.0, head_max_delay=3600.0))
    Counter.get_or_create(actor_id)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.submit(_calls_once_the_interpreter_exits, actor_id, count, errors_file)


def _until_the_main_thread_stopped(actor_id: str) -> None:
    deadline = time.monotonic() + 60.0
    while threading.main_thread().is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)


def return_leaving_a_thread_that_waits_for_the_main_thread(spec: StoreSpec, actor_id: str) -> None:
    """A non-daemon thread that ends only once the main thread reads as stopped (Python marks it
    after its exit hooks): vactor's hook must not wait for it for ever."""
    import vactor_cloud.runtime as runtime_module

    runtime_module._EXIT_WAIT = 0.5
    init_from_spec(spec)
    Counter.get_or_create(actor_id).incr.run(1)
    threading.Thread(target=_until_the_main_thread_stopped, args=(actor_id,)).start()


def call_through(handle_or_method: object, count: int) -> None:
    """Increment ``count`` times through an inherited handle (or one of its methods)."""
    for _ in range(count):
        target = getattr(handle_or_method, "incr", handle_or_method)
        target.run(1)  # type: ignore[attr-defined]

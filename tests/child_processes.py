"""Running child processes in tests: start them all, wait a bounded time, never leave one behind."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import vactor_cloud as vc
from vactor_cloud.errors import VactorError


def report_stacks_on_request() -> None:
    """Make this (child) process print every thread's stack on SIGUSR1.

    :func:`join_all` sends SIGUSR1 to a child that is still running at its
    timeout before killing it, so a hang seen once on CI can be diagnosed
    from its log. Modules holding child entry points call this at import.
    """
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


#: how long a test waits for its child processes (a hung child fails the test, not the suite)
JOIN_TIMEOUT = 240.0


def python_child(
    args: Sequence[str], *, env: dict[str, str], cwd: str | os.PathLike[str]
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` (``-c CODE ...``, a script) run to its end in a fresh interpreter, within
    120 s: its ``subprocess.CompletedProcess``, text."""
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def vactor_child(store: str, *argv: str, pythonpath: Sequence[str]) -> subprocess.Popen[str]:
    """``vactor --storage STORE ARGV...`` (``python -m vactor_cloud``) started in a fresh
    interpreter whose PYTHONPATH is ``pythonpath`` alone, stdout and stderr piped (text): the
    caller waits for it, and kills it if it runs on."""
    return subprocess.Popen(
        [sys.executable, "-m", "vactor_cloud", "--storage", store, *argv],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_python(args: Sequence[str], *, env: dict[str, str], cwd: str | os.PathLike[str]) -> str:
    """:func:`python_child`'s stdout, or fail the test with (the end of) its stderr."""
    done = python_child(args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_to_end(procs: Iterable[BaseProcess], timeout: float = JOIN_TIMEOUT) -> list[int | None]:
    """Start ``procs``, join each within ``timeout``, kill any still alive; their exit codes, in order.

    A child still running at the end is killed and reported as ``None``.
    """
    started = list(procs)
    for p in started:
        p.start()
    return join_all(started, timeout)


def join_all(procs: Iterable[BaseProcess], timeout: float = JOIN_TIMEOUT) -> list[int | None]:
    """Join started ``procs`` each within ``timeout``, kill any still alive; their exit codes, in order."""
    started = list(procs)
    for p in started:
        p.join(timeout)
    codes = [p.exitcode for p in started]
    hung = [p for p in started if p.is_alive()]
    for p in hung:
        if hasattr(signal, "SIGUSR1") and p.pid is not None:
            print(f"child {p.name} (pid {p.pid}) still running after {timeout} s: its stacks follow")
            os.kill(p.pid, signal.SIGUSR1)
    if hung:
        time.sleep(2.0)
    for p in hung:
        p.kill()
        p.join(10)
    return codes


def start_together(procs: Iterable[BaseProcess], ready: Any, names: Iterable[str], start: Any) -> None:
    """Start ``procs`` and, once each has put its name on ``ready`` (or died, or 240 s
    passed), set ``start.value`` to a wall time just ahead: their calls begin together."""
    procs = list(procs)
    for p in procs:
        p.start()
    waiting = set(names)
    give_up = time.monotonic() + 240
    while waiting and time.monotonic() < give_up and any(p.is_alive() for p in procs):
        with contextlib.suppress(queue.Empty):
            waiting.discard(ready.get(timeout=0.5))
    start.value = time.time() + 0.2


def wait_for_start(start: Any, delay: float = 0.0, clock: Callable[[], float] = time.time) -> None:
    """The child's side of :func:`start_together`: wait until the parent sets ``start.value``
    (a wall time), then until ``delay`` seconds after it by ``clock``. A parent that never sets
    it (it died first) fails the child after ``JOIN_TIMEOUT`` rather than leave it spinning."""
    give_up = time.monotonic() + JOIN_TIMEOUT
    while start.value == 0.0 and time.monotonic() < give_up:
        time.sleep(0.005)
    start_at = start.value + delay
    while clock() < start_at and time.monotonic() < give_up:
        time.sleep(0.002)
    if time.monotonic() >= give_up:
        raise TimeoutError(
            f"start.value was {start.value} after {JOIN_TIMEOUT} s: the parent never started the "
            "calls (start_together sets it once every child put its name on ready)"
        )


def get_actor_despite_faults(actor_id: str, tries: int) -> vc.ActorHandle[Any]:
    """``vc.get_actor(actor_id)``, tried again every 20 ms (``tries`` in all) while it fails with
    a VactorError: loading meets the injected faults of a child that installed some."""
    for _ in range(tries - 1):
        try:
            return vc.get_actor(actor_id)
        except VactorError:
            time.sleep(0.02)
    return vc.get_actor(actor_id)


def fork_and_report(
    use: Callable[[], bytes | None], hang: float, *, parent: Callable[[], None] | None = None
) -> bytes:
    """Fork; the child runs ``use`` and reports what it returned (``b"ok"`` for ``None``), or
    its exception's ``repr``. With ``parent``, the child waits until the parent has run
    ``parent()`` (however it ended) before it runs ``use``. A child with no answer within
    ``hang`` seconds (of being let go) is reported as ``b"<no answer from the child>"`` and
    killed: it is never waited on for ever."""
    go_read, go_write = os.pipe()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            os.close(go_write)
            let_go, _, _ = select.select([go_read], [], [], hang)
            said = use() if let_go else b"<never let go>"
            os.write(write_end, (b"ok" if said is None else said)[:1000])
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode()[:1000])
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(go_read)
    ready: list[int] = []
    try:
        try:
            if parent is not None:
                parent()
        finally:
            os.write(go_write, b"g")
            os.close(go_write)
        ready, _, _ = select.select([read_end], [], [], hang)
        return os.read(read_end, 1024) if ready else b"<no answer from the child>"
    finally:
        os.close(read_end)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def held_by_another_thread(lock: Any, hang: float) -> Iterator[None]:
    """``lock`` is held by another thread for the block (released after it, or after ``hang``)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(hang)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert taken.wait(hang), "the other thread never took the lock"
        yield
    finally:
        release.set()
        holder.join(hang)

"""Process lifecycle (review h111): what a forked child inherits, what exit and SIGTERM leave.

1. A child forked while another thread of the parent held a local store's per-key ``flock``
   kept a copy of that lock's file descriptor, which nothing in the child closes: the lock
   stayed held as long as the child lived, and the next if-match write of that key (a HEAD
   move), in the parent or in the child, waited for ever.
2. An ``ActorFuture`` made in the parent and waited for in a forked child: the child ran the
   parent's queued call itself (applied twice, once by each process), or waited on the
   parent's threads, which do not exist there. It is refused at once.
3. A child forked while the parent is mid-call uses the library on a fresh runtime, and sends
   no request on a connection the parent opened (moto: botocore's pool is the child's own).
   With the s3fs transport, the child's copy of the parent's IO loop woke the parent's (a byte
   on the self-pipe they share), and closing a connection of it there would have taken the
   socket out of the parent's epoll: the copy now has an epoll and no self-pipe of its own.
4. A multiprocessing ``"fork"`` child's calls never waited for are applied at its exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from child_processes import fork_and_report, held_by_another_thread
from garbage import full_collection

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.storage import IfMatch, LocalStore, open_store
from vactor_cloud.testing.lanes import StoreSpec

HANG = 30.0  # (a bound on a hang, not a measure)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _fork_then(child: Callable[[], bytes | None], parent: Callable[[], None], hang: float) -> bytes:
    """Fork here; the parent runs ``parent()``, then lets the child run ``child()``, whose report
    (``b"ok"`` for None, or its exception's repr) comes back (``child_processes.fork_and_report``)."""
    return fork_and_report(child, hang, parent=parent)


# -- 1. a local store's per-key flock -----------------------------------------------------------------


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    store.put_now("actors/a/head", b"one", mode="create")
    return store


def _finishes_within(fn: Callable[[], object], seconds: float) -> tuple[bool, object]:
    """Run ``fn`` on a daemon thread: (whether it returned within ``seconds``, what it returned)."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    return (not worker.is_alive(), result[0] if result else None)


def test_a_key_lock_held_at_a_fork_is_released_when_the_parent_lets_it_go(local_store: LocalStore) -> None:
    """Before: the child's copy of the lock's descriptor kept the ``flock`` held after the
    parent's thread released it; the parent's if-match write waited for as long as the child
    lived, and so did the child's own."""
    key = "actors/a/head"
    parent_wrote: list[tuple[bool, object]] = []

    def parent_writes_after_releasing() -> None:
        version = local_store._read_version(key)
        assert version is not None
        parent_wrote.append(
            _finishes_within(lambda: local_store.put_now(key, b"two", mode=IfMatch(version)), HANG / 3)
        )

    def child_writes() -> bytes:
        version = local_store._read_version(key)
        assert version is not None
        finished, _ = _finishes_within(
            lambda: local_store.put_now(key, b"three", mode=IfMatch(version)), HANG / 3
        )
        return b"ok" if finished else b"<the child's write waited for the lock>"

    release = threading.Event()

    def hold_the_key_lock() -> None:
        with local_store._key_lock(key):
            held.set()
            release.wait(HANG)

    held = threading.Event()
    holder = threading.Thread(target=hold_the_key_lock, daemon=True)
    holder.start()
    assert held.wait(HANG)

    def parent() -> None:
        release.set()
        holder.join(HANG)
        parent_writes_after_releasing()

    # The fork happens while the holder thread holds the lock (``_fork_then`` forks first).
    report = _fork_then(child_writes, parent, HANG)
    assert [finished for finished, _ in parent_wrote] == [True], "the parent's write waited for the lock"
    assert report == b"ok"
    assert local_store.get_now(key).data == b"three"


# -- 2. a future of the parent's, waited for in a forked child -------------------------------------------

_entered = threading.Event()
_gate = threading.Event()


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, amount: int) -> int:
        self.n += amount
        return self.n

    def hold(self) -> int:
        """Keeps the runtime's one pool thread busy until the test opens the gate."""
        _entered.set()
        _gate.wait(HANG)
        return self.n

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n


@pytest.fixture
def one_worker(store_spec: StoreSpec) -> Iterator[None]:
    vc.shutdown()
    store_spec.init(settings=vc.Settings(max_workers=1))
    _entered.clear()
    _gate.clear()
    try:
        yield
    finally:
        _gate.set()
        vc.shutdown()


@pytest.mark.vactor_lanes("memory", "local")
@pytest.mark.usefixtures("one_worker")
def test_a_future_of_the_parent_waited_for_in_a_forked_child_is_refused_not_run_there() -> None:
    """Before: the child's ``result()`` found the call queued on the parent's core with nobody
    applying it, and applied it itself; the parent's pool applied it too (on a shared store:
    twice, the parent's result 2). A child waiting for a call the parent's runtime is applying
    waited for threads that do not exist there."""
    blocker, counted = Counter.get_or_create("blocker"), Counter.get_or_create("counted")
    held = blocker.hold.run_async()
    assert _entered.wait(HANG)
    future = counted.add.run_async(1)  # queued: the pool's one thread is held

    def wait_in_the_child() -> bytes:
        finished, outcome = _finishes_within(lambda: _outcome(future.result), HANG / 3)
        return outcome if finished and isinstance(outcome, bytes) else b"<the child waited>"

    report = fork_and_report(wait_in_the_child, HANG)
    _gate.set()
    assert held.result(HANG) == 0
    assert future.result(HANG) == 1
    assert counted.peek.run() == 1
    assert report.startswith(b"RuntimeError"), report
    assert b"forked" in report and b"parent" in report, report


def _outcome(fn: Callable[[], object]) -> bytes:
    try:
        return repr(fn()).encode()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".encode()


# -- 3. a child forked mid-call ------------------------------------------------------------------------


def _socket_inodes() -> set[int]:
    """The inodes of this process's open sockets."""
    inodes = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                inodes.add(os.fstat(int(name)).st_ino)
    return inodes


def _unheard_by_the_io_loop(loop: asyncio.AbstractEventLoop | None = None) -> set[int]:
    """The descriptors the IO loop's selector (or ``loop``'s) has registered that its epoll
    instance no longer watches (``/proc/self/fdinfo``: one ``tfd:`` line per descriptor watched)."""
    selector = getattr(loop or _sync.get_loop(), "_selector", None)
    if not isinstance(selector, selectors.EpollSelector):
        return set()
    with open(f"/proc/self/fdinfo/{selector.fileno()}") as info:
        watched = {int(line.split()[1]) for line in info if line.startswith("tfd:")}
    return set(selector.get_map()) - watched


@contextlib.contextmanager
def _sockets_sent_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[int]]:
    """The inodes of the sockets this process sends on within the block."""
    used: set[int] = set()
    for name in ("send", "sendall"):
        original = getattr(socket.socket, name)

        def sending(sock: socket.socket, *args: Any, _original: Any = original) -> Any:
            with contextlib.suppress(OSError):
                used.add(os.fstat(sock.fileno()).st_ino)
            return _original(sock, *args)

        monkeypatch.setattr(socket.socket, name, sending)
    yield used


def test_a_forked_childs_copy_of_a_loop_not_running_closes_without_touching_the_parents() -> None:
    """A loop not running (the IO loop between its start and ``run_forever``) is closed in the
    child when its copy is collected there. Without the cut-off, that close took the parent's
    self-pipe out of the epoll instance the two share: the parent's loop no longer woke for
    work handed to it from other threads."""
    loop = asyncio.new_event_loop()
    try:
        assert _unheard_by_the_io_loop(loop) == set()

        def close_the_copy() -> None:
            _sync._cut_off_from_the_parent(loop)  # (what the at-fork hook does to the IO loop)
            loop.close()

        assert fork_and_report(close_the_copy, HANG) == b"ok"
        assert _unheard_by_the_io_loop(loop) == set()
    finally:
        loop.close()


@pytest.mark.vactor_lanes("memory", "local", "moto", "fakegcs")
@pytest.mark.parametrize("transport", ["default", "s3fs"])
def test_a_child_forked_mid_call_works_on_a_fresh_runtime_and_connections_of_its_own(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """The parent runs a method (its actor held), and other threads hold the per-object locks a
    fork copies held (the actor's core, the runtime, the store's transport and request pool).
    The child, on the same store object, calls that actor and another, and shuts its runtime
    down, without waiting on any of them and without sending a byte on a socket the parent
    opened (botocore's pool of keep-alive connections is the child's own)."""
    if transport != "default" and not store_spec.url.startswith("s3://"):
        pytest.skip("the S3 store's transports")
    vc.shutdown()
    os.environ.update(store_spec.env)
    options = store_spec.options if transport == "default" else {**store_spec.options, "transport": transport}
    vc.init(open_store(store_spec.url, **options))  # a store object: the child has the parent's
    _entered.clear()
    _gate.clear()
    try:
        mid, other = Counter.get_or_create("mid"), Counter.get_or_create("other")
        assert mid.add.run(1) == 1 and other.add.run(1) == 1  # (connections kept alive, on S3)
        held = mid.hold.run_async()
        assert _entered.wait(HANG)
        runtime = vc.get_runtime()
        transport = getattr(runtime.store, "_transport", None)
        locks = [runtime._lock, runtime._cores["mid"]._mutex, runtime._cores["other"]._mutex]
        locks += [lock for lock in (getattr(transport, "_lock", None),) if lock is not None]
        pool = getattr(transport, "_pool", None)
        locks += [pool._lock] if pool is not None else []

        def in_the_child() -> bytes:
            inherited = _socket_inodes()
            with _sockets_sent_on(monkeypatch) as used:
                said = (mid.add.run(10), other.add.run(1), mid.peek.run())
                vc.shutdown()
                full_collection()  # (what the child dropped of the parent's: an s3fs session, its connector)
            shared = used & inherited
            return repr(said).encode() if not shared else f"sent on the parent's sockets {shared}".encode()

        with contextlib.ExitStack() as holding:
            for lock in locks:
                holding.enter_context(held_by_another_thread(lock, HANG))
            report = fork_and_report(in_the_child, HANG)
    finally:
        _gate.set()
    assert _unheard_by_the_io_loop() == set()
    shared_store = store_spec.url.split(":", 1)[0] != "memory"
    assert report == b"(11, 2, 11)", report
    assert held.result(HANG) in (1, 11)
    assert mid.peek.run() == (11 if shared_store else 1)
    assert other.peek.run() == (2 if shared_store else 1)
    vc.shutdown()


# -- 4. a multiprocessing child forked from a busy parent ------------------------------------------------


def _fire_and_forget(actor_id: str, calls: int) -> None:
    """(A forked multiprocessing child) Calls never waited for: its exit applies them."""
    counter = Counter.get_or_create(actor_id)
    for _ in range(calls):
        counter.add.run_async(1)


@pytest.mark.vactor_lanes("local", "moto")
def test_calls_a_forked_multiprocessing_child_never_waited_for_are_applied_at_its_exit(
    store_spec: StoreSpec,
) -> None:
    """multiprocessing's ``"fork"`` children end with ``os._exit``, after ``threading``'s exit
    hooks (not ``atexit``'s): the runtime's own exit hook, there, lets the child's queued calls
    finish. Forked while the parent runs a method and has calls queued behind it."""
    import multiprocessing

    vc.shutdown()
    store_spec.init(settings=vc.Settings(max_workers=1))
    _entered.clear()
    _gate.clear()
    try:
        counted = Counter.get_or_create("fired")
        held = Counter.get_or_create("busy").hold.run_async()
        assert _entered.wait(HANG)
        queued = counted.add.run_async(100)  # queued behind the parent's one busy pool thread
        child = multiprocessing.get_context("fork").Process(target=_fire_and_forget, args=("fired", 20))
        child.start()
        child.join(HANG)
        if child.is_alive():
            child.kill()
            child.join(HANG)
        assert child.exitcode == 0
    finally:
        _gate.set()
    assert held.result(HANG) == 0
    assert queued.result(HANG) == 120  # (the child's twenty applied first: the parent's pool was held)
    assert counted.peek.run() == 120
    vc.shutdown()

"""The process-wide runtime (a :class:`~vactor_cloud.actor_runtime.Runtime`): ``init()``,
``get_runtime()``, ``shutdown()``, ``own_runtime()``, and the exit hook that shuts it down.

``init()`` creates it; everything else creates a default one on first use.
After ``fork`` the child gets a fresh runtime with the same settings (the
parent's loop thread, connections and caches do not exist there).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from vactor_cloud.actor_runtime import Runtime
from vactor_cloud.errors import RuntimeShutdownError
from vactor_cloud.ids import validate_actor_id
from vactor_cloud.init_settings import env_signing_key, settings_for_init
from vactor_cloud.runtime_scope import carry_runtime, own
from vactor_cloud.runtime_shutdown import join_threads
from vactor_cloud.settings import Settings, default_storage
from vactor_cloud.storage import ObjectStore

__all__ = [
    "Runtime",
    "Settings",
    "carry_runtime",
    "current_runtime",
    "default_storage",
    "get_runtime",
    "init",
    "own_runtime",
    "shutdown",
    "storage_chosen",
    "validate_actor_id",
]

logger = logging.getLogger("vactor_cloud")


_runtime: Runtime | None = None
_settings: Settings | None = None
_runtime_lock = threading.Lock()
#: ``init()`` chose this process's store (inherited by a forked child, as its settings are)
_chosen_by_init = False
#: the settings of the newest runtime started and its store's ``describe()``: kept after
#: ``shutdown()``, since the next runtime opens the same store (see :func:`store_in_use`)
_described: tuple[Settings, str] | None = None


def init(
    storage: str | os.PathLike[str] | ObjectStore | None = None,
    *,
    signing_key: str | bytes | None = None,
    load_classes_from_storage: bool = True,
    subtask_executor: Any = None,
    timeout: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> None:
    """Choose where actors live for this process.

    ``storage`` is a path, ``file://``, ``memory://``, ``s3://bucket/prefix`` or
    ``gs://bucket/prefix`` (or an :class:`~vactor_cloud.storage.ObjectStore`);
    default ``$VACTOR_STORAGE``, else the embedded local store under
    ``~/.local/share/vactor_cloud``. ``storage_options={...}`` (fsspec's
    convention) or loose keyword options go to the fsspec filesystem; an
    option the backend does not take is refused here, naming the valid ones.
    ``signing_key`` (or ``$VACTOR_SIGNING_KEY``) signs every object written
    and refuses unsigned or altered ones before unpickling.
    ``timeout``: seconds one storage request may take (default 10; a whole
    operation is bounded by ``Settings.deadline``, default 30).
    Tuning knobs of :class:`Settings` may be passed as ``settings=Settings(...)``.
    ``subtask_executor`` runs the children of ``vactor_cloud.subtask`` (default: threads).
    """
    global _runtime, _settings, _chosen_by_init
    chosen = settings_for_init(
        storage,
        storage_options=storage_options,
        extra_options=options if settings is None else {**options, "settings": settings},
        signing_key=signing_key,
        load_classes_from_storage=load_classes_from_storage,
        subtask_executor=subtask_executor,
        timeout=timeout,
    )
    scope = _current_own()
    if scope is not None:
        scope.choose(chosen)
        return
    with _runtime_lock:
        # (the process fell back to the embedded default store, and loaded or made actors there)
        fallen_back = _runtime is not None and bool(_runtime._cores) and not storage_chosen()
        old, _runtime, _settings = _runtime, None, chosen
        _chosen_by_init = True
        closing = _closing_now(old)
    _close_all(old, closing)
    runtime = get_runtime()
    if fallen_back and old is not None and old.store.describe() != runtime.store.describe():
        _warn_store_switched(old.store.describe(), runtime.store.describe())


def _warn_store_switched(before: str, now: str) -> None:
    """``init()`` after actors were used on the embedded default store, which the process fell
    back to (no ``init()``, no ``$VACTOR_STORAGE``): handles made then name actors that are
    not under the new store, and each call's ``ActorNotFoundError`` would be the only word."""
    logger.warning(
        "vc.init() chose %s after this process used actors on the embedded default store %s "
        "(no vc.init() or $VACTOR_STORAGE before): what it did went there, and handles made "
        "then now call actors under %s; call vc.init() before the first actor is used",
        now,
        before,
        now,
    )


def current_runtime() -> Runtime | None:
    """The current runtime if one is running (none is started)."""
    scope = _current_own()
    return _runtime if scope is None else scope.runtime


def store_in_use() -> str | None:
    """The store (its ``describe()``) of this process's runtime, or of the one the next use
    starts after ``shutdown()`` (the same settings, so the same store); None if no runtime was
    started since the settings last changed. What a pickled handle carries (see
    ``ActorHandle.__reduce__``): a handle pickled after ``shutdown()`` carried none, and a
    process that chose no store looked for its actor in the embedded default one."""
    scope = _current_own()
    runtime = _runtime if scope is None else scope.runtime
    if runtime is not None:
        return runtime.store.describe()
    if scope is not None:
        return None
    described = _described
    if described is not None and described[0] is _settings:
        return described[1]
    return None


def storage_chosen() -> bool:
    """Whether this process chose its store (``init()`` or ``$VACTOR_STORAGE``), rather than
    falling back to the embedded default one."""
    scope = _current_own()
    chosen = _chosen_by_init if scope is None else scope.chosen
    return chosen or bool(os.environ.get("VACTOR_STORAGE"))


def get_runtime() -> Runtime:
    """The current runtime, created from ``init()``'s settings (or the defaults) on first use."""
    global _runtime, _settings, _described
    scope: _OwnRuntime | None = own.get()  # (not _current_own(): one call less on every call's path)
    if scope is not None:
        return scope.get()
    runtime = _runtime
    if runtime is not None:
        return runtime
    with _runtime_lock:
        if _runtime is None:
            if _settings is None:
                _settings = Settings(storage=default_storage(), signing_key=env_signing_key())
            _runtime = Runtime(_settings)
            _described = (_settings, _runtime.store.describe())
        return _runtime


def shutdown() -> None:
    """Shut the runtime down (``Runtime.close``: the folds ``call_outcome`` queued run first,
    calls not started fail with ``RuntimeShutdownError``, what runs is waited for, 30 s in all
    with those folds, HEAD pointers are flushed, connections closed); once it returns, nothing
    of that runtime runs or touches storage, even if another thread began shutting it down. A
    later call starts a fresh runtime."""
    scope = _current_own()
    if scope is not None:
        scope.close()
        return
    _shutdown_by(None)


def _shutdown_by(until: float | None) -> None:
    """``shutdown()`` of the process's runtime; with ``until`` (monotonic: the end of the exit's
    budget), its closes wait for what runs until then in all, not 30 s each."""
    global _runtime
    with _runtime_lock:
        old, _runtime = _runtime, None
        closing = _closing_now(old)
    _close_all(old, closing, until)


#: the live ``own_runtime()`` scopes: a forked child gives each a new lock (another thread of
#: the parent may have held one at the fork: the child's first use waited for ever)
_scopes: weakref.WeakSet[_OwnRuntime] = weakref.WeakSet()


class _OwnRuntime:
    """The runtime of code run under :func:`own_runtime`, in place of the process's: what
    ``init()``, ``get_runtime()``, ``shutdown()`` and the rest use there."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # (new in a forked child: _after_fork_in_child)
        _scopes.add(self)
        self.settings: Settings | None = None
        self.chosen = False
        self.runtime: Runtime | None = None
        self.pid = os.getpid()
        #: set as the scope ends: code still in its context (a thread or loop task it started, a
        #: call in flight as its runtime closes) is refused, not given a runtime nothing closes
        self.ended = False
        #: runtimes of this scope whose close an interrupt cut short: the next close finishes them
        self.unfinished: list[Runtime] = []

    def get(self) -> Runtime:
        with self.lock:
            self._refuse_if_ended()
            if self.pid != os.getpid():  # (a forked child: a fresh runtime, the same settings)
                self.pid, self.runtime = os.getpid(), None
            if self.runtime is None:
                if self.settings is None:
                    self.settings = Settings(storage=default_storage(), signing_key=env_signing_key())
                self.runtime = Runtime(self.settings)
            return self.runtime

    def choose(self, settings: Settings) -> None:
        """(``init()``) Close the runtime in use, start one on ``settings``."""
        with self.lock:
            self._refuse_if_ended()
        self.close()
        with self.lock:
            self.settings, self.chosen = settings, True
        self.get()

    def _refuse_if_ended(self) -> None:
        if self.ended:
            raise RuntimeShutdownError(
                "the own_runtime() this code ran under (the vactor command's main()) has ended and "
                "shut its runtime down; code it started that outlives it cannot use it"
            )

    def close(self) -> None:
        """(``shutdown()``) Close the runtime in use, and finish the closes of this scope's runtimes
        that an interrupt cut short (as ``shutdown()`` does the process's: their HEAD moves would
        otherwise land at the exit hook, after the caller went on, into a store it removed);
        the next use starts a fresh runtime."""
        with self.lock:
            old, self.runtime = self.runtime, None
            if self.pid != os.getpid():
                self.unfinished = []  # (the parent's: nothing of them runs here)
                return
            others = self.unfinished
            self.unfinished = [*others, old] if old is not None else list(others)
        if old is not None:
            with _runtime_lock:
                _closing_now(old)
        _close_all(old, [r for r in others if r is not old])
        with self.lock:
            self.unfinished = [r for r in self.unfinished if not r.finished_closing]


def _current_own() -> _OwnRuntime | None:
    """The runtime of this context's :func:`own_runtime`, if any."""
    scope: _OwnRuntime | None = own.get()
    return scope


@contextlib.contextmanager
def own_runtime() -> Iterator[None]:
    """Run code on a runtime of its own, not the process's (the ``vactor`` command's ``main()``,
    called in a program): ``init()``, ``get_runtime()``, ``shutdown()`` and every call made in
    this context use it, and it is shut down on exit. The process's runtime, its store choice
    and the calls its other threads make are untouched meanwhile.

    Threads that vactor_cloud starts for this code (``run_async``'s pools, the timer runner's,
    subtasks' threads) use it too (:func:`carry_runtime`); a thread the code starts itself
    does not: it uses the process's runtime. A future's done callback uses the runtime of the
    code that registered it (``ActorFuture.add_done_callback``), wherever the future was made.
    Once the scope has ended, what still runs in its context (a call in flight as its runtime
    closes, a thread or a task on the IO loop started inside, a callback registered inside)
    fails with ``RuntimeShutdownError`` if it needs the runtime."""
    scope = _OwnRuntime()
    token = own.set(scope)
    try:
        yield
    finally:
        scope.ended = True
        try:
            scope.close()
        finally:
            own.reset(token)


#: runtimes being shut down (``shutdown()``, ``init()`` again): another shutdown waits for them
_closing: set[Runtime] = set()


def _closing_now(old: Runtime | None) -> list[Runtime]:
    """(``_runtime_lock`` held) The runtimes other threads are closing; ``old`` joins them."""
    others = list(_closing)
    if old is not None:
        _closing.add(old)
    return others


def _close_all(old: Runtime | None, others: list[Runtime], until: float | None = None) -> None:
    """Close ``old``, and return once the closes of ``others`` (on other threads) have: a
    shutdown returns when nothing of the runtimes it replaces runs any more, even if another
    thread began closing them. ``until`` (monotonic): when the closes stop waiting for what
    runs, in all (the exit's budget; None: each waits ``Runtime.close``'s 30 s)."""

    def close(runtime: Runtime) -> None:
        if until is None:
            runtime.close(asked_folds=True)
        else:
            runtime.close(max(until - time.monotonic(), 0.0), waited=_exit_waited())

    if old is not None:
        try:
            close(old)
        finally:
            _closed_now(old)
    for runtime in others:
        # (A second close waits for the first; it finishes one that Ctrl-C interrupted.)
        close(runtime)
        _closed_now(runtime)


def _closed_now(runtime: Runtime) -> None:
    """``runtime`` leaves the runtimes being closed once a close of it has finished. One that
    Ctrl-C interrupted half way stays: the next ``shutdown()`` or ``init()`` (or the exit hook)
    does what is left (its leases, HEAD moves, connections, threads)."""
    if runtime.finished_closing:
        with _runtime_lock:
            _closing.discard(runtime)


def _after_fork_in_child() -> None:
    global _runtime, _runtime_lock
    _runtime = None
    _runtime_lock = threading.Lock()
    _closing.clear()  # (the parent's: nothing of them runs here)
    for scope in _scopes:
        scope.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _pool_threads() -> set[threading.Thread]:
    """Worker threads of ``concurrent.futures`` executors: their exit hook, which runs after
    ours, is what tells them to end (they finish the tasks queued first)."""
    threads: set[threading.Thread] = set()
    for name in ("concurrent.futures.thread", "concurrent.futures.process"):
        module = sys.modules.get(name)
        for registry in ("_threads_queues", "_threads_wakeups"):
            for _ in range(3):  # (an executor starting a thread meanwhile changes the mapping)
                with contextlib.suppress(RuntimeError):
                    threads.update(list(getattr(module, registry, {}).keys()))
                    break
    return threads


def _shutdown_at_exit() -> None:
    """(threading's exit hook) Wait for the other non-daemon threads, then shut down.

    Python runs these hooks when the main thread returns, and joins the
    non-daemon threads only after them: a thread still calling actors then had
    the runtime shut down under it (a call failed with ``RuntimeShutdownError``,
    later ones ran on a new runtime nobody shut down, HEAD left behind). Python
    waits for those threads anyway; so does this, first. Executors' workers are
    not waited for (their own exit hook, after this one, ends them): a call
    they make after this ran is on a runtime ``atexit`` shuts down. Nor are
    the runtime's own pools' threads (daemon threads: the shutdown joins them).

    The whole wait has one budget, ``_EXIT_WAIT`` seconds from here: the threads, the calls
    queued with ``run_async``, the folds ``call_outcome`` queued, and then the shutdown's wait
    for what still runs (a call's commit, a fold, a lease renewal) share it; past it, what runs
    has its requests cancelled, and the shutdown's release of leases, HEAD flush and joins take
    a second or so each at most. A Ctrl-C during any of it ends the waiting at once
    (:func:`_interrupted_at_exit`), Python's own wait for the program's threads still running
    with it (:func:`_skip_pythons_wait_for_threads`). The shutdown adds no wait of its own past the budget, so
    that a stalled store cannot hold the exit long past it, Ctrl-C or not.
    """
    global _exit_until
    me = threading.current_thread()
    pools = _pool_threads()
    # Bounded as shutdown's wait for running work is: a thread that ends only once the main
    # thread reads as stopped (which Python marks after these hooks) must not hang the exit.
    # (joined as shutdown joins: on the main thread, a signal's handler runs while it waits)
    others = [t for t in threading.enumerate() if t is not me and not t.daemon and t not in pools]
    _exit_until = until = time.monotonic() + _EXIT_WAIT
    runtime = _runtime
    left: list[threading.Thread] = []
    try:
        join_threads(others, until)
        # Then the calls the program made and did not wait for (``run_async``): a shutdown
        # fails those not started, which nobody would hear of now.
        runtime = _runtime
        if runtime is not None:
            runtime.finish_queued_calls(until)
    except KeyboardInterrupt:  # (Ctrl-C while waiting: the runtime is shut down all the same)
        left = [thread for thread in others if thread.is_alive()]
        _interrupted_at_exit(_runtime, left)
    finally:
        try:
            _shutdown_by(_exit_close_until())
        except KeyboardInterrupt:  # (while it waits for the calls running)
            _interrupted_at_exit(runtime)
    if left:
        _skip_pythons_wait_for_threads()


class _ThreadsLeftAtExit(KeyboardInterrupt):
    """(Raised by the exit hook) A Ctrl-C cut the exit's wait for the program's threads."""


def _skip_pythons_wait_for_threads() -> None:
    """(The exit hook, once a Ctrl-C cut its wait for the program's threads, some still running)
    End Python's own wait for them too, as that Ctrl-C would have without this hook: raised out
    of threading's exit hooks, an exception ends ``threading._shutdown`` before its join (and
    before the hooks registered ahead of this one), and Python reports it as unraisable, which
    it is not here (the hook's line said the Ctrl-C). Without it, the process would wait on for
    a thread the user has just interrupted the wait for, until a second Ctrl-C."""
    previous = sys.unraisablehook

    def unraisable(report: Any) -> None:
        if not isinstance(report.exc_value, _ThreadsLeftAtExit):
            previous(report)

    sys.unraisablehook = unraisable
    raise _ThreadsLeftAtExit


#: set by a Ctrl-C that cut the exit's wait short, once said
_exit_interrupted = False
#: (monotonic) when the exit's budget ends, once the exit hook began
_exit_until: float | None = None


def _exit_close_until() -> float | None:
    """Until when the exit's shutdown waits for what runs: the end of its budget; now, once a
    Ctrl-C cut the exit short; None (``Runtime.close``'s own 30 s) if the exit hook never ran."""
    if _exit_interrupted:
        return time.monotonic()
    return _exit_until


def _exit_waited() -> str:
    """What the exit's shutdown logs of the work it cut off (:meth:`Runtime.close`'s ``waited``)."""
    if _exit_interrupted:
        return ""  # (the Ctrl-C's line said what was abandoned)
    return f"the exit's budget ({_EXIT_WAIT:g} s for all it waits for) ran out"


def _interrupted_at_exit(runtime: Runtime | None, threads: Sequence[threading.Thread] = ()) -> None:
    """A Ctrl-C cut the exit's wait short: say, in one line on stderr (no traceback), what is
    abandoned (the program's threads still running, not waited for any more; the calls queued,
    not started: the shutdown fails them, unapplied; a fold that ``call_outcome`` queued: its
    posts stay in the inbox) and what the user can do; the exit then goes on without waiting
    any more (:func:`_shutdown_at_interpreter_exit`)."""
    global _exit_interrupted
    if _exit_interrupted:
        return
    _exit_interrupted = True
    calls = runtime.queued_calls() if runtime is not None else []
    folds = runtime.asked_folds() if runtime is not None else []
    said = [*_abandoned_calls(calls), *_abandoned_folds(folds)] or ["no call was left queued"]
    if threads:
        names = _first_named([thread.name for thread in threads])
        said.insert(0, f"the program's threads still running ({names}) are not waited for")
    ids = list(dict.fromkeys(actor_id for actor_id, _ in calls)) or ["ID"]
    others = " (and the other actors named)" if len(ids) > 1 else ""
    said.append(
        f"a call running then may still have committed: vactor history {ids[0]}{others} shows what did"
    )
    with contextlib.suppress(Exception):  # (stderr closed: nothing to say it on)
        sys.stderr.write(f"vactor_cloud: interrupted at exit (Ctrl-C): {'; '.join(said)}\n")
        sys.stderr.flush()


def _abandoned_calls(calls: list[tuple[str, str]]) -> list[str]:
    """(:func:`_interrupted_at_exit`) What it says of the calls left queued, if any."""
    if not calls:
        return []
    counts: dict[tuple[str, str], int] = {}
    for call in calls:
        counts[call] = counts.get(call, 0) + 1
    named = [f"{actor_id!r}.{method} x{n}" for (actor_id, method), n in list(counts.items())[:3]]
    more = f" and {len(counts) - 3} more" if len(counts) > 3 else ""
    return [f"{len(calls)} call(s) made and not started are abandoned, not applied: {', '.join(named)}{more}"]


def _first_named(names: Sequence[str]) -> str:
    """(:func:`_interrupted_at_exit`) The first three of ``names``, quoted, and "and more"."""
    return ", ".join(repr(name) for name in names[:3]) + (" and more" if len(names) > 3 else "")


def _abandoned_folds(folds: list[str]) -> list[str]:
    """(:func:`_interrupted_at_exit`) What it says of the folds ``call_outcome`` queued, if any."""
    if not folds:
        return []
    actors = _first_named(folds)
    return [
        f"the fold call_outcome queued for {actors} is abandoned: the posts it would fold stay in "
        "the inbox, for call_outcome(call_id) asked from a process that lives on to fold (or a "
        "write to the actor that meets contention)"
    ]


def _shutdown_at_interpreter_exit() -> None:
    """(atexit) Shut down a runtime left (one started after the threading exit hook, or one whose
    close a Ctrl-C cut short), within what is left of the exit's budget. A Ctrl-C
    that cut the exit's wait short was said in one line (:func:`_interrupted_at_exit`); the
    exit goes on from there: the program's other exit callbacks (``logging``'s flush, its own)
    still run, and its exit status stays what the program made it (ending the process with 130
    here skipped every callback registered before vactor_cloud was imported)."""
    runtime = _runtime
    try:
        _shutdown_by(_exit_close_until())
    except KeyboardInterrupt:
        _interrupted_at_exit(runtime)


#: the exit's budget: how long the exit hook and its shutdown wait, in all, for the process's other
#: non-daemon threads, the calls queued, the folds ``call_outcome`` queued and what still runs
_EXIT_WAIT = 30.0


# Flush HEAD pointers at interpreter exit. concurrent.futures refuses new work
# once its own exit hook ran, and file I/O goes through worker threads, so run
# before it: threading's exit hooks run before atexit's, latest first. A
# runtime started after it (by an executor's task run in concurrent.futures'
# hook) is shut down by atexit (its file I/O then runs on the IO loop itself).
_register_early_exit = getattr(threading, "_register_atexit", None)
if _register_early_exit is not None:
    _register_early_exit(_shutdown_at_exit)
atexit.register(_shutdown_at_interpreter_exit)

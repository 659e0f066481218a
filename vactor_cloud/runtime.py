"""The process-wide runtime: settings, the store, actor cores, worker threads, HEAD flushing.

``init()`` creates it; everything else creates a default one on first use.
After ``fork`` the child gets a fresh runtime with the same settings (the
parent's loop thread, connections and caches do not exist there).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vactor_cloud import _sync
from vactor_cloud.batch import summarize
from vactor_cloud.dedup import DEFAULT_WINDOW
from vactor_cloud.definition import ActorClass
from vactor_cloud.errors import ActorDefinitionError, ActorNotFoundError
from vactor_cloud.ids import validate_actor_id
from vactor_cloud.log import ActorLog, ClassRef
from vactor_cloud.state import capture_state, dumps_state
from vactor_cloud.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from vactor_cloud.core import ActorCore
    from vactor_cloud.handle import ActorHandle

__all__ = ["Runtime", "Settings", "default_storage", "get_runtime", "init", "shutdown", "validate_actor_id"]

logger = logging.getLogger("vactor_cloud")

#: the id is one path component on a local store, where a name is at most 255 bytes (NAME_MAX)


def default_storage() -> str:
    """``$VACTOR_STORAGE``, else the embedded store ``$XDG_DATA_HOME/vactor_cloud`` (~/.local/share)."""
    env = os.environ.get("VACTOR_STORAGE")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "vactor_cloud")


@dataclass(frozen=True)
class Settings:
    """Everything ``init()`` configures. Defaults suit S3, GCS and local stores alike."""

    #: a storage URL, or an ObjectStore instance (custom or wrapped stores, tests)
    storage: str | ObjectStore
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: HMAC key: every object written is signed, every object read must carry a valid tag
    signing_key: bytes | None = None
    #: False: never unpickle class bodies from storage; only importable classes are used
    load_classes_from_storage: bool = True
    #: a writer that keeps losing the race gives up after this many attempts...
    max_commit_attempts: int = 2000
    #: ...or after this many seconds, whichever comes first (CommitConflictError)
    commit_timeout: float = 120.0
    #: a cache validated this recently is trusted without a probe (seconds)
    fresh_window: float = 5.0
    #: HEAD is moved at most this often per actor (seconds; GCS allows ~1 write/s per object)...
    head_interval: float = 1.0
    #: ...when it lags this many steps behind this process's commits...
    head_lag_steps: int = 8
    #: ...or this many seconds after it fell behind (and always at shutdown)
    head_max_delay: float = 10.0
    #: a busy actor looks for events sent by other processes this often (seconds), beside its commits
    inbox_interval: float = 15.0
    #: most writes group-committed in one step
    max_batch: int = 512
    #: idempotency keys kept: (newest N keys, or younger than T seconds), whichever keeps more
    dedup_window: tuple[int, float] = DEFAULT_WINDOW
    #: threads running actor methods
    max_workers: int = 32
    #: default executor of ``vactor_cloud.subtask``: "thread", "process", an Executor or a dask Client
    subtask_executor: Any = None


class HeadFlusher:
    """Moves HEAD pointers in the background, off the commit path.

    HEAD is only a hint (readers probe past it), so moving it after every
    commit would double the PUTs of a busy store for little gain. An actor's
    HEAD is written when it is missing, when it lags ``lag_steps`` steps behind
    what this process committed, or ``max_delay`` seconds after it first fell
    behind; never more than once per ``interval`` per actor; and always on
    ``shutdown()`` / interpreter exit.
    """

    def __init__(self, interval: float, lag_steps: int, max_delay: float) -> None:
        self.interval = interval
        self.lag_steps = lag_steps
        self.max_delay = max_delay
        #: actor id -> (core, when its HEAD first fell behind)
        self._pending: dict[str, tuple[ActorCore, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, core: ActorCore) -> None:
        """Ask for ``core``'s HEAD to be moved to its newest known step (loop thread only)."""
        self._pending.setdefault(core.actor_id, (core, time.monotonic()))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self.interval)
            await self.flush(force=False)

    def _due(self, core: ActorCore, since: float, now: float) -> bool:
        record, head = core.record, core.head
        if record is None or head is None:
            return True
        return record.step - head.step >= self.lag_steps or now - since >= self.max_delay

    async def flush(self, *, force: bool = True) -> None:
        now = time.monotonic()
        due = [core for core, since in self._pending.values() if force or self._due(core, since, now)]
        for core in due:
            del self._pending[core.actor_id]
        results = await asyncio.gather(*(c.flush_head() for c in due), return_exceptions=True)
        for core, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("could not move HEAD of %r: %s", core.actor_id, result)


class Runtime:
    """One process's view of one storage root."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: ObjectStore = (
            settings.storage
            if isinstance(settings.storage, ObjectStore)
            else open_store(settings.storage, **settings.storage_options)
        )
        self.loop = _sync.get_loop()
        self.executor = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="vactor-method")
        self.heads = HeadFlusher(settings.head_interval, settings.head_lag_steps, settings.head_max_delay)
        self._cores: dict[str, ActorCore] = {}
        self._lock = threading.Lock()
        self._classes: dict[str, ActorClass] = {}
        self._pid = os.getpid()

    def core(self, actor_id: str) -> ActorCore:
        core = self._cores.get(actor_id)
        if core is None:
            from vactor_cloud.core import ActorCore

            validate_actor_id(actor_id)
            with self._lock:
                core = self._cores.get(actor_id)
                if core is None:
                    core = self._cores[actor_id] = ActorCore(self, actor_id)
        return core

    def log(self, actor_id: str) -> ActorLog:
        return self.core(actor_id).log

    async def stored_class(self, log: ActorLog, ref: ClassRef) -> ActorClass:
        """The class body ``ref`` loaded from storage (cached per process)."""
        found = self._classes.get(ref.sha)
        if found is not None:
            return found
        if not self.settings.load_classes_from_storage:
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, which this process cannot import, "
                "and loading class bodies from storage is disabled (load_classes_from_storage=False): "
                "make the class importable here"
            )
        body = await log.read_class(ref.sha)
        raw = await asyncio.get_running_loop().run_in_executor(self.executor, pickle.loads, body)
        definition = ActorClass.from_stored(raw)
        self._classes[ref.sha] = definition
        return definition

    # -- actors ------------------------------------------------------------------------
    async def get_actor_async(self, actor_id: str) -> ActorHandle:
        from vactor_cloud.handle import ActorHandle

        core = self.core(actor_id)
        await core.ensure_loaded()
        return ActorHandle(actor_id)

    def get_actor(self, actor_id: str) -> ActorHandle:
        return _sync.sync(self.get_actor_async(actor_id))

    async def get_or_create_async(
        self, definition: ActorClass, actor_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ActorHandle:
        from vactor_cloud.handle import ActorHandle

        core = self.core(actor_id)
        try:
            await core.ensure_loaded()
            return ActorHandle(actor_id)
        except ActorNotFoundError:
            pass

        def initial_state() -> bytes:
            instance = definition.cls(*args, **kwargs)
            return dumps_state(capture_state(instance), definition.serializer)

        state = await asyncio.get_running_loop().run_in_executor(self.executor, initial_state)
        init_args = ", ".join(
            [summarize(a) for a in args] + [f"{k}={summarize(v)}" for k, v in kwargs.items()]
        )
        await core.create(definition, state, init_args[:200])
        return ActorHandle(actor_id)

    def get_or_create(
        self, definition: ActorClass, actor_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ActorHandle:
        return _sync.sync(self.get_or_create_async(definition, actor_id, args, kwargs))

    async def aclose(self) -> None:
        """Flush pending HEAD moves and release connections."""
        await self.heads.flush()
        await self.store.close()

    def close(self, timeout: float = 30.0) -> None:
        if os.getpid() != self._pid:
            return
        with contextlib.suppress(Exception):
            _sync.sync(self.aclose(), timeout=timeout)
        self.executor.shutdown(wait=False, cancel_futures=True)


_runtime: Runtime | None = None
_settings: Settings | None = None
_runtime_lock = threading.Lock()


def init(
    storage: str | os.PathLike[str] | ObjectStore | None = None,
    *,
    signing_key: str | bytes | None = None,
    load_classes_from_storage: bool = True,
    subtask_executor: Any = None,
    **storage_options: Any,
) -> None:
    """Choose where actors live for this process.

    ``storage`` is a path, ``file://``, ``memory://``, ``s3://bucket/prefix`` or
    ``gs://bucket/prefix`` (or an :class:`~vactor_cloud.storage.ObjectStore`);
    default ``$VACTOR_STORAGE``, else the embedded local store under
    ``~/.local/share/vactor_cloud``. ``storage_options`` go to the
    fsspec filesystem. ``signing_key`` (or ``$VACTOR_SIGNING_KEY``) signs every
    object written and refuses unsigned or altered ones before unpickling.
    Tuning knobs of :class:`Settings` may be passed as ``settings=Settings(...)``.
    ``subtask_executor`` runs the children of ``vactor_cloud.subtask`` (default: threads).
    """
    global _runtime, _settings
    override: Settings | None = storage_options.pop("settings", None)
    key = signing_key if signing_key is not None else os.environ.get("VACTOR_SIGNING_KEY")
    settings = Settings(
        storage=(
            storage
            if isinstance(storage, ObjectStore)
            else os.fspath(storage)
            if storage is not None
            else default_storage()
        ),
        storage_options=storage_options,
        signing_key=key.encode("utf-8") if isinstance(key, str) else key,
        load_classes_from_storage=load_classes_from_storage,
        subtask_executor=subtask_executor,
    )
    if override is not None:
        settings = replace(
            override,
            storage=settings.storage,
            storage_options=settings.storage_options,
            signing_key=settings.signing_key,
            load_classes_from_storage=settings.load_classes_from_storage,
            subtask_executor=subtask_executor if subtask_executor is not None else override.subtask_executor,
        )
    with _runtime_lock:
        old, _runtime, _settings = _runtime, None, settings
    if old is not None:
        old.close()
    get_runtime()


def get_runtime() -> Runtime:
    """The current runtime, created from ``init()``'s settings (or the defaults) on first use."""
    global _runtime, _settings
    runtime = _runtime
    if runtime is not None:
        return runtime
    with _runtime_lock:
        if _runtime is None:
            if _settings is None:
                _settings = Settings(storage=default_storage(), signing_key=_env_key())
            _runtime = Runtime(_settings)
        return _runtime


def _env_key() -> bytes | None:
    key = os.environ.get("VACTOR_SIGNING_KEY")
    return key.encode("utf-8") if key else None


def shutdown() -> None:
    """Flush HEAD pointers and close connections; a later call starts a fresh runtime."""
    global _runtime
    with _runtime_lock:
        old, _runtime = _runtime, None
    if old is not None:
        old.close()


def _after_fork_in_child() -> None:
    global _runtime, _runtime_lock
    _runtime = None
    _runtime_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
# Flush HEAD pointers at interpreter exit. concurrent.futures refuses new work
# once its own exit hook ran, and file I/O goes through worker threads, so run
# before it: threading's exit hooks run before atexit's, latest first.
_register_early_exit = getattr(threading, "_register_atexit", None)
if _register_early_exit is not None:
    _register_early_exit(shutdown)
else:  # pragma: no cover - other Pythons
    atexit.register(shutdown)

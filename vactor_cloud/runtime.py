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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vactor_cloud import _sync
from vactor_cloud.batch import summarize
from vactor_cloud.definition import ActorClass
from vactor_cloud.errors import ActorDefinitionError, ActorNotFoundError, InvalidActorIdError
from vactor_cloud.log import ActorLog, ClassRef
from vactor_cloud.settings import Settings, default_storage, settings_for_init
from vactor_cloud.state import capture_state, dumps_state
from vactor_cloud.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from vactor_cloud.core import ActorCore
    from vactor_cloud.handle import ActorHandle

__all__ = ["Runtime", "Settings", "default_storage", "get_runtime", "init", "shutdown", "validate_actor_id"]

logger = logging.getLogger("vactor_cloud")

#: the id is one path component on a local store, where a name is at most 255 bytes (NAME_MAX)
_MAX_ID_BYTES = 255


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


def validate_actor_id(actor_id: object) -> None:
    """``InvalidActorIdError`` unless ``actor_id`` can name objects on every backend."""
    if not isinstance(actor_id, str):
        raise InvalidActorIdError(f"actor ids are strings, got {type(actor_id).__name__}")
    if not actor_id:
        raise InvalidActorIdError("the actor id is empty")
    if "/" in actor_id or "\\" in actor_id:
        raise InvalidActorIdError(f"actor id {actor_id!r} contains a slash; use another separator")
    if actor_id in (".", ".."):
        raise InvalidActorIdError(f"actor id {actor_id!r} is a path component")
    if any(ord(c) < 32 or ord(c) == 127 for c in actor_id):
        raise InvalidActorIdError(f"actor id {actor_id!r} contains control characters")
    if len(actor_id.encode("utf-8")) > _MAX_ID_BYTES:
        raise InvalidActorIdError(f"actor id is longer than {_MAX_ID_BYTES} bytes in UTF-8")


_runtime: Runtime | None = None
_settings: Settings | None = None
_runtime_lock = threading.Lock()


def init(
    storage: str | os.PathLike[str] | ObjectStore | None = None,
    *,
    signing_key: str | bytes | None = None,
    load_classes_from_storage: bool = True,
    subtask_executor: Any = None,
    storage_options: Mapping[str, Any] | None = None,
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
    Tuning knobs of :class:`Settings` may be passed as ``settings=Settings(...)``.
    ``subtask_executor`` runs the children of ``vactor_cloud.subtask`` (default: threads).
    """
    global _runtime, _settings
    settings = settings_for_init(
        storage,
        storage_options=storage_options,
        extra_options=options,
        signing_key=signing_key,
        load_classes_from_storage=load_classes_from_storage,
        subtask_executor=subtask_executor,
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

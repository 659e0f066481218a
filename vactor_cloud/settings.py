"""Settings: everything ``init()`` configures, with defaults that suit S3, GCS and local stores alike."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from vactor_cloud.dedup import DEFAULT_WINDOW
from vactor_cloud.storage import ObjectStore

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Tuning of one runtime. Every field has a default; ``Settings()`` is valid.

    Numeric fields are checked when the object is made: NaN, infinities and
    out-of-range values raise ``ValueError`` naming the field.
    """

    #: a storage URL, or an ObjectStore instance (custom or wrapped stores, tests); None: the default
    storage: str | ObjectStore | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: HMAC key: every object written is signed, every object read must carry a valid tag
    signing_key: bytes | None = None
    #: False: never unpickle class bodies from storage; only importable classes are used
    load_classes_from_storage: bool = True
    #: a writer that keeps losing the race gives up after this many attempts...
    max_commit_attempts: int = 2000
    #: ...or after this many seconds, whichever comes first (CommitConflictError)
    commit_timeout: float = 120.0
    #: seconds one storage request may take (StorageTimeoutError); a stalled endpoint fails this fast
    timeout: float = 10.0
    #: seconds one operation (a load, a read, one commit attempt's I/O) may take in all
    deadline: float = 30.0
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
    #: threads that run calls made with ``run_async`` (a blocking ``run`` runs on its caller's thread)
    max_workers: int = 32
    #: idle actors cached per process (their newest step and live instance); the oldest are evicted
    max_cached_actors: int = 10_000
    #: ...and at most about this many bytes of cached state in all
    max_cache_bytes: int = 128 * 1024 * 1024
    #: default executor of ``vactor_cloud.subtask``: "thread", "process", an Executor or a dask Client
    subtask_executor: Any = None

    def __post_init__(self) -> None:
        for name, low, allow_zero in _NUMERIC:
            _check_number(name, getattr(self, name), low, allow_zero)
        window = self.dedup_window
        if not (isinstance(window, tuple) and len(window) == 2):
            raise ValueError(f"Settings.dedup_window must be (max_keys, max_age_seconds), got {window!r}")
        _check_number("dedup_window[0]", window[0], 0, True)
        _check_number("dedup_window[1]", window[1], 0, True)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


#: (field, lower bound, whether the bound itself is allowed)
_NUMERIC: tuple[tuple[str, float, bool], ...] = (
    ("max_commit_attempts", 1, True),
    ("commit_timeout", 0, False),
    ("timeout", 0, False),
    ("deadline", 0, False),
    ("fresh_window", 0, True),
    ("head_interval", 0, True),
    ("head_lag_steps", 1, True),
    ("head_max_delay", 0, True),
    ("inbox_interval", 0, True),
    ("max_batch", 1, True),
    ("max_workers", 1, True),
    ("max_cached_actors", 1, True),
    ("max_cache_bytes", 0, True),
)


def _check_number(name: str, value: object, low: float, allow_low: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Settings.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"Settings.{name} must be finite, got {value!r}")
    if value < low or (value == low and not allow_low):
        bound = f">= {low}" if allow_low else f"> {low}"
        raise ValueError(f"Settings.{name} must be {bound}, got {value!r}")

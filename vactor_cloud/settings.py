"""What ``init()`` configures: :class:`Settings`, its validation, and how ``init``'s arguments merge.

Every field has a default, so ``Settings(fresh_window=1.0)`` is enough to
tune one knob; the storage defaults to :func:`default_storage`. Numbers are
checked when the object is built (finite, in range), and an error names the
field, so a NaN or a negative timeout fails at ``init`` rather than as a hang
or a busy loop much later.

This module imports nothing heavy: a serverless cold start pays for it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vactor_cloud.storage import ObjectStore

__all__ = ["RECOMMENDED_KEY_BYTES", "Settings", "check_storage", "default_storage"]

#: the shortest signing key taken without a warning: HMAC-SHA256's own output length
RECOMMENDED_KEY_BYTES = 32
#: whether this process warned of a short signing key already (once is enough)
_short_key_warned = False


def _forget_short_key_warning() -> None:
    global _short_key_warned  # a forked child is another process, with a log of its own
    _short_key_warned = False


os.register_at_fork(after_in_child=_forget_short_key_warning)


def _warn_short_key(length: int) -> None:
    """A signing key shorter than :data:`RECOMMENDED_KEY_BYTES` is taken (refusing it would lock
    its users out of the stores it signed) with one warning per process; the key is not logged."""
    global _short_key_warned
    if _short_key_warned:
        return
    _short_key_warned = True
    logging.getLogger("vactor_cloud").warning(
        "the signing key is %d bytes, shorter than the %d bytes recommended for HMAC-SHA256: a "
        "short key can be guessed, and with it objects forged; make one with "
        '`python -c "import secrets; print(secrets.token_hex(32))"` (a new key cannot read '
        "what the old one signed: see Security in the docs)",
        length,
        RECOMMENDED_KEY_BYTES,
    )


#: idempotency keys kept by default: the newest 10,000, or those younger than a day (whichever keeps more).
#: Spelled here rather than imported from ``dedup`` so that building Settings imports nothing else;
#: ``tests/test_settings.py`` checks the two agree.
DEFAULT_DEDUP_WINDOW: tuple[int, float] = (10_000, 24 * 3600.0)


def default_storage() -> str:
    """``$VACTOR_STORAGE``, else the embedded store ``$XDG_DATA_HOME/vactor_cloud`` (~/.local/share)."""
    env = os.environ.get("VACTOR_STORAGE")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "vactor_cloud")


@dataclass(frozen=True)
class Settings:
    """Everything ``init()`` configures. Defaults suit S3, GCS and local stores alike.

    Every field is optional: ``Settings(fresh_window=1.0)`` keeps all other defaults.
    Numeric fields must be finite and in range; ``ValueError`` names the field otherwise. The
    storage must be a URL, a path or an ObjectStore, and the sub-task executor one of those
    its field names: ``TypeError`` (``ValueError`` for an unknown executor name) names the
    field otherwise.
    """

    #: a storage URL, or an ObjectStore instance (custom or wrapped stores, tests);
    #: default ``$VACTOR_STORAGE``, else the embedded local store
    storage: str | ObjectStore = field(default_factory=default_storage)
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: HMAC key: every object written is signed, every object read must carry a valid tag
    signing_key: bytes | None = None
    #: False: never unpickle class bodies from storage; only importable classes are used
    load_classes_from_storage: bool = True
    #: a writer that keeps losing the race gives up after this many attempts...
    max_commit_attempts: int = 2000
    #: ...or after this many seconds, whichever comes first (CommitConflictError)
    commit_timeout: float = 120.0
    #: one storage request (GET, PUT, LIST, ...) gives up after this many seconds
    timeout: float = 10.0
    #: one operation (a call, a load, a get_actor) gives up after this many seconds, retries included
    #: (a request in flight then ends at its own ``timeout``: a writer call against a store that
    #: stalls fails within about ``deadline + timeout``; one that keeps losing races, at
    #: ``commit_timeout``)
    deadline: float = 30.0
    #: contention combining: a process that lost a race posts its calls for the next committer to fold
    combine: bool = True
    #: ...once one batch lost this many races in a row (1, the default: at its first lost race;
    #: 2: a single lost race is raced again, cheaper on a local store under light contention)
    combine_after: int = 1
    #: ...for this long after it last posted for lost races (seconds); then it races for the next
    #: step again. A folder-lease holder gives its lease up after folding no other process's post
    #: for this long (or sooner, once its lease nears its end: only folds renew it)
    combine_window: float = 1.0
    #: length of the advisory folder lease (seconds): while another process holds it, a contended
    #: process posts and waits instead of racing; renewed at half-life, taken over once it expired
    lease_seconds: float = 2.0
    #: a small post also carries its calls in its object name, so the folder learns it from its
    #: LIST without a GET (about one request less per posted call). Sealed: encrypted with the
    #: store's mail key (the ``mail-key`` object, made once), so that what names reach (server
    #: access logs, CloudTrail data events, inventories) holds no method name nor argument.
    #: Pre-release snapshots of main from before 2026-12-02 delete such names unread when they
    #: fold: turn it off while one of them may fold an actor this process posts to
    post_names: bool = True
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
    dedup_window: tuple[int, float] = DEFAULT_DEDUP_WINDOW
    #: threads that run calls made with ``run_async`` (a blocking ``run`` runs on its caller's thread),
    #: plus one per such thread waiting for another process's fold (it lends its place meanwhile);
    #: read-only calls have a pool of their own of as many threads (they never wait behind writes)
    max_workers: int = 32
    #: idle actors cached per process (their newest step and live instance); the least recently used go
    max_cached_actors: int = 10_000
    #: ...and at most about this many bytes of cached state (with the folded calls' outcomes its step
    #: carries, and decoded idempotency tables) in all (exactly this many is within it: an eviction
    #: stops there)
    max_cache_bytes: int = 128 * 1024 * 1024
    #: read-only calls running at once restore private copies of their actors' states of at most
    #: about this many bytes in all (stored size); a read past it waits for one to end (one alone
    #: always runs; a read inside a read never waits)
    max_read_bytes: int = 128 * 1024 * 1024
    #: default executor of ``vactor_cloud.subtask``: "thread", "process", an Executor or a dask Client
    subtask_executor: Any = None
    #: False: ``get_or_create`` returns before ``__init__`` committed (Ray's behaviour); until then this
    #: process's writer calls wait for the creation, read-only calls raise ``VirtualActorNotInitializedError``
    wait_for_init: bool = True

    def __post_init__(self) -> None:
        for name, (low, inclusive) in _RANGES.items():
            _check_number(name, getattr(self, name), low, inclusive=inclusive, integer=name in _INTEGERS)
        for name in _SWITCHES:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Settings.{name} must be True or False, got {getattr(self, name)!r}")
        window = self.dedup_window
        if not isinstance(window, tuple) or len(window) != 2:
            raise TypeError(f"Settings.dedup_window must be a tuple (keys, seconds), got {window!r}")
        _check_number("dedup_window[0]", window[0], 0, inclusive=True, integer=True)
        _check_number("dedup_window[1]", window[1], 0, inclusive=True, integer=False)
        key = self.signing_key
        if key is not None and (not isinstance(key, bytes) or not key):
            # An empty key (a secret that came through empty) must not mean "unsigned" silently.
            raise (ValueError if isinstance(key, bytes) else TypeError)(
                f"Settings.signing_key must be non-empty bytes or None (no signing), got {key!r}"
            )
        if key is not None and len(key) < RECOMMENDED_KEY_BYTES:
            _warn_short_key(len(key))
        if not isinstance(self.storage_options, Mapping):
            raise TypeError(
                f"Settings.storage_options must be a mapping, got {type(self.storage_options).__name__}"
            )
        check_storage(self.storage, "Settings.storage")
        executor = self.subtask_executor
        if isinstance(executor, str) and executor not in ("thread", "process"):
            raise ValueError(_EXECUTOR_MESSAGE.format(executor))
        runs = executor is None or isinstance(executor, str) or callable(getattr(executor, "submit", None))
        if not runs:
            raise TypeError(_EXECUTOR_MESSAGE.format(executor))


_EXECUTOR_MESSAGE = (
    "Settings.subtask_executor must be 'thread', 'process', a concurrent.futures.Executor or a "
    "dask.distributed.Client (anything with a submit method), or None for the default, got {!r}"
)


def check_storage(storage: object, what: str) -> None:
    """``TypeError`` unless ``storage`` (``what``, in the message) is a storage URL or path, an
    :class:`~vactor_cloud.storage.ObjectStore`, or ``None`` (the default storage)."""
    if storage is None or isinstance(storage, str | os.PathLike):
        return
    from vactor_cloud.storage import ObjectStore  # noqa: PLC0415 - only for an object: a URL imports nothing

    if not isinstance(storage, ObjectStore):
        raise TypeError(
            f"{what} must be a storage URL or path (a str), or an ObjectStore instance, got {storage!r}"
        )


#: fields that are True or False (a string such as "False" is truthy: refused)
_SWITCHES = ("combine", "post_names", "load_classes_from_storage", "wait_for_init")
#: numeric field -> (lower bound, whether the bound itself is allowed); every one must also be finite
_RANGES: dict[str, tuple[float, bool]] = {
    "max_commit_attempts": (1, True),
    "commit_timeout": (0, False),
    "timeout": (0, False),
    "deadline": (0, False),
    "fresh_window": (0, True),
    "combine_after": (1, True),
    "combine_window": (0, True),
    "lease_seconds": (0, False),
    "head_interval": (0, False),
    "head_lag_steps": (1, True),
    "head_max_delay": (0, True),
    "inbox_interval": (0, False),
    "max_batch": (1, True),
    "max_workers": (1, True),
    "max_cached_actors": (1, True),
    "max_cache_bytes": (0, True),
    "max_read_bytes": (0, True),
}
_INTEGERS = frozenset(
    {
        "max_commit_attempts",
        "combine_after",
        "head_lag_steps",
        "max_batch",
        "max_workers",
        "max_cached_actors",
        "max_cache_bytes",
        "max_read_bytes",
    }
)


def _check_number(name: str, value: object, low: float, *, inclusive: bool, integer: bool) -> None:
    kind = "an integer" if integer else "a number"
    allowed = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise TypeError(f"Settings.{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"Settings.{name} must be finite, got {value!r}")
    if value < low or (value == low and not inclusive):
        bound = f">= {low}" if inclusive else f"> {low}"
        raise ValueError(f"Settings.{name} must be {bound}, got {value!r}")

"""Object stores: the contract (:class:`ObjectStore`) and its backends.

``open_store(url, **options)`` picks the backend from the URL:

=========================  ==========================================
``/path``, ``file:///p``   :class:`LocalStore` (one machine, many processes);
``file://localhost/p``     is ``/p``
``memory://name``          :class:`MemoryStore` (one process)
``s3://bucket/prefix``     ``S3Store`` over s3fs (extra ``vactor_cloud[s3]``)
``gs://bucket/prefix``     ``GCSStore`` over gcsfs (extra ``vactor_cloud[gcs]``);
``gcs://`` is the same
=========================  ==========================================

Keyword options go to the fsspec filesystem (``endpoint_url``, ``key``,
``secret``, ``token``, ``project``, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from vactor_cloud.storage._base import CAPABILITIES, Blob, IfMatch, ObjectStore, PutMode, RequestCounter
from vactor_cloud.storage._local import LocalStore
from vactor_cloud.storage._memory import MemoryStore

__all__ = [
    "CAPABILITIES",
    "Blob",
    "IfMatch",
    "LocalStore",
    "MemoryStore",
    "ObjectStore",
    "PutMode",
    "RequestCounter",
    "check_storage_options",
    "local_root",
    "open_store",
    "refuse_scheme_typo",
    "refuse_unusable_url",
]


#: the modules each optional backend needs, and the extra that installs them
_EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "s3": ("s3", frozenset({"s3fs", "aiobotocore", "botocore", "boto3", "aiohttp"})),
    "gs": ("gcs", frozenset({"gcsfs", "google", "aiohttp"})),
}


#: the schemes ``open_store`` knows; ``s3:/bucket`` (a slash lost) must not become a directory
_SCHEMES = ("file", "memory", "s3", "s3a", "gs", "gcs")


def refuse_scheme_typo(url: str) -> None:
    """``ValueError`` if ``url`` is a known scheme that lost its ``//`` (``s3:/bucket``).

    Taken as a path, ``s3:/bucket`` stored every actor in ``./s3:/bucket`` on this machine
    only, without a word. A directory of that name is still ``./s3:/bucket``.
    """
    if "://" in url:
        return
    scheme, colon, rest = url.partition(":")
    if colon and scheme.lower() in _SCHEMES:
        meant = f"{scheme}://" + ("/" if scheme.lower() == "file" else "") + rest.lstrip("/")
        raise ValueError(
            f"storage URL {url!r} is missing a slash (as it is, it names a local directory "
            f"{scheme + ':'!r}): write {meant}, or ./{url} if you mean that directory"
        )


def local_root(url: str) -> str | None:
    """The directory a local store's URL names (a path, ``file://``); ``None`` for another scheme.

    ``file://localhost/p`` is ``/p`` (RFC 8089): it was ``./localhost/p``, a directory under
    the working directory. Another host (``file://data/p``) stays ``./data/p``, as fsspec reads it.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if scheme.lower() != "file":
        return None
    host, slash, path = rest.partition("/")
    return slash + path if slash and host.lower() == "localhost" else rest


def refuse_unusable_url(url: str) -> None:
    """``ValueError`` for a URL that names no store (``""``, ``file://``: the working directory,
    as it was), one padded with white space (a value copied with its blank or newline: the
    store was ``./ /srv/x``, or a directory or prefix whose name ends with it), or one whose
    scheme lost a slash (:func:`refuse_scheme_typo`)."""
    if local_root(url) == "":
        raise ValueError(
            f"the storage URL {url!r} is empty; name a store, or leave it out (None) for "
            "$VACTOR_STORAGE, else the embedded store ('.' names the working directory)"
        )
    if url != url.strip():
        raise ValueError(f"the storage URL {url!r} begins or ends with white space; remove it")
    refuse_scheme_typo(url)


def _backend(url: str) -> tuple[type[ObjectStore], str]:
    """The store class serving ``url`` and the part of the URL it is given."""
    refuse_unusable_url(url)
    if "://" not in url:
        return LocalStore, url
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        return LocalStore, local_root(url) or ""
    if scheme == "memory":
        return MemoryStore, rest
    if scheme in ("s3", "s3a"):
        with _extra("s3", url):
            from vactor_cloud.storage._s3 import S3Store
        return S3Store, rest
    if scheme in ("gs", "gcs"):
        with _extra("gs", url):
            from vactor_cloud.storage._gcs import GCSStore
        return GCSStore, rest
    raise ValueError(f"unsupported storage URL {url!r}: use a path, file://, memory://, s3:// or gs://")


@contextlib.contextmanager
def _extra(scheme: str, url: str) -> Iterator[None]:
    """Turn a missing optional dependency into an error that says which extra to install."""
    extra, modules = _EXTRAS[scheme]
    try:
        yield
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in modules:
            raise
        raise ModuleNotFoundError(
            f"{url}: this backend needs {missing!r}, which is not installed: "
            f"pip install 'vactor_cloud[{extra}]'",
            name=exc.name,
        ) from exc


def check_storage_options(url: str, options: Mapping[str, Any]) -> None:
    """``TypeError`` naming the bad key and the valid ones unless ``url``'s backend accepts ``options``.

    Raises ``ModuleNotFoundError`` (with the ``pip install`` line) if the
    backend's optional dependencies are missing.
    """
    store_class, _ = _backend(url)
    accepted = store_class.accepted_options
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted)) if accepted else "none"
        raise TypeError(
            f"unknown storage option {unknown[0]!r} for {url} ({store_class.__name__}); "
            f"valid options: {valid}"
        )
    for name, value in options.items():
        types = store_class.option_types.get(name)
        # (a bool is an int to isinstance: True where a number is wanted is a mistake, not 1)
        wrong_bool = isinstance(value, bool) and bool not in (types or ())
        if types is not None and value is not None and (wrong_bool or not isinstance(value, types)):
            wanted = " or ".join("a mapping" if t is Mapping else t.__name__ for t in types)
            # (not the value: it may be a secret)
            raise TypeError(
                f"storage option {name!r} for {url} ({store_class.__name__}) must be {wanted}, "
                f"got {type(value).__name__}"
            )


def open_store(url: str, **options: Any) -> ObjectStore:
    """Open the object store named by ``url``; see the module docstring for the schemes."""
    check_storage_options(url, options)
    store_class, rest = _backend(url)
    if store_class is MemoryStore:
        return MemoryStore(rest.strip("/") or "default")
    return store_class(rest, **options)

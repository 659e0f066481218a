"""Object stores: the contract (:class:`ObjectStore`) and its backends.

``open_store(url, **options)`` picks the backend from the URL:

=========================  ==========================================
``/path``, ``file:///p``   :class:`LocalStore` (one machine, many processes)
``memory://name``          :class:`MemoryStore` (one process)
``s3://bucket/prefix``     ``S3Store`` over s3fs (extra ``vactor_cloud[s3]``)
``gs://bucket/prefix``     ``GCSStore`` over gcsfs (extra ``vactor_cloud[gcs]``);
``gcs://`` is the same
=========================  ==========================================

Keyword options go to the fsspec filesystem (``endpoint_url``, ``key``,
``secret``, ``token``, ``project``, ...).
"""

from __future__ import annotations

from typing import Any

from vactor_cloud.storage._base import Blob, IfMatch, ObjectStore, PutMode, RequestCounter
from vactor_cloud.storage._local import LocalStore
from vactor_cloud.storage._memory import MemoryStore

__all__ = [
    "Blob",
    "IfMatch",
    "LocalStore",
    "MemoryStore",
    "ObjectStore",
    "PutMode",
    "RequestCounter",
    "open_store",
]


def open_store(url: str, **options: Any) -> ObjectStore:
    """Open the object store named by ``url``; see the module docstring for the schemes."""
    if "://" not in url:
        if options:
            raise TypeError(f"a local path takes no storage options, got {sorted(options)}")
        return LocalStore(url)
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        return LocalStore(rest)
    if scheme == "memory":
        return MemoryStore(rest.strip("/") or "default")
    if scheme in ("s3", "s3a"):
        from vactor_cloud.storage._s3 import S3Store

        return S3Store(rest, **options)
    if scheme in ("gs", "gcs"):
        from vactor_cloud.storage._gcs import GCSStore

        return GCSStore(rest, **options)
    raise ValueError(f"unsupported storage URL {url!r}: use a path, file://, memory://, s3:// or gs://")

"""Three ways to reach a store: through the ``ObjectStore`` interface; on a local directory, by
its files; on S3, with boto3 (protocol.md, "Store requirements": "Write tokens", "A local
directory").

Both answer ``get(key) -> (data, version) | None``, ``create(key, data) -> bool`` (False:
already exists), ``list(prefix, start_after) -> [keys]`` and ``delete(key)``, with the data
as the protocol defines it: without the local store's write token.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from vactor_cloud.storage._base import IfMatch, ObjectStore

_T = TypeVar("_T")
TOKEN = 16


class Through:
    """The store's own interface, driven from a loop of our own."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            blob = self._run(self.store.get(key))
        except Exception as error:  # NotFoundError: the interface's, not the protocol's
            if type(error).__name__ == "NotFoundError":
                return None
            raise
        return blob.data, blob.version

    def create(self, key: str, data: bytes) -> bool:
        try:
            self._run(self.store.put(key, data, mode="create"))
        except Exception as error:
            if type(error).__name__ == "AlreadyExistsError":
                return False
            raise
        return True

    def replace(self, key: str, data: bytes, version: str) -> None:
        self._run(self.store.put(key, data, mode=IfMatch(version)))

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return self._run(self.store.list(prefix, start_after=start_after))

    def delete(self, key: str) -> None:
        self._run(self.store.delete(key))

    def close(self) -> None:
        self._run(self.store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)


class LocalFiles:
    """A local store's directory read and written as files: every key component longer than two
    characters is a chain of two-character directories ending in ``+`` (the last chunk without;
    a last chunk "." or ".." joins the one before), except the last component under a ``mail/``
    component, one file; each file is a 16-byte write token followed by the data. Creation links
    a fully written temporary file (``.tmp-*``, skipped by listings) into place."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    @staticmethod
    def _component(name: str, whole: bool) -> list[str]:
        if whole or len(name) <= 2:
            return [name]
        chunks = [name[i : i + 2] for i in range(0, len(name), 2)]
        if chunks[-1] in (".", ".."):  # no file has that name: it joins the chunk before
            chunks[-2:] = [chunks[-2] + chunks[-1]]
        return [chunk + "+" for chunk in chunks[:-1]] + [chunks[-1]]

    def path(self, key: str) -> Path:
        names = key.split("/")
        parts: list[str] = []
        for i, name in enumerate(names):
            parts += self._component(name, whole=i == len(names) - 1 and i > 0 and names[i - 1] == "mail")
        return self.root.joinpath(*parts)

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            stored = self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        return stored[TOKEN:], stored[:TOKEN].hex()

    def create(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        temp = path.parent / f".tmp-{secrets.token_hex(8)}"
        for _ in range(50):  # a delete may prune the directory we just made
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                temp.write_bytes(secrets.token_bytes(TOKEN) + data)
                break
            except FileNotFoundError:
                continue
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        finally:
            temp.unlink()
        return True

    def replace(self, key: str, data: bytes, version: str) -> None:
        """If-match: under an flock of the key's lock file, compare the token, rename over it."""
        locks = self.root / ".vactor-locks"
        locks.mkdir(exist_ok=True)
        fd = os.open(locks / hashlib.sha256(key.encode()).hexdigest(), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self.get(key)
            if current is None or current[1] != version:
                raise RuntimeError(f"{key}: precondition failed")
            temp = self.path(key).parent / f".tmp-{secrets.token_hex(8)}"
            temp.write_bytes(secrets.token_bytes(TOKEN) + data)
            os.replace(temp, self.path(key))
        finally:
            os.close(fd)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys under ``prefix`` (a directory: ends with ``/``), sorted."""
        base = self.path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        under_mail = prefix.rstrip("/").split("/")[-1] == "mail"
        keys = [
            prefix + self._name(p.relative_to(base), under_mail)
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        ]
        return sorted(k for k in keys if start_after is None or k > start_after)

    @staticmethod
    def _name(relative: Path, whole: bool) -> str:
        if whole:
            return str(relative)
        components, current = [], ""
        for part in relative.parts:
            if part.endswith("+"):
                current += part[:-1]
            else:
                components.append(current + part)
                current = ""
        return "/".join(components)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class RawS3:
    """An S3 bucket through boto3 alone: keys under the store's prefix, each object a 16-byte
    write token and the data (the token makes every version's ETag new), create-only by
    ``If-None-Match: *``, compare-and-swap by ``If-Match`` of the ETag."""

    def __init__(self, url: str, endpoint_url: str, key: str, secret: str, region: str) -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix else ""
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=region,
        )

    def _failed(self, error: Exception, *codes: str) -> bool:
        return getattr(error, "response", {}).get("Error", {}).get("Code") in codes

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as error:
            if self._failed(error, "NoSuchKey", "404"):
                return None
            raise
        return found["Body"].read()[TOKEN:], found["ETag"]

    def create(self, key: str, data: bytes) -> bool:
        body = secrets.token_bytes(TOKEN) + data
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body, IfNoneMatch="*")
        except Exception as error:
            if self._failed(error, "PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def replace(self, key: str, data: bytes, version: str) -> None:
        body = secrets.token_bytes(TOKEN) + data
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body, IfMatch=version)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys, pages = [], self.s3.get_paginator("list_objects_v2")
        extra = {"StartAfter": self.prefix + start_after} if start_after else {}
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, **extra):
            keys += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return keys

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)

"""A test's store and this process's runtime on it, for the test files that start runtimes
themselves (rather than take one from ``actor_store``).

Its fixture ``spec`` (``store_spec``, with the runtime shut down after the test) is
registered by ``tests/conftest.py`` (``pytest_plugins``); a test file that defines its own
``spec`` (one that also starts the runtime, say) keeps it. ``init``, ``other_process``,
``raw_get``, ``raw_put`` and ``retune`` are imported by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

__all__ = ["init", "other_process", "raw_get", "raw_put", "retune", "spec"]


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """``store_spec``, with the runtime shut down after the test."""
    yield store_spec
    vc.shutdown()


def init(spec: StoreSpec, **settings: Any) -> Runtime:
    """Start this process's runtime on the test's store with ``settings``; the runtime."""
    spec.init(settings=vc.Settings(storage="", **settings))
    return vc.get_runtime()


def retune(**fields: Any) -> None:
    """Change settings the runtime reads per operation (``deadline``, ``commit_timeout``,
    ``combine_window``, ...; not ``timeout``, which its store took at ``init``) from here on.

    A tight bound is for the operation under test alone: set it just before, and widen it
    again before the checks after. Setup and checks under it failed on loaded CI hosts
    (a ``get_or_create`` past a 1 s deadline)."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, **fields)


def other_process(spec: StoreSpec, **settings: Any) -> Runtime:
    """Another process on the same store (a runtime of its own: its own caches, sender id)."""
    return Runtime(Settings(storage=spec.url, storage_options=spec.options, **settings))


def raw_get(key: str) -> bytes:
    """The object at ``key`` of this process's store, as stored (no check, no decoding)."""
    return _sync.sync(vc.get_runtime().store.get(key)).data


def raw_put(key: str, data: bytes) -> None:
    """Write ``data`` at ``key`` of this process's store, behind the library's back."""
    _sync.sync(vc.get_runtime().store.put(key, data))

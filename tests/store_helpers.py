"""A test's store and this process's runtime on it, for the test files that start runtimes
themselves (rather than take one from ``actor_store``).

Its fixture ``spec`` (``store_spec``, with the runtime shut down after the test) is
registered by ``tests/conftest.py`` (``pytest_plugins``); a test file that defines its own
``spec`` (one that also starts the runtime, say) keeps it. ``init``, ``other_process``,
``raw_get``, ``raw_put``, ``retune`` and ``commit_timeout_from_the_post`` are imported by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

__all__ = ["commit_timeout_from_the_post", "init", "other_process", "raw_get", "raw_put", "retune", "spec"]


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


@contextlib.contextmanager
def commit_timeout_from_the_post(seconds: float) -> Iterator[None]:
    """Within the block, a call that posts its batch gives up ``seconds`` after its post (as
    its commit next looks at the time: it lost its race and posted, it waits for a fold, or
    a storage error after the post), not ``commit_timeout`` after it began: the bound of
    the part under test (its wait, its fold), set where it begins (see ``retune``). Set as
    ``commit_timeout`` before the call, it also took in the call's first step put, the read
    of the winner and the post's put, which on a loaded moto lane may take more than a second
    each: past it before the post, the call gave up before the part under test began. The
    call's ``commit_timeout`` (the one it began with) must be longer than the setup needs."""
    lost_race, wait_for_folder, storage_failed = (
        ActorCore._lost_race,
        ActorCore._wait_for_folder,
        ActorCore._storage_failed,
    )
    bounded: set[int] = set()

    def from_the_post(c: Any) -> None:
        if c.posted is not None and id(c) not in bounded:
            bounded.add(id(c))
            c.give_up_at = min(c.give_up_at, time.monotonic() + seconds)

    def lost(core: ActorCore, c: Any, exc: Any) -> Any:
        step = lost_race(core, c, exc)
        from_the_post(c)
        return step

    def waiting(core: ActorCore, c: Any, posted: Any) -> bool:
        from_the_post(c)
        return wait_for_folder(core, c, posted)

    def failed(core: ActorCore, c: Any, exc: Any) -> Any:
        from_the_post(c)
        return storage_failed(core, c, exc)

    ActorCore._lost_race = lost  # type: ignore[method-assign]
    ActorCore._wait_for_folder = waiting  # type: ignore[method-assign]
    ActorCore._storage_failed = failed  # type: ignore[method-assign]
    try:
        yield
    finally:
        ActorCore._lost_race = lost_race  # type: ignore[method-assign]
        ActorCore._wait_for_folder = wait_for_folder  # type: ignore[method-assign]
        ActorCore._storage_failed = storage_failed  # type: ignore[method-assign]


def other_process(spec: StoreSpec, **settings: Any) -> Runtime:
    """Another process on the same store (a runtime of its own: its own caches, sender id)."""
    return Runtime(Settings(storage=spec.url, storage_options=spec.options, **settings))


def raw_get(key: str) -> bytes:
    """The object at ``key`` of this process's store, as stored (no check, no decoding)."""
    return _sync.sync(vc.get_runtime().store.get(key)).data


def raw_put(key: str, data: bytes) -> None:
    """Write ``data`` at ``key`` of this process's store, behind the library's back."""
    _sync.sync(vc.get_runtime().store.put(key, data))

"""Exceptions a method may raise are stored pickled in outcomes, by the name of their class's
module: each public one is pickled under the module its documentation names, which stays
importable whichever module defines it (another version of the library reads the outcome)."""

from __future__ import annotations

import io
import pickle
import pickletools

import pytest

import vactor_cloud
from vactor_cloud import errors, inbox, posting


def _globals_named(data: bytes) -> set[str]:
    """The module names a pickle's global references name (their ``module`` part)."""
    names: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == "STACK_GLOBAL":
            names.add(strings[-2])
        elif op.name == "GLOBAL":
            names.add(str(arg).split(" ")[0])
    return names


def _classes_loaded(data: bytes) -> set[tuple[str, str]]:
    """The (module, name) of every global a pickle loads (memoized references counted once)."""
    found: set[tuple[str, str]] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            found.add((module, name))
            return super().find_class(module, name)

    Recording(io.BytesIO(data)).load()
    return found


def _public_exceptions() -> list[type[BaseException]]:
    found = {
        obj
        for module in (vactor_cloud, errors, inbox)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith("vactor_cloud")
    }
    return sorted(found, key=lambda cls: cls.__qualname__)


def test_the_event_in_doubt_error_is_pickled_under_the_module_its_docs_name() -> None:
    error = inbox.EventInDoubtError("could not tell", "actors/a/events/x", "x")
    data = pickle.dumps(error)
    named = _globals_named(data)  # (tblib, once Dask imported it, adds its own unpickler)
    assert "vactor_cloud.inbox" in named and "vactor_cloud.inbox_events" not in named, named
    again = pickle.loads(data)
    assert type(again) is inbox.EventInDoubtError and again.event_id == "x"


def test_the_post_in_doubt_error_and_its_post_are_pickled_under_vactor_cloud_posting() -> None:
    """The error carries the post it may have written (its calls too): all three pickled by
    the module other modules import them from, whichever module defines the post's classes."""
    call = posting.PostedCall("add", b"args", "c" * 32, for_class="0a1b2c3d")
    post = posting.Post("actors/a/mail/000000001000", "00112233445566ff", 3, 1.0, (call,))
    error = posting.PostInDoubtError("could not tell", post.key, post)
    data = pickle.dumps(error)
    # (the library's classes: where Dask was imported, tblib pickles every exception by a
    # function of its own, around the same references)
    named = {(module, name) for module, name in _classes_loaded(data) if module.startswith("vactor_cloud")}
    assert named == {
        ("vactor_cloud.posting", "Post"),
        ("vactor_cloud.posting", "PostInDoubtError"),
        ("vactor_cloud.posting", "PostedCall"),
    }, named
    again = pickle.loads(data)
    assert type(again) is posting.PostInDoubtError and again.post == post and again.key == post.key


@pytest.mark.parametrize("cls", _public_exceptions(), ids=lambda cls: cls.__qualname__)
def test_each_public_exception_is_pickled_under_a_module_that_exports_it(cls: type[BaseException]) -> None:
    """Whatever module defines it, the module its pickles name holds it by that name."""
    module = __import__(cls.__module__, fromlist=["_"])
    assert getattr(module, cls.__qualname__) is cls
    assert cls.__module__ in {"vactor_cloud", "vactor_cloud.errors", "vactor_cloud.inbox"}, cls.__module__

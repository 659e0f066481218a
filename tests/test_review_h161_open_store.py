"""``open_store``'s URLs and options hold what no test held (review h161).

Part of the h161 sweep (its table: ``test_review_h161_s3_transports``): each test kills a
mutation of ``storage/__init__.py`` the rest of the suite let through; the mutation is named
in its docstring. No server: the URL is read and the options are checked before any request.
"""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from vactor_cloud.storage import (
    MemoryStore,
    check_storage_options,
    local_root,
    open_store,
    refuse_scheme_typo,
    refuse_unusable_url,
)


@pytest.mark.parametrize("url", ["S3:/bucket/p", "s3:/bucket", "Memory:/x", "GS:bucket"])
def test_a_known_scheme_that_lost_a_slash_is_refused_whatever_its_case(url: str) -> None:
    """Mutations: the scheme compared without ``lower()`` (``S3:/bucket`` became a local
    directory ``./S3:/bucket``); ``"://"`` read as ``":/"`` (``s3:/bucket`` likewise);
    ``refuse_scheme_typo`` left out of ``refuse_unusable_url``."""
    with pytest.raises(ValueError, match="missing a slash"):
        refuse_scheme_typo(url)
    with pytest.raises(ValueError, match="missing a slash"):
        refuse_unusable_url(url)
    with pytest.raises(ValueError, match="missing a slash"):
        open_store(url)


def test_a_file_url_that_lost_a_slash_is_told_its_three_slashes() -> None:
    """Mutation: the advice for ``file:/srv/x`` was ``file://srv/x`` (the directory
    ``./srv/x``), not ``file:///srv/x``."""
    with pytest.raises(ValueError, match=r"write file:///srv/x,"):
        refuse_scheme_typo("file:/srv/x")


def test_localhost_is_no_host_whatever_its_case_and_alone_it_is_a_directory() -> None:
    """Mutations: ``localhost`` compared case-sensitively (``file://LOCALHOST/srv`` was
    ``./LOCALHOST/srv``); the host taken without a path after it (``file://localhost``, which
    fsspec reads as the directory ``./localhost``, was refused as an empty URL)."""
    assert local_root("file://LOCALHOST/srv/x") == "/srv/x"
    assert local_root("file://localhost/srv/x") == "/srv/x"
    assert local_root("file://localhost") == "localhost"
    assert local_root("file://data/p") == "data/p"


@pytest.mark.parametrize("url", [" /srv/x", "\t/srv/x", " s3://bucket"])
def test_a_url_with_leading_white_space_is_refused(url: str) -> None:
    """Mutation: only trailing white space refused (a value pasted after a blank named the
    directory ``./ /srv/x``)."""
    with pytest.raises(ValueError, match="white space"):
        refuse_unusable_url(url)


@pytest.mark.parametrize("url", ["file://", "FILE://", ""])
def test_a_url_that_names_no_directory_is_refused(url: str) -> None:
    """Mutation: only ``""`` refused (``file://`` named the working directory)."""
    with pytest.raises(ValueError, match="is empty"):
        refuse_unusable_url(url)


@pytest.mark.parametrize(
    ("url", "store"), [("s3a://b/p", "S3Store"), ("GCS://b/p", "GCSStore"), ("S3://b", "S3Store")]
)
def test_every_scheme_spelling_reaches_its_backend(url: str, store: str) -> None:
    """Mutations: ``s3a://`` or ``gcs://`` dropped, or the scheme not lowered (``S3://b``):
    each was "unsupported storage URL"."""
    pytest.importorskip("botocore")
    pytest.importorskip("gcsfs")
    with pytest.raises(TypeError, match=rf"unknown storage option 'nonsense' for .*\({store}\)"):
        check_storage_options(url, {"nonsense": 1})


def test_a_memory_store_is_named_without_its_slashes() -> None:
    """Mutation: the name kept its slashes (``memory:///shared/`` and ``memory://shared`` were
    two stores: actors written through one were missing through the other)."""

    async def body() -> bytes:
        await open_store("memory:///h161-shared/").put("k", b"v", mode="create")
        return (await open_store("memory://h161-shared").get("k")).data

    try:
        assert asyncio.run(body()) == b"v"
    finally:
        MemoryStore.wipe("h161-shared")


def test_open_store_checks_its_options_first() -> None:
    """Mutation: ``open_store`` without ``check_storage_options`` (a misspelt option reached the
    backend: a bare ``__init__() got an unexpected keyword``, or an s3fs option silently
    ignored)."""
    with pytest.raises(TypeError, match=r"unknown storage option 'endpoint' for .*valid options"):
        open_store("s3://bucket/p", endpoint="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="unknown storage option 'root'"):
        open_store("memory://h161-opts", root="/x")


def test_a_bool_is_no_number_and_none_is_left_to_the_backend() -> None:
    """Mutations: ``True`` accepted where a number is wanted (GCS's ``timeout=True``: one
    second); ``None`` refused as the wrong type (``endpoint_url=None``: the default)."""
    pytest.importorskip("gcsfs")
    with pytest.raises(TypeError, match=r"'timeout' .* must be int or float, got bool"):
        check_storage_options("gs://b/p", {"timeout": True})
    check_storage_options("gs://b/p", {"timeout": 5, "endpoint_url": None})
    check_storage_options("s3://b/p", {"endpoint_url": None, "anon": True})


def test_a_missing_module_that_is_no_extras_own_is_not_blamed_on_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutation: every ``ImportError`` while importing a backend said "pip install
    'vactor_cloud[s3]'" (a module the extra does not install, or a broken one, hid its own
    error behind advice that changes nothing)."""
    import sys

    real_import = builtins.__import__

    def failing(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "vactor_cloud.storage._s3":
            raise ModuleNotFoundError("No module named 'yaml'", name="yaml")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "vactor_cloud.storage._s3", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(ModuleNotFoundError) as raised:
        check_storage_options("s3://bucket/p", {})
    assert "pip install" not in str(raised.value) and raised.value.name == "yaml"

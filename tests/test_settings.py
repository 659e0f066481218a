"""Settings and init's options: defaults, validation that names the field, fsspec's storage_options."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud import runtime
from vactor_cloud.dedup import DEFAULT_WINDOW
from vactor_cloud.settings import DEFAULT_DEDUP_WINDOW, Settings
from vactor_cloud.storage import MemoryStore, check_storage_options, open_store


def test_settings_is_constructible_with_defaults_and_storage_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VACTOR_STORAGE", "memory://from-env")
    settings = Settings(fresh_window=1.0)
    assert settings.storage == "memory://from-env"
    assert settings.fresh_window == 1.0
    assert vc.Settings is Settings is runtime.Settings


def test_settings_has_a_request_timeout_and_an_operation_deadline() -> None:
    settings = Settings(storage="memory://x")
    assert 0 < settings.timeout <= settings.deadline <= 30.0


def test_dedup_default_matches_the_dedup_module() -> None:
    assert DEFAULT_DEDUP_WINDOW == DEFAULT_WINDOW


_NUMERIC = [
    f.name
    for f in fields(Settings)
    if f.type in ("int", "float") or f.name in ("max_commit_attempts", "commit_timeout")
]


@pytest.mark.parametrize("name", _NUMERIC)
@pytest.mark.parametrize("value", [math.nan, math.inf, -1, -math.inf])
def test_every_numeric_setting_refuses_nan_inf_and_negative_naming_the_field(name: str, value: float) -> None:
    # an integer field meeting a float is a TypeError, the rest ValueErrors: each names the field
    with pytest.raises((TypeError, ValueError), match=rf"Settings\.{name} must be"):
        Settings(storage="memory://x", **{name: value})


def test_numeric_settings_refuse_other_types_and_a_bad_dedup_window() -> None:
    with pytest.raises(TypeError, match=r"Settings\.max_batch must be an integer"):
        Settings(storage="memory://x", max_batch=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Settings\.timeout must be a number"):
        Settings(storage="memory://x", timeout="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Settings\.dedup_window\[1\] must be finite"):
        Settings(storage="memory://x", dedup_window=(10, math.nan))
    with pytest.raises(ValueError, match=r"Settings\.timeout must be > 0"):
        Settings(storage="memory://x", timeout=0)


def test_every_numeric_field_is_checked() -> None:
    assert {"timeout", "deadline", "fresh_window", "max_workers", "head_interval"} <= set(_NUMERIC)


def test_init_accepts_fsspec_storage_options(tmp_path: Path) -> None:
    vc.init(str(tmp_path), storage_options={})
    try:
        assert vc.get_runtime().settings.storage_options == {}
    finally:
        vc.shutdown()


def test_init_uses_the_storage_signing_and_class_loading_of_the_settings_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``init(settings=Settings(storage=..., signing_key=..., load_classes_from_storage=False))``:
    those fields are used (they were replaced by init's own defaults: the actors went to the
    embedded store, unsigned, with class bodies unpickled)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("VACTOR_STORAGE", raising=False)
    monkeypatch.delenv("VACTOR_SIGNING_KEY", raising=False)
    vc.init(
        settings=Settings(storage="memory://mine", signing_key=b"k" * 32, load_classes_from_storage=False)
    )
    try:
        settings = vc.get_runtime().settings
        assert settings.storage == "memory://mine"
        assert settings.signing_key == b"k" * 32
        assert settings.load_classes_from_storage is False
    finally:
        vc.shutdown()
    # init's own arguments win where the settings leave the field at its default
    vc.init("memory://arg", settings=Settings(storage="", fresh_window=1.0))
    try:
        assert vc.get_runtime().settings.storage == "memory://arg"
        assert vc.get_runtime().settings.fresh_window == 1.0
    finally:
        vc.shutdown()


def test_init_refuses_a_storage_or_key_given_both_as_argument_and_in_settings_when_they_differ() -> None:
    with pytest.raises(TypeError, match=r"storage.*both"):
        vc.init("memory://a", settings=Settings(storage="memory://b"))
    with pytest.raises(TypeError, match=r"signing_key.*both"):
        vc.init("memory://a", signing_key="one", settings=Settings(storage="", signing_key=b"two"))
    vc.init("memory://a", signing_key="same", settings=Settings(storage="memory://a", signing_key=b"same"))
    vc.shutdown()


def test_init_refuses_a_misspelt_storage_option_naming_it_and_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"'endpoint'.*valid options: .*endpoint_url"):
        vc.init("s3://bucket/prefix", storage_options={"endpoint": "http://127.0.0.1:1"})
    with pytest.raises(TypeError, match=r"'endpoint'.*valid options: .*endpoint_url"):
        vc.init("s3://bucket/prefix", endpoint="http://127.0.0.1:1")
    with pytest.raises(TypeError, match=r"'projekt'.*valid options: .*project"):
        vc.init("gs://bucket", storage_options={"projekt": "p"})


def test_a_storage_option_of_the_wrong_type_is_refused_at_init_naming_it_not_its_value() -> None:
    # It failed at the first request instead, deep in the client: "'int' object is not
    # iterable" for endpoint_url=123, "'int' object is not a mapping" for config_kwargs=5.
    with pytest.raises(
        TypeError, match=r"'endpoint_url' for s3://bucket/prefix \(S3Store\) must be str, got int"
    ):
        vc.init("s3://bucket/prefix", endpoint_url=123)
    with pytest.raises(TypeError, match=r"'config_kwargs' .* must be a mapping, got int"):
        vc.init("s3://bucket/prefix", storage_options={"config_kwargs": 5})
    with pytest.raises(TypeError, match=r"'use_ssl' .* must be bool, got str"):
        vc.init("s3://bucket/prefix", use_ssl="no")  # "no" is truthy: SSL would stay on
    with pytest.raises(TypeError, match=r"'secret' .* must be str, got int") as refused:
        open_store("s3://bucket/prefix", secret=987654321)
    assert "987654321" not in str(refused.value)  # a secret is not echoed
    with pytest.raises(TypeError, match=r"'session_kwargs' .* must be a mapping, got list"):
        open_store("gs://bucket", session_kwargs=[1])
    # None is "not given"; right types pass
    check_storage_options("s3://bucket/p", {"endpoint_url": None, "use_ssl": False, "client_kwargs": {}})


def test_init_refuses_a_setting_passed_as_a_storage_option_naming_the_settings() -> None:
    with pytest.raises(TypeError, match=r"'fresh_window' is a setting.*settings=vactor_cloud\.Settings"):
        vc.init("memory://x", fresh_window=1)
    with pytest.raises(TypeError, match=r"'fresh_window' is a setting"):
        vc.init("memory://x", storage_options={"fresh_window": 1})


def test_memory_and_local_stores_take_no_options(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="valid options: none"):
        open_store("memory://x", key="k")
    with pytest.raises(TypeError, match="valid options: none"):
        check_storage_options(str(tmp_path), {"auto_mkdir": True})
    assert isinstance(open_store("memory://x"), MemoryStore)


def test_declared_s3_and_gcs_options_are_ones_the_fsspec_filesystems_take() -> None:
    import inspect

    pytest.importorskip("s3fs")
    pytest.importorskip("gcsfs")
    import s3fs
    from gcsfs.core import GCSFileSystem

    from vactor_cloud.storage._gcs import GCSStore
    from vactor_cloud.storage._s3 import S3Store

    s3 = set(inspect.signature(s3fs.S3FileSystem.__init__).parameters) | {"profile"}
    assert S3Store.accepted_options - {"transport"} <= s3  # transport: the store's own
    assert GCSStore.accepted_options <= set(inspect.signature(GCSFileSystem.__init__).parameters)


@pytest.mark.parametrize(
    ("url", "module", "extra", "options"),
    [
        ("s3://b/p", "botocore", "s3", {}),
        ("s3://b/p", "aiohttp", "s3", {"transport": "s3fs"}),
        ("gs://b", "gcsfs", "gcs", {}),
    ],
)
def test_a_missing_extra_says_which_to_install(
    url: str, module: str, extra: str, options: dict[str, str]
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{module!r}] = None  # as if it were not installed
        import vactor_cloud as vc
        try:
            vc.init({url!r}, **{options!r})
        except ModuleNotFoundError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert f"pip install 'vactor_cloud[{extra}]'" in out.stdout, out.stdout + out.stderr

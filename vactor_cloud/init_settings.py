"""The :class:`Settings` that ``init()``'s arguments and ``$VACTOR_SIGNING_KEY`` describe,
checked before anything is opened."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from vactor_cloud.settings import Settings, check_storage, default_storage
from vactor_cloud.storage import ObjectStore, check_storage_options


def settings_for_init(
    storage: str | os.PathLike[str] | ObjectStore | None,
    *,
    storage_options: Mapping[str, Any] | None,
    extra_options: dict[str, Any],
    signing_key: str | bytes | None,
    load_classes_from_storage: bool,
    subtask_executor: Any,
    timeout: float | None = None,
) -> Settings:
    """The :class:`Settings` that ``init()``'s arguments describe, checked before anything is opened.

    ``storage_options`` (the fsspec / pandas / Dask spelling) and loose keyword
    arguments are merged; a key given both ways is refused. ``settings=`` among
    the keywords supplies the tuning knobs. Every option is checked against
    what the chosen backend accepts; a :class:`Settings` field passed as a
    storage option is refused with a pointer to ``settings=Settings(...)``.
    """
    check_storage(storage, "init()'s storage")
    options = dict(extra_options)
    override = options.pop("settings", None)
    if override is not None and not isinstance(override, Settings):
        raise TypeError(f"init(settings=...) takes a vactor_cloud.Settings, got {type(override).__name__}")
    if storage_options is not None:
        if not isinstance(storage_options, Mapping):
            raise TypeError(f"storage_options must be a mapping, got {type(storage_options).__name__}")
        both = sorted(set(storage_options) & set(options))
        if both:
            raise TypeError(f"storage option(s) {both} given both in storage_options= and as keywords")
        options = {**storage_options, **options}
    if override is not None:
        # The settings' storage, options, key and class loading count like init's own
        # arguments (a field left at its default gives way to them; two values, refused).
        storage, options = _storage_of(storage, options, override)
        signing_key = _key_of(signing_key, override)
        default_timeout = next(f.default for f in fields(Settings) if f.name == "timeout")
        if timeout is not None and override.timeout not in (default_timeout, timeout):
            raise TypeError(
                f"the timeout is given both to init() ({timeout}) and in its settings "
                f"({override.timeout}), and they differ: give it once"
            )
        if not isinstance(load_classes_from_storage, bool):  # `"False" and True` is True
            raise TypeError(
                f"Settings.load_classes_from_storage must be True or False, got {load_classes_from_storage!r}"
            )
        load_classes_from_storage = load_classes_from_storage and override.load_classes_from_storage
    setting_names = sorted(f.name for f in fields(Settings))
    misplaced = sorted(set(options) & set(setting_names))
    if misplaced:
        raise TypeError(
            f"{misplaced[0]!r} is a setting, not a storage option: pass "
            f"init(..., settings=vactor_cloud.Settings({misplaced[0]}=...)); settings are {setting_names}"
        )
    if isinstance(storage, ObjectStore):
        if options:
            raise TypeError(f"an ObjectStore instance takes no storage options, got {sorted(options)}")
        resolved: str | ObjectStore = storage
    else:
        resolved = os.fspath(storage) if storage is not None else default_storage()
        check_storage_options(resolved, options)
    if signing_key is not None and len(signing_key) == 0:
        # A secret that came through empty must not mean "unsigned" silently (as for the variable).
        raise ValueError(
            "init(signing_key=...) is empty: pass the signing key, or signing_key=None to run without signing"
        )
    key = signing_key if signing_key is not None else env_signing_key()
    given: dict[str, Any] = {
        "storage": resolved,
        "storage_options": options,
        "signing_key": key.encode("utf-8") if isinstance(key, str) else key,
        "load_classes_from_storage": load_classes_from_storage,
    }
    if timeout is not None:
        given["timeout"] = timeout
    if override is None:
        return Settings(**given, subtask_executor=subtask_executor)
    executor = subtask_executor if subtask_executor is not None else override.subtask_executor
    return replace(override, **given, subtask_executor=executor)


def _storage_of(
    storage: str | os.PathLike[str] | ObjectStore | None, options: dict[str, Any], settings: Settings
) -> tuple[str | os.PathLike[str] | ObjectStore | None, dict[str, Any]]:
    """init's storage and options, or those of ``settings`` (``""``, or the default: not given)."""
    chosen = settings.storage
    if chosen != "" and not (isinstance(chosen, str) and chosen == default_storage()):
        if storage is None:
            storage = chosen
        elif (os.fspath(storage) if not isinstance(storage, ObjectStore) else storage) != chosen:
            raise TypeError(
                f"the storage is given both to init() ({storage!r}) and in its settings "
                f"({chosen!r}): give it once"
            )
    elif storage is None and chosen != "":
        storage = chosen
    if settings.storage_options:
        if options and options != settings.storage_options:
            raise TypeError(
                f"storage options are given both to init() ({sorted(options)}) and in its settings "
                f"({sorted(settings.storage_options)}): give them once"
            )
        options = dict(settings.storage_options)
    return storage, options


def _key_of(signing_key: str | bytes | None, settings: Settings) -> str | bytes | None:
    """init's signing key, or that of ``settings``; both given and different: refused."""
    if settings.signing_key is None:
        return signing_key
    given = signing_key.encode("utf-8") if isinstance(signing_key, str) else signing_key
    if given is not None and given != settings.signing_key:
        raise TypeError(
            "the signing_key is given both to init() and in its settings, and they differ: give it once"
        )
    return settings.signing_key


def env_signing_key() -> bytes | None:
    """The signing key ``$VACTOR_SIGNING_KEY`` names (UTF-8 bytes), None when it is unset;
    ``ValueError`` when it is set but empty."""
    key = os.environ.get("VACTOR_SIGNING_KEY")
    if key == "":  # a secret that came through empty must not mean "unsigned" silently
        raise ValueError(
            "$VACTOR_SIGNING_KEY is set but empty: set it to the signing key, or unset it to run "
            "without signing"
        )
    return key.encode("utf-8") if key is not None else None

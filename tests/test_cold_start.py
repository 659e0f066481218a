"""Cold start: ``import vactor_cloud`` loads nothing a first call may not need (serverless pays it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import vactor_cloud as vc

#: modules that cost a serverless cold start tens of milliseconds; none is needed to import the package
_HEAVY = (
    "asyncio",
    "multiprocessing",
    "cloudpickle",
    "datetime",
    "concurrent.futures",
    "s3fs",
    "aiobotocore",
)


def _modules_after(code: str) -> list[str]:
    script = textwrap.dedent(
        f"""
        import json, sys
        before = set(sys.modules)
        {code}
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_importing_the_package_loads_no_heavy_module() -> None:
    loaded = _modules_after("import vactor_cloud")
    assert [m for m in _HEAVY if m in loaded] == []


def test_settings_and_errors_are_cheap_too() -> None:
    loaded = _modules_after("import vactor_cloud as vc; vc.Settings(storage='memory://x'); vc.VactorError")
    assert [m for m in _HEAVY if m in loaded] == []


def test_lazy_public_names_resolve_and_are_listed() -> None:
    assert set(vc.__all__) <= set(dir(vc))
    for name in vc.__all__:
        assert getattr(vc, name) is not None


def test_the_subtask_function_survives_importing_its_module() -> None:
    import importlib
    import types

    importlib.import_module("vactor_cloud.subtask")  # binds the submodule on the package as a side effect
    assert not isinstance(vc.subtask, types.ModuleType)
    from vactor_cloud.subtask import subtask

    assert vc.subtask is subtask


def test_the_package_pickles_by_reference_as_a_module_does() -> None:
    import pickle

    import cloudpickle

    def uses_the_package() -> type:
        return vc.Settings

    assert pickle.loads(pickle.dumps(vc)) is vc
    assert cloudpickle.loads(cloudpickle.dumps(uses_the_package))() is vc.Settings

"""Users' type checkers see an actor's method signatures through its handle.

``tests/typing/positive_*.py`` must check cleanly and ``negative_*.py`` must
produce exactly the errors marked on their lines (``# E:`` and a text for mypy
with ``vactor_cloud.mypy_plugin``, ``# PE:`` and a text for pyright; the text is
a substring of the message). Files named ``*_plugin_*`` or ``positive_handles``
rely on the mypy plugin and are not given to pyright. The examples must
check too, under mypy --strict with the plugin and pyright's standard mode.

pyright is found as ``$VACTOR_PYRIGHT`` or ``pyright`` next to this Python
or on ``PATH`` (``pip install pyright``, in the dev extras); without it the
pyright tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "typing"
EXAMPLES = ROOT / "examples"
SEED_EXAMPLE = EXAMPLES / "quickstart.py"  # the seed verbatim: unannotated, so not --strict
PLUGIN_ONLY = {"positive_handles.py", "positive_plugin_overloads.py"}

Errors = dict[tuple[str, int], list[str]]

MYPY_CONFIG = """\
[mypy]
strict = True
plugins = vactor_cloud.mypy_plugin
mypy_path = {root}
# dask and distributed ship partial types; their untyped functions are not our examples' fault.
untyped_calls_exclude = dask,distributed

# The seed example, checked in the same run as the strict files (the standard library and the
# package analysed once, not twice): not --strict, with check_untyped_defs.
[mypy-quickstart]
disallow_untyped_defs = False
disallow_incomplete_defs = False
disallow_untyped_calls = False
disallow_untyped_decorators = False
disallow_any_generics = False
disallow_subclassing_any = False
warn_return_any = False
implicit_reexport = True
strict_equality = False
extra_checks = False
warn_unused_ignores = False
check_untyped_defs = True
"""


def _marked(path: Path, marker: str) -> Errors:
    expected: Errors = defaultdict(list)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for text in re.findall(rf"# {marker}: (.*?)(?=\s+# \w+: |$)", line):
            expected[str(path), number].append(text.strip())
    return dict(expected)


def _compare(actual: Errors, expected: Errors) -> list[str]:
    problems = []
    for (file, line), texts in sorted(expected.items()):
        messages = actual.get((file, line), [])
        for text in texts:
            if not any(text in message for message in messages):
                problems.append(f"{file}:{line}: expected {text!r}, got {messages}")
    for (file, line), messages in sorted(actual.items()):
        if (file, line) not in expected:
            problems.append(f"{file}:{line}: unexpected {messages}")
    return problems


def _unmet(errors: Errors, case: Path, marker: str) -> list[str]:
    """What ``errors`` (of a run over several files) say of ``case`` against its ``marker`` lines."""
    return _compare(
        {key: messages for key, messages in errors.items() if key[0] == str(case)}, _marked(case, marker)
    )


def _negatives(marker: str) -> list[Path]:
    return [p for p in sorted(CASES.glob("negative_*.py")) if f"# {marker}: " in p.read_text()]


# -- mypy with the plugin -------------------------------------------------------------------------


def _run_mypy(tmp: Path, config: str, files: list[Path], cache: Path | None = None) -> tuple[Errors, str]:
    """mypy with ``config`` (written to ``tmp``) on ``files``; its cache in ``cache`` (default
    ``tmp/cache``: a run with the same config reuses what an earlier one analysed there)."""
    ini = tmp / "mypy.ini"
    ini.write_text(config.format(root=ROOT))
    cache_dir = cache if cache is not None else tmp / "cache"
    out, err, _status = mypy_api.run(
        ["--config-file", str(ini), "--cache-dir", str(cache_dir), "--no-pretty", *map(str, files)]
    )
    errors: Errors = defaultdict(list)
    for match in re.finditer(r"^(.+?):(\d+): error: (.*)$", out, flags=re.MULTILINE):
        errors[str(Path(match[1]).resolve()), int(match[2])].append(match[3])
    return dict(errors), out + err


@pytest.fixture(scope="module")
def mypy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's runs with ``MYPY_CONFIG`` keep their cache (later runs reuse it)."""
    return tmp_path_factory.mktemp("mypy")


@pytest.fixture(scope="module")
def mypy_errors(mypy_dir: Path) -> tuple[Errors, str]:
    files = [*sorted(CASES.glob("positive_*.py")), *_negatives("E")]
    files += sorted(EXAMPLES.glob("*.py"))  # the seed example under its own section
    return _run_mypy(mypy_dir, MYPY_CONFIG, files)


def test_mypy_sees_method_types_through_handles_and_examples_check(mypy_errors: tuple[Errors, str]) -> None:
    errors, output = mypy_errors
    clean = [*CASES.glob("positive_*.py"), *EXAMPLES.glob("*.py")]
    found = {key: messages for key, messages in errors.items() if Path(key[0]) in clean}
    assert not found, output


@pytest.mark.parametrize("case", _negatives("E"), ids=lambda p: p.name)
def test_mypy_reports_wrong_arguments_and_misspelt_methods(
    case: Path, mypy_errors: tuple[Errors, str]
) -> None:
    errors, output = mypy_errors
    assert not _unmet(errors, case, "E"), output


def test_mypy_checks_the_unannotated_seed_example(mypy_errors: tuple[Errors, str]) -> None:
    errors, output = mypy_errors
    assert not {key: messages for key, messages in errors.items() if key[0] == str(SEED_EXAMPLE)}, output


CACHED_ACTORS = """\
import vactor_cloud as vc

@vc.virtual_actor
class Base:
    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return 1

    @vc.virtual_actor.readonly
    def over(self) -> int:
        return 1
"""

CACHED_SUB = """\
import vactor_cloud as vc
from cached_actors import Base

@vc.virtual_actor
class Sub(Base):
    def over(self) -> int:  # overridden without the mark: a writer
        return 2
"""

CACHED_USER = """\
from cached_actors import Base
from cached_sub import Sub

Base.get_or_create("b").peek.run(at_step=1)
Sub.get_or_create("s").peek.run(at_step=1)
Sub.get_or_create("s").over.run(at_step=1)  # line 6
"""


def test_mypy_knows_read_only_methods_of_classes_from_its_cache(tmp_path: Path, mypy_dir: Path) -> None:
    """``run(at_step=N)`` is typed for read-only methods however their class was analysed: in
    this run (its decorators are read), or loaded from mypy's cache (they are not kept there:
    the plugin's metadata of the class is), also as the base of a class analysed in this run."""
    for name, text in [("cached_actors", CACHED_ACTORS), ("cached_sub", CACHED_SUB), ("user", CACHED_USER)]:
        (tmp_path / f"{name}.py").write_text(text)
    files = [tmp_path / "user.py", tmp_path / "cached_actors.py", tmp_path / "cached_sub.py"]
    wrong = {(str(tmp_path / "user.py"), 6): ['Unexpected keyword argument "at_step" for "run"']}
    for edit in ["", "cached_sub"]:  # fresh; then cached_sub analysed again on the cached Base
        if edit:
            (tmp_path / f"{edit}.py").write_text(CACHED_SUB + "# edited\n")
        errors, output = _run_mypy(mypy_dir, MYPY_CONFIG, files)
        assert not _compare(errors, wrong), output


OVERLOADS_REVEALED = """\
from typing import overload
import vactor_cloud as vc

@vc.virtual_actor
class Echo:
    @overload
    def echo(self, x: int) -> int: ...
    @overload
    def echo(self, x: str, *, loud: bool = False) -> list[str]: ...
    def echo(self, x: int | str, *, loud: bool = False) -> int | list[str]:
        return x if isinstance(x, int) else [x]

    @overload
    async def fetch(self, key: int) -> bytes: ...
    @overload
    async def fetch(self, key: str) -> str: ...
    async def fetch(self, key: int | str) -> bytes | str:
        return key if isinstance(key, str) else b""

h = Echo.get_or_create("e")
reveal_type(h.echo.run)
reveal_type(h.echo.run_async)
reveal_type(h.echo.options(max_retries=2))
reveal_type(h.fetch.run)
"""


def test_mypy_types_overloaded_methods(tmp_path: Path, mypy_dir: Path) -> None:
    """An overloaded method's ``run``/``run_async`` are overloaded like it: per item, its
    parameters without self and its return type (awaited for an ``async def`` item)."""
    cache = mypy_dir / "cache"  # (the module's other runs with MYPY_CONFIG analysed the rest)
    errors, output = _run_mypy(tmp_path, MYPY_CONFIG, [CASES / "positive_plugin_overloads.py"], cache)
    assert not errors, output
    snippet = tmp_path / "overloads_revealed.py"
    snippet.write_text(OVERLOADS_REVEALED)
    errors, output = _run_mypy(tmp_path, MYPY_CONFIG, [snippet], cache)
    assert not errors, output
    run = "Overload(def (x: int) -> int, def (x: str, *, loud: bool =) -> list[str])"
    future = "vactor_cloud.future.ActorFuture"
    run_async = (
        f"Overload(def (x: int) -> {future}[int], def (x: str, *, loud: bool =) -> {future}[list[str]])"
    )
    fetch = "Overload(def (key: int) -> bytes, def (key: str) -> str)"
    # Older mypy spells builtins' types in full (builtins.int).
    revealed = re.findall(
        r'^.*?:(\d+): note: Revealed type is "(.*)"$', output.replace("builtins.", ""), re.M
    )
    assert revealed == [
        ("21", run),
        ("22", run_async),
        ("23", f"vactor_cloud.handle._OverloadedActorMethod[{run}, {run_async}]"),
        ("24", fetch),
    ], output


# -- pyright (no plugins) ---------------------------------------------------------------------------


def _pyright() -> str:
    found = os.environ.get("VACTOR_PYRIGHT") or shutil.which(
        "pyright", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if found:
        return found
    message = "pyright is not installed (pip install pyright; it needs node or downloads it)"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run_pyright(tmp: Path, mode: str, files: list[Path]) -> tuple[Errors, str]:
    config = {
        "typeCheckingMode": mode,
        "pythonVersion": "3.11",
        "extraPaths": [str(ROOT)],
        "reportUnusedVariable": False,  # negative cases assign to show a type error
    }
    (tmp / "pyrightconfig.json").write_text(json.dumps(config))
    done = subprocess.run(
        [_pyright(), "--outputjson", "-p", str(tmp / "pyrightconfig.json"), "--pythonpath", sys.executable]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stdout)
    errors: Errors = defaultdict(list)
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            key = (str(Path(diagnostic["file"]).resolve()), diagnostic["range"]["start"]["line"] + 1)
            errors[key].append(diagnostic["message"])
    return dict(errors), done.stdout[-4000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def pyright_strict(tmp_path_factory: pytest.TempPathFactory) -> tuple[Errors, str]:
    """One strict run over the positive and the negative cases (each file's errors are its own:
    no case imports another)."""
    positives = [p for p in sorted(CASES.glob("positive_*.py")) if p.name not in PLUGIN_ONLY]
    return _run_pyright(tmp_path_factory.mktemp("pyright"), "strict", [*positives, *_negatives("PE")])


def test_pyright_types_constructors_and_selected_methods(pyright_strict: tuple[Errors, str]) -> None:
    errors, output = pyright_strict
    positives = [str(p) for p in CASES.glob("positive_*.py")]
    assert not {key: messages for key, messages in errors.items() if key[0] in positives}, output


@pytest.mark.parametrize("case", _negatives("PE"), ids=lambda p: p.name)
def test_pyright_reports_wrong_arguments_and_misspelt_methods(
    case: Path, pyright_strict: tuple[Errors, str]
) -> None:
    errors, output = pyright_strict
    assert not _unmet(errors, case, "PE"), output


def test_pyright_checks_the_examples(tmp_path: Path) -> None:
    examples = [p for p in sorted(EXAMPLES.glob("*.py")) if p != SEED_EXAMPLE]
    errors, output = _run_pyright(tmp_path, "standard", examples)
    assert not errors, output


# -- vc.method at runtime ---------------------------------------------------------------------------


def test_method_selected_by_lambda_is_the_handles_method(tmp_path: Path) -> None:
    import vactor_cloud as vc

    @vc.virtual_actor
    class Adder:
        def add(self, x: int) -> int:
            return x + 1

    vc.init(str(tmp_path))
    try:
        h = Adder.get_or_create("adder")
        assert vc.method(h, lambda a: a.add).run(1) == 2
        with pytest.raises(AttributeError, match="has no method 'sub'"):
            vc.method(h, lambda a: a.sub)  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match="must name one method"):
            vc.method(h, lambda a: 3)
    finally:
        vc.shutdown()


def test_a_generic_actor_class_is_subscripted_as_its_class(tmp_path: Path) -> None:
    """``Box[int]`` is the decorated class's alias, as type checkers read it: in an annotation
    evaluated at runtime, and as a base (``class IntBox(Box[int])`` subclasses the class)."""
    from typing import Generic, TypeVar, get_args, get_origin

    import vactor_cloud as vc

    T = TypeVar("T")

    @vc.virtual_actor
    class Box(Generic[T]):
        def __init__(self, item: T) -> None:
            self.item = item

        def get(self) -> T:
            return self.item

    alias = Box[int]
    assert get_origin(alias) is Box.cls and get_args(alias) == (int,)

    @vc.virtual_actor
    class IntBox(Box[int]):
        def double(self) -> int:
            return self.item * 2

    assert issubclass(IntBox.cls, Box.cls)
    vc.init(str(tmp_path))
    try:
        assert IntBox.get_or_create("i", 4).double.run() == 8
        assert Box.get_or_create("b", "s").get.run() == "s"
    finally:
        vc.shutdown()

"""pytest plugin: backend lanes and fixtures for testing code that uses vactor_cloud.

Installed with vactor_cloud (entry point ``pytest11`` / ``vactor_cloud``), so
these fixtures are available in every test suite once the package is
installed:

``store_spec``
    A :class:`~vactor_cloud.testing.lanes.StoreSpec` for a fresh, empty store,
    dropped after the test (a runtime still open on it is shut down first,
    whatever order the test's fixtures are torn down in). A test that requests it runs once per lane
    (``test_x[memory]``, ``test_x[local]``, ``test_x[moto]``, ...). Open it
    with ``spec.open()`` inside the event loop that will use the store; child
    processes can be given the spec and open the same store.
``store_lane``
    The started :class:`~vactor_cloud.testing.lanes.Lane` behind
    ``store_spec`` (for example to check ``lane.multiprocess``).
``vactor_lanes``
    The session's :class:`LaneRegistry`; ``vactor_lanes.require("moto")``
    gives one started lane to a test that needs that backend only.
``actor_store``
    ``store_spec`` with ``vactor_cloud.init()`` already called on it (and
    ``vactor_cloud.shutdown()`` after the test): create actors right away.
``process_context``
    A ``multiprocessing`` context whose children are forked from a clean server
    process that imported vactor_cloud and the store libraries once
    (:func:`vactor_cloud.testing.processes.process_context`): as safe as
    ``"spawn"`` with the threads and event loops a test process holds, and a
    child costs about 0.1 s of CPU to start instead of 0.75 s or more.
``spawn_context``
    A ``multiprocessing`` context using ``"spawn"``: what real deployments get
    (each child imports everything itself).

Lanes: ``memory``, ``local``, ``moto`` (moto server), ``localstack`` (attaches
to ``$VACTOR_LOCALSTACK_ENDPOINT``) and ``fakegcs`` (fake-gcs-server). Each
server is started on first use, bound to 127.0.0.1, and stopped at the end of
the session.

By default only ``memory`` and ``local`` run: nothing to install or start.
Server lanes are opted into, first match wins:

* ``pytest --vactor-lanes memory,local,moto`` (``--lanes`` is the same; ``all`` = every lane);
* ``VACTOR_LANES=memory,moto`` in the environment;
* ``vactor_lanes = "memory,local,moto"`` in the project's pytest ini options.

When a lane's server cannot start, its tests are skipped with the reason.
Set the ini option ``vactor_strict_lanes`` to ``"ci"`` to make them fail
instead when ``$CI`` is true (vactor_cloud's own suite does: in its CI a
missing backend is a broken build), or to ``"always"``. The default,
``"never"``, keeps a user's CI green when an optional emulator is missing.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest

from vactor_cloud.testing.lanes import Lane, LaneUnavailable, LocalLane, MemoryLane, StoreSpec

__all__ = [
    "DEFAULT_LANES",
    "LANE_NAMES",
    "LaneRegistry",
    "actor_store",
    "lane_unavailable",
    "selected_lanes",
    "shut_down_runtime_on",
    "spawn_context",
    "store_lane",
    "store_spec",
    "strict_lanes",
    "vactor_lanes",
]

#: Every lane the plugin knows, in the order their tests are generated.
LANE_NAMES: tuple[str, ...] = ("memory", "local", "moto", "localstack", "fakegcs")
#: The lanes a project gets unless it opts into more: no server, nothing extra to install.
DEFAULT_LANES: tuple[str, ...] = ("memory", "local")
#: values of the ``vactor_strict_lanes`` ini option
_STRICT_CHOICES = ("never", "ci", "always")
#: Whether an unavailable lane fails its tests; set from the ini option when the session is configured.
_strict = "never"


def _memory() -> Lane:
    return MemoryLane()


def _local() -> Lane:
    return LocalLane()


# The emulator lanes are imported only when first used: their modules need
# the optional s3 / gcs extras, and a suite run with --lanes memory,local
# must not need them.
def _moto() -> Lane:
    from vactor_cloud.testing._moto import MotoLane

    return MotoLane()


def _localstack() -> Lane:
    from vactor_cloud.testing._localstack import LocalStackLane

    return LocalStackLane()


def _fakegcs() -> Lane:
    from vactor_cloud.testing._fakegcs import FakeGCSLane

    return FakeGCSLane()


_FACTORIES: dict[str, Callable[[], Lane]] = {
    "memory": _memory,
    "local": _local,
    "moto": _moto,
    "localstack": _localstack,
    "fakegcs": _fakegcs,
}


def in_ci() -> bool:
    """True when ``$CI`` says this is a CI run (``true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def strict_lanes() -> bool:
    """Whether an unavailable lane fails its tests (``vactor_strict_lanes``: always, or ci under ``$CI``)."""
    return _strict == "always" or (_strict == "ci" and in_ci())


def lane_unavailable(name: str, reason: str) -> NoReturn:
    """End the current test because lane ``name`` is unavailable: skip, or fail under strict lanes."""
    message = f"lane {name!r} unavailable: {reason}"
    if strict_lanes():
        pytest.fail(f"{message} (vactor_strict_lanes={_strict}: unavailable lanes fail)", pytrace=False)
    pytest.skip(message)


class LaneRegistry:
    """The session's lanes: each is started on first use, at most once, and stopped by ``close``.

    A lane that failed to start is not retried; every later request gets the
    same reason.
    """

    def __init__(self) -> None:
        self._started: dict[str, Lane] = {}
        self._failed: dict[str, str] = {}

    def get(self, name: str) -> Lane:
        """The started lane ``name``; :class:`LaneUnavailable` with the reason if it cannot start."""
        if name in self._started:
            return self._started[name]
        if name in self._failed:
            raise LaneUnavailable(self._failed[name])
        factory = _FACTORIES.get(name)
        if factory is None:
            raise ValueError(f"unknown lane {name!r}; known lanes: {', '.join(LANE_NAMES)}")
        try:
            lane = factory()
        except ImportError as exc:
            self._failed[name] = f"cannot import the {name} lane: {exc}"
            raise LaneUnavailable(self._failed[name]) from exc
        try:
            lane.start()
        except LaneUnavailable as exc:
            self._failed[name] = str(exc) or type(exc).__name__
            raise
        except Exception:
            # A half-started server must not outlive the session.
            lane.stop()
            raise
        self._started[name] = lane
        return lane

    def require(self, name: str) -> Lane:
        """Like :meth:`get`, but skips the test (fails it under strict lanes) if the lane is unavailable."""
        try:
            return self.get(name)
        except LaneUnavailable as exc:
            lane_unavailable(name, str(exc))

    def close(self) -> None:
        """Stop every started lane, newest first; raise the first error after trying them all."""
        errors: list[BaseException] = []
        while self._started:
            _, lane = self._started.popitem()
            try:
                lane.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def selected_lanes(config: pytest.Config) -> list[str]:
    """The lanes chosen with ``--vactor-lanes``, ``$VACTOR_LANES`` or the ``vactor_lanes`` ini option.

    Comma-separated names, or ``all``; the first of the three that is set wins,
    and with none set only :data:`DEFAULT_LANES` run.
    """
    raw = (
        config.getoption("vactor_lanes")
        or os.environ.get("VACTOR_LANES", "").strip()
        or str(config.getini("vactor_lanes") or "").strip()
    )
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    if not names:
        return list(DEFAULT_LANES)
    if names == ["all"]:
        return list(LANE_NAMES)
    unknown = [n for n in names if n not in _FACTORIES]
    if unknown:
        raise pytest.UsageError(
            f"--vactor-lanes / VACTOR_LANES / vactor_lanes: unknown lane(s) {', '.join(unknown)}; "
            f"known lanes: {', '.join(LANE_NAMES)}, or all"
        )
    return list(dict.fromkeys(names))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vactor_cloud")
    group.addoption(
        "--vactor-lanes",
        "--lanes",
        dest="vactor_lanes",
        default=None,
        metavar="NAMES",
        help=(
            "comma-separated storage lanes that store_spec tests run on "
            f"({', '.join(LANE_NAMES)}, or all; default: $VACTOR_LANES, "
            f"else the vactor_lanes ini option, else {','.join(DEFAULT_LANES)})"
        ),
    )
    parser.addini(
        "vactor_lanes",
        help=f"storage lanes of store_spec tests (default: {','.join(DEFAULT_LANES)})",
        default="",
    )
    parser.addini(
        "vactor_strict_lanes",
        help="when an unavailable lane fails its tests, not skips: never (default), ci (if $CI), always",
        default="never",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _strict
    config.addinivalue_line(
        "markers", "vactor_lanes(*names): run this test on these backend lanes only (of those selected)"
    )
    # Validate the lanes once, up front, so a typo is a usage error and not a silently empty run.
    selected_lanes(config)
    strict = str(config.getini("vactor_strict_lanes") or "never").strip().lower()
    if strict not in _STRICT_CHOICES:
        raise pytest.UsageError(f"vactor_strict_lanes = {strict!r}: use one of {', '.join(_STRICT_CHOICES)}")
    _strict = strict


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that (directly or through fixtures) requests ``store_lane`` once per lane."""
    if "store_lane" not in metafunc.fixturenames:
        return
    # A test may pin its lanes itself with @pytest.mark.parametrize("store_lane", [...], indirect=True).
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",")]
        if "store_lane" in argnames:
            return
    names = selected_lanes(metafunc.config)
    # @pytest.mark.vactor_lanes("memory", "local", ...): a test that needs only some backends.
    only = metafunc.definition.get_closest_marker("vactor_lanes")
    if only is not None:
        names = [n for n in names if n in only.args]
    metafunc.parametrize("store_lane", names, indirect=True, ids=names)


@pytest.fixture(scope="session")
def vactor_lanes() -> Iterator[LaneRegistry]:
    """The session's lane registry; lanes are stopped when the session ends."""
    registry = LaneRegistry()
    try:
        yield registry
    finally:
        # A test that called ``init()`` and left the runtime running (the next ``init()`` replaces
        # it) leaves background writes in flight (HEAD moves, a class body's check): shut it down
        # before the lanes go, or they race the local lane's directory removal ("Directory not
        # empty") or a stopped server.
        import vactor_cloud

        try:
            vactor_cloud.shutdown()
        finally:
            registry.close()


@pytest.fixture
def store_lane(request: pytest.FixtureRequest, vactor_lanes: LaneRegistry) -> Lane:
    """The started lane this test instance runs on (parametrized by the plugin)."""
    name = getattr(request, "param", None)
    if not isinstance(name, str):
        raise pytest.UsageError(
            "store_lane is parametrized by the vactor_cloud plugin; "
            "to pin lanes use @pytest.mark.parametrize('store_lane', ['local'], indirect=True)"
        )
    return vactor_lanes.require(name)


@pytest.fixture
def store_spec(store_lane: Lane) -> Iterator[StoreSpec]:
    """A fresh, empty store on the current lane, dropped after the test."""
    spec = store_lane.new_store()
    try:
        yield spec
    finally:
        try:
            shut_down_runtime_on(spec)
        finally:
            store_lane.drop_store(spec)


def shut_down_runtime_on(spec: StoreSpec) -> None:
    """``vactor_cloud.shutdown()`` if this process's runtime is open on ``spec``'s store.

    Before its store is dropped: a fixture that shuts the runtime down itself may be torn down
    after ``store_spec`` (one set up first, by ``@pytest.mark.usefixtures``), and that runtime's
    last HEAD moves then went to a removed directory or bucket ("could not move HEAD")."""
    from vactor_cloud.runtime import current_runtime, shutdown

    runtime = current_runtime()
    if runtime is not None and runtime.store.url == spec.url:
        shutdown()


@pytest.fixture
def actor_store(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """vactor_cloud initialised on a fresh store of the current lane; shut down after the test."""
    import vactor_cloud

    store_spec.init()
    try:
        yield store_spec
    finally:
        vactor_cloud.shutdown()


@pytest.fixture(scope="session")
def process_context() -> multiprocessing.context.ForkServerContext:
    """Children forked from a clean server process with vactor_cloud and the store libraries
    imported: started at a small part of a spawned child's CPU (see
    :mod:`vactor_cloud.testing.processes`)."""
    from vactor_cloud.testing.processes import process_context

    return process_context()


@pytest.fixture(scope="session")
def spawn_context() -> multiprocessing.context.SpawnContext:
    """``multiprocessing.get_context("spawn")``: children start clean, without this process's threads."""
    return multiprocessing.get_context("spawn")

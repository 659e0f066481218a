"""What ``vactor bench`` measures and reports, as data: the profiles (how much work each row
does), the store a run writes to (:class:`Target`), a row of the result table (:class:`Row`),
and the small pieces a row's figures and verdict are made with (medians, ratios, the figure as
shown).

The lowest of the bench's modules: the harness (:mod:`vactor_cloud.cli.bench_harness`), its
baselines (``bench_baselines``) and its process plumbing (``bench_processes``) build on it.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

import vactor_cloud as vc
from vactor_cloud.runtime import Settings
from vactor_cloud.testing.latency import Latency, install

__all__ = ["PROFILES", "Profile", "Row", "Target"]


@dataclass(frozen=True)
class Profile:
    """How much work each row does. ``quick`` keeps a run to a few minutes per store."""

    name: str
    repeats: int
    #: sequential calls per latency/CPU sample
    samples: int
    #: seconds per throughput sample
    duration: float
    #: steps of the long actor in the "100,000 steps" row
    long_steps: int
    #: actors touched in the RSS row
    rss_actors: int
    #: processes in the multi-process row
    processes: int


PROFILES: dict[str, Profile] = {
    "full": Profile(
        "full", repeats=5, samples=200, duration=5.0, long_steps=100_000, rss_actors=10_000, processes=8
    ),
    "quick": Profile(
        "quick", repeats=3, samples=50, duration=2.0, long_steps=2_000, rss_actors=1_000, processes=8
    ),
    # for the smoke test: every row runs, nothing is meaningful
    "tiny": Profile("tiny", repeats=1, samples=3, duration=0.2, long_steps=12, rss_actors=10, processes=2),
}


@dataclass
class Row:
    """One line of the result table."""

    name: str
    target: str
    value: str
    ok: bool | None
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Where the benchmark writes: a URL, fsspec options and the environment child processes need."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: added to every request of every process the benchmark runs
    latency: Latency | None = None

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower() if "://" in self.url else "file"

    @property
    def multiprocess(self) -> bool:
        return self.scheme != "memory"

    def sub(self, name: str) -> Target:
        if self.scheme == "memory":  # memory://NAME-name (a memory store's name has no folders)
            scheme, _, store_name = self.url.partition("://")
            stem = store_name.rstrip("/")
            return replace(self, url=f"{scheme}://{stem}-{name}" if stem else f"{scheme}://{name}")
        return replace(self, url=f"{self.url.rstrip('/')}/{name}")

    def init(self, settings: Settings | None = None) -> None:
        os.environ.update(self.env)
        if settings is None:
            vc.init(self.url, **self.options)
        else:
            vc.init(self.url, settings=settings, **self.options)
        if self.latency is not None:
            install(self.latency)


def _shown(value: float, digits: int = 0) -> float:
    """``value`` as a row shows it (``:.{digits}f``): a row is judged on the figure it prints,
    never "<= 100 us | 100 us | MISS" for a measured 100.4."""
    return float(f"{value:.{digits}f}")


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _p50(samples: list[float]) -> float:
    return _median(samples)


def _ratio(measured: float, baseline: float) -> float | None:
    """``measured / baseline``; None for a baseline of no calls (no ratio: it was ``inf``,
    judged "ok" against a lower bound, or ``nan``, which a median sorted anywhere)."""
    return measured / baseline if baseline > 0 else None


def _known(ratios: list[float | None]) -> list[float]:
    return [ratio for ratio in ratios if ratio is not None]


def _no_baseline_row(name: str, goal: str, baseline: str, ratios: list[float | None]) -> Row:
    """The row of a ratio whose baseline made no call in some repeat: a MISS that says so."""
    zero = ratios.count(None)
    return Row(
        name,
        goal,
        "no baseline",
        False,
        f"{baseline} made 0 calls in {zero} of {len(ratios)} repeats: no ratio to judge; see "
        "whether the store answers (vactor doctor) and run the row again",
    )

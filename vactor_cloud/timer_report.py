"""What a pass of timer firing did: :class:`TickReport`, and the :class:`TickError` of its errors.

One report is made per actor fired (:mod:`vactor_cloud.timer_firing`); a tick of
:class:`~vactor_cloud.timer_runner.TimerRunner` merges them into the pass's report, and a
long-running runner into its totals; both keep only the newest lateness figures and errors
(``_TOTAL_LATENESS``, ``_TOTAL_ERRORS``), while their counts stay whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TickError", "TickReport"]


#: a long-running runner's totals keep the newest this many lateness figures and errors (the
#: counts stay whole): one per timer fired, for the runner's life, is no bound
_TOTAL_LATENESS = 100_000
_TOTAL_ERRORS = 1_000


class TickError(str):
    """One error of a :class:`TickReport`: its text, and the exception it tells of (``cause``;
    ``None`` where there is none), by which the ``vactor`` command adds what to do about it, as
    for the same error met elsewhere (a damaged object, a class not loadable here)."""

    cause: BaseException | None

    def __new__(cls, text: str, cause: BaseException | None = None) -> TickError:
        error = super().__new__(cls, text)
        error.cause = cause
        return error


@dataclass
class TickReport:
    """What one :func:`fire_due_timers` pass (or a :func:`run_timers` run) did."""

    listed: int = 0
    due: int = 0
    fired: int = 0
    #: entries whose timer was gone (fired by someone else, cancelled, rescheduled): dropped
    stale: int = 0
    #: actors skipped because another runner holds their claim (``split="claims"``)
    claimed_elsewhere: int = 0
    #: actors with due entries left to another live runner (``split="runners"``)
    assigned_elsewhere: int = 0
    #: live runners in this runner's group, itself included, as last seen (``split="runners"``)
    runners: int = 1
    #: one line each, ``ACTOR: ...`` (a :class:`TickError` where an exception tells it); in the
    #: totals of :meth:`TimerRunner.run`: the newest ``_TOTAL_ERRORS``
    errors: list[str] = field(default_factory=list)
    #: seconds between each fired timer's due time and its commit (in the totals of
    #: :meth:`TimerRunner.run`: the newest ``_TOTAL_LATENESS``)
    lateness: list[float] = field(default_factory=list)
    #: errors trimmed from ``errors`` (totals only): ``error_count`` stays whole
    errors_dropped: int = 0
    #: the largest lateness trimmed from ``lateness`` (totals only): ``max_lateness`` stays whole
    lateness_dropped_max: float | None = None
    #: due entries a stopped tick (its ``stop`` set) listed and did not fire: they stay due
    left: int = 0

    @property
    def error_count(self) -> int:
        """Every error of the pass (or run), trimmed ones included."""
        return len(self.errors) + self.errors_dropped

    @property
    def max_lateness(self) -> float | None:
        """The largest lateness of every timer fired, trimmed figures included (``None``: none)."""
        figures = list(self.lateness)
        if self.lateness_dropped_max is not None:
            figures.append(self.lateness_dropped_max)
        return max(figures) if figures else None

    def merge(self, other: TickReport) -> None:
        self.fired += other.fired
        self.stale += other.stale
        self.claimed_elsewhere += other.claimed_elsewhere
        self.assigned_elsewhere += other.assigned_elsewhere
        self.errors += other.errors
        self.lateness += other.lateness
        self.errors_dropped += other.errors_dropped
        self.left += other.left
        self._note_dropped(other.lateness_dropped_max)

    def _note_dropped(self, lateness: float | None) -> None:
        if lateness is not None:
            top = self.lateness_dropped_max
            self.lateness_dropped_max = lateness if top is None else max(top, lateness)

    def _trim(self) -> None:
        """Keep the newest ``_TOTAL_LATENESS`` lateness figures and ``_TOTAL_ERRORS`` errors
        (what goes still counts in ``error_count`` and ``max_lateness``)."""
        cut = len(self.lateness) - _TOTAL_LATENESS
        if cut > 0:
            self._note_dropped(max(self.lateness[:cut]))
            del self.lateness[:cut]
        cut = len(self.errors) - _TOTAL_ERRORS
        if cut > 0:
            self.errors_dropped += cut
            del self.errors[:cut]

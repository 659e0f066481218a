"""A tick's heartbeat renewals, timed on the IO loop (:class:`TickRenewals`), and when each renewal is due.

A runner's heartbeat (:class:`~vactor_cloud.timer_membership.Membership`) is renewed
every lease/3: by a thread of its own in a long-running runner
(:meth:`TimerRunner._renew <vactor_cloud.timer_runner.TimerRunner._renew>`), and in a
tick by :class:`TickRenewals`; both time the next one by :func:`next_renewal`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time

from vactor_cloud import _sync
from vactor_cloud.errors import (
    VactorError,
)
from vactor_cloud.runtime import Runtime
from vactor_cloud.timer_membership import Membership

__all__ = ["TickRenewals", "next_renewal", "no_renewals"]

logger = logging.getLogger("vactor_cloud")


def next_renewal(due: float, period: float, now: float) -> float:
    """When the renewal after one due at ``due`` and starting ``now`` is due (monotonic): a
    period after ``due``, or after ``now`` when that is past. A late renewal (its timer or
    thread held up for more than a period: an IO loop blocked) replaces those missed; due
    ``now`` instead, the next followed it at once, one more heartbeat write back to back."""
    following = due + period
    return following if following > now else now + period


def no_renewals(wait: bool) -> None:
    """The stop of renewals never begun."""


class TickRenewals:
    """A tick's heartbeat renewals, as :meth:`TimerRunner._renew` makes them (every lease/3
    from ``joined``, when the first write was sent; each cut off at lease/3), timed by a timer
    of the IO loop from ``begin`` (apart from it, so that the tick holds ``stop`` before any
    timer exists): nothing runs, and no thread exists, until the first renewal is due. Each
    renewal is work of the runtime (:meth:`Runtime.bounded`: refused once it stopped, and
    waited for, then cancelled, by its shutdown), as a ``Runtime.run`` of the thread was."""

    def __init__(self, runtime: Runtime, membership: Membership, runner_id: str, joined: float) -> None:
        self._runtime = runtime
        self._membership = membership
        self._runner_id = runner_id
        self._period = membership.lease / 3
        self._loop = _sync.get_loop()
        self._lock = threading.Lock()
        # (under ``_lock``: the tick's thread stops what the loop's callbacks start)
        self._due = joined + self._period
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        #: settles when the renewal in flight ends (None: none in flight)
        self._flight: concurrent.futures.Future[None] | None = None

    def begin(self) -> None:
        """Time the first renewal (``stop`` before this: none is)."""
        self._loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        """(IO loop) Time the next renewal, unless stopped."""
        with self._lock:
            if not self._stopped:
                self._timer = self._loop.call_later(max(0.0, self._due - time.monotonic()), self._renew)

    def _renew(self) -> None:
        """(IO loop) The renewal's time came: start it, unless stopped meanwhile."""
        flight: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._timer = None
            if self._stopped:
                return
            self._due = next_renewal(self._due, self._period, time.monotonic())
            self._flight = flight
        task = self._loop.create_task(self._beat())
        task.add_done_callback(functools.partial(self._ended, flight))

    async def _beat(self) -> None:
        try:
            await self._runtime.bounded(self._membership.beat(within=self._period))
        except VactorError as exc:  # retried next period; meanwhile others may duplicate our work
            logger.warning("timer runner %s: could not renew its heartbeat: %s", self._runner_id, exc)

    def _ended(self, flight: concurrent.futures.Future[None], task: asyncio.Task[None]) -> None:
        """(IO loop) A renewal ended: time the next one, and tell a stop waiting for it."""
        if not task.cancelled() and task.exception() is not None:  # (not a VactorError: a fault)
            logger.warning(
                "timer runner %s: renewing its heartbeat failed: %r", self._runner_id, task.exception()
            )
        with self._lock:
            self._flight = None
        self._arm()
        flight.set_result(None)

    def stop(self, wait: bool) -> None:
        """No renewal starts from now; ``wait``: the one in flight, if any, ends first (a
        renewal landing after the heartbeat's delete wrote it again)."""
        with self._lock:
            self._stopped = True
            timer, flight = self._timer, self._flight
            self._timer = None
        if timer is not None:
            with contextlib.suppress(RuntimeError):  # (the loop closed: it runs nothing more)
                self._loop.call_soon_threadsafe(timer.cancel)  # (a handle is the loop's to cancel)
        if wait and flight is not None:
            _sync.wait_futures([flight])

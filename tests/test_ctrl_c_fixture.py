"""The suite's ``ctrl_c`` fixture (tests/conftest.py): one ``Interrupted`` per arm, however its
SIGINT is delivered."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest
from interrupts import Interrupted

Arm = Callable[[threading.Event], None]


def _wait_to_be_interrupted() -> None:
    """Sleeps (10 s at most) until the SIGINT handler raises; fails if it never does."""
    for _ in range(200):
        time.sleep(0.05)
    pytest.fail("no Interrupted within 10 s")


def _settle() -> None:
    """Gives a pending signal time to reach its handler (it runs between sleeps)."""
    for _ in range(10):
        time.sleep(0.02)


def test_the_signal_is_sent_again_until_its_handler_ran(ctrl_c: Arm) -> None:
    """A SIGINT that lands just before the main thread enters a blocking wait is handled only
    when that wait returns: here the first delivery is lost on purpose; a resend interrupts."""
    handler = signal.getsignal(signal.SIGINT)
    lost: list[int] = []

    def lose_the_first(signum: int, frame: object) -> None:
        lost.append(signum)
        signal.signal(signal.SIGINT, handler)

    signal.signal(signal.SIGINT, lose_the_first)
    now = threading.Event()
    ctrl_c(now)
    now.set()
    with pytest.raises(Interrupted):
        _wait_to_be_interrupted()
    assert lost == [signal.SIGINT]


def test_a_second_delivery_for_one_arm_raises_nothing(ctrl_c: Arm) -> None:
    """A resend can land after the handler ran but before the sender saw it: it must not raise
    a second ``Interrupted`` somewhere later in the test."""
    now = threading.Event()
    ctrl_c(now)
    now.set()
    with pytest.raises(Interrupted):
        _wait_to_be_interrupted()
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # the late resend
    try:
        _settle()
    except Interrupted:
        pytest.fail("a second delivery for one arm raised Interrupted again")


def test_armed_twice_it_interrupts_twice(ctrl_c: Arm) -> None:
    for _ in range(2):
        now = threading.Event()
        ctrl_c(now)
        now.set()
        with pytest.raises(Interrupted):
            _wait_to_be_interrupted()
    _settle()  # no third


def test_a_sigint_it_did_not_send_still_stops_the_run(ctrl_c: Arm) -> None:
    """Ctrl-C pressed at the terminal while a test using the fixture runs (nothing armed)."""
    with pytest.raises(KeyboardInterrupt):
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        _settle()

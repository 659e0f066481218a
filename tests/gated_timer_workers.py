"""Actors whose timer method (or event handler) blocks while a gate file exists: a fire (or an
event's application) in flight, held open for a test that signals the ``vactor timers run`` (or
``vactor events drain``) process running it (bounded: 120 s at most)."""

from __future__ import annotations

import os
import time

import vactor_cloud as vc

#: the longest a gated fire waits for its gate to go
GATE_LIMIT = 120.0


@vc.virtual_actor
class GatedAlarm:
    """Counts the committed fires of each timer key; ``ring`` holds while ``gate`` exists."""

    def __init__(self) -> None:
        self.fired: dict[str, int] = {}

    def arm(self, key: str, gate: str, started: str) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("ring", after=0, key=key, args=(key, gate, started))

    def ring(self, key: str, gate: str, started: str) -> None:
        _held(gate, started)
        self.fired[key] = self.fired.get(key, 0) + 1

    @vc.virtual_actor.readonly
    def counts(self) -> dict[str, int]:
        return dict(self.fired)


@vc.virtual_actor
class GatedInbox:
    """Counts the applied ``gated`` events; their handler holds while the payload's gate exists."""

    def __init__(self) -> None:
        self.applied = 0

    @vc.virtual_actor.on_event("gated")
    def on_gated(self, payload: dict[str, str]) -> None:
        _held(payload["gate"], payload["started"])
        self.applied += 1

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.applied


def _held(gate: str, started: str) -> None:
    """Note in ``started`` that a body runs (one line per run), then wait while ``gate`` exists."""
    with open(started, "a") as marker:
        marker.write(f"{os.getpid()}\n")
    until = time.monotonic() + GATE_LIMIT
    while os.path.exists(gate) and time.monotonic() < until:
        time.sleep(0.05)

"""Actor and child-process entry point of test_review_combined: features combined, under faults.

Each child drives a seeded random mix of plain calls, idempotent calls (each retried
with its key), events (some sent twice under one id), timers armed by calls (fired by
timer passes of any child), compactions and ``process_events`` on one shared actor. Every
writer appends a token to one list, so the parent can check the final state against a
model: each acknowledged call once, no key or event or timer applied twice, each child's
calls in its order. Each child logs with ``os.write`` on an ``O_APPEND`` descriptor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from typing import Any

from child_processes import get_actor_despite_faults, wait_for_start

import vactor_cloud as vc
from vactor_cloud.errors import VactorError
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec

#: combining on, a lost race posts at once, compaction may run close behind the writers
SETTINGS: dict[str, Any] = {
    "combine_window": 60.0,
    "head_interval": 0.2,
    "combine_after": 1,
    "fresh_window": 0.2,
    "commit_timeout": 5.0,
}


@vc.virtual_actor
class Ledger:
    """Appends one token per writer call, event and timer firing, in commit order."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    def arm(self, token: str) -> int:
        """A call that schedules a timer due at once (it fires ``ring``)."""
        self.tokens.append(token)
        vc.current_call().schedule("ring", after=0, key=token.replace("/", "-"), args=(token,))
        return len(self.tokens)

    def ring(self, token: str) -> None:
        self.tokens.append(f"ring:{token}")

    @vc.virtual_actor.on_event("ev")
    def on_ev(self, token: str) -> int:
        self.tokens.append(f"ev:{token}")
        return len(self.tokens)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


def _log(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


def drive(
    spec: StoreSpec,
    actor_id: str,
    who: str,
    ops: int,
    seed: int,
    out_path: str,
    faults: str | None,
    start: Any,
    ready: Any,
    overrides: dict[str, Any] | None = None,
    kill: str | None = None,
) -> None:
    """Make ``ops`` random operations on ``actor_id``; log ``try``/``ack``/``err`` per call token,
    ``sent`` per event, ``dup`` when a keyed retry got a result other than the first one's."""
    spec.init(settings=vc.Settings(storage="", **{**SETTINGS, **(overrides or {})}))
    rules = FaultConfig.from_json(faults).derive(who) if faults is not None else FaultConfig()
    if kill is not None:
        # SIGKILL this process right after the chosen put was answered (a folder or poster dies)
        killing = FaultRule.from_json(json.loads(kill))
        rules = dataclasses.replace(rules, rules=(killing, *rules.rules))
    if faults is not None or kill is not None:
        install(rules)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rng = random.Random(f"{seed}/{who}")
    handle = get_actor_despite_faults(actor_id, 100)
    ready.put(who)
    wait_for_start(start)
    #: calls whose caller got CallPendingError: token -> call id (asked again at the end)
    pending: dict[str, str] = {}
    for i in range(ops):
        token = f"{who}/{i}"
        kind = rng.choices(
            ["add", "keyed", "arm", "schedule", "event", "compact", "tick", "drain"],
            [6, 4, 2, 2, 2, 1, 1, 1],
        )[0]
        try:
            if kind == "add":
                _log(fd, f"try {token} {kind}")
                handle.add.run(token)
                _log(fd, f"ack {token}")
            elif kind == "arm":
                _log(fd, f"try {token} {kind}")
                handle.arm.run(token)
                _log(fd, f"ack {token}")
            elif kind == "schedule":
                # From outside, keyed, retried with its key: one timer, however often it is sent
                _log(fd, f"try {token} {kind}")
                timer = handle.ring.options(
                    delay=0, timer_key=f"s-{token.replace('/', '-')}", idempotency_key=f"s:{token}"
                )
                for attempt in range(4):
                    try:
                        timer.run(token)
                        break
                    except VactorError as exc:
                        _log(fd, f"retry {token} {type(exc).__name__}")
                        if attempt == 3:
                            raise
                _log(fd, f"ack {token}")
            elif kind == "keyed":
                _log(fd, f"try {token} {kind}")
                keyed = handle.add.options(idempotency_key=f"k:{token}")
                first: Any = None
                for attempt in range(4):  # the caller retries with its key after an unknown outcome
                    try:
                        first = keyed.run(token)
                        break
                    except VactorError as exc:
                        _log(fd, f"retry {token} {type(exc).__name__}")
                        if attempt == 3:
                            raise
                _log(fd, f"ack {token}")
                again = keyed.run(token)  # the same key again: the first outcome, not a second add
                if again != first:
                    _log(fd, f"dup {token} {first} {again}")
            elif kind == "event":
                event_id = f"e-{token.replace('/', '-')}"
                vc.send_event(actor_id, "ev", token, event_id=event_id)
                _log(fd, f"sent {token}")
                if rng.random() < 0.3:
                    vc.send_event(actor_id, "ev", token, event_id=event_id)  # a retried send
            elif kind == "compact":
                handle.compact(rng.choice([1, 2]), min_age=SETTINGS["fresh_window"])
            elif kind == "tick":
                vc.fire_due_timers(split="none")
            else:
                handle.process_events()
        except VactorError as exc:
            if isinstance(exc, vc.CallPendingError) and kind in ("add", "arm"):
                pending[token] = exc.call_ids[0]
            _log(fd, f"err {token} {kind} {type(exc).__name__}: {str(exc)[:200]!r}")
        except Exception as exc:  # untyped: a defect the checks report
            _log(fd, f"untyped {token} {kind} {type(exc).__name__}: {str(exc)[:200]!r}")
    # What call_outcome says of each call given up on: never (LookupError) must mean never.
    deadline = time.monotonic() + 60
    for token, call_id in pending.items():
        while True:
            try:
                handle.call_outcome(call_id)
                _log(fd, f"outcome {token} applied")
            except vc.CallPendingError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                _log(fd, f"outcome {token} pending")
            except LookupError:
                _log(fd, f"outcome {token} never")
            except vc.CommitOutcomeUnknownError:
                _log(fd, f"outcome {token} unknown")
            except VactorError as exc:
                _log(fd, f"outcome {token} error {type(exc).__name__}")
            break
    stats = vc.stats()
    posted = stats.get("posted_calls", 0) if isinstance(stats, dict) else 0
    vc.shutdown()
    _log(fd, f"done posted={posted}")
    os.close(fd)

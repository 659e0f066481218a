"""A session that expires after a period of inactivity, with a durable timer.

Every ``touch`` (re)schedules the timer ``"idle"``: scheduling an existing
key replaces it, so only the last touch counts. The timer is part of the
step that ``touch`` commits: if ``touch`` raised, no timer would exist.
Whatever runs the timers next (here ``vc.fire_due_timers()`` in a loop; in
production ``vactor timers run --storage URL`` or a cron job calling ``vactor timers
tick --storage URL``) calls ``expire`` exactly once, never before it is due.

Run: ``python examples/session_timeout.py [STORAGE_URL]`` ($VACTOR_STORAGE, else the embedded store)
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
import uuid

import vactor_cloud as vc

#: long enough that a touch, its commit and a timer pass fit well inside it on a busy machine
IDLE_SECONDS = 2.0


@vc.virtual_actor
class Session:
    def __init__(self, user: str) -> None:
        self.user = user
        self.active = True
        self.events: list[str] = []

    def touch(self, what: str) -> None:
        if not self.active:
            raise RuntimeError("session expired")
        self.events.append(what)
        call = vc.current_call()
        assert call is not None
        call.schedule("expire", after=IDLE_SECONDS, key="idle", args=("idle timeout",))

    def logout(self) -> None:
        self.active = False
        call = vc.current_call()
        assert call is not None
        call.cancel_timer("idle")

    def expire(self, reason: str) -> None:
        self.active = False
        self.events.append(f"expired: {reason}")

    @vc.virtual_actor.readonly
    def status(self) -> tuple[bool, list[str]]:
        return self.active, list(self.events)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "storage",
        nargs="?",
        default=os.environ.get("VACTOR_STORAGE"),
        help="storage URL or path (default: $VACTOR_STORAGE, else the embedded store)",
    )
    storage = parser.parse_args().storage
    vc.init(storage)
    session = Session.get_or_create(f"session-{uuid.uuid4().hex[:8]}", "ada")
    for page in ("home", "cart", "checkout"):
        session.touch.run(page)
        time.sleep(IDLE_SECONDS / 5)
        vc.fire_due_timers()  # nothing is due yet: each touch pushed the timeout back
    print("pending:", [t["key"] for t in session.timers()])
    assert session.status.run()[0], "expired too early"
    deadline = time.monotonic() + 30
    while session.status.run()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
        vc.fire_due_timers()
    active, events = session.status.run()
    print("active:", active)
    print("events:", ", ".join(events))
    assert not active and events[-1] == "expired: idle timeout"
    assert session.timers() == []
    where = f"--storage {shlex.quote(storage)} " if storage else ""  # not the default: say which store
    print(f"each touch, and the timer that fired: vactor {where}history {session.actor_id}")


if __name__ == "__main__":
    main()

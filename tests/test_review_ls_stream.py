"""``vactor ls`` prints as it lists (review-h35): each test failed on the code it was written against.

It collected every actor of the bucket (``list_actors``, a list) before printing the first row:
on a bucket of millions, minutes of silence and every ``ActorInfo`` in memory at once, and the
whole listing under one ``Settings.deadline``. Now it prints a page (up to 32 actors) as soon as
it is described, holding only that page; ``--json`` still writes one JSON array (the same text).

Not by timing: the store's listing is held (a LIST past the first actors waits for the test's
release) and the test waits for the first row while it is held.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from actors import Tally

import vactor_cloud as vc
from vactor_cloud.cli import main
from vactor_cloud.cli._options import EXIT_OK
from vactor_cloud.storage import MemoryStore

#: actors in the store: a few thousand, far more than a page
ACTORS = 2000
#: the LIST whose cursor is past this actor waits until the test releases it
HELD_AFTER = "a-0100"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    url = f"memory://ls-stream-{uuid.uuid4().hex}"
    vc.init(url)
    try:
        for n in range(ACTORS):
            Tally.get_or_create(f"a-{n:04d}")
    finally:
        vc.shutdown()
    yield url
    MemoryStore.wipe(url.removeprefix("memory://"))


class Watched(io.StringIO):
    """stdout of the command: notes when ``marker`` is first written."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.marker in text:
            self.seen.set()
        return written

    def isatty(self) -> bool:
        return False


#: how long the test waits for what the command must do at once (and a held LIST for release)
WAIT = 60.0


class HeldListing:
    """MemoryStore's LIST of ``actors/`` past ``HELD_AFTER`` waits for :attr:`release`: at most
    ``timeout`` seconds (longer than the test's own waits), after which :attr:`timed_out` is set
    and the LIST goes on, so a listing the test never released fails the test (:meth:`check`)
    instead of hanging it until pytest's timeout."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, timeout: float = 2 * WAIT + 30.0) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.timed_out = threading.Event()
        self.timeout = timeout
        original = MemoryStore._list

        async def held_list(
            store: MemoryStore, prefix: str, start_after: str | None, limit: int | None
        ) -> Any:
            if prefix == "actors/" and start_after is not None and start_after > f"actors/{HELD_AFTER}":
                self.held.set()
                await self._wait_for_release()  # (the IO loop goes on: describes finish)
            return await original(store, prefix, start_after, limit)

        monkeypatch.setattr(MemoryStore, "_list", held_list)

    async def _wait_for_release(self) -> None:
        until = time.monotonic() + self.timeout
        while not self.release.is_set():
            if time.monotonic() >= until:
                self.timed_out.set()
                return
            await asyncio.sleep(0.005)

    def check(self) -> None:
        assert not self.timed_out.is_set(), (
            f"a LIST of actors/ past {HELD_AFTER} waited {self.timeout} s for the test's release "
            "and went on unreleased"
        )


def run_ls(monkeypatch: pytest.MonkeyPatch, url: str, marker: str, *argv: str) -> tuple[int, str]:
    """``vactor ls`` on a thread; asserts ``marker`` reached stdout while the listing was held."""
    held = HeldListing(monkeypatch)
    stdout = Watched(marker)
    monkeypatch.setattr(sys, "stdout", stdout)
    codes: list[int] = []

    def command() -> None:
        try:
            codes.append(main(["--storage", url, "ls", *argv]))
        except SystemExit as exc:
            codes.append(exc.code if isinstance(exc.code, int) else 1)

    thread = threading.Thread(target=command, daemon=True)
    thread.start()
    try:
        assert held.held.wait(WAIT), "the listing never reached the held LIST"
        # (only a failure waits this long: the old code printed nothing until the listing ended)
        assert stdout.seen.wait(WAIT), f"nothing printed while the listing was held: {stdout.getvalue()!r}"
        held.check()
        assert thread.is_alive() and not held.release.is_set()
        printed = stdout.getvalue()
    finally:
        held.release.set()
        thread.join(2 * WAIT)
        vc.shutdown()
    assert not thread.is_alive(), "vactor ls did not return within 2 min of the LIST's release"
    held.check()
    assert f"a-{ACTORS - 1:04d}" not in printed  # printed while listing: not the last one yet
    return codes[0], stdout.getvalue()


def test_ls_prints_its_first_rows_before_the_listing_ends(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    code, out = run_ls(monkeypatch, url, "a-0000")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["ACTOR", "CLASS", "STEP", "CHANGED"]  # the header once
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == [f"a-{n:04d}" for n in range(ACTORS)]
    assert {row[2] for row in rows} == {"0"}
    assert all(row[1].endswith(":Tally") for row in rows)


def test_ls_json_writes_its_first_actors_before_the_listing_ends_and_stays_one_array(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    code, out = run_ls(monkeypatch, url, '"actor_id": "a-0000"', "--json")
    assert code == EXIT_OK
    listed = json.loads(out)  # one JSON document, as before
    assert [a["actor_id"] for a in listed] == [f"a-{n:04d}" for n in range(ACTORS)]
    assert out.startswith("[\n  {\n") and out.endswith("\n]\n")


def test_ls_json_of_no_actors_is_an_empty_array(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert main(["--storage", url, "ls", "zz", "--json"]) == EXIT_OK
    finally:
        vc.shutdown()
    assert out.getvalue() == "[]\n"


def test_ls_with_a_limit_stops_listing_there(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert main(["--storage", url, "ls", "--limit", "70", "--json"]) == EXIT_OK
    finally:
        vc.shutdown()
    assert [a["actor_id"] for a in json.loads(out.getvalue())] == [f"a-{n:04d}" for n in range(70)]

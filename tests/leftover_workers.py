"""Actors and child-process entry points of tests/test_review_leftovers.py (importable, for
``spawn``-started children)."""

from __future__ import annotations

import vactor_cloud as vc


@vc.virtual_actor
class Peer:
    def __init__(self) -> None:
        self.seen = 0

    def see(self) -> int:
        self.seen += 1
        return self.seen


class Tally:
    """A plain class of this module that a method uses (pickled by value with the body)."""

    def __init__(self, n: int) -> None:
        self.n = n


@vc.virtual_actor
class UsesPeer:
    """Its methods use another actor class and a plain class of this module."""

    def __init__(self) -> None:
        self.count = 0

    def bump(self) -> int:
        self.count = Tally(self.count + 1).n
        return self.count

    def greet(self, peer_id: str) -> int:
        return int(Peer.get_or_create(peer_id).see.run())


def bump_once(url: str, actor_id: str, peer_first: bool) -> None:
    """A cold process's first commit to ``actor_id`` (created if new); ``peer_first``: after
    this process used the other actor class (and stored its body)."""
    vc.init(url)
    try:
        if peer_first:
            Peer.get_or_create("peer").see.run()
        UsesPeer.get_or_create(actor_id).bump.run()
    finally:
        vc.shutdown()

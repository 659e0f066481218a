"""Actor ids listed a chunk at a time, for the commands that work on every actor (``vactor
compact --all``, ``vactor events drain``).

Listing every id before working on the first held them all (ten million actors: gigabytes of
strings) and did nothing until the listing ended. A command asks :class:`IdChunks` for the next
chunk once it has worked through the one before: it holds one chunk of ids at a time (and the
rest of the listing page that completed it), however many actors the store holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from vactor_cloud import _sync
from vactor_cloud.cli._output import listing_count

__all__ = ["CHUNK", "IdChunks", "every_actor_id"]

#: the ids a chunk holds (at least, but for the last): 10,000 ids are about a megabyte, and a
#: few minutes of work for the commands that ask for them
CHUNK = 10_000


class IdChunks:
    """The ids ``pages(found)`` yields (an async iterator of lists of ids, run on the runtime's
    IO loop; ``found``: a function it calls for each id it looks at), a chunk at a time.

    ``listed``: how many ids were handed out so far; ``complete``: whether the listing has
    ended (``listed`` is then the total). ``found`` (settable) is called for each id looked
    at: a count on the terminal while the first chunk is listed, nothing after."""

    def __init__(self, pages: Callable[[Callable[[], None]], AsyncIterator[list[str]]]) -> None:
        self.found: Callable[[], None] = lambda: None
        self._pages = pages(self._count)
        self.listed = 0
        self.complete = False

    def _count(self) -> None:
        self.found()  # (whichever ``found`` is set now)

    def first(self, label: str, *, counted: bool, plain: bool = True) -> list[str]:
        """The first chunk, its listing counted as it goes (``listing_count``: ``label`` and the
        ids so far on a terminal when ``counted``, else, with ``plain``, a line now and then on
        stderr); the chunks after it are listed silently."""
        with listing_count(label, enabled=counted, plain=plain) as found:
            self.found = found
            ids = self.next()
        self.found = lambda: None
        return ids

    def next(self) -> list[str]:
        """The next chunk of ids (:data:`CHUNK` of them, or what is left); ``[]`` once the
        listing has ended. Listed on the IO loop while the calling thread waits (Ctrl-C
        interrupts the wait)."""
        if self.complete:
            return []
        chunk, self.complete = _sync.sync(_take(self._pages, CHUNK))
        self.listed += len(chunk)
        return chunk

    def close(self) -> None:
        """Stop a listing that has not ended (the command stopped early)."""
        if not self.complete:
            self.complete = True
            aclose = getattr(self._pages, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):  # (one interrupted mid-page: still running)
                    _sync.sync(aclose())

    def of_listed(self, done: int) -> str:
        """``"{done} of {listed} actors"``, naming a total that is not known yet as such."""
        if self.complete:
            return f"{done} of {self.listed} actors"
        return f"{done} of the {self.listed} actors listed so far"


async def _take(pages: AsyncIterator[list[str]], size: int) -> tuple[list[str], bool]:
    """At least ``size`` ids of ``pages`` (whole pages), or what is left; and whether it ended."""
    chunk: list[str] = []
    while len(chunk) < size:
        page = await anext(pages, None)
        if page is None:
            return chunk, True
        chunk.extend(page)
    return chunk, False


async def every_actor_id(found: Callable[[], None] = lambda: None) -> AsyncIterator[list[str]]:
    """Every actor id of the store, in key order, each as a page of its own (for :class:`IdChunks`);
    ``found()`` for each as it is listed."""
    from vactor_cloud.history import iter_actor_ids
    from vactor_cloud.runtime import get_runtime

    async for actor_id in iter_actor_ids(get_runtime().store):
        found()
        yield [actor_id]

"""Class bodies loaded from storage: the class of an actor that this process cannot import,
read from ``actors/<id>/class/<sha>``, verified, checked for this Python's bytecode and
unpickled (``Settings.load_classes_from_storage``).

:class:`ClassBodies` is the part of :class:`~vactor_cloud.actor_runtime.Runtime` (a mixin)
that loads them and keeps them per process (:meth:`~ClassBodies.stored_class`, a core's
``CoreEnv.stored_class``); :func:`_read_class_body` reads one, again while it does not
verify.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import TYPE_CHECKING

from vactor_cloud.actor_objects import retry_pause
from vactor_cloud.bytecode import BYTECODE
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.errors import ActorDefinitionError, FormatVersionError, IntegrityError, NotFoundError
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import ClassRef

if TYPE_CHECKING:
    from vactor_cloud.settings import Settings

__all__ = ["ClassBodies"]


class ClassBodies:
    """A runtime as the loader of class bodies from storage, cached per process."""

    if TYPE_CHECKING:
        # Of the runtime (vactor_cloud.actor_runtime.Runtime, set by its __init__).
        settings: Settings
        _classes: dict[str, ActorDefinition]

    async def stored_class(self, log: ActorLog, ref: ClassRef) -> ActorDefinition:
        """The class body ``ref`` loaded from storage (cached per process)."""
        found = self._classes.get(f"{ref.sha}/{ref.name}")
        if found is not None:
            return found
        if not self.settings.load_classes_from_storage:
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, which this process cannot import, "
                "and loading class bodies from storage is disabled (load_classes_from_storage=False): "
                "make the class importable here"
            )
        try:
            body, bytecode = await _read_class_body(log, ref)
        except NotFoundError as exc:
            # The store's own words name a key the user never wrote: say whose body it is.
            raise NotFoundError(
                f"{exc}: the class body of actor {log.actor_id!r} ({ref.name}) is missing from "
                f"storage (deleted by a lifecycle rule, or not copied with the steps); this "
                "process cannot load the class without it: import the class's module in this "
                "process (a process that imports it stores the body again with its first commit "
                "to the actor)",
                exc.key,
            ) from exc
        if bytecode is not None and BYTECODE is not None and bytecode != BYTECODE:
            # (never unpickled: run by another Python, its code crashed CPython or ran wrongly)
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, whose class body stored in "
                f"actors/{log.actor_id}/class/{ref.sha} holds the bytecode of {bytecode}, not of this "
                f"process's {BYTECODE}: another Python version runs it wrongly or crashes on it, so "
                "it is not loaded: import (or define) the class in this process (a process that has "
                f"the class never loads its body), or call the actor from a {bytecode} process"
            )
        try:
            # Off the loop, on its default executor (short blocking work only: the local store's
            # file calls), not on the run_async pool: methods on that pool loading a class waited
            # for a pool thread their like held, until the deadline.
            raw = await asyncio.get_running_loop().run_in_executor(None, pickle.loads, body)
        except Exception as exc:
            raise ActorDefinitionError(
                f"actor {log.actor_id!r} is an instance of {ref.name}, whose class body stored in "
                f"actors/{log.actor_id}/class/{ref.sha} cannot be loaded here ({type(exc).__name__}: "
                f"{exc}); it may be stored by reference (see docs/security.md): import the class's "
                "module in this process"
            ) from exc
        definition = ActorDefinition.from_stored(raw, ref.name)
        self._classes[f"{ref.sha}/{ref.name}"] = definition
        return definition


#: reads of a class body that does not verify before it is taken for damaged at rest (damage
#: in transit reads whole the next time)
_CLASS_READS = 3


async def _read_class_body(log: ActorLog, ref: ClassRef) -> tuple[bytes, str | None]:
    """The verified class body ``ref`` of ``log``'s actor. One that does not verify
    ``_CLASS_READS`` times in a row is damaged at rest (truncated, altered, another class's body
    under this sha): ``IntegrityError`` saying how it gets repaired."""
    for attempt in range(_CLASS_READS):
        try:
            return await log.read_class(ref.sha)
        except FormatVersionError:
            raise  # its message already says what to do: upgrade
        except IntegrityError as exc:
            if attempt + 1 < _CLASS_READS:
                await asyncio.sleep(retry_pause(attempt))
                continue
            raise IntegrityError(
                exc.key,
                f"{exc.reason}: the class body of actor {log.actor_id!r} ({ref.name}) is damaged, "
                "forged or signed with another key, and this process cannot load the class without "
                "it: import the class's module in this process, or make one call to the actor from "
                "a process that imports it (a process with the class checks the body at its first "
                "commit to the actor and stores it again)",
            ) from exc
    raise AssertionError("unreachable")

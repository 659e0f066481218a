"""Child processes for tests, started cheaply: forked from a clean server process.

A ``"spawn"`` child starts a new interpreter and imports everything again: an S3
store's child spends about 0.75 s of CPU in imports (s3fs, aiobotocore, botocore)
before it does anything, a GCS one more. A test suite that starts hundreds of
children spends minutes of CPU so.

:func:`process_context` gives a ``"forkserver"`` context instead. Its server is a
fresh process of its own (never this one: no test's threads, event loops or
runtime are copied into a child); it imports :data:`PRELOAD` once, and each child
is forked from it with those imports done (about 0.1 s of CPU). The child gets
the parent's ``sys.path`` and working directory at its start, as a spawned one
does, and also the parent's environment at its start (a forked server's children
would otherwise get the server's, as it was when the server started: a variable a
test set later, ``AWS_ENDPOINT_URL`` say, would not reach them).

The server imports :data:`PRELOAD` from its own ``sys.path``: the working directory
and ``PYTHONPATH`` of the process that started it, as for any ``python -c`` (the
standard library's fork server does not take its parent's ``sys.path`` for the
preload). No preloaded module may start a thread at import: a child forked from a
server running one would not run it, and would find any lock it held held for ever
(``tests/test_process_context.py`` checks the server has one thread).

vactor_cloud is fork-aware (its locks, loop, pools and clocks are renewed in a
forked child), so a child forked so is a process like any other to it.
"""

from __future__ import annotations

import multiprocessing.context
import os

__all__ = ["PRELOAD", "EnvironmentForwardingProcess", "process_context"]

#: Imported once by the fork server: what a child on any lane would import itself.
#: A module that cannot be imported is skipped (``gcsfs`` where it is not installed).
PRELOAD = ["vactor_cloud", "vactor_cloud.runtime", "vactor_cloud.storage", "s3fs", "gcsfs", "pytest"]


class EnvironmentForwardingProcess(multiprocessing.context.ForkServerProcess):
    """A fork server's child that runs with the environment its parent had at ``start()``."""

    def start(self) -> None:
        self._environment = dict(os.environ)  # (pickled with the process object to the child)
        super().start()

    def run(self) -> None:
        os.environ.clear()
        os.environ.update(self._environment)
        super().run()


class _ForwardingContext(multiprocessing.context.ForkServerContext):
    Process = EnvironmentForwardingProcess


_CONTEXT = _ForwardingContext()


def process_context() -> multiprocessing.context.ForkServerContext:
    """A ``multiprocessing`` context whose children are forked from a clean server process
    that preloaded :data:`PRELOAD` (see the module's docstring). Use it as a spawn context:
    ``ctx.Process(target=..., args=...)``, ``ctx.Queue()``, ``ctx.Event()``, ``ctx.Pool()``.

    The fork server is started on the first child and lives until this process exits.
    """
    _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT

"""The ``vactor`` command: inspect and operate actors in a bucket, the way ``git`` inspects a repo.

Run ``vactor --help``. Every command takes the store from ``--storage URL``
(else ``$VACTOR_STORAGE``, else the embedded local store) and reads
``$VACTOR_SIGNING_KEY`` and the backends' usual environment (``AWS_*``,
``STORAGE_EMULATOR_HOST``, ...).

Output is a table with colours when stdout is a terminal, plain aligned
text when it is piped, and JSON with ``--json``. Errors are one line on
stderr saying what to do; ``--debug`` adds the traceback.

Exit codes (also in ``vactor --help``):

=====  =================================================================
0      success
1      error (the called method raised, a corrupt object, anything else)
2      usage: bad arguments, bad JSON, unknown method or command
3      not found: no such actor, or the step was compacted / not written
4      storage: unreachable, credentials refused, bucket missing
5      ``doctor``: the store lacks a guarantee vactor_cloud needs
130    interrupted (Ctrl-C, or SIGTERM while a command runs)
=====  =================================================================

Every subcommand takes the same ``--storage``, ``-o`` and ``--json`` (one
parser, :mod:`vactor_cloud.cli._options`), before or after its name. Under
``--json`` stdout holds the JSON document only; anything else printed (an
actor method's ``print``) goes to stderr.

Each command module (``actors``, ``doctor``, ``events``, ``bench``, ``timers``) has an
``add_commands(subparsers)`` that registers its subcommands; a new command
is a new module listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn

from vactor_cloud.cli._interrupts import sigterm_as_interrupt
from vactor_cloud.cli._options import (
    EXIT_DOCTOR,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    IMPORT_HINT,
    CliError,
    CliParser,
    add_common_options,
    error_advice,
    integrity_advice,
    memory_hint,
)
from vactor_cloud.cli._output import Output, printable, streams_kept, streams_watched

__all__ = [
    "COMMAND_MODULES",
    "EXIT_DOCTOR",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "cli_logging",
    "main",
]

#: loggers of vactor_cloud and of the storage clients under it, quiet in the CLI unless --debug: a
#: failure reaches the user once, as the one ``vactor: error: ...`` line (docs/cli.md)
LIBRARY_LOGGERS: tuple[str, ...] = (
    "vactor_cloud",
    "asyncio",
    "botocore",
    "boto3",
    "aiobotocore",
    "s3fs",
    "gcsfs",
    "fsspec",
    "urllib3",
    "aiohttp",
    "google",
)

#: the modules whose ``add_commands(subparsers)`` make up ``vactor``, in the order of ``--help``
COMMAND_MODULES: tuple[str, ...] = (
    "vactor_cloud.cli.actors",
    "vactor_cloud.cli.doctor",
    "vactor_cloud.cli.bench",
    "vactor_cloud.cli.events",
    "vactor_cloud.cli.timers",
)

_EPILOG = """\
storage (every command):
  --storage URL or $VACTOR_STORAGE: a path, file://, memory://, s3://bucket/prefix,
  gs://bucket/prefix (default: the embedded store ~/.local/share/vactor_cloud);
  memory:// is this process's memory only (for bench and doctor).
  -o KEY=VALUE passes an fsspec option (VALUE parsed as JSON when it can be).
  --json prints one JSON document on stdout; everything else goes to stderr.

exit codes:
  0 ok   1 error   2 usage   3 actor/step not found   4 storage unreachable
  5 doctor found a missing guarantee   130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    from vactor_cloud import __version__

    parser = CliParser(
        prog="vactor",
        description="Inspect and operate durable virtual actors stored in a bucket.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vactor_cloud {__version__}")
    add_common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    # `vactor show --help` says what `vactor --help` says of show (argparse shows only the usage)
    for choice in sub._choices_actions:
        command = sub.choices[choice.dest]
        if command.description is None:
            command.description = choice.help
    return parser


# -- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def cli_logging(debug: bool, *, warnings: bool = False) -> Iterator[None]:
    """Library log records while a command runs: none, unless ``--debug`` (or ``warnings``).

    Without a handler Python prints every WARNING on stderr (``logging.lastResort``):
    an unreachable store would print the library's warning and then the CLI's
    error line. Here the library's loggers get a handler of their own: a
    ``NullHandler``; with ``debug``, one that prints every record of
    ``vactor_cloud`` (DEBUG and up) and the others' warnings; with ``warnings``
    (``vactor timers run``, a long-running process whose log is its output),
    warnings only, as ``vactor: warning: ...``. The loggers are restored on exit.
    """
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in (logging.getLogger(name) for name in LIBRARY_LOGGERS)
    ]
    if debug:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_AdvisingFormatter("vactor: %(levelname)s %(name)s: %(message)s"))
    elif warnings:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(_AdvisingFormatter("vactor: %(levelname)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    for logger, _, _, _ in saved:
        logger.handlers = [handler]
        logger.propagate = False
        if debug and logger.name == "vactor_cloud":
            logger.setLevel(logging.DEBUG)
        elif debug or warnings:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate


class _AdvisingFormatter(logging.Formatter):
    """A library record's line, with what to do about the error it tells of, as the command's
    error line says it (:func:`error_advice`): a timer runner's warning of a timer it cannot
    fire (its ``TickError``, whose ``cause`` is the error) gets the PYTHONPATH advice for an
    actor whose class or state needs a module ``vactor`` cannot import."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        args = record.args if isinstance(record.args, tuple) else ()
        advice = "".join(
            error_advice(cause)
            for arg in args
            if isinstance(arg, str) and isinstance(cause := getattr(arg, "cause", None), BaseException)
        )
        return f"{line}{advice}"


#: what a storage error's line adds: what to look at
_CHECK_STORE = "check --storage / $VACTOR_STORAGE, the credentials and the network"


def _fail(message: str, code: int, debug: bool) -> NoReturn:
    if debug:  # (escaped too: exception messages hold ids, keys and arguments)
        sys.stderr.write(printable(traceback.format_exc()))
    # One line, as docs/cli.md promises (and `grep 'vactor: error'` relies on): a multi-line
    # message (a method's exception, pydantic's validation errors) has its lines joined by " | ".
    one_line = " | ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"vactor: error: {printable(one_line)}", file=sys.stderr)
    raise SystemExit(code)


def _hint(debug: bool) -> str:
    return "" if debug else " (run with --debug for the traceback)"


if TYPE_CHECKING:
    from vactor_cloud.errors import ActorDeletedError


def _deleted_text(exc: ActorDeletedError) -> str:
    """What a command says of a deleted actor (an ``ActorDeletedError``)."""
    where = f" under {exc.root}" if exc.root else ""
    at = f" (its step {exc.step} is a tombstone)" if exc.step >= 0 else ""
    return (
        f"actor {exc.actor_id!r}{where} was deleted{at}: vactor history {exc.actor_id} shows its "
        f"steps; a program's Cls.get_or_create({exc.actor_id!r}, ...) makes a new actor under the id"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vactor`` console script; returns the exit code.

    ``sys.stdout`` and ``sys.stderr`` are the caller's again when it returns (or raises
    ``SystemExit``), even if a reader that left had them pointed at ``/dev/null``.

    Without ``argv`` (the console script, ``python -m vactor_cloud``) the process is the
    command's: a Ctrl-C once the command is done, while the interpreter exits, is one line and
    exit 130 (:func:`_exit_as_the_command`)."""
    code: object = EXIT_ERROR
    try:
        with streams_kept(), streams_watched() as refused:
            code = _main(argv, refused)
            return int(code)
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        if argv is None:
            _exit_as_the_command(code)


#: the exit code of the command this process ran (``main()`` without ``argv``), once it is done
_command_exit: list[int] = []


def _exit_as_the_command(code: object) -> None:
    """The command is done (``code``, as ``sys.exit`` takes it); the interpreter exits next.

    A Ctrl-C from now on (the exit's callbacks, the runtime's shutdown of what a method left)
    says one line and exits 130, as a Ctrl-C during the command does: not Python's
    ``Exception ignored in atexit callback`` traceback. After the exit callbacks the process
    ends at once (:func:`_end_of_the_command`): in the interpreter's teardown that follows,
    Python no longer handles signals, and a Ctrl-C killed the process (-2), silently."""
    import signal

    _command_exit.append(code if isinstance(code, int) else 0 if code is None else EXIT_ERROR)

    def interrupted(signum: int, frame: object) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.write("vactor: interrupted (Ctrl-C) as it exited; the command had finished\n")
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupted)


def _end_of_the_command() -> None:
    """(atexit, registered as this module is imported: it runs after the library's own exit
    callbacks) End the command's process with its exit code, its output flushed, without the
    interpreter's teardown (see :func:`_exit_as_the_command`); nothing for a program that called
    ``main([...])``."""
    if not _command_exit:
        return
    runtime = sys.modules.get("vactor_cloud.runtime")
    if runtime is not None:  # (its own callback, if registered after this one ran already: harmless)
        runtime._shutdown_at_interpreter_exit()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(_command_exit[-1])


atexit.register(_end_of_the_command)


def _main(argv: Sequence[str] | None, refused: list[BrokenPipeError]) -> int:
    from vactor_cloud.errors import (
        ActorDefinitionError,
        ActorDeletedError,
        ActorNotFoundError,
        IntegrityError,
        InvalidActorIdError,
        NotFoundError,
        StepNotFoundError,
        StorageError,
        VactorError,
    )
    from vactor_cloud.keys import is_class_key
    from vactor_cloud.runtime import own_runtime

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = bool(args.debug)
        if getattr(args, "func", None) is None:  # a usage error: on stderr (stdout may be --json's)
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        args.output = Output.for_args(args)
        long_running = args.command == "timers" and getattr(args, "timers_command", None) == "run"
        # (main() called in a program: the command runs on a runtime of its own, the program's untouched)
        # The logging is set around the runtime: what its shutdown logs (a HEAD advance) is the command's.
        # SIGTERM (kill, a container's stop) as Ctrl-C: what was done and what remains is said
        with (
            sigterm_as_interrupt(),
            cli_logging(debug, warnings=long_running),
            own_runtime(),
            args.output.stdout_for_json(),
        ):
            return int(args.func(args) or 0)
    except CliError as exc:
        _fail(str(exc), exc.code, debug)
    except ActorDeletedError as exc:  # (its own message's advice is Python's get_or_create)
        _fail(_deleted_text(exc), EXIT_NOT_FOUND, debug)
    except (ActorNotFoundError, StepNotFoundError) as exc:
        named = getattr(args, "storage", None) or os.environ.get("VACTOR_STORAGE")
        said = "lives in the memory of one process" in str(exc)  # (ActorNotFoundError's own hint)
        _fail(f"{exc}{'' if said else memory_hint(named or '')}", EXIT_NOT_FOUND, debug)
    except InvalidActorIdError as exc:
        _fail(str(exc), EXIT_USAGE, debug)
    except IntegrityError as exc:  # a damaged object (a torn write is also a StorageError): not the network
        _fail(f"{exc}{integrity_advice(exc)}", EXIT_ERROR, debug)
    except NotFoundError as exc:
        if not is_class_key(exc.key):
            _fail(f"{exc}; {_CHECK_STORE}", EXIT_STORAGE, debug)
        # A class body missing from storage: the store answered; the class is what is missing.
        _fail(f"{exc}{IMPORT_HINT}", EXIT_ERROR, debug)
    except StorageError as exc:
        _fail(f"{exc}; {_CHECK_STORE}", EXIT_STORAGE, debug)
    except ActorDefinitionError as exc:  # (a class this process cannot import or load)
        _fail(f"{exc}{IMPORT_HINT}", EXIT_ERROR, debug)
    except VactorError as exc:
        _fail(str(exc), EXIT_ERROR, debug)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED, debug)
    except BrokenPipeError as exc:
        if not refused:  # not our output's reader: a socket's, a method's
            _fail(f"{type(exc).__name__}: {exc}{_hint(debug)}", EXIT_ERROR, debug)
        # `vactor ls | head`: the reader left; nothing more to say.
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - until main returns (streams_kept)
        return EXIT_OK
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc}{_hint(debug)}", EXIT_ERROR, debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

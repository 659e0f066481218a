"""The one option parser of the ``vactor`` command: what every subcommand takes, and how it is read.

``--storage URL``, ``-o KEY=VALUE``, ``--json`` and ``--debug`` are accepted
before the subcommand and after it, by every subcommand alike; the store is
``--storage``, else ``$VACTOR_STORAGE``, else the embedded local store.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import copy
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "EXIT_DOCTOR",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "IMPORT_HINT",
    "CliError",
    "CliParser",
    "StoreChoice",
    "actor_error",
    "actor_id_arg",
    "add_common_options",
    "common_parent",
    "error_advice",
    "errors_error",
    "init_runtime",
    "integrity_advice",
    "limit_arg",
    "local_path",
    "non_negative_float",
    "non_negative_int",
    "parse_json_arg",
    "parse_storage_options",
    "positive_float",
    "positive_int",
    "store_choice",
    "url_as_storage",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_STORAGE = 4
EXIT_DOCTOR = 5
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the CLI reports as one line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


#: the command line being parsed, and the parser of the whole command (for :meth:`CliParser.error`)
_PARSING: contextvars.ContextVar[tuple[Sequence[str], argparse.ArgumentParser] | None] = (
    contextvars.ContextVar("vactor_parsing", default=None)
)


def _known_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its subcommands."""
    known = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                known |= _known_options(sub)
    return known


def _dashed_word(argv: Sequence[str], root: argparse.ArgumentParser) -> str | None:
    """The first word of ``argv`` before any ``--`` that starts with ``-`` but is no option (nor a
    negative number): an actor id argparse took for an option (``vactor history -x``)."""
    known = _known_options(root)
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-") or word == "-" or word.split("=", 1)[0] in known or word[:2] in known:
            continue
        try:
            float(word)
        except ValueError:
            return word
    return None


#: the options given so far, noted in the namespace being parsed (as argparse notes the
#: arguments it did not recognize there)
_GIVEN = "_vactor_given_options"


class _StoreOnce(argparse._StoreAction):
    """argparse's ``store``, refusing an option given twice: argparse keeps the last value,
    silently (``vactor --storage A ls --storage B`` worked on B). Positionals are stored as ever."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if self.option_strings:
            given: set[str] = vars(namespace).setdefault(_GIVEN, set())
            if self.dest in given:
                parser.error(f"{'/'.join(self.option_strings)} given twice; give it once")
            given.add(self.dest)
        super().__call__(parser, namespace, values, option)


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """argparse's subcommands, parsed into the namespace of the command line so far rather than
    into a new one copied over it: an option given before the subcommand's name and again after
    it is one option given twice (refused), and ``-o`` pairs add up wherever they are given."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        name, *rest = values
        chosen = self._name_parser_map.get(name)
        if chosen is None:  # argparse's error, naming the choices
            super().__call__(parser, namespace, values, option)
            return
        if self.dest is not argparse.SUPPRESS:
            setattr(namespace, self.dest, name)
        _, extras = chosen.parse_known_args(rest, namespace)
        if extras:
            vars(namespace).setdefault(argparse._UNRECOGNIZED_ARGS_ATTR, []).extend(extras)


class _NotPlainly(Exception):
    """A plain parse (:meth:`CliParser._parse_plainly`) found a usage error: parse intermixed."""


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, ``vactor: error: ...``, exit 2, and
    whose options that take one value refuse a second (:class:`_StoreOnce`).

    argparse's own format (the usage, then ``vactor SUB: error: ...``) is two
    lines or more; ``docs/cli.md`` promises one line for every error.
    Subparsers inherit the class (``add_subparsers`` uses ``type(self)``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        self.register("action", "parsers", _Subcommands)

    #: positionals may come after options (``vactor call ID METHOD --json 2``), as
    #: ``parse_intermixed_args`` reads them; plain argparse ends a ``nargs="*"`` positional at
    #: the first option and calls what follows unrecognized
    intermixed = False
    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self.intermixed or self._intermixing:
            return super().parse_known_args(args, namespace)
        if args is not None and "--" in args:
            plain = self._parse_plainly(args, namespace)
            if plain is not None:
                return plain
        # parse_known_intermixed_args calls parse_known_args twice (options, then positionals)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    #: set while :meth:`_parse_plainly` tries: a usage error is then :class:`_NotPlainly`, not an exit
    _trying = False

    def _parse_plainly(
        self, args: Sequence[str], namespace: argparse.Namespace | None
    ) -> tuple[argparse.Namespace, list[str]] | None:
        """``args`` parsed as plain argparse does, if that takes every word, else None.

        Python 3.11's intermixed parsing loses a ``--`` that comes before the first positional:
        ``vactor call -- -x get`` read ``-x`` as an option (and an actor ``-x``, which
        ``vactor ls`` lists, could not be called). Plain parsing honours it; it only fails to
        take options between positionals, which the intermixed parse is then left to."""
        trial = copy.deepcopy(namespace) if namespace is not None else argparse.Namespace()
        self._trying = True
        try:
            parsed, extras = super().parse_known_args(args, trial)
        except _NotPlainly:
            return None
        finally:
            self._trying = False
        if extras:
            return None
        if namespace is None:
            return parsed, extras
        vars(namespace).update(vars(parsed))  # (a subcommand's namespace is the caller's own)
        return namespace, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        token = _PARSING.set((argv, self))
        try:
            parsed, extras = self.parse_known_args(argv, namespace)
        finally:
            _PARSING.reset(token)
        vars(parsed).pop(_GIVEN, None)
        if extras:  # said by the command's parser, whose --help lists the options it takes
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> CliParser:
        """The parser of the (sub)command that ``parsed`` names, the deepest one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(str(getattr(parsed, action.dest, None)))
                if isinstance(sub, CliParser):
                    return sub._chosen(parsed)
        return self

    def error(self, message: str) -> NoReturn:
        if self._trying:
            raise _NotPlainly(message)
        where = self.prog.removeprefix("vactor").strip()
        hint = f"vactor {where} --help" if where else "vactor --help"
        parsing = _PARSING.get()
        dashed = _dashed_word(*parsing) if parsing is not None else None
        if dashed is not None and where:
            message += f"; if {dashed} is an actor id, give it after '--': vactor {where} -- {dashed}"
        sys.stderr.write(f"vactor: error: {message} (see {hint})\n")
        raise SystemExit(EXIT_USAGE)


#: what to do about an object that does not decode and verifies as no key's
_RESTORE = (
    "the object is damaged (a torn write, a file vactor_cloud did not write, altered bytes): restore "
    "it from a backup or an earlier version of the object, if the bucket keeps versions"
)


def integrity_advice(exc: BaseException) -> str:
    """What ``vactor`` adds to an ``IntegrityError``'s message: what to do about that object.

    Nothing where the message says it already (a newer format: upgrade; signed, with no key
    given: set ``$VACTOR_SIGNING_KEY``; an actor's steps missing: restore them or start
    afresh); the signing key to check where a signature does not match or is missing (one key
    for every object: every object fails alike); else restoring it.
    """
    from vactor_cloud.errors import FormatVersionError, IntegrityError, StepsMissingError

    if not isinstance(exc, IntegrityError) or isinstance(exc, FormatVersionError | StepsMissingError):
        return ""
    reason = str(getattr(exc, "reason", ""))
    if "VACTOR_SIGNING_KEY" in reason:
        return ""
    if reason.startswith("signature mismatch"):
        return (
            "; if every object fails so, $VACTOR_SIGNING_KEY is not the key its writers sign with: "
            f"set that one; else {_RESTORE}"
        )
    if "not signed" in reason:
        return f"; if this store is not signed, unset $VACTOR_SIGNING_KEY; else {_RESTORE}"
    return f"; {_RESTORE}"


#: what ``vactor`` adds to an error about a class it cannot import or load: the console script
#: imports from PYTHONPATH and the installed packages, not from the working directory
IMPORT_HINT = "; for vactor, put the module's directory on PYTHONPATH (PYTHONPATH=src vactor ...)"


def actor_error(actor_id: str, exc: BaseException) -> str:
    """The line of a command that goes on past one actor's error: ``ID: message`` and what to do
    (:func:`error_advice`)."""
    return f"{actor_id}: {exc}{error_advice(exc)}"


def error_advice(exc: BaseException | None) -> str:
    """What to do about an actor's error, as every command says it: ``IMPORT_HINT`` when the
    actor's class, or a module its state refers to, cannot be imported or loaded here,
    :func:`integrity_advice` for a damaged object; else nothing."""
    from vactor_cloud.errors import ActorDefinitionError

    if exc is None:
        return ""
    import_hint = IMPORT_HINT if isinstance(exc, ActorDefinitionError | ImportError) else ""
    return f"{import_hint}{integrity_advice(exc)}"


def errors_error(errors: Sequence[str], what: str, *, count: int | None = None) -> CliError:
    """The one-line error (exit 1) of a command that went on past ``errors``: the first, and a count.

    ``what`` says what failed (``"timers could not be fired"``); with ``--debug``
    the others are printed too, one per line, before it. ``count``: how many failed, when
    ``errors`` keeps only the first of them.
    """
    first = errors[0]
    count = len(errors) if count is None else count
    if count == 1:
        return CliError(first, EXIT_ERROR)
    return CliError(f"{count} {what}; the first: {first} (--debug lists them all)", EXIT_ERROR)


def add_common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the options every subcommand shares (``suppress``: keep a value given before the subcommand)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--storage",
        metavar="URL",
        type=storage_arg,
        default=default(None),
        help="storage URL (default: $VACTOR_STORAGE, else the embedded local store)",
    )
    parser.add_argument(
        "-o",
        "--storage-option",
        metavar="KEY=VALUE",
        action="append",
        default=default(None),
        help="fsspec option for the store, repeatable (VALUE parsed as JSON when it can be)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON on stdout (nothing else)"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show tracebacks on errors, and the library's log",
    )


def common_parent() -> argparse.ArgumentParser:
    """A parent parser holding the shared options, for one subcommand."""
    # A fresh parent per subcommand: argparse shares parents' actions between
    # the parsers that use them, and one subcommand's edits must not reach another.
    common = CliParser(add_help=False)
    add_common_options(common, suppress=True)
    return common


def parse_storage_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``-o KEY=VALUE`` pairs as a dict; each VALUE is JSON when it parses, else the string.

    A KEY given twice is refused (``vactor -o endpoint_url=A ls -o endpoint_url=B`` worked on
    B, silently), as every option that takes one value refuses a second."""
    options: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"-o {pair!r}: expected KEY=VALUE, e.g. -o endpoint_url=http://127.0.0.1:9000", 2)
        if key in options:  # (the values are not echoed: one may be a secret)
            raise CliError(f"-o {key}=... given twice; give each KEY once", EXIT_USAGE)
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


@dataclass(frozen=True)
class StoreChoice:
    """The store a command works on, as the options and the environment name it."""

    url: str
    options: dict[str, Any]
    #: named by --storage or $VACTOR_STORAGE (not the embedded default)
    explicit: bool


def store_choice(args: argparse.Namespace, *, must_exist: bool = True) -> StoreChoice:
    """The store named by ``--storage`` / ``$VACTOR_STORAGE`` / the default, and its ``-o`` options.

    ``must_exist``: a local directory named explicitly must exist (a typo in a
    path is a usage error, not an empty store); the embedded default may not exist yet.
    """
    from vactor_cloud.settings import default_storage
    from vactor_cloud.storage import refuse_unusable_url

    named = getattr(args, "storage", None)
    if named is not None and not named.strip():  # `vactor bench ''`, `vactor doctor ''`
        raise CliError(
            "the storage URL is empty; name a store, or omit it for $VACTOR_STORAGE, else the embedded store",
            EXIT_USAGE,
        )
    given = named or os.environ.get("VACTOR_STORAGE") or None
    url = given or default_storage()
    pairs = getattr(args, "storage_option", None)
    options = parse_storage_options(pairs)
    _refuse_settings(pairs or ())
    try:
        refuse_unusable_url(url)  # before "no such directory; mkdir -p s3:/bucket" (or " /srv/x")
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    if must_exist and given is not None:
        path = local_path(url)
        if path is not None and not os.path.isdir(path):
            source = "--storage" if named else "$VACTOR_STORAGE"
            if os.path.exists(path):
                raise CliError(
                    f"{source} {url}: is a file, not a directory; name a store's directory", EXIT_USAGE
                )
            raise CliError(
                f"{source} {url}: no such directory; fix the path, or create it first (mkdir -p {path})",
                EXIT_USAGE,
            )
        if path is not None and _holds_no_store(path):
            source = "--storage" if named else "$VACTOR_STORAGE"
            raise CliError(
                f"{source} {url}: holds no vactor_cloud store (files, but no .vactor-layout, actors/ or "
                f"timers/); name the store's directory, or an empty one for a new store{_stores_in(path)}",
                EXIT_USAGE,
            )
    return StoreChoice(url, options, given is not None)


def _stores_in(path: str) -> str:
    """:func:`stores_below_hint` for the directories right under ``path`` that hold a store."""
    from vactor_cloud.storage import LocalStore

    try:
        found = LocalStore.directories_holding_a_store(path)
    except OSError:
        return ""
    return stores_below_hint([str(p) for p in found])


def stores_below_hint(found: Sequence[str] | None) -> str:
    """What to add where a command found no store or no actor at a URL under which ``found``
    are stores (``vactor --storage s3://bucket ls`` for ``s3://bucket/app``)."""
    if not found:
        return ""
    where = (
        f"a store is below it at {found[0]}"
        if len(found) == 1
        else f"stores are below it at {', '.join(found)}"
    )
    return f"; {where}: name the one you mean (--storage {found[0]})"


def _holds_no_store(path: str) -> bool:
    """A local directory that holds files but no store (``--storage ~/documents``): refused by
    every command rather than taken for an empty store, and never written."""
    from vactor_cloud.keys import ROOT_NAMES
    from vactor_cloud.storage import LocalStore

    try:
        return LocalStore.holds_no_store(path, ROOT_NAMES)
    except OSError:  # unreadable: the command's own request says so
        return False


#: what to do instead of ``-o SETTING=...``, for the settings the command does take another way
_SETTING_INSTEAD = {
    "storage": "name the store with --storage URL",
    "storage_options": "pass each option as -o KEY=VALUE",
    "signing_key": "set $VACTOR_SIGNING_KEY",
}


def _refuse_settings(pairs: Sequence[str]) -> None:
    """``-o timeout=2``: a setting of the runtime (``vactor_cloud.Settings``), not a store option.

    The error does not echo the value: it may be a key."""
    from dataclasses import fields

    from vactor_cloud.settings import Settings

    names = {f.name for f in fields(Settings)}
    for pair in pairs:
        key = pair.partition("=")[0]
        if key in names:
            instead = _SETTING_INSTEAD.get(key, "the vactor command runs with the default settings")
            raise CliError(
                f"-o {key}=...: {key!r} is a setting of the runtime, not an option of the store; {instead} "
                "(-o passes options to the store's client, e.g. -o endpoint_url=http://127.0.0.1:9000)",
                EXIT_USAGE,
            )


def memory_hint(url: str | None = None) -> str:
    """What to add where a command found nothing on a ``memory://`` store (``url``, else the
    runtime's): such a store lives in one process, and a ``vactor`` command is a process of
    its own; it sees only what it wrote itself (or what its caller wrote, run in-process)."""
    if url is None:
        from vactor_cloud.runtime import get_runtime

        with contextlib.suppress(Exception):
            url = get_runtime().store.url
    if url is None or not url.lower().startswith("memory://"):
        return ""
    return (
        f" ({url} lives in the memory of one process; this command sees nothing another process "
        "wrote there: name a directory or a bucket)"
    )


def describe_storage() -> str:
    from vactor_cloud.runtime import get_runtime

    return get_runtime().store.describe()


def local_path(url: str) -> str | None:
    """The directory a local store's URL names (a path, ``file://``); ``None`` for another scheme."""
    from vactor_cloud.storage import local_root

    return local_root(url)


def url_as_storage(args: argparse.Namespace) -> None:
    """``vactor doctor URL`` and ``vactor bench URL``: ``URL`` names the store as ``--storage``
    does; both given name it twice (refused, as any option given twice)."""
    if args.url is None:
        return
    if args.storage is not None:
        raise CliError("the store is given twice (as URL and as --storage); give it once", EXIT_USAGE)
    args.storage = args.url


def init_runtime(args: argparse.Namespace, *, must_exist: bool = True) -> StoreChoice:
    """``vactor_cloud.init()`` on the chosen store; bad URLs and options are usage errors."""
    from vactor_cloud.runtime import init

    choice = store_choice(args, must_exist=must_exist)
    try:
        init(choice.url, storage_options=choice.options)
    except (TypeError, ValueError) as exc:  # unknown scheme, unknown option, a setting given as -o
        wrong = [name for name in choice.options if f"option {name!r}" in str(exc)]
        if isinstance(exc, TypeError) and wrong and "must be str" in str(exc):
            # `-o key=123` gave the int 123: say how to pass the string
            raise CliError(
                f"{exc} (-o reads VALUE as JSON when it parses as JSON; quote a string: "
                f"-o '{wrong[0]}=\"...\"')",
                EXIT_USAGE,
            ) from exc
        raise CliError(str(exc), EXIT_USAGE) from exc
    except ModuleNotFoundError as exc:  # a missing extra: the message says which pip install
        raise CliError(str(exc), EXIT_ERROR) from exc
    return choice


def parse_json_arg(text: str, what: str) -> Any:
    """One JSON value, as Python's json module reads it (``NaN``, ``Infinity`` and ``-Infinity``
    too: typed, they are meant), but not a number no float holds (``1e400``), which it would
    read as infinity: a value the user did not type."""

    def finite(value: str) -> float:
        number = float(value)
        if math.isfinite(number):
            return number
        raise CliError(
            f"{what} {text!r}: {value} is beyond a float's range (it would be read as infinity); "
            "pass a smaller number, or Infinity if that is what you mean",
            EXIT_USAGE,
        )

    try:
        return json.loads(text, parse_float=finite)
    except ValueError:
        raise CliError(
            f"{what} {text!r} is not JSON; quote strings as JSON, e.g. '\"text\"', or pass numbers as 5",
            EXIT_USAGE,
        ) from None


def limit_arg(text: str) -> int | None:
    """``--limit``: a count >= 0 (0 shows nothing, as ``history(limit=0)`` does) or ``all``."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'all', got {text!r}")
    return value


def storage_arg(text: str) -> str:
    """``--storage``: a non-empty URL (an empty one would silently mean the embedded store)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "expected a storage URL or path, got an empty string (omit --storage for $VACTOR_STORAGE, "
            "else the embedded store)"
        )
    return text


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    return value


def positive_float(text: str) -> float:
    """A finite number of seconds > 0 (``--lease``, ``--poll``)."""
    value = _number(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of seconds >= 0 (``--min-age``)."""
    value = _number(text, float)
    if not math.isfinite(value) or value < 0:
        # the words of vactor_cloud.compaction.validate_compaction_args, which the library says too
        raise argparse.ArgumentTypeError(f"min_age must be a finite number of seconds >= 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--step``, ``--at-step``: step numbers start at 0)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (step numbers start at 0), got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (``--keep-last``, ``ls --limit``)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def actor_id_arg(text: str) -> str:
    """An actor id as every backend can store it (``ID`` and ``--actor`` of every command)."""
    from vactor_cloud.errors import InvalidActorIdError
    from vactor_cloud.ids import validate_actor_id

    try:
        validate_actor_id(text)
    except InvalidActorIdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text

"""Run the python blocks of one docs page in order, in this interpreter, as a reader would paste them.

Used by ``tests/test_docs_snippets.py``: ``python doc_snippet_runner.py BLOCKS.json STORE_DIR``,
where BLOCKS.json is a list of ``{"page", "line", "code"}`` (line: the first code line's
number in the page). Every block runs in one namespace, that of ``__main__`` (so classes
defined by a block are ``__main__`` classes, as in a script).

What a block says it returns is checked, statement by statement (top-level statements only):

* ``expr  # ... -> 6`` (or a comment that is a Python literal as a whole, ``print(x)  # 150``):
  the expression (for ``print(x)``, ``x``) must equal the literal after the last ``->``;
* ``stmt  # AttributeError: ...`` (a comment starting with the name of an exception class of
  ``builtins`` or ``vactor_cloud``): the statement must raise that exception.

Comments that are neither (``# -> 1796...``, prose) are not checked. Top-level ``await`` works.

Docs spell placeholder buckets (``s3://my-bucket/actors``): ``vc.init`` and ``workflow.init``
are wrapped so that a URL on one of PLACEHOLDER_BUCKETS opens a local directory under
STORE_DIR instead (one directory per URL), without its storage options. Every other URL is used
as written, so a block that needs a real bucket must be marked ``<!-- not run: ... -->``.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import dataclasses
import functools
import inspect
import io
import json
import re
import sys
import tokenize
import traceback
import types
from pathlib import Path
from typing import Any

PLACEHOLDER_BUCKETS = ("s3://my-bucket", "s3://bucket", "s3://b", "gs://my-bucket", "gs://bucket")
_LITERAL_AFTER_ARROW = re.compile(r"->\s*(.+?)\s*$")


def _is_placeholder(url: object) -> bool:
    return isinstance(url, str) and any(url == b or url.startswith(b + "/") for b in PLACEHOLDER_BUCKETS)


def _patch_init(store_dir: Path) -> None:
    import vactor_cloud
    from vactor_cloud import workflow

    real_init = vactor_cloud.init

    def local(url: str) -> str:
        return str(store_dir / re.sub(r"[^A-Za-z0-9]+", "-", url))

    # What init takes besides storage options (those name the placeholder's endpoint, say).
    own = {n for n, p in inspect.signature(real_init).parameters.items() if p.kind is p.KEYWORD_ONLY}
    own = (own - {"storage_options"}) | {"settings"}

    @functools.wraps(real_init)
    def init(storage: Any = None, **kwargs: Any) -> None:
        settings = kwargs.get("settings")
        placeholder = _is_placeholder(storage)
        if placeholder:
            storage = local(storage)
        if settings is not None and _is_placeholder(settings.storage):
            kwargs["settings"] = dataclasses.replace(settings, storage=local(settings.storage))
            placeholder = True
        if placeholder:
            kwargs = {k: v for k, v in kwargs.items() if k in own}
        real_init(storage, **kwargs)

    vactor_cloud.init = init
    workflow.init = init


def _comments(source: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def _expected_value(comment: str) -> tuple[bool, Any]:
    arrow = _LITERAL_AFTER_ARROW.search(comment)
    for text in ([arrow.group(1)] if arrow else []) + [comment]:
        try:
            return True, ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return False, None


def _expected_exception(comment: str) -> type[BaseException] | None:
    import vactor_cloud

    name = re.match(r"([A-Z]\w*(?:Error|Exception))\b", comment)
    if not name:
        return None
    cls = getattr(builtins, name.group(1), None) or getattr(vactor_cloud, name.group(1), None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _run(code: Any, namespace: dict[str, Any]) -> Any:
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):  # top-level await
        result = asyncio.run(result)
    return result


def run_block(page: str, first_line: int, source: str, namespace: dict[str, Any]) -> int:
    """Run one block; return the number of checked expectations. Raises on the first failure."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    source = "\n" * (first_line - 1) + source  # errors and tracebacks name the page's lines
    tree = ast.parse(source, filename=page)
    comments = _comments(source)
    checked = 0
    for stmt in tree.body:
        comment = comments.get(stmt.end_lineno or stmt.lineno, "")
        raises = _expected_exception(comment)
        where = f"{page}:{stmt.lineno}"
        if raises is not None:
            try:
                _run(compile(ast.Module([stmt], []), page, "exec", flags=flags), namespace)
            except raises:
                checked += 1
                continue
            raise AssertionError(f"{where}: the page says this raises {raises.__name__}; it did not")
        has_value, expected = _expected_value(comment) if isinstance(stmt, ast.Expr) else (False, None)
        if not has_value:
            _run(compile(ast.Module([stmt], []), page, "exec", flags=flags), namespace)
            continue
        assert isinstance(stmt, ast.Expr)
        value_node = stmt.value
        is_print = (
            isinstance(value_node, ast.Call)
            and isinstance(value_node.func, ast.Name)
            and value_node.func.id == "print"
            and len(value_node.args) == 1
        )
        target = value_node.args[0] if is_print else value_node  # type: ignore[attr-defined]
        value = _run(compile(ast.Expression(target), page, "eval", flags=flags), namespace)
        if is_print:
            print(value)
        if value != expected:
            raise AssertionError(f"{where}: the page says {expected!r}; got {value!r}")
        checked += 1
    return checked


def main() -> int:
    blocks = json.loads(Path(sys.argv[1]).read_text())
    _patch_init(Path(sys.argv[2]))
    # A fresh __main__: blocks cannot clobber the runner's own names, and a class they
    # define is found as __main__:<name>, as in a script.
    main_module = types.ModuleType("__main__")
    main_module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main_module
    namespace = main_module.__dict__
    checked = 0
    for block in blocks:
        try:
            checked += run_block(block["page"], block["line"], block["code"], namespace)
        except BaseException:
            print(f"FAILED: the block at {block['page']}:{block['line']}", file=sys.stderr)
            traceback.print_exc()
            return 1
    print(f"DOC BLOCKS OK: {len(blocks)} run, {checked} results checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())

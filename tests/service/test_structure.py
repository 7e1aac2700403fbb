"""The service stays thin: `create_app` only assembles the app, and every route handler is short
(the logic lives in the library or in small helpers). Read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import ragtune.service

SERVICE = Path(ragtune.service.__file__).parent
HTTP_METHODS = {"get", "post", "put", "delete", "patch", "head", "options", "api_route"}


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for path in sorted(SERVICE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [(path.relative_to(SERVICE).as_posix(), node) for node in ast.walk(tree)
                  if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    return found


def _is_route(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
               and d.func.attr in HTTP_METHODS for d in node.decorator_list)


def _lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1  # `def` to the last line, docstring included


def test_create_app_only_assembles_the_app() -> None:
    (where, app), = [(w, n) for w, n in _functions() if n.name == "create_app"]
    assert where == "app.py" and _lines(app) <= 60, _lines(app)


def test_every_route_handler_is_short_and_lives_in_a_router() -> None:
    routes = [(where, node) for where, node in _functions() if _is_route(node)]
    assert len(routes) >= 20  # the check found the handlers
    too_long = {f"{w}:{n.name}": _lines(n) for w, n in routes if _lines(n) > 25}
    assert not too_long, too_long
    assert all(where.startswith("routers/") for where, _ in routes)

"""docs/openapi.json and the URL table must agree: same paths, same methods, same roles."""

from __future__ import annotations

import json
from typing import Any

import tornado.web

from opsconsole.transport.http.routes import routes
from testkit import REPO

DOC = json.loads((REPO / "docs" / "openapi.json").read_text())
METHODS = ("get", "post", "put", "delete", "patch")


def _table() -> dict[str, tuple[type[tornado.web.RequestHandler], set[str]]]:
    table = {}
    for pattern, handler, _ in routes(None):
        path = pattern.replace("([^/]+)", "{name}")  # the one parameter today: a snapshot name
        methods = {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}
        table[path] = (handler, methods)
    return table


def test_every_route_is_documented_and_nothing_else() -> None:
    table = _table()
    assert set(table) == set(DOC["paths"])
    for path, (_, methods) in table.items():
        documented = {m for m in DOC["paths"][path] if m in METHODS}
        assert documented == methods, path


def test_documented_roles_match_the_handlers() -> None:
    for path, (handler, methods) in _table().items():
        for method in methods:
            op: dict[str, Any] = DOC["paths"][path][method]
            if handler.required_role is None:  # type: ignore[attr-defined]
                assert op.get("security") == [], path
            else:
                assert op.get("x-role") == handler.required_role, (path, method)  # type: ignore[attr-defined]


def test_document_is_well_formed_openapi() -> None:
    assert DOC["openapi"].startswith("3.")
    for path, item in DOC["paths"].items():
        assert path.startswith("/ops/")
        for method in (m for m in item if m in METHODS):
            assert item[method]["responses"], (path, method)

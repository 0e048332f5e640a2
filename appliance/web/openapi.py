"""The OpenAPI 3 document of /api/v1, built from the API's routes themselves.

Each API view carries its request body schema (``@body``) and its role
(``@requires``); paths, methods, parameters and summaries (the docstrings' first
lines) come from Flask's URL map, so the document cannot drift from the routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask

from . import roles

F = TypeVar("F", bound=Callable[..., object])

_ERROR = {"$ref": "#/components/schemas/Error"}
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def body(schema: dict[str, Any]) -> Callable[[F], F]:
    """Declare the JSON object a POST view expects."""

    def mark(view: F) -> F:
        view._tapir_body = schema  # type: ignore[attr-defined]
        return view

    return mark


def _operation(view: Callable[..., object], method: str, params: list[dict]) -> dict[str, Any]:
    doc = (view.__doc__ or "").strip()
    summary, _, rest = doc.partition("\n")
    op: dict[str, Any] = {
        "summary": summary.strip(),
        "operationId": view.__name__ + ("" if method == "get" else f"_{method}"),
        "x-tapir-role": roles.needed_role(view, method.upper()),
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {
                "description": "Malformed input",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "401": {
                "description": "No session or token",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "403": {
                "description": "Role too low",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "404": {
                "description": "Unknown name or id",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if rest.strip():
        op["description"] = " ".join(rest.split())
    if params:
        op["parameters"] = params
    schema = getattr(view, "_tapir_body", None)
    if schema is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return op


def document(app: Flask, prefix: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI document for every route under ``prefix``."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(prefix + "/") or rule.endpoint == "api.openapi":
            continue
        view = app.view_functions[rule.endpoint]
        path = _CONVERTER.sub(r"{\2}", rule.rule[len(prefix) :])
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if conv == "int" else "string"},
            }
            for conv, name in _CONVERTER.findall(rule.rule)
        ]
        params += getattr(view, "_tapir_query", [])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(view, method.lower(), params)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Tapir appliance API", "version": "1"},
        "servers": [{"url": prefix}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
        },
    }


def query(*params: tuple[str, str, str]) -> Callable[[F], F]:
    """Declare query parameters as (name, type, description)."""

    def mark(view: F) -> F:
        view._tapir_query = [  # type: ignore[attr-defined]
            {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
            for n, t, d in params
        ]
        return view

    return mark

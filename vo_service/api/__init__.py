"""The REST API under /api/v1: JSON in and out, problem details on error."""

from __future__ import annotations

from typing import Any

from flask import Flask

from . import (  # noqa: F401  (register operations)
    ca_http,
    certificates,
    memberships,
    nodes,
    problems,
    users,
    vos,
)
from .openapi import document
from .registry import Call, api, operation


@operation("GET", "/openapi.json", summary="This API's OpenAPI document", tag="meta",
           public=True)
def openapi(call: Call) -> dict[str, Any]:
    return document()


def init_app(app: Flask) -> None:
    app.register_blueprint(api)
    ca_http.init_app(app)
    problems.register(app, api.url_prefix or "/api/v1")

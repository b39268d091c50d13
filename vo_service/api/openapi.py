"""The OpenAPI 3.1 document, built from the registered operations and their schemas."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from .registry import OPERATIONS, Operation, api

PROBLEM = {"type": "object", "required": ["title", "status"], "properties": {
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
    "detail": {"type": "string"}, "instance": {"type": "string"}}}
ERRORS = {"400": "Malformed request", "401": "Authentication required",
          "403": "Permission denied", "404": "Not found", "409": "Conflict",
          "413": "Body too large", "422": "Invalid input"}


def _openapi_path(rule: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:\w+:)?(\w+)>", rule)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), names


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    path, names = _openapi_path(op.rule)
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
    if op.query is not None:
        schema = op.query.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query",
                           "required": name in schema.get("required", []), "schema": prop})
    ok: dict[str, Any] = {"description": "Success"}
    if op.status != 204:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(op.status): ok}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for code, text in ERRORS.items():
        if code == "401" and op.public:
            continue
        responses[code] = {"description": text, "content": problem}
    out: dict[str, Any] = {"operationId": op.handler.__name__, "summary": op.summary,
                           "tags": [op.tag], "parameters": params, "responses": responses}
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema(op.body, components)}}}
    if op.public:
        out["security"] = []
    return out


def document() -> dict[str, Any]:
    components: dict[str, Any] = {"Problem": PROBLEM}
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        path, _ = _openapi_path(op.rule)
        entry = paths.setdefault(f"{api.url_prefix}{path}", {})
        entry[op.method.lower()] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "XOS identity VO service", "version": "1"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "xos_... API key"}}},
        "security": [{"apiKey": []}],
    }

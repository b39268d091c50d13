"""The one place where errors become HTTP answers: RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from ..db import db
from ..errors import XosError

PROBLEM_TYPE = "https://xos-identity.example/problems/"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": PROBLEM_TYPE + title.lower().replace(" ", "-"), "title": title,
            "status": status, "detail": detail, "instance": request.path, **extra}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="xos"'
    if "retry_after" in extra:
        response.headers["Retry-After"] = str(extra["retry_after"])
    return response


def _on_xos_error(error: XosError) -> Response:
    db.session.rollback()
    return problem(error.status, error.title, error.detail, **error.extra)


def _field(loc: tuple[int | str, ...]) -> str:
    """A field's name as the client sent it, truncated and never raw control characters."""
    name = ".".join(str(p) for p in loc)
    name = name if len(name) <= 64 else name[:64] + "..."
    return name if name.isprintable() else repr(name)


def _on_validation_error(error: ValidationError) -> Response:
    db.session.rollback()
    errors = [{"field": _field(e["loc"]), "message": e["msg"]}
              for e in error.errors(include_input=False, include_url=False)]
    summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:3])
    return problem(422, "Invalid input", f"the request does not match the schema: {summary}",
                   errors=errors[:20])


def _on_integrity_error(error: IntegrityError) -> Response:
    db.session.rollback()
    current_app.logger.info("integrity error (concurrent change?): %s", error.orig)
    return problem(409, "Conflict", "the request conflicts with a concurrent change; retry")


def _on_operational_error(error: OperationalError) -> Response:
    db.session.rollback()
    current_app.logger.warning("database unavailable: %s", error.orig)
    return problem(503, "Service unavailable", "the database is unavailable; retry later")


def _on_http_error(error: HTTPException) -> Response:
    response = problem(error.code or 500, error.name, error.description or error.name)
    if "Allow" in (headers := dict(error.get_headers())):  # 405 must name the methods
        response.headers["Allow"] = headers["Allow"]
    return response


def register(app: Flask, blueprint_prefix: str) -> None:
    """Problem details on the API; the portal (later) keeps HTML error pages."""
    app.register_error_handler(XosError, _on_xos_error)
    app.register_error_handler(ValidationError, _on_validation_error)
    app.register_error_handler(IntegrityError, _on_integrity_error)
    app.register_error_handler(OperationalError, _on_operational_error)

    def on_http(error: HTTPException) -> Any:
        if request.path.startswith(blueprint_prefix):
            return _on_http_error(error)
        return error

    app.register_error_handler(HTTPException, on_http)

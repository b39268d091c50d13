"""API operations: one registration gives the Flask route, the request pipeline and the
OpenAPI entry, so the document cannot drift from the code.

The pipeline of every operation, written out once: authenticate the caller, read and
validate the query and the JSON body, build the services' context, run the handler,
commit, render JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel

from ..apikeys.services import ApiKeyService
from ..authz import Actor
from ..context import ServiceContext
from ..db import db
from ..errors import AuthenticationRequired, MalformedRequest

api = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_JSON_DEPTH = 32
API_KEY_PREFIX = "xos_"  # API keys; anything else presented as Bearer is an access token


@dataclass
class Call:
    """What a handler receives: the caller, the services' context and the query."""

    actor: Actor
    ctx: ServiceContext
    query: Any = None


@dataclass
class Operation:
    method: str
    rule: str
    handler: Callable[..., Any]
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    public: bool = False
    paged: bool = False
    errors: tuple[int, ...] = field(default_factory=tuple)


OPERATIONS: list[Operation] = []


def operation(method: str, rule: str, *, summary: str, tag: str,
              body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              status: int = 200, public: bool = False, paged: bool = False
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        op = Operation(method, rule, handler, summary, tag, body, query, status, public, paged)
        OPERATIONS.append(op)
        api.add_url_rule(rule, endpoint=handler.__name__, methods=[method],
                         view_func=lambda **kwargs: _run(op, kwargs))
        return handler
    return register


def _authenticate(ctx: ServiceContext) -> Actor:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationRequired("send 'Authorization: Bearer <access token or API key>'")
    credential = credential.strip()
    if credential.startswith(API_KEY_PREFIX):
        return ApiKeyService(ctx).authenticate(credential)
    from ..oauth.server import tokens

    return tokens().actor(credential)


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth, checking every string on the way (see ``refuse_unstorable``)."""
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        for key in value:
            refuse_unstorable(key)
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    if isinstance(value, str):
        refuse_unstorable(value)
    return level


def refuse_unstorable(text: str) -> None:
    """NUL and lone surrogates cannot be stored (PostgreSQL refuses them) nor written
    into any Unix record: refuse them at the door, wherever they come from."""
    if "\x00" in text:
        raise MalformedRequest("NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest("the request holds text that is not valid Unicode") from None


def read_json_body() -> Any:
    if request.mimetype != "application/json":
        raise MalformedRequest("send the body as application/json")
    raw = request.get_data(cache=False)  # MAX_CONTENT_LENGTH gives 413 beyond the limit
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {str(exc)[:120]}") from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise MalformedRequest(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(document, dict):
        raise MalformedRequest("the JSON body must be an object")
    return document


def _run(op: Operation, path_args: dict[str, Any]) -> Any:
    ctx = ServiceContext.build(db.session, current_app.config)
    actor = Actor(label="anonymous") if op.public else _authenticate(ctx)
    call = Call(actor=actor, ctx=ctx)
    for value in (*path_args.values(), *request.args.keys(), *request.args.values()):
        refuse_unstorable(value)
    if op.query is not None:
        call.query = op.query.model_validate(request.args.to_dict())
    elif request.args:
        names = [n if len(n) <= 40 and n.isprintable() else repr(n[:40])
                 for n in sorted(request.args)[:5]]
        raise MalformedRequest(f"unexpected query parameters: {', '.join(names)}")
    args: list[Any] = [call]
    if op.body is not None:
        args.append(op.body.model_validate(read_json_body()))
    result = op.handler(*args, **path_args)
    db.session.commit()
    if op.status == 204:
        return "", 204
    return jsonify(result), op.status

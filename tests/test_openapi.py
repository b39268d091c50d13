"""The served OpenAPI document: valid OpenAPI 3.1, complete, strict about bodies; and
the API's answers for paths and methods it does not have."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from vo_service.api.registry import OPERATIONS

PREFIX = "/api/v1"


@pytest.fixture
def spec(app, client) -> dict[str, Any]:
    response = client.get(PREFIX + "/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def openapi_path(rule: str) -> str:
    return PREFIX + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def test_the_document_is_valid_openapi_3_1(spec) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_validator_would_catch_a_broken_document(spec) -> None:
    """The check above can fail: the same document with a broken operation is refused."""
    broken = {**spec, "paths": {**spec["paths"], PREFIX + "/broken": {
        "get": {"responses": {"200": {"content": "not an object"}}}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_operation_appears_with_its_method(spec) -> None:
    assert len(OPERATIONS) >= 47
    documented = {(path, method.upper()) for path, item in spec["paths"].items()
                  for method in item}
    registered = {(openapi_path(op.rule), op.method) for op in OPERATIONS}
    assert registered - documented == set(), "registered but not documented"
    assert documented - registered == set(), "documented but not registered"
    ids = []
    for op in OPERATIONS:
        entry = spec["paths"][openapi_path(op.rule)][op.method.lower()]
        ids.append(entry["operationId"])
        assert entry["summary"] == op.summary
        assert str(op.status) in entry["responses"], op.rule
        names = re.findall(r"<(?:\w+:)?(\w+)>", op.rule)
        declared = [p["name"] for p in entry["parameters"] if p["in"] == "path"]
        assert declared == names, op.rule
        if op.query is not None:
            query = {p["name"] for p in entry["parameters"] if p["in"] == "query"}
            assert query == set(op.query.model_fields), op.rule
        assert ("requestBody" in entry) == (op.body is not None), op.rule
        if not op.public:
            assert "401" in entry["responses"] and "403" in entry["responses"], op.rule
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_request_body_forbids_additional_properties(spec) -> None:
    bodies = 0
    for path, item in spec["paths"].items():
        for method, entry in item.items():
            if "requestBody" not in entry:
                continue
            bodies += 1
            content = entry["requestBody"]["content"]
            assert list(content) == ["application/json"], (method, path)
            schema = resolve(spec, content["application/json"]["schema"])
            assert schema["type"] == "object", (method, path)
            assert schema.get("additionalProperties") is False, (method, path)
    assert bodies == sum(1 for op in OPERATIONS if op.body is not None) > 0


def test_the_schema_matches_what_the_server_enforces(app, api, admin_key) -> None:
    """additionalProperties: false in the document, and 422 for an unknown field."""
    status, body = api.call("POST", "/vos", admin_key, {"name": "atlas", "colour": "red"})
    assert status == 422, body
    assert any(e["field"] == "colour" for e in body["errors"])


def test_security_is_declared_and_public_operations_need_no_key(spec, client) -> None:
    assert spec["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for op in OPERATIONS:
        entry = spec["paths"][openapi_path(op.rule)][op.method.lower()]
        if op.public:
            assert entry["security"] == [] and "401" not in entry["responses"]
        else:
            assert "security" not in entry  # the global requirement applies
    response = client.get(PREFIX + "/openapi.json")  # no Authorization header
    assert response.status_code == 200
    assert response.get_json()["paths"]


def check_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["instance"] == response.request.path
    return body


@pytest.mark.parametrize("path", ["/nope", "/users/alice/nothing", "/vos/atlas/x/y/z",
                                  "/openapi.yaml", ""])
def test_an_unknown_path_is_a_problem_404(app, client, path) -> None:
    body = check_problem(client.get(PREFIX + path), 404)
    assert body["title"] == "Not Found"


@pytest.mark.parametrize("method,path", [
    ("POST", "/me"), ("DELETE", "/openapi.json"), ("PUT", "/users"), ("PATCH", "/vos"),
    ("POST", "/nodes/n1.example/snapshot"), ("GET", "/api-keys/0123456789abcdef"),
])
def test_a_wrong_method_is_a_problem_405(app, client, admin_key, method, path) -> None:
    response = client.open(PREFIX + path, method=method,
                           headers={"Authorization": f"Bearer {admin_key}"})
    body = check_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    allowed = {op.method for op in OPERATIONS
               if re.fullmatch(re.sub(r"<(?:\w+:)?\w+>", "[^/]+", op.rule), path)}
    assert allowed and method not in allowed
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= allowed

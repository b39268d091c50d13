"""The service admin's pages through the test client (CSRF on): creating a VO, naming
and removing its admins, registering a node, changing the VOs it serves and making its
one-time enrolment token; and what is refused (no CSRF token, VO admins and members,
hostile and oversized input), each time checking that nothing changed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_support import PASSWORD, SCRIPT, csrf, sign_in

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService


@pytest.fixture
def gridops(portal: Flask) -> Iterator[FlaskClient]:
    """A signed-in service admin; wn1.grid.example is registered for atlas."""
    with portal.app_context():
        ctx = ServiceContext.build(db.session, portal.config)
        system = Actor.system("pytest")
        root = UserService(ctx).create(system, "gridops", "Grid Ops", is_service_admin=True)
        PasswordService(ctx).set(system, root, PASSWORD)
        NodeService(ctx).register(system, "wn1.grid.example", vos=["atlas"])
        db.session.commit()
    client = portal.test_client()
    sign_in(client, "gridops")
    yield client


def _post(client: FlaskClient, path: str, **fields: str) -> bytes:
    page = client.get(path)
    answer = client.post(path, data={"csrf_token": csrf(page.data), **fields},
                         follow_redirects=True)
    assert answer.status_code == 200
    return answer.data


def _state(app: Flask) -> dict[str, object]:
    """What the admin pages can change: VOs, their admins, nodes and their VOs."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        vos, nodes = VOService(ctx), NodeService(ctx)
        every_vo, _ = vos.page(limit=500)
        every_node, _ = nodes.page(Actor.system("pytest"), limit=500)
        return {"vos": {vo.name: (vo.description, [u.username for u in vos.admins(vo)])
                        for vo in every_vo},
                "nodes": {n.name: nodes.record(n)["vos"] for n in every_node}}


def test_vo_created_admin_named_then_removed(portal: Flask, gridops: FlaskClient) -> None:
    page = _post(gridops, "/admin", form="vo", name="lhcb", description=SCRIPT)
    assert b"VO lhcb created." in page and SCRIPT.encode() not in page
    assert b"&lt;script&gt;" in page
    _post(gridops, "/admin", form="admin", vo="lhcb", username="mallory")
    mallory = portal.test_client()
    sign_in(mallory, "mallory")
    assert mallory.get("/vos/lhcb/members").status_code == 200  # now lhcb's admin
    assert mallory.get("/admin").status_code == 403
    assert mallory.get("/admin/nodes").status_code == 403
    page = _post(gridops, "/admin", form="unadmin", vo="lhcb", username="mallory")
    assert b"mallory no longer administers lhcb." in page
    assert _state(portal)["vos"]["lhcb"] == (SCRIPT, [])  # type: ignore[index]
    assert mallory.get("/vos/lhcb/members").status_code == 403


def test_node_registered_given_vos_and_enrolled(portal: Flask, gridops: FlaskClient) -> None:
    page = _post(gridops, "/admin/nodes", form="register", node="WN2.grid.example",
                 description=SCRIPT, vos="atlas, cms")
    assert b"Node wn2.grid.example registered" in page and SCRIPT.encode() not in page
    assert _state(portal)["nodes"]["wn2.grid.example"] == ["atlas", "cms"]  # type: ignore[index]
    page = _post(gridops, "/admin/nodes", form="vos", node="wn2.grid.example", vos="cms")
    assert b"wn2.grid.example now serves: cms." in page
    assert _state(portal)["nodes"]["wn2.grid.example"] == ["cms"]  # type: ignore[index]
    page = _post(gridops, "/admin/nodes", form="enrol", node="wn2.grid.example")
    token = re.search(rb"xet_[A-Za-z0-9_-]{20,}", page)
    assert token is not None
    again = gridops.get("/admin/nodes").data
    assert token.group(0) not in again  # shown once


@pytest.mark.parametrize("fields, message", [
    ({"form": "register", "node": "wn3;rm -rf /", "vos": "atlas"}, b"node name"),
    ({"form": "register", "node": "wn3.grid.example", "vos": "atlas, nosuchvo"},
     b"nosuchvo"),
    ({"form": "register", "node": "wn1.grid.example"}, b"already registered"),
    ({"form": "register", "node": "wn3.grid.example", "vos": "a," * 1100},
     b"That form was not complete."),
    ({"form": "vos", "node": "wn1.grid.example", "vos": "atlas,<script>"}, b"no VO"),
    ({"form": "vos", "node": "nosuch.grid.example", "vos": "atlas"}, b"no node"),
    ({"form": "enrol", "node": "x" * 300}, b"That form was not complete."),
    ({"form": "admin", "vo": "atlas", "username": "nobody"}, b"no user"),
    ({"form": "unadmin", "vo": "atlas", "username": "bob"}, b"not an admin"),
    ({"form": "bogus"}, b"That form was not complete."),
])
def test_bad_input_is_refused_and_changes_nothing(portal: Flask, gridops: FlaskClient,
                                                  fields: dict[str, str],
                                                  message: bytes) -> None:
    before = _state(portal)
    path = "/admin" if fields["form"] in ("vo", "admin", "unadmin", "bogus") else "/admin/nodes"
    page = _post(gridops, path, **fields)
    assert message in page, page[:2000]
    assert b'class="flash error"' in page
    assert b"<script>" not in page
    assert _state(portal) == before


def test_no_csrf_token_and_non_admins_change_nothing(portal: Flask,
                                                     gridops: FlaskClient) -> None:
    before = _state(portal)
    for path, fields in (("/admin", {"form": "vo", "name": "lhcb"}),
                         ("/admin/nodes", {"form": "register", "node": "wn9.grid.example"})):
        gridops.post(path, data=fields)
        alice = portal.test_client()  # atlas's VO admin, not a service admin
        sign_in(alice, "alice")
        assert alice.get(path).status_code == 403
        token = csrf(alice.get("/home").data)
        assert alice.post(path, data={"csrf_token": token, **fields}).status_code == 403
    assert portal.test_client().get("/admin/nodes").status_code == 302  # to sign-in
    assert _state(portal) == before

"""What the portal's test-client tests share: a seeded service with CSRF on (the
``portal`` fixture in conftest.py uses ``seeded_portal``), reading a page's CSRF token,
and signing in.

The seed: VOs atlas (admin alice, member alice, bob's request pending with a script
payload as its reason) and cms (admin carol); users alice, bob, carol, mallory, all with
PASSWORD."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
from flask import Flask
from flask.testing import FlaskClient
from support import make_app

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

PASSWORD = "correct horse battery"
SCRIPT = '<script>alert("x")</script>'


@contextlib.contextmanager
def seeded_portal(**config: Any) -> Iterator[Flask]:
    """A service with a portal on a fresh SQLite file, seeded as the module says."""
    with tempfile.TemporaryDirectory(prefix="xos-portal-") as work:
        app = make_app(f"sqlite:///{Path(work) / 'xos.sqlite3'}", WTF_CSRF_ENABLED=True,
                       **config)
        with app.app_context():
            flask_migrate.upgrade()
            ctx = ServiceContext.build(db.session, app.config)
            system = Actor.system("pytest")
            vos = VOService(ctx)
            atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
            users = {name: UserService(ctx).create(system, name, name.title())
                     for name in ("alice", "bob", "carol", "mallory")}
            for user in users.values():
                PasswordService(ctx).set(system, user, PASSWORD)
            vos.set_admin(system, atlas, users["alice"], True)
            vos.set_admin(system, cms, users["carol"], True)
            MembershipService(ctx).add(system, atlas, users["alice"])
            bob = users["bob"]
            MembershipService(ctx).request(Actor(label="user:bob", user_id=bob.id), atlas,
                                           bob, SCRIPT)
            db.session.commit()
        yield app
        with app.app_context():
            db.engine.dispose()


def csrf(page: bytes) -> str:
    found = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1).decode()


def sign_in(client: FlaskClient, user: str, password: str = PASSWORD,
            **query: str) -> Any:
    token = csrf(client.get("/signin").data)
    return client.post("/signin", query_string=query,
                       data={"csrf_token": token, "username": user, "password": password})

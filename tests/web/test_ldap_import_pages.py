"""The portal's LDAP import page through the test client, CSRF on, against a real slapd
(tests/ldap_import_directory.py): the preview (escaped), the import of exactly the
previewed plan, a refused stale import, and the refusals (no CSRF token, a member,
another VO's admin, an unknown VO, no directory configured)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from e2e.slapd import Slapd
from flask import Flask
from flask.testing import FlaskClient
from ldap_import_directory import group_dn, loaded_directory, mapping, modify, settings
from portal_support import SCRIPT, csrf, seeded_portal, sign_in

from vo_service.audit.models import AuditEvent
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.users.models import User
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

PAGE = "/vos/atlas/ldap-import"


@pytest.fixture
def directory() -> Iterator[Slapd]:
    with loaded_directory() as server:
        yield server


@pytest.fixture
def ldap_portal(directory: Slapd) -> Iterator[Flask]:
    with seeded_portal(**settings(directory)) as app:
        yield app


def form_data(client: FlaskClient, server: Slapd, **extra: Any) -> dict[str, Any]:
    page = client.get(PAGE)
    assert page.status_code == 200
    return {"csrf_token": csrf(page.data), "members_group": group_dn(server, "atlas-members"),
            "mapping": "\n".join(f"{dn}={path}" for dn, path in mapping(server)),
            "action": "preview", **extra}


def fingerprint(page: bytes) -> str:
    found = re.search(rb'name="fingerprint" type="hidden" value="([0-9a-f]{64})"', page)
    assert found, "the page carries no previewed plan"
    return found.group(1).decode()


def state(app: Flask) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(sa.select(sa.func.count()).select_from(User)) or 0,
                db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0)


def admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(client, "alice")
    return client


def test_the_preview_shows_the_plan_escaped_and_changes_nothing(ldap_portal, directory):
    client = admin(ldap_portal)
    before = state(ldap_portal)
    page = client.post(PAGE, data=form_data(client, directory))
    assert page.status_code == 200
    text = page.data.decode()
    assert SCRIPT not in text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    assert "\u202e" not in text and "\x07" not in text
    assert "<script" not in text  # nothing inline at all (the CSP forbids it anyway)
    # the seeded local users alice, bob and carol are conflicts, never taken over
    assert text.count("exists and is not linked") == 3
    assert "<strong>4</strong> users to create" in text
    assert "<strong>3</strong> groups to create" in text
    assert "held by more than one directory entry" in text and "star*" in text
    assert "Import these" in text
    fingerprint(page.data)
    assert state(ldap_portal) == before


def test_import_applies_exactly_the_previewed_plan(ldap_portal, directory):
    client = admin(ldap_portal)
    data = form_data(client, directory)
    preview = client.post(PAGE, data=data)
    answer = client.post(PAGE, data={**data, "action": "import",
                                     "fingerprint": fingerprint(preview.data)})
    assert answer.status_code == 302
    done = client.get(PAGE).data.decode()
    assert "Imported into atlas: 7 changes" in done and "4 users created" in done
    with ldap_portal.app_context():
        names = set(db.session.scalars(sa.select(User.username)))
        assert {"dave", "erin", "frank", "grace"} <= names
        carol = db.session.scalar(sa.select(User).where(User.username == "carol"))
        assert carol.display_name == "Carol"  # the local account, not taken over
        actors = set(db.session.scalars(sa.select(AuditEvent.actor).where(
            AuditEvent.action == "user.create", AuditEvent.actor.like("ldap-import:%"))))
        assert actors == {"ldap-import:user:alice"}
    # the same preview again: nothing left to do
    again = client.post(PAGE, data=form_data(client, directory)).data.decode()
    assert "nothing to change" in again and "Import these" not in again


def test_a_big_import_goes_in_parts_each_applying_the_rest(ldap_portal, directory,
                                                             monkeypatch):
    """One request applies at most STEPS_PER_REQUEST user steps; the page then shows
    the preview of what is left, and importing again goes on until nothing is."""
    from web.pages import ldap_import

    monkeypatch.setattr(ldap_import, "STEPS_PER_REQUEST", 2)
    client = admin(ldap_portal)
    data = form_data(client, directory)
    page = client.post(PAGE, data=data)
    parts = 0
    while "Import these" in page.data.decode():
        parts += 1
        assert parts <= 5
        page = client.post(PAGE, data={**data, "action": "import",
                                       "fingerprint": fingerprint(page.data)},
                           follow_redirects=True)
        assert page.status_code == 200
        if "the first part" in page.data.decode():
            assert "are left" in page.data.decode()
    assert parts == 2  # 4 user steps (the 3 groups come first, uncapped), two at a time
    with ldap_portal.app_context():
        names = set(db.session.scalars(sa.select(User.username)))
        assert {"dave", "erin", "frank", "grace"} <= names
    again = client.post(PAGE, data=form_data(client, directory)).data.decode()
    assert "nothing to change" in again


def test_a_stale_preview_is_not_imported(ldap_portal, directory):
    client = admin(ldap_portal)
    data = form_data(client, directory)
    old = fingerprint(client.post(PAGE, data=data).data)
    modify(directory, group_dn(directory, "atlas-members"),
           {"member": [("MODIFY_DELETE", [directory.user_dn("grace")])]})
    before = state(ldap_portal)
    page = client.post(PAGE, data={**data, "action": "import", "fingerprint": old})
    assert page.status_code == 200
    assert "changed since the preview" in page.data.decode()
    assert fingerprint(page.data) != old and state(ldap_portal) == before
    forged = client.post(PAGE, data={**data, "action": "import", "fingerprint": "0" * 64})
    assert "changed since the preview" in forged.data.decode()
    assert state(ldap_portal) == before


def test_a_post_without_csrf_changes_nothing(ldap_portal, directory):
    client = admin(ldap_portal)
    data = form_data(client, directory)
    good = fingerprint(client.post(PAGE, data=data).data)
    before = state(ldap_portal)
    del data["csrf_token"]
    answer = client.post(PAGE, data={**data, "action": "import", "fingerprint": good})
    assert answer.status_code in (302, 400)
    assert state(ldap_portal) == before
    wrong = client.post(PAGE, data={**data, "csrf_token": "forged", "action": "import",
                                    "fingerprint": good})
    assert wrong.status_code in (302, 400) and state(ldap_portal) == before


def test_members_other_vos_admins_and_unknown_vos_are_refused(ldap_portal, directory):
    with ldap_portal.app_context():
        ctx = ServiceContext.build(db.session, ldap_portal.config)
        system = Actor.system("pytest")
        atlas = VOService(ctx).get("atlas")
        MembershipService(ctx).add(system, atlas, UserService(ctx).get("mallory"))
        db.session.commit()
    before = state(ldap_portal)
    for name, status in (("mallory", 403), ("carol", 403)):
        client = ldap_portal.test_client()
        sign_in(client, name)
        token = csrf(client.get("/home").data)
        assert client.get(PAGE).status_code == status
        answer = client.post(PAGE, data={"csrf_token": token, "action": "import",
                                         "members_group": group_dn(directory,
                                                                   "atlas-members")})
        assert answer.status_code == status
    assert admin(ldap_portal).get("/vos/nosuch/ldap-import").status_code == 404
    assert state(ldap_portal) == before


def test_bad_inputs_are_refused_with_a_message(ldap_portal, directory):
    client = admin(ldap_portal)
    before = state(ldap_portal)
    for extra, message in (
            ({"mapping": "cn=a,dc=x=/cms/analysis"}, "not a group of VO"),
            ({"members_group": "", "members_filter": "(uid=*))(|(uid=*"},
             "one parenthesised LDAP filter"),
            ({"mapping": "no equals sign"}, "a mapping looks like"),
            ({"action": "delete-everything"}, "the form was incomplete")):
        answer = client.post(PAGE, data=form_data(client, directory, **extra),
                             follow_redirects=True)
        assert message in answer.data.decode(), extra
    assert state(ldap_portal) == before


def test_without_a_directory_the_page_says_so(portal):
    client = admin(portal)
    page = client.get(PAGE).data.decode()
    assert "No institutional directory" in page and "LDAP_URL" in page
    assert 'name="members_group"' not in page
    assert "LDAP import" in client.get("/vos/atlas/members").data.decode()  # the tab

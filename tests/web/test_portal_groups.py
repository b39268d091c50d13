"""The portal's groups, roles, group managers, one member's page and membership expiry,
through Flask's test client with CSRF on: every change shows up on the pages and in the
service's state; refusals (no CSRF token, another VO's admin, a plain member, a manager of
another group) and hostile or malformed input (script payloads, bad group paths, past and
malformed dates, oversized fields) change nothing."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from portal_support import SCRIPT, csrf, sign_in
from sqlalchemy import func, select

from vo_service.audit.models import AuditEvent
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.models import GroupMembership, Membership, RoleAssignment
from vo_service.memberships.services import MembershipService
from vo_service.timeutil import today
from vo_service.users.services import UserService
from vo_service.vos.models import Group, GroupManager, Role
from vo_service.vos.services import VOService

ESCAPED = str(escape(SCRIPT)).encode()  # what Jinja writes for SCRIPT


def _escaped_in(page: bytes) -> bool:
    return b"<script" not in page and ESCAPED in page


def state(app: Flask) -> dict[str, Any]:
    """Everything the pages may change: groups, roles, memberships with their groups,
    roles and expiry, managers, and the number of audit events."""
    with app.app_context():
        s = db.session
        out = {
            "groups": sorted((g.path, g.description, g.deleted_at is not None)
                             for g in s.scalars(select(Group))),
            "roles": sorted((r.vo_id, r.name, r.description) for r in s.scalars(select(Role))),
            "memberships": sorted((m.username, m.vo_id, m.status, m.expires_on, m.reason)
                                  for m in s.scalars(select(Membership))),
            "in_groups": sorted((m, g) for m, g in s.execute(
                select(GroupMembership.membership_id, GroupMembership.group_id))),
            "roles_held": sorted((m, r) for m, r in s.execute(
                select(RoleAssignment.membership_id, RoleAssignment.role_id))),
            "managers": sorted((g, str(u)) for g, u in s.execute(
                select(GroupManager.group_id, GroupManager.user_id))),
            "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
        }
        db.session.remove()
        return out


def seed(app: Flask) -> None:
    """Beyond the portal seed: atlas has /atlas/analysis, /atlas/analysis/higgs,
    /atlas/production and the role production; bob and mallory are active atlas members."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        vos, ms, users = VOService(ctx), MembershipService(ctx), UserService(ctx)
        atlas = vos.get("atlas")
        for path in ("/atlas/analysis", "/atlas/analysis/higgs", "/atlas/production"):
            vos.create_group(system, atlas, path, f"the {path} group")
        vos.create_role(system, atlas, "production", "runs production jobs")
        ms.transition(system, atlas, users.get("bob"), "approve")
        ms.add(system, atlas, users.get("mallory"))
        db.session.commit()
        db.session.remove()


def membership(app: Flask, user: str, vo: str = "atlas") -> dict[str, Any]:
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        record = MembershipService(ctx).read(Actor.system("pytest"), VOService(ctx).get(vo),
                                             UserService(ctx).get(user))
        db.session.remove()
        return record


def client_of(app: Flask, user: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, user).status_code == 302
    return client


def post(client: FlaskClient, page: str, data: dict[str, Any], url: str | None = None,
         follow: bool = True) -> Any:
    """Post ``data`` with the CSRF token read from ``page`` (to ``url``, else the page)."""
    token = csrf(client.get(page).data)
    return client.post(url or page, data={"csrf_token": token, **data},
                       follow_redirects=follow)


@pytest.fixture
def atlas(portal: Flask) -> Flask:
    seed(portal)
    return portal


# -- groups and roles -------------------------------------------------------------------------
def test_a_vo_admin_creates_groups_and_roles_and_sees_them(atlas: Flask) -> None:
    alice = client_of(atlas, "alice")
    page = alice.get("/vos/atlas/groups")
    assert page.status_code == 200
    assert b'aria-current="page" class="current">Groups &amp; roles' in page.data
    answer = post(alice, "/vos/atlas/groups", {"form": "group", "path": "/atlas/analysis/zz",
                                               "description": SCRIPT})
    assert answer.status_code == 200
    assert b"Group /atlas/analysis/zz created" in answer.data
    assert b'class="depth-2"><a href="/vos/atlas/groups/analysis/zz"' in answer.data
    assert _escaped_in(answer.data)
    assert ("/atlas/analysis/zz", SCRIPT, False) in state(atlas)["groups"]
    # the tree counts active members: the root holds alice, bob and mallory
    assert b'<td class="num">3</td>' in answer.data
    answer = post(alice, "/vos/atlas/groups", {"form": "role", "role": "Lead-1",
                                               "role_description": SCRIPT})
    assert b"Role /atlas/Role=Lead-1 created." in answer.data
    assert b"<code>/atlas/Role=Lead-1</code>" in answer.data and _escaped_in(answer.data)
    assert any(name == "Lead-1" and text == SCRIPT for _, name, text in state(atlas)["roles"])


@pytest.mark.parametrize(("path", "message"), [
    ("/atlas/../cms", "group name '..' is invalid"),
    ("../etc/passwd", "a group path looks like /vo or /vo/group/subgroup"),
    ("/cms/stolen", "a group of VO 'atlas' has a path like /atlas/name"),
    ("/atlas", "a group of VO 'atlas' has a path like /atlas/name"),
    ("/atlas/" + "a" * 31, "longer than 32 characters"),
    ("/atlas/" + "b" * 300, "Path: Field cannot be longer than 66 characters."),
    ("/atlas/\uff41nalysis", "is invalid: use lower-case letters"),  # fullwidth a
    ("/atlas/ana\u202elysis", "is invalid: use lower-case letters"),  # bidi override
    ("/atlas/Analysis", "is invalid: use lower-case letters"),
    ("/atlas/members", "group name 'members' is reserved"),
    ("/atlas/nothere/sub", "no group /atlas/nothere"),
    ("/atlas/analysis", "group /atlas/analysis already exists"),
    (SCRIPT, "a group path looks like /vo or /vo/group/subgroup"),
    ("", "Path: This field is required."),
])
def test_bad_group_paths_are_refused_and_change_nothing(atlas: Flask, path: str,
                                                        message: str) -> None:
    alice = client_of(atlas, "alice")
    before = state(atlas)
    answer = post(alice, "/vos/atlas/groups", {"form": "group", "path": path})
    assert answer.status_code in (400, 409, 422, 404)
    assert "Nothing changed" in answer.text and message in html.unescape(answer.text)
    assert b"<script>" not in answer.data
    assert state(atlas) == before


@pytest.mark.parametrize(("data", "message"), [
    ({"form": "group", "path": "/atlas/long", "description": "x" * 1001},
     "Description: Field cannot be longer than 1000 characters."),
    ({"form": "group", "path": "/atlas/ctl", "description": "bell\x07"},
     "description may not contain control characters"),
    ({"form": "role", "role": SCRIPT}, "role name"),
    ({"form": "role", "role": "r" * 65}, "Role name: Field cannot be longer than 64"),
    ({"form": "role", "role": "production"}, "already has the role 'production'"),
    ({"form": "role", "role": "ok", "role_description": "y" * 1001},
     "Description: Field cannot be longer than 1000 characters."),
    ({"form": "nonsense"}, "unknown form"),
])
def test_bad_descriptions_and_roles_are_refused(atlas: Flask, data: dict[str, str],
                                                message: str) -> None:
    alice = client_of(atlas, "alice")
    before = state(atlas)
    answer = post(alice, "/vos/atlas/groups", data)
    assert answer.status_code in (400, 409, 422)
    assert "Nothing changed" in answer.text and message in html.unescape(answer.text)
    assert b"<script>" not in answer.data
    assert state(atlas) == before


def test_deleting_a_group_needs_the_confirmation_and_takes_its_subgroups(atlas: Flask) -> None:
    alice = client_of(atlas, "alice")
    page = alice.get("/vos/atlas/groups/analysis")
    assert b"Delete this group" in page.data and b'name="confirm"' in page.data
    before = state(atlas)
    answer = post(alice, "/vos/atlas/groups/analysis", {"form": "delete",
                                                        "target": "/atlas/analysis"},
                  url="/vos/atlas/groups")
    assert "tick the box to confirm" in answer.text
    assert answer.request.path == "/vos/atlas/groups/analysis"  # back where it was asked
    assert state(atlas) == before
    for target, message in (("/atlas", "the VO's root group cannot be deleted"),
                            ("/cms", "is not in VO 'atlas'"),
                            ("/atlas/../x", "is invalid")):
        answer = post(alice, "/vos/atlas/groups", {"form": "delete", "target": target,
                                                   "confirm": "y"})
        assert message in html.unescape(answer.text) and state(atlas) == before
    answer = post(alice, "/vos/atlas/groups/analysis", {"form": "delete",
                                                        "target": "/atlas/analysis",
                                                        "confirm": "y"},
                  url="/vos/atlas/groups")
    assert "Group /atlas/analysis and the groups below it are deleted" in answer.text
    assert b'href="/vos/atlas/groups/analysis' not in answer.data
    deleted = {p for p, _, gone in state(atlas)["groups"] if gone}
    assert deleted == {"/atlas/analysis", "/atlas/analysis/higgs"}
    assert alice.get("/vos/atlas/groups/analysis").status_code == 404


# -- one group's members and managers ------------------------------------------------------
def test_a_group_page_adds_and_removes_members(atlas: Flask) -> None:
    alice = client_of(atlas, "alice")
    page = "/vos/atlas/groups/analysis/higgs"
    answer = post(alice, page, {"action": "add", "username": "bob"})
    assert "bob added to /atlas/analysis/higgs." in answer.text
    assert b"<strong>bob</strong>" in answer.data
    assert membership(atlas, "bob")["groups"] == ["/atlas", "/atlas/analysis",
                                                  "/atlas/analysis/higgs"]
    for user, message in (("bob", "already in /atlas/analysis/higgs"),
                          ("carol", "has no membership in VO 'atlas'"),
                          ("nobody", "no user 'nobody'"),
                          (SCRIPT, "no user"),
                          (SCRIPT * 2, "Field cannot be longer than 32 characters")):
        before = state(atlas)
        answer = post(alice, page, {"action": "add", "username": user})
        assert message in html.unescape(answer.text) and b"<script>" not in answer.data
        assert state(atlas) == before
    answer = post(alice, "/vos/atlas/groups/analysis", {"action": "remove", "username": "bob"})
    assert "bob removed from /atlas/analysis and the groups below it." in answer.text
    assert membership(atlas, "bob")["groups"] == ["/atlas"]


def test_a_manager_manages_their_group_only(atlas: Flask) -> None:
    alice = client_of(atlas, "alice")
    answer = post(alice, "/vos/atlas/groups/analysis",
                  {"action": "add-manager", "username": "mallory"})
    assert "mallory now manages /atlas/analysis." in answer.text
    mallory = client_of(atlas, "mallory")
    home = mallory.get("/home")
    assert b"Groups I manage" in home.data
    assert b'href="/vos/atlas/groups/analysis"><code>/atlas/analysis</code>' in home.data
    page = mallory.get("/vos/atlas/groups/analysis")
    assert page.status_code == 200 and b"Make manager" not in page.data
    assert b"Delete this group" not in page.data and b'class="tabs"' not in page.data
    # she adds bob to her group, and to a group below it
    answer = post(mallory, "/vos/atlas/groups/analysis", {"action": "add", "username": "bob"})
    assert "bob added to /atlas/analysis." in answer.text
    answer = post(mallory, "/vos/atlas/groups/analysis/higgs",
                  {"action": "add", "username": "bob"})
    assert "bob added to /atlas/analysis/higgs." in answer.text
    assert membership(atlas, "bob")["groups"] == ["/atlas", "/atlas/analysis",
                                                  "/atlas/analysis/higgs"]
    # but nothing beyond it
    before = state(atlas)
    for url in ("/vos/atlas/groups/production", "/vos/atlas/root-group", "/vos/atlas/groups",
                "/vos/atlas/members", "/vos/atlas/members/bob", "/vos/cms/groups"):
        assert mallory.get(url).status_code == 403, url
    token = csrf(page.data)
    assert mallory.post("/vos/atlas/groups/production", data={
        "csrf_token": token, "action": "add", "username": "bob"}).status_code == 403
    assert mallory.post("/vos/atlas/groups/analysis", data={
        "csrf_token": token, "action": "add-manager", "username": "bob"}).status_code == 403
    assert mallory.post("/vos/atlas/groups", data={
        "csrf_token": token, "form": "group", "path": "/atlas/analysis/x"}).status_code == 403
    assert state(atlas) == before
    # withdrawn, she loses the page
    answer = post(alice, "/vos/atlas/groups/analysis",
                  {"action": "remove-manager", "username": "mallory"})
    assert "mallory no longer manages /atlas/analysis." in answer.text
    assert mallory.get("/vos/atlas/groups/analysis").status_code == 403
    assert b"Groups I manage" not in mallory.get("/home").data


def test_a_group_page_pages_its_members(atlas: Flask) -> None:
    atlas.config["API_PAGE_SIZE_DEFAULT"] = 2
    alice = client_of(atlas, "alice")
    first = alice.get("/vos/atlas/root-group")
    assert b"<strong>alice</strong>" in first.data and b"<strong>bob</strong>" in first.data
    assert b"<strong>mallory</strong>" not in first.data
    assert b"/vos/atlas/root-group?after=bob" in first.data
    second = alice.get("/vos/atlas/root-group?after=bob")
    assert b"<strong>mallory</strong>" in second.data
    assert b"<strong>alice</strong>" not in second.data
    assert b"Next page" not in second.data


# -- one member ---------------------------------------------------------------------------------
def test_the_member_page_changes_status_expiry_groups_and_roles(portal: Flask) -> None:
    seed(portal)
    alice = client_of(portal, "alice")
    members = alice.get("/vos/atlas/members")
    assert b'<a href="/vos/atlas/members/bob"><strong>bob</strong></a>' in members.data
    assert b"<th>Expires</th>" in members.data
    page = "/vos/atlas/members/bob"
    assert alice.get(page).status_code == 200
    # expiry: set, shown on the list, cleared
    day = (today() + dt.timedelta(days=30)).isoformat()
    answer = post(alice, page, {"action": "expiry", "expires_on": day})
    assert f"now expires on {day}" in answer.text
    assert membership(portal, "bob")["expires_on"] == day
    assert f"<td>{day}</td>" in alice.get("/vos/atlas/members").text
    answer = post(alice, page, {"action": "clear-expiry"})
    assert "no longer expires" in answer.text and membership(portal, "bob")["expires_on"] is None
    # groups and roles
    answer = post(alice, page, {"action": "add-group", "group": "/atlas/production"})
    assert "bob added to /atlas/production." in answer.text
    assert membership(portal, "bob")["groups"] == ["/atlas", "/atlas/production"]
    answer = post(alice, page, {"action": "assign-role", "role": "production"})
    assert "bob now holds /atlas/Role=production." in answer.text
    assert membership(portal, "bob")["roles"] == ["/atlas/Role=production"]
    answer = post(alice, page, {"action": "revoke-role", "role": "production"})
    assert "bob no longer holds /atlas/Role=production." in answer.text
    assert membership(portal, "bob")["roles"] == []
    answer = post(alice, page, {"action": "remove-group", "group": "/atlas/production"})
    assert "bob removed from /atlas/production" in answer.text
    assert membership(portal, "bob")["groups"] == ["/atlas"]
    # status, with a hostile reason that comes back escaped
    answer = post(alice, page, {"action": "suspend", "reason": SCRIPT})
    assert "Suspend: bob." in answer.text and _escaped_in(answer.data)
    assert membership(portal, "bob")["status"] == "suspended"
    assert b'value="reinstate"' in answer.data and b'value="suspend"' not in answer.data
    assert _escaped_in(alice.get("/vos/atlas/members").data)
    answer = post(alice, page, {"action": "reinstate"})
    assert "Reinstate: bob." in answer.text and membership(portal, "bob")["status"] == "active"


def test_a_pending_members_reason_is_escaped_and_they_can_be_approved(portal: Flask) -> None:
    alice = client_of(portal, "alice")
    page = alice.get("/vos/atlas/members/bob")
    assert page.status_code == 200 and _escaped_in(page.data)
    assert b'value="approve"' in page.data and b'value="reject"' in page.data
    answer = post(alice, "/vos/atlas/members/bob", {"action": "approve"})
    assert "Approve: bob." in answer.text and membership(portal, "bob")["status"] == "active"


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "expiry", "expires_on": (today() - dt.timedelta(days=1)).isoformat()},
     "is not in the future"),
    ({"action": "expiry", "expires_on": today().isoformat()}, "is not in the future"),
    ({"action": "expiry", "expires_on": "2031-02-30"}, "2031-02-30 is not a date on the calendar"),
    ({"action": "expiry", "expires_on": "31/12/2031"}, "must be a date written YYYY-MM-DD"),
    ({"action": "expiry", "expires_on": "tomorrow"}, "must be a date written YYYY-MM-DD"),
    ({"action": "expiry", "expires_on": ""}, "must be a date written YYYY-MM-DD"),
    ({"action": "expiry", "expires_on": SCRIPT}, "Expires on: Field cannot be longer than 10"),
    ({"action": "expiry", "expires_on": "２０３１-01-01"}, "must be a date written YYYY-MM-DD"),
    ({"action": "suspend", "reason": "r" * 501}, "Reason: Field cannot be longer than 500"),
    ({"action": "approve"}, "cannot approve the membership of 'bob'"),
    ({"action": "explode"}, "Invalid value"),
    ({"action": "add-group", "group": "/cms"}, "group /cms is not in VO 'atlas'"),
    ({"action": "add-group", "group": "/atlas/../cms"}, "group name '..' is invalid"),
    ({"action": "add-group", "group": "/atlas"}, "every active member is in the VO's root"),
    ({"action": "add-group", "group": ""}, "choose a group"),
    ({"action": "remove-group", "group": "/atlas/production"}, "'bob' is not in"),
    ({"action": "assign-role", "role": "nonexistent"}, "VO 'atlas' has no role 'nonexistent'"),
    ({"action": "assign-role", "role": SCRIPT}, "VO 'atlas' has no role"),
    ({"action": "revoke-role", "role": "production"}, "'bob' does not hold /atlas/Role=production"),
])
def test_bad_member_changes_are_refused_and_change_nothing(atlas: Flask, data: dict[str, str],
                                                           message: str) -> None:
    alice = client_of(atlas, "alice")
    before = state(atlas)
    answer = post(alice, "/vos/atlas/members/bob", data)
    assert answer.status_code == 200 and answer.request.path == "/vos/atlas/members/bob"
    assert "Nothing changed" in answer.text and message in html.unescape(answer.text)
    assert b"<script>" not in answer.data
    assert state(atlas) == before


# -- who may see what --------------------------------------------------------------------
ADMIN_PAGES = ("/vos/atlas/groups", "/vos/atlas/groups/analysis", "/vos/atlas/root-group",
               "/vos/atlas/members/alice", "/vos/atlas/members/bob")


def test_another_vos_admin_and_a_plain_member_are_refused(atlas: Flask) -> None:
    carol, bob = client_of(atlas, "carol"), client_of(atlas, "bob")
    assert carol.get("/vos/cms/groups").status_code == 200
    before = state(atlas)
    token = csrf(carol.get("/vos/cms/groups").data)
    for client in (carol, bob):
        for url in ADMIN_PAGES:
            assert client.get(url).status_code == 403, url
        answers = [
            client.post("/vos/atlas/groups", data={"csrf_token": token, "form": "group",
                                                   "path": "/atlas/evil"}),
            client.post("/vos/atlas/groups/analysis", data={
                "csrf_token": token, "action": "add", "username": "bob"}),
            client.post("/vos/atlas/members/bob", data={
                "csrf_token": token, "action": "expiry", "expires_on": "2031-01-01"}),
        ]
        assert [a.status_code for a in answers] == [403, 403, 403]
        assert b"Groups I manage" not in client.get("/home").data
    assert state(atlas) == before
    # names that do not exist are 404, for those who may otherwise look
    alice = client_of(atlas, "alice")
    for url in ("/vos/nowhere/groups", "/vos/atlas/groups/nothere", "/vos/atlas/members/nobody",
                "/vos/atlas/members/carol", "/vos/atlas/groups/..%2Fcms",
                "/vos/atlas/groups/analysis/../../cms", "/vos/atlas/groups/%EF%BD%81nalysis",
                "/vos/atlas/groups/" + "a" * 600):
        assert alice.get(url).status_code == 404, url
    # signed out: to the sign-in page
    assert atlas.test_client().get("/vos/atlas/groups").status_code == 302


def test_without_a_csrf_token_nothing_changes(atlas: Flask) -> None:
    alice = client_of(atlas, "alice")
    before = state(atlas)
    for url, data in (
            ("/vos/atlas/groups", {"form": "group", "path": "/atlas/nocsrf"}),
            ("/vos/atlas/groups", {"form": "role", "role": "nocsrf"}),
            ("/vos/atlas/groups", {"form": "delete", "target": "/atlas/analysis",
                                   "confirm": "y"}),
            ("/vos/atlas/groups/analysis", {"action": "add", "username": "bob"}),
            ("/vos/atlas/groups/analysis", {"action": "add-manager", "username": "bob"}),
            ("/vos/atlas/members/bob", {"action": "suspend"}),
            ("/vos/atlas/members/bob", {"action": "expiry", "expires_on": "2031-01-01"}),
            ("/vos/atlas/members/bob", {"action": "assign-role", "role": "production"}),
            ("/vos/atlas/members/bob", {"action": "add-group", "group": "/atlas/production"})):
        answer = alice.post(url, data=data, follow_redirects=True)
        assert "Nothing changed" in answer.text and "CSRF" in answer.text, (url, data)
    assert state(atlas) == before

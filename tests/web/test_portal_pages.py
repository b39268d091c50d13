"""The portal's pages through Flask's test client, with CSRF protection on as in
production: sign-in, the user's memberships, asking to join, and a VO admin approving
and suspending; the refusals (no CSRF token, another VO's admin, a member on admin
pages, a redirect off-site) and the escaping of what users typed."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from portal_support import PASSWORD, SCRIPT, csrf, sign_in


def test_sign_in_see_memberships_and_sign_out(portal: Flask) -> None:
    client = portal.test_client()
    assert client.get("/home").status_code == 302  # to the sign-in page
    assert sign_in(client, "alice", "wrong").status_code == 401
    answer = sign_in(client, "alice")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/home")
    home = client.get("/home")
    assert home.status_code == 200
    assert b"atlas" in home.data and b"/atlas" in home.data and b"active" in home.data
    token = csrf(home.data)
    assert client.post("/signout", data={}).status_code == 400  # no CSRF token
    assert client.post("/signout", data={"csrf_token": token}).status_code == 302
    assert client.get("/home").status_code == 302


def test_every_page_carries_the_security_headers(portal: Flask) -> None:
    client = portal.test_client()
    page = client.get("/signin")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in page.headers  # plain http here
    secure = client.get("/signin", base_url="https://vo.example.org")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    assert b"<style" not in page.data and b"<script" not in page.data  # nothing inline


def test_a_request_to_join_then_approval_by_the_vo_admin(portal: Flask) -> None:
    mallory = portal.test_client()
    sign_in(mallory, "mallory")
    home = mallory.get("/home")
    answer = mallory.post("/join", data={"csrf_token": csrf(home.data), "vo": "atlas",
                                         "reason": "analysis work"})
    assert answer.status_code == 302
    assert b"pending" in mallory.get("/home").data
    admin = portal.test_client()
    sign_in(admin, "alice")
    pending = admin.get("/vos/atlas/members?status=pending")
    assert pending.status_code == 200 and b"mallory" in pending.data and b"bob" in pending.data
    answer = admin.post("/vos/atlas/members", data={
        "csrf_token": csrf(pending.data), "operation": "approve",
        "users": ["mallory", "bob"]})
    assert answer.status_code == 302
    assert b"active" in mallory.get("/home").data
    active = admin.get("/vos/atlas/members?status=active").data
    assert b"mallory" in active and b"bob" in active
    # then suspended: the change is all or nothing
    answer = admin.post("/vos/atlas/members", data={
        "csrf_token": csrf(active), "operation": "suspend", "users": ["mallory"],
        "reason": "left the experiment"})
    assert answer.status_code == 302
    assert b"suspended" in mallory.get("/home").data


def test_admin_pages_are_for_that_vos_admins_only(portal: Flask) -> None:
    client = portal.test_client()
    sign_in(client, "carol")  # admin of cms, not of atlas
    assert client.get("/vos/cms/members").status_code == 200
    assert client.get("/vos/atlas/members").status_code == 403
    token = csrf(client.get("/home").data)
    assert client.post("/vos/atlas/members", data={"csrf_token": token, "operation": "approve",
                                                   "users": ["bob"]}).status_code == 403
    member = portal.test_client()
    sign_in(member, "bob")
    assert member.get("/vos/atlas/members").status_code == 403
    assert member.get("/vos/nosuch/members").status_code == 404


def test_forms_without_a_csrf_token_change_nothing(portal: Flask) -> None:
    client = portal.test_client()
    sign_in(client, "alice")
    client.post("/vos/atlas/members", data={"operation": "approve", "users": ["bob"]})
    assert b"pending" in client.get("/vos/atlas/members?q=bob").data
    assert client.post("/signin", data={"username": "alice", "password": PASSWORD}
                       ).status_code == 400


def test_what_users_typed_is_escaped(portal: Flask) -> None:
    client = portal.test_client()
    sign_in(client, "alice")
    page = client.get("/vos/atlas/members").data
    assert SCRIPT.encode() not in page
    assert b"&lt;script&gt;alert(" in page


def test_sign_in_never_redirects_off_site(portal: Flask) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client = portal.test_client()
        answer = sign_in(client, "alice", next=target)
        assert answer.headers["Location"].endswith("/home"), target


def test_oversized_and_bogus_actions_are_refused(portal: Flask) -> None:
    client = portal.test_client()
    sign_in(client, "alice")
    token = csrf(client.get("/vos/atlas/members").data)
    for data in ({"operation": "delete-everything", "users": ["bob"]},
                 {"operation": "approve", "users": [f"u{i}" for i in range(501)]},
                 {"operation": "approve", "users": ["bob"], "reason": "x" * 5000}):
        client.post("/vos/atlas/members", data={"csrf_token": token, **data})
    assert b"pending" in client.get("/vos/atlas/members?q=bob").data
    assert sign_in(portal.test_client(), "a" * 10_000).status_code == 400


def password_login(client: FlaskClient, user: str) -> dict[str, Any]:
    """What ``xos-login login --password`` does: a refresh-token family for ``user``."""
    answer = client.post("/oauth/token", data={"grant_type": "password", "username": user,
                                               "password": PASSWORD,
                                               "client_id": "xos-login"})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def test_a_user_sees_and_ends_their_logins(portal: Flask) -> None:
    device = portal.test_client()
    login = password_login(device, "alice")
    browser = portal.test_client()
    sign_in(browser, "alice")
    page = browser.get("/sessions")
    assert page.status_code == 200 and b"xos-login" in page.data
    family = re.search(rb'name="family" value="([0-9a-f]+)"', page.data)
    assert family is not None
    # carol cannot end alice's login, even knowing its id
    other = portal.test_client()
    sign_in(other, "carol")
    token = csrf(other.get("/sessions").data)
    other.post("/sessions", data={"csrf_token": token, "family": family.group(1).decode()})
    assert b"no such login" in other.get("/sessions").data
    assert device.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": login["refresh_token"],
        "client_id": "xos-login"}).status_code == 200
    # alice ends it: the device's next renewal fails
    renewed = password_login(device, "alice")  # a second login stays
    page = browser.get("/sessions")
    families = re.findall(rb'name="family" value="([0-9a-f]+)"', page.data)
    assert len(families) == 2
    browser.post("/sessions", data={"csrf_token": csrf(page.data),
                                    "family": families[-1].decode()})
    left = re.findall(rb'name="family" value="([0-9a-f]+)"', browser.get("/sessions").data)
    assert left == families[:1]
    assert renewed["refresh_token"]  # the newest login is the one listed first
    assert browser.post("/sessions", data={"family": families[0].decode()}
                        ).status_code == 302  # no CSRF token: refused, nothing ended
    assert len(re.findall(rb'name="family"', browser.get("/sessions").data)) == 1


def test_the_vo_audit_log_filters(portal: Flask) -> None:
    admin = portal.test_client()
    sign_in(admin, "alice")
    page = admin.get("/vos/atlas/members?status=pending").data
    admin.post("/vos/atlas/members", data={"csrf_token": csrf(page), "operation": "approve",
                                           "users": ["bob"]})
    log = admin.get("/vos/atlas/audit")
    assert log.status_code == 200 and b"membership." in log.data
    approvals = admin.get("/vos/atlas/audit?action=membership.approve").data
    assert b"user:alice" in approvals and b"membership.request" not in approvals
    by_system = admin.get("/vos/atlas/audit?actor=user:alice").data
    assert b"cli:pytest" not in by_system
    assert admin.get("/vos/atlas/audit?action=" + "x" * 5000).status_code == 200
    assert admin.get("/vos/cms/audit").status_code == 403
    member = portal.test_client()
    sign_in(member, "bob")
    assert member.get("/vos/atlas/audit").status_code == 403

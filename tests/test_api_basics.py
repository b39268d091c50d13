from __future__ import annotations

import pytest


def test_demo_vo_snapshot(app, api, admin_key, users):
    status, vo = api.call("POST", "/vos", admin_key, {"name": "atlas"})
    assert status == 201, vo
    assert vo["group"] == {"path": "/atlas", "unix_name": "atlas", "gid": 400000,
                           "description": "", "deleted": False}
    alice = users.make("alice")
    status, body = api.call("POST", "/vos/atlas/members", admin_key, {"user": "alice"})
    assert status == 201, body
    status, node = api.call("POST", "/nodes", admin_key, {"name": "n1.example", "vos": ["atlas"]})
    assert status == 201, node
    status, snap = api.call("GET", "/nodes/n1.example/snapshot", admin_key)
    assert status == 200
    assert [u["name"] for u in snap["users"]] == ["alice"]
    assert snap["users"][0]["uid"] == alice.uid
    assert snap["groups"][0]["members"] == ["alice"]


def _state(ctx):
    from sqlalchemy import func, select

    from vo_service.db import db
    from vo_service.sync.revisions import RevisionLog

    counts = {t.name: ctx.session.scalar(select(func.count()).select_from(t))
              for t in db.metadata.sorted_tables}
    return counts, RevisionLog(ctx.session).current()


@pytest.mark.parametrize("payload", [
    {"username": "dave", "display_name": "Dave\x00"},
    {"username": "dave", "display_name": "\ud800"},
    {"username": "dave", "display_name": "Dave", "\x00": 1},
])
def test_unstorable_text_in_bodies_is_refused(app, api, admin_key, ctx, payload):
    before = _state(ctx)
    status, body = api.call("POST", "/users", admin_key, payload)
    assert status == 400, body
    assert body["title"] == "Malformed request"
    assert "NUL" in body["detail"] or "not valid Unicode" in body["detail"]
    assert _state(ctx) == before


@pytest.mark.parametrize("path", [
    "/users/al%00ice", "/users?q=a%00", "/vos/atlas%00/members", "/users?after=%ED%A0%80",
    "/users?q=%F4%8F%BF%BF",
])
def test_unstorable_text_in_urls_is_refused_or_harmless(app, api, admin_key, path):
    status, body = api.call("GET", path, admin_key)
    assert status in (200, 400, 404), body
    if status == 200:
        assert isinstance(body["items"], list)
    else:
        assert body["status"] == status and body["detail"]


def test_deleting_a_user_withdraws_admin_and_manager_rights(app, api, admin_key, users):
    bob = users.make("bob")
    assert api.call("POST", "/vos", admin_key, {"name": "atlas"})[0] == 201
    assert api.call("POST", "/vos/atlas/groups", admin_key, {"path": "/atlas/ana"})[0] == 201
    assert api.call("PUT", "/vos/atlas/admins/bob", admin_key)[0] == 204
    assert api.call("PUT", "/vos/atlas/groups/ana/managers/bob", admin_key)[0] == 204
    assert api.call("POST", f"/users/{bob.id}/delete", admin_key)[0] == 200
    assert api.call("GET", "/vos/atlas", admin_key)[1]["admins"] == []
    assert api.call("GET", "/vos/atlas/groups/ana/managers", admin_key)[1]["items"] == []
    status, events = api.call("GET", "/audit?limit=1", admin_key)
    assert events["items"][0]["action"] == "user.delete"
    assert events["items"][0]["after"]["rights_withdrawn"] == ["admin of atlas",
                                                               "manager of /atlas/ana"]


@pytest.mark.parametrize("expires_on", [1893456000, "1893456000", "2030-1-1", "20300101",
                                        "2030-01-01T00:00:00"])
def test_dates_are_iso_text_only(app, api, admin_key, users, expires_on):
    users.make("bob")
    assert api.call("POST", "/vos", admin_key, {"name": "atlas"})[0] == 201
    status, body = api.call("POST", "/vos/atlas/members", admin_key,
                            {"user": "bob", "expires_on": expires_on})
    assert status == 422
    assert "expires_on: Input should be a valid date" in body["detail"]


@pytest.mark.parametrize("name", ["evil\u202egnp.exe", "a\u2066b", "x\u202ay"])
def test_bidi_controls_are_refused_in_display_names(app, api, admin_key, name):
    status, body = api.call("POST", "/users", admin_key, {"username": "bob", "display_name": name})
    assert status == 422 and "control characters" in body["detail"]

from __future__ import annotations


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

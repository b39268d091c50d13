"""Lifecycles through the API and the services: memberships (request, approve, suspend,
reinstate, remove, reject, expiry), groups, roles, users, service admins, API keys; the
searches and listings with keyset pagination; and the audit trail of every change."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from vo_service.apikeys.models import ApiKey
from vo_service.audit.models import AuditEvent
from vo_service.db import db
from vo_service.memberships.models import MEMBERSHIP_STATUSES
from vo_service.memberships.services import TRANSITIONS, MembershipService
from vo_service.sync.revisions import RevisionLog
from vo_service.timeutil import today
from vo_service.vos.models import VO

API_OPERATIONS = ("approve", "reject", "suspend", "reinstate", "remove")


def state() -> tuple[dict[str, int], int]:
    """Row counts of every table, and the global revision."""
    counts = {t.name: db.session.scalar(select(func.count()).select_from(t))
              for t in db.metadata.sorted_tables}
    return counts, RevisionLog(db.session).current()


def revision() -> int:
    return RevisionLog(db.session).current()


class Env:
    """sysop (service admin); VO atlas administered by adam, with groups /atlas/analysis,
    /atlas/analysis/higgs and /atlas/production and the role production; VO cms
    administered by carl; users alice and bob with no membership; node n1 serving atlas."""

    def __init__(self, api: Any, users: Any, admin_key: str) -> None:
        self.api = api
        self.sysop = admin_key
        for body in ({"name": "atlas"}, {"name": "cms"}):
            self.ok("POST", "/vos", admin_key, body, 201)
        for path in ("/atlas/analysis", "/atlas/analysis/higgs", "/atlas/production"):
            self.ok("POST", "/vos/atlas/groups", admin_key, {"path": path}, 201)
        self.people = {n: users.make(n, email=f"{n}@example.org")
                       for n in ("adam", "carl", "alice", "bob")}
        self.keys = {n: users.key(u) for n, u in self.people.items()}
        self.ok("PUT", "/vos/atlas/admins/adam", admin_key, None, 204)
        self.ok("PUT", "/vos/cms/admins/carl", admin_key, None, 204)
        role = self.ok("POST", "/vos/atlas/roles", self.keys["adam"], {"name": "production"}, 201)
        assert role["fqan"] == "/atlas/Role=production"
        self.ok("POST", "/nodes", admin_key, {"name": "n1.example", "vos": ["atlas"]}, 201)

    def call(self, method: str, path: str, who: str | None, json: Any = None
             ) -> tuple[int, Any]:
        key = self.sysop if who == "sysop" else self.keys[who] if who else None
        return self.api.call(method, path, key, json)

    def ok(self, method: str, path: str, key: str | None, json: Any, status: int) -> Any:
        got, body = self.api.call(method, path, key, json)
        assert got == status, (method, path, got, body)
        return body

    def as_(self, who: str, method: str, path: str, json: Any = None,
            status: int = 200) -> Any:
        got, body = self.call(method, path, who, json)
        assert got == status, (who, method, path, got, body)
        return body

    def membership(self, user: str = "alice", vo: str = "atlas") -> dict[str, Any]:
        return self.as_("sysop", "GET", f"/vos/{vo}/members/{user}")

    def latest_event(self) -> dict[str, Any]:
        return self.as_("sysop", "GET", "/audit?limit=1")["items"][0]

    def snapshot(self) -> dict[str, Any]:
        return self.as_("sysop", "GET", "/nodes/n1.example/snapshot")


@pytest.fixture
def env(app, api, users, admin_key) -> Env:
    return Env(api, users, admin_key)


def problem(status_body: tuple[int, Any], status: int) -> dict[str, Any]:
    got, body = status_body
    assert got == status, body
    assert body["status"] == status and body["detail"]
    return body


# -- membership lifecycle -------------------------------------------------------------
def step(env: Env, who: str, op: str, expected_status: str, reason: str = "") -> dict:
    """Run one lifecycle step; check the record, the revision bump and the audit event."""
    before_rev, before = revision(), env.membership()
    if op == "request":
        record = env.as_(who, "POST", "/vos/atlas/requests", {"reason": reason}, 201)
    else:
        record = env.as_(who, "POST", f"/vos/atlas/members/alice/{op}", {"reason": reason})
    assert record["status"] == expected_status
    assert record == env.membership()
    assert revision() > before_rev, f"{op} did not bump the revision"
    event = env.latest_event()
    assert event["action"] == f"membership.{op}"
    assert event["actor"] == f"user:{who}"
    assert event["target"] == "atlas:alice"
    assert event["before"]["status"] == before["status"]
    assert event["after"]["status"] == expected_status
    assert event["after"]["reason"] == reason
    return record


def locked(env: Env, user: str = "alice") -> bool | None:
    for entry in env.snapshot()["users"]:
        if entry["name"] == user:
            return entry["locked"]
    return None


def test_request_approve_suspend_reinstate_remove_and_request_again(env) -> None:
    problem(env.call("GET", "/vos/atlas/members/alice", "sysop"), 404)
    record = env.as_("alice", "POST", "/vos/atlas/requests", {"reason": "thesis"}, 201)
    assert (record["status"], record["reason"], record["groups"]) == ("pending", "thesis", [])
    assert record["approved_by"] is None
    event = env.latest_event()
    assert (event["action"], event["actor"], event["before"]) == (
        "membership.request", "user:alice", None)
    assert event["after"]["status"] == "pending"
    assert locked(env) is True  # known on the node, not allowed in

    record = step(env, "adam", "approve", "active", "welcome")
    assert record["approved_by"] == str(env.people["adam"].id)
    assert record["groups"] == ["/atlas"]
    assert locked(env) is False
    assert step(env, "adam", "suspend", "suspended", "audit")["groups"] == []
    assert locked(env) is True
    assert step(env, "adam", "reinstate", "active")["groups"] == ["/atlas"]
    assert locked(env) is False
    step(env, "adam", "remove", "removed", "left")
    assert locked(env) is True  # still resolvable, so that files keep an owner's name

    record = step(env, "alice", "request", "pending", "back again")
    assert record["approved_by"] is None
    step(env, "adam", "approve", "active")
    assert [m["status"] for m in env.as_("alice", "GET", "/users/alice/memberships")
            ["items"]] == ["active"]


def test_reject_then_request_again(env) -> None:
    env.as_("alice", "POST", "/vos/atlas/requests", {"reason": "please"}, 201)
    record = step(env, "adam", "reject", "removed", "not this year")
    assert record["groups"] == [] and record["approved_by"] is None
    step(env, "alice", "request", "pending", "please, again")
    step(env, "adam", "approve", "active")


def test_a_direct_add_is_active_at_once(env) -> None:
    record = env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    assert record["status"] == "active" and record["groups"] == ["/atlas"]
    assert record["approved_by"] == str(env.people["adam"].id)
    event = env.latest_event()
    assert (event["action"], event["actor"], event["before"]) == (
        "membership.add", "user:adam", None)


def bring(env: Env, status: str, ctx: Any, system: Any) -> None:
    """Put alice's atlas membership in ``status``."""
    if status == "pending":
        env.as_("alice", "POST", "/vos/atlas/requests", {}, 201)
        return
    expiry = (today() + dt.timedelta(days=10)).isoformat()
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice", "expires_on": expiry}, 201)
    if status == "suspended":
        env.as_("adam", "POST", "/vos/atlas/members/alice/suspend", {})
    elif status == "removed":
        env.as_("adam", "POST", "/vos/atlas/members/alice/remove", {})
    elif status == "expired":
        assert MembershipService(ctx).expire_due(system, on=dt.date.fromisoformat(expiry)) == 1
        db.session.commit()
    assert env.membership()["status"] == status


INVALID = [(status, op) for status in MEMBERSHIP_STATUSES for op in API_OPERATIONS
           if status not in TRANSITIONS[op][0]]


def test_the_invalid_transitions_are_the_expected_ones() -> None:
    assert set(INVALID) == {
        ("pending", "suspend"), ("pending", "reinstate"),
        ("active", "approve"), ("active", "reject"), ("active", "reinstate"),
        ("suspended", "approve"), ("suspended", "reject"), ("suspended", "suspend"),
        ("expired", "approve"), ("expired", "reject"), ("expired", "suspend"),
        *(("removed", op) for op in API_OPERATIONS),
    }


@pytest.mark.parametrize("status,op", INVALID)
def test_an_invalid_transition_is_409_and_changes_nothing(env, ctx, system, status, op
                                                          ) -> None:
    bring(env, status, ctx, system)
    before, record = state(), env.membership()
    body = problem(env.call("POST", f"/vos/atlas/members/alice/{op}", "adam",
                            {"reason": "try"}), 409)
    assert body["title"] == "Invalid state transition"
    assert body["detail"] == (f"cannot {op} the membership of 'alice' in VO 'atlas':"
                              f" it is {status}")
    assert state() == before
    assert env.membership() == record


@pytest.mark.parametrize("status", ["pending", "active", "suspended", "expired"])
def test_joining_twice_is_409_and_changes_nothing(env, ctx, system, status) -> None:
    bring(env, status, ctx, system)
    before = state()
    body = problem(env.call("POST", "/vos/atlas/requests", "alice", {}), 409)
    assert f"already has a {status} membership" in body["detail"]
    body = problem(env.call("POST", "/vos/atlas/members", "adam", {"user": "alice"}), 409)
    assert f"already has a {status} membership" in body["detail"]
    assert state() == before


def test_operations_on_a_missing_membership_are_404(env) -> None:
    before = state()
    for op in API_OPERATIONS:
        body = problem(env.call("POST", f"/vos/atlas/members/alice/{op}", "adam", {}), 404)
        assert "no membership" in body["detail"]
    problem(env.call("POST", "/vos/atlas/members/nobody/approve", "adam", {}), 404)
    problem(env.call("POST", "/vos/nowhere/members/alice/approve", "adam", {}), 404)
    assert state() == before


# -- expiry ---------------------------------------------------------------------------
def test_expiry_on_a_date(env, ctx, system) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "bob"}, 201)
    when = today() + dt.timedelta(days=30)
    record = env.as_("adam", "PUT", "/vos/atlas/members/alice/expiry",
                     {"expires_on": when.isoformat()})
    assert record["expires_on"] == when.isoformat() and record["status"] == "active"
    event = env.latest_event()
    assert event["action"] == "membership.expiry" and event["actor"] == "user:adam"
    assert (event["before"]["expires_on"], event["after"]["expires_on"]) == (
        None, when.isoformat())

    ms = MembershipService(ctx)
    before = state()
    assert ms.expire_due(system, on=when - dt.timedelta(days=1)) == 0
    db.session.commit()
    assert state() == before
    assert env.membership()["status"] == "active"

    assert ms.expire_due(system, on=when) == 1
    db.session.commit()
    assert revision() > before[1]
    record = env.membership()
    assert (record["status"], record["groups"]) == ("expired", [])
    assert env.membership("bob")["status"] == "active"  # no date, never expires
    event = env.latest_event()
    assert (event["action"], event["actor"], event["target"]) == (
        "membership.expire", "cli:pytest", "atlas:alice")
    assert (event["before"]["status"], event["after"]["status"]) == ("active", "expired")
    assert locked(env) is True

    # Running it again finds nothing; reinstating brings the member back.
    assert ms.expire_due(system, on=when + dt.timedelta(days=5)) == 0
    assert env.as_("adam", "POST", "/vos/atlas/members/alice/reinstate", {})["status"] \
        == "active"


def test_expiry_can_be_cleared_and_set_at_approval(env, ctx, system) -> None:
    when = (today() + dt.timedelta(days=3)).isoformat()
    env.as_("alice", "POST", "/vos/atlas/requests", {}, 201)
    record = env.as_("adam", "POST", "/vos/atlas/members/alice/approve", {"expires_on": when})
    assert (record["status"], record["expires_on"]) == ("active", when)
    record = env.as_("adam", "PUT", "/vos/atlas/members/alice/expiry", {"expires_on": None})
    assert record["expires_on"] is None
    assert MembershipService(ctx).expire_due(system, on=today() + dt.timedelta(days=400)) == 0


@pytest.mark.parametrize("days", [0, -1, -3650])
def test_an_expiry_not_in_the_future_is_refused(env, days) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("bob", "POST", "/vos/atlas/requests", {}, 201)
    date = (today() + dt.timedelta(days=days)).isoformat()
    before, alice, bob = state(), env.membership(), env.membership("bob")
    for method, path, body in [
        ("PUT", "/vos/atlas/members/alice/expiry", {"expires_on": date}),
        ("POST", "/vos/atlas/members/bob/approve", {"expires_on": date}),
        ("POST", "/vos/cms/members", {"user": "alice", "expires_on": date}),
    ]:
        who = "carl" if "/cms/" in path else "adam"
        body = problem(env.call(method, path, who, body), 422)
        assert f"expiry date {date} is not in the future" in body["detail"]
    assert state() == before
    assert (env.membership(), env.membership("bob")) == (alice, bob)


def test_expiry_cannot_be_set_on_a_closed_membership(env) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("adam", "POST", "/vos/atlas/members/alice/remove", {})
    before = state()
    when = (today() + dt.timedelta(days=3)).isoformat()
    problem(env.call("PUT", "/vos/atlas/members/alice/expiry", "adam", {"expires_on": when}),
            409)
    assert state() == before


# -- groups -----------------------------------------------------------------------------
def snapshot_members(env: Env) -> dict[str, list[str]]:
    return {g["path"]: g["members"] for g in env.snapshot()["groups"]}


def test_adding_to_a_subgroup_adds_to_its_parents(env) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    rev = revision()
    env.as_("adam", "PUT", "/vos/atlas/groups/analysis/higgs/members/alice", status=204)
    assert revision() > rev
    assert env.membership()["groups"] == ["/atlas", "/atlas/analysis", "/atlas/analysis/higgs"]
    event = env.latest_event()
    assert event["action"] == "group.member.add" and event["actor"] == "user:adam"
    assert event["after"] == {"user": "alice",
                              "added": ["/atlas/analysis", "/atlas/analysis/higgs"]}
    members = snapshot_members(env)
    assert members["/atlas/analysis"] == members["/atlas/analysis/higgs"] == ["alice"]
    assert members["/atlas/production"] == []

    before = state()
    body = problem(env.call("PUT", "/vos/atlas/groups/analysis/members/alice", "adam"), 409)
    assert "already in /atlas/analysis" in body["detail"]
    assert state() == before


def test_removing_from_a_group_removes_from_its_subgroups(env) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("adam", "PUT", "/vos/atlas/groups/analysis/higgs/members/alice", status=204)
    env.as_("adam", "PUT", "/vos/atlas/groups/production/members/alice", status=204)
    rev = revision()
    env.as_("adam", "DELETE", "/vos/atlas/groups/analysis/members/alice", status=204)
    assert revision() > rev
    assert env.membership()["groups"] == ["/atlas", "/atlas/production"]
    event = env.latest_event()
    assert event["action"] == "group.member.remove"
    assert event["before"] == {"user": "alice",
                               "removed": ["/atlas/analysis", "/atlas/analysis/higgs"]}
    members = snapshot_members(env)
    assert members["/atlas/analysis"] == members["/atlas/analysis/higgs"] == []
    assert members["/atlas/production"] == ["alice"]

    before = state()
    problem(env.call("DELETE", "/vos/atlas/groups/analysis/members/alice", "adam"), 409)
    problem(env.call("DELETE", "/vos/atlas/groups/analysis/higgs/members/alice", "adam"), 409)
    assert state() == before


def test_group_membership_needs_an_active_member(env) -> None:
    env.as_("alice", "POST", "/vos/atlas/requests", {}, 201)
    before = state()
    body = problem(env.call("PUT", "/vos/atlas/groups/analysis/members/alice", "adam"), 409)
    assert "pending, not active" in body["detail"]
    problem(env.call("PUT", "/vos/atlas/groups/analysis/members/bob", "adam"), 404)
    problem(env.call("PUT", "/vos/atlas/groups/nothing/members/alice", "adam"), 404)
    assert state() == before


def test_removing_a_membership_drops_its_groups_and_roles(env) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("adam", "PUT", "/vos/atlas/groups/analysis/members/alice", status=204)
    env.as_("adam", "PUT", "/vos/atlas/members/alice/roles/production", status=204)
    env.as_("adam", "POST", "/vos/atlas/members/alice/remove", {})
    env.as_("alice", "POST", "/vos/atlas/requests", {}, 201)
    record = env.as_("adam", "POST", "/vos/atlas/members/alice/approve", {})
    assert (record["groups"], record["roles"]) == (["/atlas"], [])


def test_deleted_groups_keep_their_gids_and_paths_retired(env) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    tmp = env.as_("adam", "POST", "/vos/atlas/groups", {"path": "/atlas/tmp"}, 201)
    sub = env.as_("adam", "POST", "/vos/atlas/groups", {"path": "/atlas/tmp/sub"}, 201)
    env.as_("adam", "PUT", "/vos/atlas/groups/tmp/sub/members/alice", status=204)
    assert "/atlas/tmp/sub" in env.membership()["groups"]
    retired = {tmp["gid"], sub["gid"]}

    rev = revision()
    env.as_("adam", "DELETE", "/vos/atlas/groups/tmp", status=204)
    assert revision() > rev
    event = env.latest_event()
    assert (event["action"], event["target"]) == ("group.delete", "/atlas/tmp")
    assert event["before"] == {"paths": ["/atlas/tmp", "/atlas/tmp/sub"]}
    paths = [g["path"] for g in env.as_("adam", "GET", "/vos/atlas/groups")["items"]]
    assert paths == ["/atlas", "/atlas/analysis", "/atlas/analysis/higgs", "/atlas/production"]
    assert env.membership()["groups"] == ["/atlas"]
    assert not {"/atlas/tmp", "/atlas/tmp/sub"} & set(snapshot_members(env))
    problem(env.call("GET", "/vos/atlas/groups/tmp/managers", "adam"), 404)
    problem(env.call("PUT", "/vos/atlas/groups/tmp/members/alice", "adam"), 404)
    problem(env.call("DELETE", "/vos/atlas/groups/tmp", "adam"), 404)

    before = state()
    body = problem(env.call("POST", "/vos/atlas/groups", "adam", {"path": "/atlas/tmp"}), 409)
    assert "never reused" in body["detail"]
    body = problem(env.call("POST", "/vos/atlas/groups", "adam", {"path": "/atlas/tmp/sub"}),
                   404)
    assert body["detail"] == "no group /atlas/tmp"  # its parent is gone
    assert state() == before
    fresh = env.as_("adam", "POST", "/vos/atlas/groups", {"path": "/atlas/tmp2"}, 201)
    assert fresh["gid"] not in retired and fresh["gid"] > max(retired)
    all_gids = [g["gid"] for g in env.as_("adam", "GET", "/vos/atlas/groups")["items"]]
    assert len(all_gids) == len(set(all_gids)) and not retired & set(all_gids)


def test_roles_are_assigned_and_revoked_as_fqans(env) -> None:
    vo = env.as_("bob", "GET", "/vos/atlas")
    assert vo["roles"] == [{"name": "production", "fqan": "/atlas/Role=production",
                            "description": ""}]
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("adam", "PUT", "/vos/atlas/members/alice/roles/production", status=204)
    assert env.membership()["roles"] == ["/atlas/Role=production"]
    event = env.latest_event()
    assert (event["action"], event["actor"], event["after"]) == (
        "role.assign", "user:adam", {"role": "/atlas/Role=production"})

    before = state()
    body = problem(env.call("PUT", "/vos/atlas/members/alice/roles/production", "adam"), 409)
    assert "already holds /atlas/Role=production" in body["detail"]
    problem(env.call("PUT", "/vos/atlas/members/alice/roles/lcgadmin", "adam"), 404)
    problem(env.call("PUT", "/vos/atlas/members/bob/roles/production", "adam"), 404)
    problem(env.call("POST", "/vos/atlas/roles", "adam", {"name": "production"}), 409)
    problem(env.call("POST", "/vos/atlas/roles", "adam", {"name": "bad role"}), 422)
    assert state() == before

    env.as_("adam", "DELETE", "/vos/atlas/members/alice/roles/production", status=204)
    assert env.membership()["roles"] == []
    assert env.latest_event()["action"] == "role.revoke"
    before = state()
    body = problem(env.call("DELETE", "/vos/atlas/members/alice/roles/production", "adam"), 409)
    assert "does not hold /atlas/Role=production" in body["detail"]
    assert state() == before


def test_a_role_needs_an_active_membership(env) -> None:
    env.as_("alice", "POST", "/vos/atlas/requests", {}, 201)
    before = state()
    problem(env.call("PUT", "/vos/atlas/members/alice/roles/production", "adam"), 409)
    assert state() == before


# -- users ------------------------------------------------------------------------------
def test_suspend_and_reinstate_a_user(env) -> None:
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    rev = revision()
    record = env.as_("sysop", "POST", "/users/alice/suspend")
    assert record["status"] == "suspended" and revision() > rev
    event = env.latest_event()
    assert (event["action"], event["actor"]) == ("user.suspend", "user:sysop")
    assert (event["before"]["status"], event["after"]["status"]) == ("active", "suspended")
    assert locked(env) is True
    problem(env.call("GET", "/me", "alice"), 403)
    assert env.membership()["status"] == "active"  # the membership waits

    before = state()
    problem(env.call("POST", "/users/alice/suspend", "sysop"), 409)
    assert state() == before

    assert env.as_("sysop", "POST", "/users/alice/reinstate")["status"] == "active"
    assert env.latest_event()["action"] == "user.reinstate"
    assert locked(env) is False
    assert env.as_("alice", "GET", "/me")["status"] == "active"
    before = state()
    body = problem(env.call("POST", "/users/alice/reinstate", "sysop"), 409)
    assert "is active; cannot become active" in body["detail"]
    assert state() == before


def test_a_suspended_user_cannot_be_added_or_approved(env) -> None:
    env.as_("alice", "POST", "/vos/atlas/requests", {}, 201)
    env.as_("sysop", "POST", "/users/alice/suspend")
    env.as_("sysop", "POST", "/users/bob/suspend")
    before = state()
    problem(env.call("POST", "/vos/atlas/members/alice/approve", "adam", {}), 409)
    problem(env.call("POST", "/vos/atlas/members", "adam", {"user": "bob"}), 409)
    assert state() == before


def test_delete_a_user_for_good(env, users) -> None:
    alice = env.people["alice"]
    env.as_("adam", "POST", "/vos/atlas/members", {"user": "alice"}, 201)
    env.as_("adam", "PUT", "/vos/atlas/groups/analysis/members/alice", status=204)
    env.as_("alice", "POST", "/vos/cms/requests", {}, 201)
    env.as_("sysop", "PUT", "/users/alice/service-admin", {"is_service_admin": True})

    record = env.as_("sysop", "POST", "/users/alice/delete")
    assert (record["status"], record["is_service_admin"]) == ("deleted", False)
    assert (record["username"], record["uid"]) == ("alice", alice.uid)
    memberships = env.as_("sysop", "GET", "/users/alice/memberships")["items"]
    assert {(m["vo"], m["status"], tuple(m["groups"])) for m in memberships} == {
        ("atlas", "removed", ()), ("cms", "removed", ())}
    actions = [e["action"] for e in env.as_("sysop", "GET", "/audit?limit=3")["items"]]
    assert actions[0] == "user.delete"
    assert sorted(actions[1:]) == ["membership.remove", "membership.remove"]
    problem(env.call("GET", "/me", "alice"), 403)
    assert locked(env) is True

    before = state()
    for action in ("suspend", "reinstate", "delete"):
        body = problem(env.call("POST", f"/users/alice/{action}", "sysop"), 409)
        assert "is deleted" in body["detail"]
    body = problem(env.call("POST", "/users", "sysop",
                            {"username": "alice", "display_name": "Alice Again"}), 409)
    assert "never reused" in body["detail"]
    body = problem(env.call("POST", "/users", "sysop",
                            {"username": "alice2", "display_name": "A", "uid": alice.uid}), 409)
    assert "never reused" in body["detail"]
    problem(env.call("POST", "/vos/atlas/members", "adam", {"user": "alice"}), 409)
    problem(env.call("PUT", "/users/alice/service-admin", "sysop", {"is_service_admin": True}),
            409)
    problem(env.call("POST", "/users/alice/api-keys", "sysop", {}), 409)
    assert state() == before
    fresh = env.as_("sysop", "POST", "/users", {"username": "alice2", "display_name": "A"},
                    201)
    assert fresh["uid"] != alice.uid and fresh["id"] != str(alice.id)


def test_nobody_suspends_or_deletes_themself(env) -> None:
    sysop = env.as_("sysop", "GET", "/me")["username"]
    before = state()
    for action in ("suspend", "delete"):
        body = problem(env.call("POST", f"/users/{sysop}/{action}", "sysop"), 409)
        assert "yourself" in body["detail"]
    assert state() == before


def test_grant_and_withdraw_service_admin(env) -> None:
    problem(env.call("GET", "/users", "alice"), 403)
    record = env.as_("sysop", "PUT", "/users/alice/service-admin", {"is_service_admin": True})
    assert record["is_service_admin"] is True
    event = env.latest_event()
    assert (event["action"], event["actor"]) == ("user.service_admin", "user:sysop")
    assert (event["before"]["is_service_admin"], event["after"]["is_service_admin"]) == (
        False, True)
    assert env.as_("alice", "GET", "/me")["is_service_admin"] is True
    env.as_("alice", "GET", "/users")
    env.as_("alice", "POST", "/vos", {"name": "lhcb"}, 201)

    record = env.as_("alice", "PUT", "/users/alice/service-admin", {"is_service_admin": False})
    assert record["is_service_admin"] is False
    problem(env.call("GET", "/users", "alice"), 403)
    problem(env.call("PUT", "/users/alice/service-admin", "alice", {"is_service_admin": True}),
            403)

    env.as_("sysop", "POST", "/users/bob/suspend")
    before = state()
    problem(env.call("PUT", "/users/bob/service-admin", "sysop", {"is_service_admin": True}),
            409)
    problem(env.call("PUT", "/users/bob/service-admin", "sysop", {"is_service_admin": "yes"}),
            422)
    assert state() == before


# -- API keys ---------------------------------------------------------------------------
def test_issue_and_revoke_api_keys(env, client) -> None:
    issued = env.as_("alice", "POST", "/users/alice/api-keys", {"description": "laptop"}, 201)
    key_id, secret = issued["key_id"], issued["api_key"]
    assert secret.startswith(f"xos_{key_id}_")
    stored = db.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    assert stored.description == "laptop" and secret.split("_", 2)[2] not in (
        stored.secret_hash, stored.description)
    event = env.latest_event()
    assert (event["action"], event["actor"], event["target"]) == (
        "apikey.issue", "user:alice", key_id)
    assert event["after"] == {"owner": "user:alice", "description": "laptop"}
    assert secret not in str(event)
    status, me = env.api.call("GET", "/me", secret)
    assert status == 200 and me["username"] == "alice"

    before = state()
    problem(env.call("DELETE", f"/api-keys/{key_id}", "bob"), 403)
    problem(env.call("POST", "/users/alice/api-keys", "bob", {}), 403)
    problem(env.call("DELETE", "/api-keys/0123456789abcdef", "alice"), 404)
    problem(env.call("DELETE", "/api-keys/short", "alice"), 404)
    assert state() == before

    env.as_("alice", "DELETE", f"/api-keys/{key_id}", status=204)
    assert env.latest_event()["action"] == "apikey.revoke"
    status, body = env.api.call("GET", "/me", secret)
    assert status == 401 and "revoked" in body["detail"]
    before = state()
    body = problem(env.call("DELETE", f"/api-keys/{key_id}", "alice"), 409)
    assert "already revoked" in body["detail"]
    assert state() == before
    assert env.as_("alice", "GET", "/me")["username"] == "alice"  # her other key still works

    # A service admin issues keys for users and nodes, and revokes any.
    issued = env.as_("sysop", "POST", "/users/bob/api-keys", {}, 201)
    assert env.api.call("GET", "/me", issued["api_key"])[1]["username"] == "bob"
    node = env.as_("sysop", "POST", "/nodes/n1.example/api-keys", {"description": "n1"}, 201)
    status, snap = env.api.call("GET", "/nodes/n1.example/snapshot", node["api_key"])
    assert status == 200 and snap["node"] == "n1.example"
    env.as_("sysop", "DELETE", f"/api-keys/{node['key_id']}", status=204)
    assert env.api.call("GET", "/nodes/n1.example/snapshot", node["api_key"])[0] == 401


# -- searching and listing ----------------------------------------------------------------
def pages(env: Env, who: str, path: str, limit: int) -> list[list[dict[str, Any]]]:
    """Follow ``next`` cursors to the end; return the pages."""
    out: list[list[dict[str, Any]]] = []
    cursor = None
    sep = "&" if "?" in path else "?"
    while True:
        url = f"{path}{sep}limit={limit}" + (f"&after={cursor}" if cursor else "")
        body = env.as_(who, "GET", url)
        assert len(body["items"]) <= limit
        out.append(body["items"])
        cursor = body["next"]
        if cursor is None:
            return out
        assert len(body["items"]) == limit, "a page before the last one is full"
        assert len(out) < 100, "the cursor does not advance"


SEARCH_PEOPLE = {  # username -> e-mail
    "ali": "ali@example.org", "alice2": None, "alina": "a.lina@example.org",
    "alistair": "stair@example.org", "zed": "ali.zed@example.org",
    "yan": "Alibaba@Example.org", "mali": "mali@ali.example", "bobby": "bobby@example.org",
    "al": "al@example.org", "xavier": "x@alice.example",
}


def test_user_search_by_prefix_returns_everyone_once(env, users) -> None:
    for name, email in SEARCH_PEOPLE.items():
        users.make(name, email=email)
    everyone = env.as_("sysop", "GET", "/users?limit=500")["items"]
    assert len(everyone) == db.session.scalar(select(func.count()).select_from(
        db.metadata.tables["users"]))
    for q in ("ali", "ALI", "alice", "a", "al", "x@", "nobody", "z", "Alibaba@"):
        p = q.lower()
        expected = sorted(u["username"] for u in everyone
                          if u["username"].startswith(p) or (u["email"] or "").startswith(p))
        for limit in (1, 2, 3, 50):
            got = pages(env, "sysop", f"/users?q={q}", limit)
            names = [u["username"] for page in got for u in page]
            assert names == expected, (q, limit)  # each exactly once, in username order
    ali = [u["username"] for page in pages(env, "sysop", "/users?q=ali", 2) for u in page]
    assert ali == ["ali", "alice", "alice2", "alina", "alistair", "yan", "zed"]


def test_user_listing_pages_cover_everyone_and_filter_by_status(env, users) -> None:
    for i in range(7):
        users.make(f"p{i}")
    env.as_("sysop", "POST", "/users/p3/suspend")
    env.as_("sysop", "POST", "/users/p5/delete")
    everyone = [u["username"] for page in pages(env, "sysop", "/users", 4) for u in page]
    count = db.session.scalar(select(func.count()).select_from(db.metadata.tables["users"]))
    assert len(everyone) == len(set(everyone)) == count and everyone == sorted(everyone)
    assert [u["username"] for page in pages(env, "sysop", "/users?status=suspended", 1)
            for u in page] == ["p3"]
    assert [u["username"] for page in pages(env, "sysop", "/users?status=deleted&q=p", 2)
            for u in page] == ["p5"]
    active = [u["username"] for page in pages(env, "sysop", "/users?status=active&q=p", 2)
              for u in page]
    assert active == ["p0", "p1", "p2", "p4", "p6"]
    problem(env.call("GET", "/users?status=gone", "sysop"), 422)
    problem(env.call("GET", "/users?limit=0", "sysop"), 422)
    problem(env.call("GET", "/users?limit=501", "sysop"), 422)
    problem(env.call("GET", "/users?colour=red", "sysop"), 422)


def test_vo_members_filtered_by_status_and_paged(env, users, ctx, system) -> None:
    want: dict[str, list[str]] = {s: [] for s in MEMBERSHIP_STATUSES}
    plan = ["active"] * 5 + ["pending"] * 3 + ["suspended"] * 2 + ["removed", "expired"]
    when = (today() + dt.timedelta(days=9)).isoformat()
    for i, status in enumerate(plan):
        name = f"m{i:02d}"
        user = users.make(name)
        want[status].append(name)
        if status == "pending":
            assert env.api.call("POST", "/vos/atlas/requests", users.key(user), {})[0] == 201
            continue
        body = {"user": name, "expires_on": when} if status == "expired" else {"user": name}
        env.as_("adam", "POST", "/vos/atlas/members", body, 201)
        if status in ("suspended", "removed"):
            env.as_("adam", "POST", f"/vos/atlas/members/{name}/"
                    f"{'suspend' if status == 'suspended' else 'remove'}", {})
    assert MembershipService(ctx).expire_due(system, on=dt.date.fromisoformat(when)) == 1
    db.session.commit()
    want = {s: sorted(v) for s, v in want.items()}

    for status in MEMBERSHIP_STATUSES:
        for limit in (1, 2, 50):
            got = pages(env, "adam", f"/vos/atlas/members?status={status}", limit)
            items = [m for page in got for m in page]
            assert [m["user"] for m in items] == want[status], (status, limit)
            assert {m["status"] for m in items} <= {status}
    everyone = [m["user"] for page in pages(env, "adam", "/vos/atlas/members", 3)
                for m in page]
    assert everyone == sorted(n for v in want.values() for n in v)
    prefixed = [m["user"] for page in pages(env, "adam", "/vos/atlas/members?q=m0", 2)
                for m in page]
    assert prefixed == sorted(n for n in everyone if n.startswith("m0"))
    assert env.as_("carl", "GET", "/vos/cms/members")["items"] == []
    problem(env.call("GET", "/vos/atlas/members?status=gone", "adam"), 422)


# -- the audit trail ---------------------------------------------------------------------
def test_audit_records_each_change_and_vo_admins_see_only_their_vo(env) -> None:
    env.as_("alice", "POST", "/vos/atlas/requests", {"reason": "hi"}, 201)
    env.as_("adam", "POST", "/vos/atlas/members/alice/approve", {"reason": "ok"})
    env.as_("carl", "POST", "/vos/cms/members", {"user": "bob"}, 201)
    env.as_("carl", "POST", "/vos/cms/members/bob/suspend", {"reason": "cms only"})
    env.as_("adam", "PUT", "/vos/atlas/groups/production/members/alice", status=204)

    full = [e for page in pages(env, "sysop", "/audit", 4) for e in page]
    seqs = [e["seq"] for e in full]
    assert seqs == sorted(seqs, reverse=True) == list(range(len(full), 0, -1))
    assert len(full) == db.session.scalar(select(func.count()).select_from(AuditEvent))
    approve = next(e for e in full if e["action"] == "membership.approve")
    assert (approve["actor"], approve["target_type"], approve["target"]) == (
        "user:adam", "membership", "atlas:alice")
    assert (approve["before"]["status"], approve["after"]["status"]) == ("pending", "active")
    assert approve["before"]["reason"] == "hi" and approve["after"]["reason"] == "ok"
    assert approve["at"].endswith("Z") and len(approve["hash"]) == 64

    atlas = db.session.scalar(select(VO).where(VO.name == "atlas"))
    cms = db.session.scalar(select(VO).where(VO.name == "cms"))
    atlas_seqs = set(db.session.scalars(select(AuditEvent.seq).where(
        AuditEvent.vo_id == atlas.id)))
    cms_seqs = set(db.session.scalars(select(AuditEvent.seq).where(AuditEvent.vo_id == cms.id)))
    assert atlas_seqs and cms_seqs
    for limit in (1, 3, 50):
        mine = [e for page in pages(env, "adam", "/audit?vo=atlas", limit) for e in page]
        assert {e["seq"] for e in mine} == atlas_seqs and len(mine) == len(atlas_seqs)
    actions = [e["action"] for e in mine]
    assert {"membership.request", "membership.approve", "group.member.add"} <= set(actions)
    assert not any("cms" in str(e["target"]) for e in mine)
    assert not {e["seq"] for e in mine} & cms_seqs
    theirs = [e for page in pages(env, "carl", "/audit?vo=cms", 50) for e in page]
    assert {e["seq"] for e in theirs} == cms_seqs
    suspend = next(e for e in theirs if e["action"] == "membership.suspend")
    assert suspend["actor"] == "user:carl" and suspend["after"]["reason"] == "cms only"

    before = state()
    for who, path in (("adam", "/audit"), ("adam", "/audit?vo=cms"), ("carl", "/audit?vo=atlas"),
                      ("alice", "/audit?vo=atlas"), ("alice", "/audit")):
        problem(env.call("GET", path, who), 403)
    problem(env.call("GET", "/audit?vo=nowhere", "sysop"), 404)
    assert state() == before

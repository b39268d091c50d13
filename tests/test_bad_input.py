"""Bad input through the real API, on SQLite and PostgreSQL.

Every refused request must answer with an RFC 9457 problem document whose ``detail``
names the problem, must not echo hostile input raw or unbounded, and must change
nothing: the rows of every table, the global revision and the audit head are compared
before and after each request.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import make_app, rolled_back

from vo_service.api.problems import PROBLEM_TYPE
from vo_service.api.registry import MAX_JSON_DEPTH
from vo_service.apikeys.services import ApiKeyService
from vo_service.audit.models import AuditHead
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.sync.revisions import RevisionLog
from vo_service.timeutil import today
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

# -- the state that must not change -----------------------------------------------------
#: Columns that reading requests may legitimately touch (rate-limited "last seen" stamps).
VOLATILE = {("api_keys", "last_used_at"), ("nodes", "last_contact")}


@dataclass(frozen=True)
class State:
    counts: dict[str, int]
    revision: int
    audit_head: tuple[int, str]
    rows: dict[str, list[str]]


def snapshot() -> State:
    """Row counts of every table, the revision, the audit head and every stored row."""
    session = db.session
    counts = {t.name: session.scalar(sa.select(sa.func.count()).select_from(t))
              for t in db.metadata.sorted_tables}
    rows = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.c if (table.name, c.name) not in VOLATILE]
        rows[table.name] = sorted(repr(tuple(r)) for r in session.execute(sa.select(*columns)))
    head = session.execute(sa.select(AuditHead.seq, AuditHead.hash)).one()
    return State(counts, RevisionLog(session).current(), (head.seq, head.hash), rows)


def assert_unchanged(before: State) -> None:
    after = snapshot()
    assert after.counts == before.counts
    assert after.revision == before.revision
    assert after.audit_head == before.audit_head
    assert after.rows == before.rows


# -- the world every case runs against -----------------------------------------------
@dataclass
class World:
    keys: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)


def build_world(ctx: ServiceContext) -> World:
    """sysop (service admin); VO atlas with groups /atlas/analysis, /atlas/ops and the
    deleted /atlas/old, role production, admin bob, member alice, pending frank, group
    manager gina of /atlas/analysis; VO cms with admin carol; dave outside every VO;
    erin suspended; gone deleted; a user cms_ops; nodes n1.example (atlas) and n2.example
    (cms); a revoked key."""
    system = Actor.system("pytest")
    users, keys_service = UserService(ctx), ApiKeyService(ctx)
    made = {name: users.create(system, name, name.capitalize(), **extra) for name, extra in [
        ("sysop", {"is_service_admin": True}), ("alice", {"email": "alice@example.org"}),
        ("bob", {"email": "bob@example.org"}), ("carol", {}), ("dave", {}), ("erin", {}),
        ("frank", {}), ("gina", {}), ("gone", {}), ("cms_ops", {})]}
    keys = {name: keys_service.issue(system, user=made[name])[1] for name in
            ("sysop", "alice", "bob", "carol", "dave", "erin", "frank", "gina")}
    keys["admin"] = keys.pop("sysop")
    vos, ms = VOService(ctx), MembershipService(ctx)
    atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
    analysis = vos.create_group(system, atlas, "/atlas/analysis")
    vos.create_group(system, atlas, "/atlas/ops")
    vos.create_group(system, atlas, "/atlas/old")
    vos.delete_group(system, atlas, "/atlas/old")
    vos.create_role(system, atlas, "production")
    vos.set_admin(system, atlas, made["bob"], True)
    vos.set_admin(system, cms, made["carol"], True)
    vos.set_manager(system, atlas, analysis, made["gina"], True)
    ms.add(system, atlas, made["alice"])
    frank = made["frank"]
    ms.request(Actor(label="user:frank", user_id=frank.id), atlas, frank, "please")
    nodes = NodeService(ctx)
    n1 = nodes.register(system, "n1.example", vos=["atlas"])
    nodes.register(system, "n2.example", vos=["cms"])
    _, keys["node"] = keys_service.issue(system, node=n1)
    revoked, keys["revoked"] = keys_service.issue(system, user=made["dave"])
    keys_service.revoke(system, revoked.key_id)
    users.set_status(system, made["erin"], "suspended")
    users.set_status(system, made["gone"], "deleted")
    db.session.commit()
    values = {"alice_uid": str(made["alice"].uid), "gone_uid": str(made["gone"].uid),
              "revoked_key_id": revoked.key_id,
              "alice_key_id": keys["alice"].split("_")[1],
              "bob_key_id": keys["bob"].split("_")[1],
              "today": today().isoformat(),
              "future": (today() + dt.timedelta(days=30)).isoformat()}
    return World(keys, values)


@pytest.fixture(scope="module")
def world_db(database_url: str) -> Iterator[tuple[Flask, sa.Connection, World, State]]:
    """The world, built once per backend inside an outer transaction that is rolled back
    at the end of the module (like conftest's ``app``, but shared by this module)."""
    app = make_app(database_url)
    with rolled_back(app) as connection:
        built = build_world(ServiceContext.build(db.session, app.config))
        baseline = snapshot()
        db.session.remove()
        yield app, connection, built, baseline


@pytest.fixture
def world(world_db) -> Iterator[World]:
    """Each test runs in a SAVEPOINT of its own, rolled back afterwards."""
    _, connection, built, baseline = world_db
    test_savepoint = connection.begin_nested()
    try:
        # no test sees what an earlier one did
        assert snapshot() == baseline
        yield built
    finally:
        db.session.remove()
        test_savepoint.rollback()


@pytest.fixture
def client(world_db, world):
    """This module's own test client (pytest-flask's would open a second connection)."""
    return world_db[0].test_client()


# -- requests and their answers ------------------------------------------------------
NO_BODY = object()


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: Any = NO_BODY
    who: str | None = "admin"
    data: str | bytes | None = None
    content_type: str | None = None
    authorization: str | None = None


def fill(value: Any, world: World) -> Any:
    """Put run-time values into bodies: "@{future}" as text, "#{alice_uid}" as a number."""
    if isinstance(value, str) and value.startswith("@"):
        return value[1:].format(**world.values)
    if isinstance(value, str) and value.startswith("#"):
        return int(value[1:].format(**world.values))
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


def send(client, world: World, req: Req, who: str | None = None):
    headers = {}
    who = who or req.who
    if req.authorization is not None:
        headers["Authorization"] = req.authorization
    elif who is not None:
        headers["Authorization"] = f"Bearer {world.keys[who]}"
    kwargs: dict[str, Any] = {}
    if req.body is not NO_BODY:
        kwargs["json"] = fill(req.body, world)
    if req.data is not None:
        kwargs["data"] = req.data
    if req.content_type is not None:
        kwargs["content_type"] = req.content_type
    path = req.path.format(**world.values) if "{" in req.path else req.path
    return client.open("/api/v1" + path, method=req.method, headers=headers, **kwargs)


def assert_problem(response, status: int, pattern: str) -> dict[str, Any]:
    """An RFC 9457 problem with ``status`` whose detail matches ``pattern``, echoing
    nothing of the request raw (control characters) or unbounded."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:1000]
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status
    assert problem["type"].startswith(PROBLEM_TYPE)
    assert problem["title"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="xos"'
    detail = problem["detail"]
    assert re.search(pattern, detail), f"{pattern!r} not in {detail!r}"
    assert len(detail) <= 400, detail
    assert detail.isprintable(), detail
    rest = {k: v for k, v in problem.items() if k != "instance"}
    assert len(json.dumps(rest)) <= 4000
    for error in problem.get("errors", []):
        assert len(error["field"]) <= 70 and error["field"].isprintable()
    return problem


def case(name: str, method: str, path: str, status: int, pattern: str, body: Any = NO_BODY,
         **kwargs: Any):
    return pytest.param(Req(method, path, body, **kwargs), status, pattern, id=name)


def new_user(**fields: Any) -> dict[str, Any]:
    return {"username": "newbie", "display_name": "Newbie", **fields}


LONG = "<script>alert(1)</script>" * 400  # 10,000 characters
NESTED_40 = json.dumps({"username": json.loads("[" * 40 + "]" * 40), "display_name": "N"})

# -- usernames ------------------------------------------------------------------------
RESERVED = ["root", "daemon", "bin", "sys", "adm", "sudo", "wheel", "nobody", "sshd",
            "postgres", "systemd-foo", "systemd-network", "_apt", "_x", "xos-node"]
USERNAME_CASES = [
    *(case(f"reserved-{n}", "POST", "/users", 422,
           rf"^username '{re.escape(n)}' is reserved for the system$", new_user(username=n))
      for n in RESERVED),
    *(case(f"unsafe-{i}", "POST", "/users", 422,
           r"^username .+ is not POSIX-safe: use lower-case letters, digits, '_' and '-',"
           r" starting with a letter or '_'$", new_user(username=n))
      for i, n in enumerate([
          "a:b", "a,b", "a\nb", "a/b", "a b", "a\tb", "Alice", "ALICE", "1abc", "-abc",
          "../etc", "x' OR '1'='1", "robert'); DROP TABLE users;--", "*)(uid=*",
          "<script>", "\u0430dmin", "alice\u200b", "a$", "a\\b", "a\x7f"])),
    case("nul", "POST", "/users", 400, r"^NUL characters are not allowed$",
         new_user(username="a\x00b")),
    case("lone-surrogate", "POST", "/users", 400, r"not valid Unicode",
         new_user(username="a\ud800b")),
    case("empty", "POST", "/users", 422,
         r"^the request does not match the schema: username: String should have at least 1",
         new_user(username="")),
    case("33-chars", "POST", "/users", 422, r"username: String should have at most 32",
         new_user(username="a" * 33)),
    case("10000-chars", "POST", "/users", 422, r"username: String should have at most 32",
         new_user(username=LONG)),
    case("not-a-string", "POST", "/users", 422, r"username: Input should be a valid string",
         new_user(username=123)),
    case("null", "POST", "/users", 422, r"username: Input should be a valid string",
         new_user(username=None)),
    case("missing", "POST", "/users", 422, r"username: Field required",
         {"display_name": "Newbie"}),
]

# -- display names and e-mail ---------------------------------------------------------
GECOS = r"^display name may not contain ':', ',' or control characters$"
DISPLAY_CASES = [
    *(case(f"gecos-{i}", "POST", "/users", 422, GECOS, new_user(display_name=n))
      for i, n in enumerate(["Eve:x", "Eve,x", "Eve\nx", "Eve\rx", "Eve\x07", "Eve\x1b[2J",
                             "Eve\x85", "Eve\u2028x", "root:x:0:0::/root:/bin/sh"])),
    case("gecos-patch", "PATCH", "/users/alice", 422, GECOS, {"display_name": "A:0:0"}),
    case("blank", "POST", "/users", 422, r"^display name may not be blank$",
         new_user(display_name="   ")),
    case("empty", "POST", "/users", 422, r"display_name: String should have at least 1",
         new_user(display_name="")),
    case("129-chars", "POST", "/users", 422, r"display_name: String should have at most 128",
         new_user(display_name="x" * 129)),
    case("10000-chars", "POST", "/users", 422, r"display_name: String should have at most 128",
         new_user(display_name=LONG)),
    case("list", "POST", "/users", 422, r"display_name: Input should be a valid string",
         new_user(display_name=["Eve"])),
    case("nul", "POST", "/users", 400, r"NUL characters", new_user(display_name="Eve\x00")),
]
EMAIL_CASES = [
    *(case(f"invalid-{i}", "POST", "/users", 422, r"^e-mail address .+ is invalid$",
           new_user(email=e))
      for i, e in enumerate([
          "not-an-email", "alice@", "@example.org", "alice@example", "a@@example.org",
          "a b@example.org", "a:b@example.org", "a,b@example.org", "alice@example.org\n",
          "x'--@example.org", "<script>@example.org", "*)(uid=*)@example.org",
          "a(b)@example.org", "a\x1b@example.org", "alice@example.org'; DROP TABLE users;--",
          "a" * 65 + "@example.org", "alice@exam_ple.org"])),
    case("invalid-patch", "PATCH", "/users/alice", 422, r"^e-mail address 'x' is invalid$",
         {"email": "x"}),
    case("too-long", "POST", "/users", 422, r"email: String should have at most 254",
         new_user(email="a@" + "b" * 250 + ".org")),
    case("number", "POST", "/users", 422, r"email: Input should be a valid string",
         new_user(email=5)),
    case("duplicate", "POST", "/users", 409,
         r"^e-mail address 'alice@example\.org' is already used by another user$",
         new_user(email="alice@example.org")),
    case("duplicate-case", "POST", "/users", 409,
         r"^e-mail address 'alice@example\.org' is already used by another user$",
         new_user(email="ALICE@Example.ORG")),
    case("duplicate-patch", "PATCH", "/users/bob", 409,
         r"^e-mail address 'alice@example\.org' is already used", {"email": "alice@example.org"}),
]

# -- numbers --------------------------------------------------------------------------
OUTSIDE = r"^uid {} is outside the configured range 200000-399999$"
UID_CASES = [
    *(case(f"uid-{n}", "POST", "/users", 422, OUTSIDE.format(re.escape(str(n))),
           new_user(uid=n))
      for n in [0, -1, 999, 1000, 65534, 199999, 400000, 2**31, 2**32]),
    case("uid-1001-digits", "POST", "/users", 422,
         r"^uid 10{23}\.\.\. is outside the configured range 200000-399999$",
         new_user(uid=10**1000)),
    case("uid-taken", "POST", "/users", 409,
         r"^uid \d+ is already taken \(numbers are never reused\)$",
         new_user(uid="#{alice_uid}")),
    case("uid-retired", "POST", "/users", 409, r"^uid \d+ is already taken",
         new_user(uid="#{gone_uid}")),
    case("uid-true", "POST", "/users", 422, r"uid: Input should be a valid integer",
         new_user(uid=True)),
    case("uid-string", "POST", "/users", 422, r"uid: Input should be a valid integer",
         new_user(uid="200001")),
    case("uid-float", "POST", "/users", 422, r"uid: Input should be a valid integer",
         new_user(uid=200001.0)),
    case("uid-list", "POST", "/users", 422, r"uid: Input should be a valid integer",
         new_user(uid=[200001])),
    case("uid-nan", "POST", "/users", 422, r"uid: Input should be a valid integer",
         data='{"username": "newbie", "display_name": "N", "uid": NaN}',
         content_type="application/json"),
    case("uid-too-many-digits", "POST", "/users", 400,
         r"^the body is not valid JSON: Exceeds the limit",
         data='{"username": "newbie", "display_name": "N", "uid": 1' + "0" * 5000 + "}",
         content_type="application/json"),
    case("admin-flag-string", "POST", "/users", 422,
         r"is_service_admin: Input should be a valid boolean",
         new_user(is_service_admin="true")),
    case("admin-flag-int", "POST", "/users", 422,
         r"is_service_admin: Input should be a valid boolean", new_user(is_service_admin=1)),
    case("service-admin-flag-string", "PUT", "/users/alice/service-admin", 422,
         r"is_service_admin: Input should be a valid boolean", {"is_service_admin": "yes"}),
]

# -- duplicates and clashes in the one Unix namespace --------------------------------
DUPLICATE_CASES = [
    case("username", "POST", "/users", 409,
         r"^the name 'alice' is already taken by a user \(names are never reused\)$",
         new_user(username="alice")),
    case("username-of-deleted-user", "POST", "/users", 409,
         r"^the name 'gone' is already taken by a user", new_user(username="gone")),
    case("username-equals-vo-group", "POST", "/users", 409,
         r"^the name 'atlas' is already taken by a group", new_user(username="atlas")),
    case("username-equals-group", "POST", "/users", 409,
         r"^the name 'atlas_analysis' is already taken by a group",
         new_user(username="atlas_analysis")),
    case("username-equals-deleted-group", "POST", "/users", 409,
         r"^the name 'atlas_old' is already taken by a group", new_user(username="atlas_old")),
    case("vo", "POST", "/vos", 409, r"^VO 'atlas' already exists$", {"name": "atlas"}),
    case("vo-equals-username", "POST", "/vos", 409,
         r"^the Unix name 'alice' of /alice is already taken by a user$", {"name": "alice"}),
    case("vo-equals-deleted-username", "POST", "/vos", 409,
         r"^the Unix name 'gone' of /gone is already taken by a user$", {"name": "gone"}),
    case("group", "POST", "/vos/atlas/groups", 409, r"^group /atlas/analysis already exists",
         {"path": "/atlas/analysis"}),
    case("deleted-group", "POST", "/vos/atlas/groups", 409,
         r"^group /atlas/old already exists \(or existed: paths are never reused\)$",
         {"path": "/atlas/old"}),
    case("group-equals-username", "POST", "/vos/cms/groups", 409,
         r"^the Unix name 'cms_ops' of /cms/ops is already taken by a user$",
         {"path": "/cms/ops"}),
    case("role", "POST", "/vos/atlas/roles", 409,
         r"^VO 'atlas' already has the role 'production'$", {"name": "production"}),
    case("node", "POST", "/nodes", 409, r"^node 'n1\.example' is already registered$",
         {"name": "n1.example"}),
    case("member", "POST", "/vos/atlas/members", 409,
         r"^'alice' already has a active membership in VO 'atlas'$", {"user": "alice"}),
    case("request", "POST", "/vos/atlas/requests", 409,
         r"^'alice' already has a active membership", {}, who="alice"),
    case("vo-admin", "PUT", "/vos/atlas/admins/bob", 409,
         r"^'bob' is already an admin of VO 'atlas'$"),
    case("manager", "PUT", "/vos/atlas/groups/analysis/managers/gina", 409,
         r"^'gina' is already a manager of /atlas/analysis$"),
]

# -- VOs, groups, roles, nodes --------------------------------------------------------
VO_CASES = [
    *(case(f"vo-invalid-{i}", "POST", "/vos", 422,
           r"^VO name .+ is invalid: use lower-case letters, digits and '-', starting with a"
           r" letter, at most 31 characters$", {"name": n})
      for i, n in enumerate(["ATLAS", "Atlas", "at_las", "at.las", "..", "1atlas", "-atlas",
                             "at las", "at/las", "<script>", "\u0430tlas", "x" * 32,
                             "a'--"])),
    *(case(f"vo-reserved-{n}", "POST", "/vos", 422,
           rf"^VO name '{re.escape(n)}' is reserved for the system$", {"name": n})
      for n in ["root", "wheel", "users", "nobody", "systemd-foo", "xos-vo"]),
    case("vo-empty", "POST", "/vos", 422, r"name: String should have at least 1",
         {"name": ""}),
    case("vo-33", "POST", "/vos", 422, r"name: String should have at most 32",
         {"name": "x" * 33}),
    case("vo-description-long", "POST", "/vos", 422,
         r"description: String should have at most 1000", {"name": "lhcb", "description": LONG}),
    case("vo-description-control", "POST", "/vos", 422,
         r"^description may not contain control characters$",
         {"name": "lhcb", "description": "a\x1b[2Jb"}),
]
GROUP_INVALID = r"^group name .+ is invalid: use lower-case letters"
GROUP_CASES = [
    *(case(f"group-invalid-{i}", "POST", "/vos/atlas/groups", 422, GROUP_INVALID, {"path": p})
      for i, p in enumerate(["/atlas/Analysis", "/atlas/an_alysis", "/atlas/..", "/atlas//x",
                             "/atlas/x/", "/atlas/a b", "/atlas/<script>", "/atlas/a\nb",
                             "/atlas/x';--", "/atlas/*)(cn=*", "/atlas/Role=x",
                             "/atlas/" + "x" * 40])),
    case("group-no-slash", "POST", "/vos/atlas/groups", 422,
         r"^a group path looks like /vo or /vo/group/subgroup$", {"path": "atlas/x"}),
    case("group-too-short", "POST", "/vos/atlas/groups", 422,
         r"path: String should have at least 2", {"path": "/"}),
    case("group-600", "POST", "/vos/atlas/groups", 422, r"path: String should have at most 512",
         {"path": "/atlas/" + "x/" * 300}),
    case("group-unix-name-too-long", "POST", "/vos/atlas/groups", 422,
         r"^group path '/atlas/analysis/x+' maps to the Unix name 'atlas_analysis_x+', longer"
         r" than 32 characters; choose shorter names$",
         {"path": "/atlas/analysis/" + "x" * 18}),
    *(case(f"group-reserved-{n}", "POST", "/vos/atlas/groups", 422,
           rf"^group name '{n}' is reserved$", {"path": f"/atlas/{n}"})
      for n in ["members", "managers"]),
    case("group-other-vo", "POST", "/vos/atlas/groups", 422,
         r"^a group of VO 'atlas' has a path like /atlas/name$", {"path": "/cms/x"}),
    case("group-root", "POST", "/vos/atlas/groups", 422,
         r"^a group of VO 'atlas' has a path like /atlas/name$", {"path": "/atlas"}),
    case("group-no-parent", "POST", "/vos/atlas/groups", 404, r"^no group /atlas/nosuch$",
         {"path": "/atlas/nosuch/x"}),
    case("group-deleted-parent", "POST", "/vos/atlas/groups", 404, r"^no group /atlas/old$",
         {"path": "/atlas/old/x"}),
    case("group-in-url-invalid", "DELETE", "/vos/atlas/groups/a%20b", 422,
         r"^group name 'a b' is invalid"),
    case("group-in-url-upper", "PUT", "/vos/atlas/groups/An_alysis/members/alice", 422,
         r"^group name 'An_alysis' is invalid"),
    case("group-in-url-newline", "DELETE", "/vos/atlas/groups/a%0Ab", 404,
         r"requested URL was not found"),
]
ROLE_CASES = [
    *(case(f"role-invalid-{i}", "POST", "/vos/atlas/roles", 422,
           r"^role name .+ is invalid: letters, digits, '_' and '-', starting with a letter,"
           r" at most 64 characters$", {"name": n})
      for i, n in enumerate(["Role=x", "pro duction", "a:b", "1prod", "-prod", "_prod",
                             "<script>", "prod\n", "x' OR 1=1", "/atlas/Role=x"])),
    case("role-empty", "POST", "/vos/atlas/roles", 422, r"name: String should have at least 1",
         {"name": ""}),
    case("role-65", "POST", "/vos/atlas/roles", 422, r"name: String should have at most 64",
         {"name": "R" * 65}),
]
NODE_CASES = [
    *(case(f"node-invalid-{i}", "POST", "/nodes", 422, r"^node name .+ is not a valid host name$",
           {"name": n})
      for i, n in enumerate(["N1.example", "n1_example", "-n1.example", "n1..example",
                             "n1.example.", "a" * 64 + ".example", "n1 example", "n1/x",
                             "n1';--", "<script>", "n\u0131.example", "n1:22"])),
    case("node-300", "POST", "/nodes", 422, r"name: String should have at most 253",
         {"name": "x" * 300}),
    case("node-unknown-vo", "POST", "/nodes", 404, r"^no VO 'nosuch'$",
         {"name": "n3.example", "vos": ["nosuch"]}),
    case("node-vo-twice", "POST", "/nodes", 422, r"^a VO is named twice$",
         {"name": "n3.example", "vos": ["atlas", "atlas"]}),
    case("node-vos-string", "POST", "/nodes", 422, r"vos: Input should be a valid list",
         {"name": "n3.example", "vos": "atlas"}),
    case("node-vos-number", "POST", "/nodes", 422, r"vos\.0: Input should be a valid string",
         {"name": "n3.example", "vos": [1]}),
    case("node-vos-long", "POST", "/nodes", 422, r"vos\.0: String should have at most 32",
         {"name": "n3.example", "vos": [LONG]}),
    case("node-set-unknown-vo", "PUT", "/nodes/n1.example/vos", 404, r"^no VO 'nosuch'$",
         {"vos": ["atlas", "nosuch"]}),
    case("node-set-missing", "PUT", "/nodes/n1.example/vos", 422, r"vos: Field required", {}),
]

# -- bodies that cannot be read ------------------------------------------------------
JSON_CT = "application/json"
BODY_CASES = [
    *(case(f"malformed-{i}", "POST", "/users", 400, r"^the body is not valid JSON: ",
           data=d, content_type=JSON_CT)
      for i, d in enumerate(['{"username": ', "", "{'username': 'x'}", '{"a": 1} trailing',
                             b"\xff\xfe\x00", '{"username": "\\x"}', "{,}"])),
    *(case(f"not-an-object-{i}", "POST", "/users", 400, r"^the JSON body must be an object$",
           data=d, content_type=JSON_CT)
      for i, d in enumerate(["[]", '["newbie"]', '"newbie"', "null", "42", "true"])),
    *(case(f"content-type-{i}", "POST", "/users", 400, r"^send the body as application/json$",
           data=json.dumps(new_user()), content_type=ct)
      for i, ct in enumerate(["text/plain", "application/x-www-form-urlencoded", "text/html",
                              "application/json-patch+json", "multipart/form-data"])),
    case("no-body", "POST", "/users", 400, r"^send the body as application/json$"),
    case("too-large", "POST", "/users", 413, r"exceeds the capacity limit",
         data=json.dumps(new_user(display_name="x" * (300 * 1024))), content_type=JSON_CT),
    case("nested-arrays-10000", "POST", "/users", 400,
         r"^the body is not valid JSON: maximum recursion depth exceeded",
         data="[" * 10_000 + "]" * 10_000, content_type=JSON_CT),
    case("nested-objects-10000", "POST", "/users", 400,
         r"^the body is not valid JSON: maximum recursion depth exceeded",
         data='{"a":' * 10_000 + "1" + "}" * 10_000, content_type=JSON_CT),
    case("nested-40", "POST", "/users", 400,
         rf"^the JSON body is nested deeper than {MAX_JSON_DEPTH} levels$", data=NESTED_40,
         content_type=JSON_CT),
    case("nested-500", "POST", "/users", 400,
         r"nested deeper than 32 levels|maximum recursion depth exceeded",
         data="[" * 500 + "]" * 500, content_type=JSON_CT),
    *(case(f"unknown-field-{f}", "POST", "/users", 422,
           rf"^the request does not match the schema: {f}: Extra inputs are not permitted$",
           new_user(**{f: v}))
      for f, v in [("admin", True), ("gid", 200500), ("status", "active"), ("id", "x")]),
    case("unknown-field-html", "POST", "/users", 422, r"<script>: Extra inputs are not permitted",
         new_user(**{"<script>": 1})),
    case("unknown-field-newline", "POST", "/users", 422,
         r"^the request does not match the schema: 'a\\nb': Extra inputs",
         new_user(**{"a\nb": 1})),
    case("unknown-field-10000", "POST", "/users", 422,
         r"^the request does not match the schema: (<script>alert\(1\)</script>){2}<script>"
         r"alert\(\.\.\.: Extra inputs are not permitted$", new_user(**{LONG: 1})),
    case("unknown-field-many", "POST", "/users", 422, r"f0: Extra inputs",
         new_user(**{f"f{i}": i for i in range(5000)})),
    case("unknown-field-rename", "PATCH", "/users/alice", 422,
         r"username: Extra inputs are not permitted", {"username": "root"}),
    case("unknown-field-vo", "POST", "/vos", 422, r"gid: Extra inputs are not permitted",
         {"name": "lhcb", "gid": 400500}),
    case("unknown-field-member", "POST", "/vos/atlas/members", 422,
         r"status: Extra inputs are not permitted", {"user": "dave", "status": "active"}),
    case("unknown-field-flag", "PUT", "/users/alice/service-admin", 422,
         r"extra: Extra inputs are not permitted", {"is_service_admin": False, "extra": 1}),
]

# -- dates ----------------------------------------------------------------------------
BAD_DATE = r"expires_on: Input should be a valid date"
NOT_FUTURE = r"^expiry date \d{4}-\d\d-\d\d is not in the future$"
DATE_CASES = [
    *(case(f"date-{i}", "POST", "/vos/atlas/members", 422, BAD_DATE,
           {"user": "dave", "expires_on": d})
      for i, d in enumerate(["2030-02-30", "tomorrow", "", "01/02/2030", "2030-1-1",
                             "2030-13-01", "2030-01-01'; DROP TABLE memberships;--", [2030],
                             {"y": 2030}, LONG])),
    case("date-past", "POST", "/vos/atlas/members", 422,
         r"^expiry date 2000-01-01 is not in the future$",
         {"user": "dave", "expires_on": "2000-01-01"}),
    case("date-today", "POST", "/vos/atlas/members", 422, NOT_FUTURE,
         {"user": "dave", "expires_on": "@{today}"}),
    case("date-approve-past", "POST", "/vos/atlas/members/frank/approve", 422, NOT_FUTURE,
         {"expires_on": "1999-12-31"}),
    case("date-expiry-past", "PUT", "/vos/atlas/members/alice/expiry", 422, NOT_FUTURE,
         {"expires_on": "2001-01-01"}),
    case("date-expiry-bad", "PUT", "/vos/atlas/members/alice/expiry", 422, BAD_DATE,
         {"expires_on": "someday"}),
    case("date-expiry-missing", "PUT", "/vos/atlas/members/alice/expiry", 422,
         r"expires_on: Field required", {}),
]

# -- query strings ---------------------------------------------------------------------
QUERY_CASES = [
    case("limit-0", "GET", "/users?limit=0", 422,
         r"^the request does not match the schema: limit: Input should be greater than or"
         r" equal to 1$"),
    case("limit-100000", "GET", "/users?limit=100000", 422,
         r"limit: Input should be less than or equal to 500"),
    case("limit-negative", "GET", "/vos?limit=-1", 422,
         r"limit: Input should be greater than or equal to 1"),
    case("limit-abc", "GET", "/vos?limit=abc", 422, r"limit: Input should be a valid integer"),
    case("limit-float", "GET", "/nodes?limit=1.5", 422, r"limit: Input should be a valid integer"),
    case("limit-huge", "GET", "/audit?limit=" + "9" * 40, 422,
         r"limit: Input should be less than or equal to 500"),
    case("since-negative", "GET", "/nodes/n1.example/changes?since=-1", 422,
         r"since: Input should be greater than or equal to 0"),
    case("since-abc", "GET", "/nodes/n1.example/changes?since=abc", 422,
         r"since: Input should be a valid integer"),
    case("since-missing", "GET", "/nodes/n1.example/changes", 422, r"since: Field required"),
    case("since-huge", "GET", "/nodes/n1.example/changes?since=" + "9" * 30, 422,
         r"since: Input should be less than or equal to"),
    case("audit-after-negative", "GET", "/audit?after=-1", 422,
         r"after: Input should be greater than or equal to 0"),
    case("audit-after-huge", "GET", "/audit?after=" + "9" * 30, 422,
         r"after: Input should be less than or equal to"),
    case("status-unknown", "GET", "/users?status=root", 422,
         r"status: Input should be 'active', 'suspended' or 'deleted'"),
    case("member-status-unknown", "GET", "/vos/atlas/members?status=x%27%20OR%201=1", 422,
         r"status: Input should be 'pending', 'active'"),
    case("after-long", "GET", "/users?after=" + "x" * 300, 422,
         r"after: String should have at most 253"),
    case("q-long", "GET", "/users?q=" + "x" * 255, 422, r"q: String should have at most 254"),
    case("member-q-long", "GET", "/vos/atlas/members?q=" + "x" * 33, 422,
         r"q: String should have at most 32"),
    case("node-vo-long", "GET", "/nodes?vo=" + "x" * 33, 422,
         r"vo: String should have at most 32"),
    case("unknown-param-model", "GET", "/users?foo=1", 422,
         r"foo: Extra inputs are not permitted"),
    case("unknown-param-html", "GET", "/vos?%3Cscript%3E=1", 422,
         r"<script>: Extra inputs are not permitted"),
    case("unknown-param", "GET", "/vos/atlas/groups?foo=1", 400,
         r"^unexpected query parameters: foo$"),
    case("unknown-param-newline", "GET", "/vos/atlas?a%0Ab=1", 400,
         r"^unexpected query parameters: 'a\\nb'$"),
    case("unknown-param-long", "GET", "/vos/atlas?" + "x" * 10_000 + "=1", 400,
         r"^unexpected query parameters: 'x{40}'$"),
    case("unknown-param-on-write", "POST", "/vos?debug=1", 400,
         r"^unexpected query parameters: debug$", {"name": "lhcb"}),
    case("nul-in-query", "GET", "/users?q=a%00", 400, r"^NUL characters are not allowed$"),
]

# -- things that do not exist ---------------------------------------------------------
NO_USER = r"^no user 'nosuch'$"
NOT_FOUND_CASES = [
    case("get-user", "GET", "/users/nosuch", 404, NO_USER),
    case("get-user-uuid", "GET", "/users/00000000-0000-0000-0000-000000000000", 404,
         r"^no user '00000000-0000-0000-0000-000000000000'$"),
    case("get-user-long", "GET", "/users/" + "x" * 10_000, 404, r"^no user 'x{64}'$"),
    case("get-user-hostile", "GET", "/users/*)(uid=*", 404, r"^no user '\*\)\(uid=\*'$"),
    case("get-user-sql", "GET", "/users/x'%20OR%20'1'='1", 404,
         r"""^no user "x' OR '1'='1"$"""),
    case("patch-user", "PATCH", "/users/nosuch", 404, NO_USER, {"display_name": "X"}),
    case("suspend-user", "POST", "/users/nosuch/suspend", 404, NO_USER),
    case("delete-user", "POST", "/users/nosuch/delete", 404, NO_USER),
    case("flag-user", "PUT", "/users/nosuch/service-admin", 404, NO_USER,
         {"is_service_admin": True}),
    case("user-memberships", "GET", "/users/nosuch/memberships", 404, NO_USER),
    case("user-key", "POST", "/users/nosuch/api-keys", 404, NO_USER, {}),
    case("get-vo", "GET", "/vos/nosuch", 404, r"^no VO 'nosuch'$"),
    case("get-vo-long", "GET", "/vos/" + "x" * 10_000, 404, r"^no VO 'x{64}'$"),
    case("vo-groups", "POST", "/vos/nosuch/groups", 404, r"^no VO 'nosuch'$",
         {"path": "/nosuch/x"}),
    case("vo-roles", "POST", "/vos/nosuch/roles", 404, r"^no VO 'nosuch'$", {"name": "x"}),
    case("vo-members", "POST", "/vos/nosuch/members", 404, r"^no VO 'nosuch'$",
         {"user": "alice"}),
    case("vo-members-list", "GET", "/vos/nosuch/members", 404, r"^no VO 'nosuch'$"),
    case("vo-admin", "PUT", "/vos/nosuch/admins/alice", 404, r"^no VO 'nosuch'$"),
    case("vo-request", "POST", "/vos/nosuch/requests", 404, r"^no VO 'nosuch'$", {},
         who="dave"),
    case("member-user", "POST", "/vos/atlas/members", 404, NO_USER, {"user": "nosuch"}),
    case("membership", "GET", "/vos/atlas/members/carol", 404,
         r"^'carol' has no membership in VO 'atlas'$"),
    case("membership-approve", "POST", "/vos/atlas/members/carol/approve", 404,
         r"^'carol' has no membership in VO 'atlas'$", {}),
    case("membership-suspend-user", "POST", "/vos/atlas/members/nosuch/suspend", 404, NO_USER,
         {}),
    case("membership-expiry", "PUT", "/vos/atlas/members/carol/expiry", 404,
         r"^'carol' has no membership in VO 'atlas'$", {"expires_on": None}),
    case("group-delete", "DELETE", "/vos/atlas/groups/nosuch", 404, r"^no group /atlas/nosuch$"),
    case("group-delete-deleted", "DELETE", "/vos/atlas/groups/old", 404,
         r"^no group /atlas/old$"),
    case("group-member", "PUT", "/vos/atlas/groups/nosuch/members/alice", 404,
         r"^no group /atlas/nosuch$"),
    case("group-member-user", "PUT", "/vos/atlas/groups/analysis/members/nosuch", 404, NO_USER),
    case("group-member-not-member", "PUT", "/vos/atlas/groups/analysis/members/carol", 404,
         r"^'carol' has no membership in VO 'atlas'$"),
    case("group-managers", "GET", "/vos/atlas/groups/nosuch/managers", 404,
         r"^no group /atlas/nosuch$"),
    case("role", "PUT", "/vos/atlas/members/alice/roles/nosuch", 404,
         r"^VO 'atlas' has no role 'nosuch'$"),
    case("role-of-other-vo", "PUT", "/vos/cms/members/alice/roles/production", 404,
         r"^VO 'cms' has no role 'production'$"),
    case("node", "GET", "/nodes/nosuch.example", 404, r"^no node 'nosuch\.example'$"),
    case("node-long", "GET", "/nodes/" + "x" * 10_000, 404, r"^no node 'x{64}'$"),
    case("node-vos", "PUT", "/nodes/nosuch/vos", 404, r"^no node 'nosuch'$", {"vos": []}),
    case("node-snapshot", "GET", "/nodes/nosuch/snapshot", 404, r"^no node 'nosuch'$"),
    case("node-changes", "GET", "/nodes/nosuch/changes?since=0", 404, r"^no node 'nosuch'$"),
    case("node-key", "POST", "/nodes/nosuch/api-keys", 404, r"^no node 'nosuch'$", {}),
    case("api-key", "DELETE", "/api-keys/0123456789abcdef", 404,
         r"^no API key '0123456789abcdef'$"),
    case("api-key-long", "DELETE", "/api-keys/" + "<" * 10_000, 404, r"^no API key '<{20}'$"),
    case("route", "GET", "/nosuch", 404, r"requested URL was not found"),
    case("method", "DELETE", "/users", 405, r"method is not allowed"),
]

# -- operations the current state does not allow ---------------------------------------
TRANSITION_CASES = [
    case("approve-active", "POST", "/vos/atlas/members/alice/approve", 409,
         r"^cannot approve the membership of 'alice' in VO 'atlas': it is active$", {}),
    case("reinstate-active-user", "POST", "/users/alice/reinstate", 409,
         r"^user 'alice' is active; cannot become active$"),
    case("suspend-self", "POST", "/users/sysop/suspend", 409,
         r"^you may not suspend or delete yourself$"),
    case("delete-deleted", "POST", "/users/gone/delete", 409,
         r"^user 'gone' is deleted; cannot become deleted$"),
    case("group-pending-member", "PUT", "/vos/atlas/groups/analysis/members/frank", 409,
         r"^the membership of 'frank' in VO 'atlas' is pending, not active$"),
    case("add-suspended-user", "POST", "/vos/atlas/members", 409, r"^user 'erin' is suspended$",
         {"user": "erin"}),
    case("admin-deleted-user", "PUT", "/vos/atlas/admins/gone", 409,
         r"^user 'gone' is deleted$"),
    case("key-deleted-user", "POST", "/users/gone/api-keys", 409, r"^user 'gone' is deleted$",
         {}),
    case("revoke-unheld-role", "DELETE", "/vos/atlas/members/alice/roles/production", 409,
         r"^'alice' does not hold /atlas/Role=production$"),
    case("remove-non-admin", "DELETE", "/vos/atlas/admins/alice", 409,
         r"^'alice' is not an admin of VO 'atlas'$"),
    case("revoke-revoked-key", "DELETE", "/api-keys/{revoked_key_id}", 409,
         r"^API key [0-9a-f]{16} is already revoked$"),
]

# -- who may not do it ----------------------------------------------------------------
AUTH_CASES = [
    case("no-key", "GET", "/me", 401,
         r"^send 'Authorization: Bearer <access token or API key>'$", who=None),
    case("no-key-write", "POST", "/users", 401, r"^send 'Authorization: Bearer", new_user(),
         who=None),
    case("basic-auth", "GET", "/me", 401, r"^send 'Authorization: Bearer",
         authorization="Basic YWRtaW46YWRtaW4="),
    case("malformed-key", "GET", "/me", 401, r"^malformed API key$",
         authorization="Bearer xos_' OR '1'='1"),
    case("malformed-token", "GET", "/me", 401, r"^invalid access token: ",
         authorization="Bearer ' OR '1'='1"),
    case("forged-key", "GET", "/me", 401, r"^unknown or revoked API key$",
         authorization="Bearer xos_0123456789abcdef_" + "A" * 43),
    case("revoked-key", "POST", "/users", 401, r"^unknown or revoked API key$", new_user(),
         who="revoked"),
    case("suspended-user", "POST", "/vos/cms/requests", 403,
         r"^this account is suspended or deleted$", {}, who="erin"),
    case("node-as-user", "GET", "/me", 403, r"^this operation needs a user's credential$",
         who="node"),
    case("node-requests", "POST", "/vos/cms/requests", 403,
         r"^this operation needs a user's credential$", {}, who="node"),
]


def ctl(name: str, who: str, method: str, path: str, status: int, pattern: str,
        control: tuple[str, int], body: Any = NO_BODY):
    """A refused request whose rightful actor (``control``) succeeds with the same call."""
    return pytest.param(Req(method, path, body, who=who), status, pattern, control, id=name)


ONLY_ADMIN = r"^only a service admin may do this$"
ONLY_ATLAS_ADMIN = r"^only an admin of VO 'atlas' may do this$"
ONLY_READER = r"^only admins and group managers of VO 'atlas' may read its members$"
OWN_RECORD = r"^you may only read your own record or your VO members'$"
FORBIDDEN_CASES = [
    # a VO admin acting on another VO
    ctl("cms-admin-creates-atlas-group", "carol", "POST", "/vos/atlas/groups", 403,
        ONLY_ATLAS_ADMIN, ("bob", 201), {"path": "/atlas/x"}),
    ctl("cms-admin-creates-atlas-role", "carol", "POST", "/vos/atlas/roles", 403,
        ONLY_ATLAS_ADMIN, ("bob", 201), {"name": "pilot"}),
    ctl("cms-admin-adds-atlas-member", "carol", "POST", "/vos/atlas/members", 403,
        ONLY_ATLAS_ADMIN, ("bob", 201), {"user": "dave"}),
    ctl("cms-admin-approves", "carol", "POST", "/vos/atlas/members/frank/approve", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {}),
    ctl("cms-admin-suspends", "carol", "POST", "/vos/atlas/members/alice/suspend", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {}),
    ctl("cms-admin-removes", "carol", "POST", "/vos/atlas/members/alice/remove", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {}),
    ctl("cms-admin-assigns-role", "carol", "PUT", "/vos/atlas/members/alice/roles/production",
        403, ONLY_ATLAS_ADMIN, ("bob", 204)),
    ctl("cms-admin-sets-expiry", "carol", "PUT", "/vos/atlas/members/alice/expiry", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {"expires_on": "@{future}"}),
    ctl("cms-admin-adds-to-group", "carol", "PUT", "/vos/atlas/groups/analysis/members/alice",
        403, r"^only an admin of VO 'atlas' or a manager of /atlas/analysis may do this$",
        ("bob", 204)),
    ctl("cms-admin-deletes-group", "carol", "DELETE", "/vos/atlas/groups/analysis", 403,
        ONLY_ATLAS_ADMIN, ("bob", 204)),
    ctl("cms-admin-names-manager", "carol", "PUT", "/vos/atlas/groups/analysis/managers/carol",
        403, ONLY_ATLAS_ADMIN, ("bob", 204)),
    ctl("cms-admin-lists-atlas", "carol", "GET", "/vos/atlas/members", 403, ONLY_READER,
        ("bob", 200)),
    ctl("cms-admin-reads-atlas-member", "carol", "GET", "/vos/atlas/members/alice", 403,
        ONLY_READER, ("bob", 200)),
    ctl("cms-admin-reads-atlas-user", "carol", "GET", "/users/alice", 403, OWN_RECORD,
        ("bob", 200)),
    ctl("cms-admin-reads-atlas-audit", "carol", "GET", "/audit?vo=atlas", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200)),
    ctl("cms-admin-lists-atlas-nodes", "carol", "GET", "/nodes?vo=atlas", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200)),
    # a VO admin acting as service admin
    ctl("vo-admin-creates-vo", "bob", "POST", "/vos", 403, ONLY_ADMIN, ("admin", 201),
        {"name": "lhcb"}),
    ctl("vo-admin-creates-user", "bob", "POST", "/users", 403, ONLY_ADMIN, ("admin", 201),
        new_user()),
    ctl("vo-admin-names-vo-admin", "bob", "PUT", "/vos/atlas/admins/alice", 403, ONLY_ADMIN,
        ("admin", 204)),
    ctl("vo-admin-takes-other-vo", "bob", "PUT", "/vos/cms/admins/bob", 403, ONLY_ADMIN,
        ("admin", 204)),
    ctl("vo-admin-escalates", "bob", "PUT", "/users/bob/service-admin", 403, ONLY_ADMIN,
        ("admin", 200), {"is_service_admin": True}),
    ctl("vo-admin-registers-node", "bob", "POST", "/nodes", 403, ONLY_ADMIN, ("admin", 201),
        {"name": "n3.example", "vos": ["atlas"]}),
    ctl("vo-admin-moves-node", "bob", "PUT", "/nodes/n2.example/vos", 403, ONLY_ADMIN,
        ("admin", 200), {"vos": ["atlas", "cms"]}),
    ctl("vo-admin-lists-users", "bob", "GET", "/users", 403, ONLY_ADMIN, ("admin", 200)),
    ctl("vo-admin-suspends-user", "bob", "POST", "/users/alice/suspend", 403, ONLY_ADMIN,
        ("admin", 200)),
    ctl("vo-admin-renames-member", "bob", "PATCH", "/users/alice", 403, ONLY_ADMIN,
        ("alice", 200), {"display_name": "Mallory"}),
    ctl("vo-admin-mints-member-key", "bob", "POST", "/users/alice/api-keys", 403, ONLY_ADMIN,
        ("admin", 201), {}),
    ctl("vo-admin-revokes-member-key", "bob", "DELETE", "/api-keys/{alice_key_id}", 403,
        ONLY_ADMIN, ("alice", 204)),
    ctl("vo-admin-reads-full-audit", "bob", "GET", "/audit", 403, ONLY_ADMIN, ("admin", 200)),
    # a member acting as admin
    ctl("member-creates-group", "alice", "POST", "/vos/atlas/groups", 403, ONLY_ATLAS_ADMIN,
        ("bob", 201), {"path": "/atlas/mine"}),
    ctl("member-adds-member", "alice", "POST", "/vos/atlas/members", 403, ONLY_ATLAS_ADMIN,
        ("bob", 201), {"user": "dave"}),
    ctl("member-approves", "alice", "POST", "/vos/atlas/members/frank/approve", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {}),
    ctl("member-suspends-self", "alice", "POST", "/vos/atlas/members/alice/suspend", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {}),
    ctl("member-takes-role", "alice", "PUT", "/vos/atlas/members/alice/roles/production", 403,
        ONLY_ATLAS_ADMIN, ("bob", 204)),
    ctl("member-joins-group", "alice", "PUT", "/vos/atlas/groups/analysis/members/alice", 403,
        r"^only an admin of VO 'atlas' or a manager of /atlas/analysis may do this$",
        ("gina", 204)),
    ctl("member-extends-expiry", "alice", "PUT", "/vos/atlas/members/alice/expiry", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {"expires_on": "@{future}"}),
    ctl("member-lists-members", "alice", "GET", "/vos/atlas/members", 403, ONLY_READER,
        ("gina", 200)),
    ctl("member-becomes-vo-admin", "alice", "PUT", "/vos/atlas/admins/alice", 403, ONLY_ADMIN,
        ("admin", 204)),
    ctl("member-escalates", "alice", "PUT", "/users/alice/service-admin", 403, ONLY_ADMIN,
        ("admin", 200), {"is_service_admin": True}),
    ctl("member-creates-vo", "alice", "POST", "/vos", 403, ONLY_ADMIN, ("admin", 201),
        {"name": "mine"}),
    ctl("member-creates-user", "alice", "POST", "/users", 403, ONLY_ADMIN, ("admin", 201),
        new_user()),
    ctl("member-creates-admin", "alice", "POST", "/users", 403, ONLY_ADMIN, ("admin", 201),
        new_user(is_service_admin=True)),
    ctl("member-renames-other", "alice", "PATCH", "/users/bob", 403, ONLY_ADMIN, ("bob", 200),
        {"display_name": "Bobby"}),
    ctl("member-reads-other", "alice", "GET", "/users/carol", 403, OWN_RECORD,
        ("admin", 200)),
    ctl("member-mints-other-key", "alice", "POST", "/users/bob/api-keys", 403, ONLY_ADMIN,
        ("admin", 201), {}),
    ctl("member-revokes-other-key", "alice", "DELETE", "/api-keys/{bob_key_id}", 403,
        ONLY_ADMIN, ("bob", 204)),
    ctl("member-reads-snapshot", "alice", "GET", "/nodes/n1.example/snapshot", 403,
        ONLY_ADMIN, ("node", 200)),
    ctl("member-reads-node", "alice", "GET", "/nodes/n1.example", 403, ONLY_ADMIN,
        ("admin", 200)),
    ctl("member-reads-audit", "alice", "GET", "/audit?vo=atlas", 403, ONLY_ATLAS_ADMIN,
        ("bob", 200)),
    # a group manager beyond their group, a node beyond itself
    ctl("manager-other-group", "gina", "PUT", "/vos/atlas/groups/ops/members/alice", 403,
        r"^only an admin of VO 'atlas' or a manager of /atlas/ops may do this$", ("bob", 204)),
    ctl("manager-creates-group", "gina", "POST", "/vos/atlas/groups", 403, ONLY_ATLAS_ADMIN,
        ("bob", 201), {"path": "/atlas/analysis/higgs"}),
    ctl("manager-approves", "gina", "POST", "/vos/atlas/members/frank/approve", 403,
        ONLY_ATLAS_ADMIN, ("bob", 200), {}),
    ctl("node-reads-other-node", "node", "GET", "/nodes/n2.example/snapshot", 403, ONLY_ADMIN,
        ("admin", 200)),
    ctl("node-reads-other-changes", "node", "GET", "/nodes/n2.example/changes?since=0", 403,
        ONLY_ADMIN, ("admin", 200)),
    ctl("node-creates-user", "node", "POST", "/users", 403, ONLY_ADMIN, ("admin", 201),
        new_user()),
]



def prefixed(prefix: str, cases: list[Any]) -> list[Any]:
    return [pytest.param(*c.values, id=f"{prefix}-{c.id}") for c in cases]


REFUSED = [
    *prefixed("username", USERNAME_CASES), *prefixed("display", DISPLAY_CASES),
    *prefixed("email", EMAIL_CASES), *prefixed("number", UID_CASES),
    *prefixed("duplicate", DUPLICATE_CASES), *prefixed("vo", VO_CASES),
    *prefixed("group", GROUP_CASES), *prefixed("role", ROLE_CASES),
    *prefixed("node", NODE_CASES), *prefixed("body", BODY_CASES),
    *prefixed("date", DATE_CASES), *prefixed("query", QUERY_CASES),
    *prefixed("missing", NOT_FOUND_CASES), *prefixed("state", TRANSITION_CASES),
    *prefixed("auth", AUTH_CASES),
]


# -- the tests ------------------------------------------------------------------------
@pytest.mark.parametrize(("req", "status", "pattern"), REFUSED)
def test_bad_input_is_refused_and_changes_nothing(world, client, req, status, pattern):
    before = snapshot()
    response = send(client, world, req)
    assert_problem(response, status, pattern)
    assert_unchanged(before)


@pytest.mark.parametrize(("req", "status", "pattern", "control"), FORBIDDEN_CASES)
def test_forbidden_is_refused_and_the_rightful_actor_succeeds(world, client, req, status,
                                                               pattern, control):
    before = snapshot()
    assert_problem(send(client, world, req), status, pattern)
    assert_unchanged(before)
    # The same call by whoever may make it succeeds: the refusal was about the caller.
    who, ok = control
    response = send(client, world, req, who=who)
    assert response.status_code == ok, response.get_data(as_text=True)[:500]
    if req.method != "GET":
        assert snapshot() != before


def test_snapshot_sees_every_kind_of_change(world, client):
    """The state helper can fail: creations, updates and revisions all show."""
    def ok(req: Req, status: int) -> None:
        response = send(client, world, req)
        assert response.status_code == status, response.get_json()

    before = snapshot()
    ok(Req("PATCH", "/users/alice", {"display_name": "Alice Liddell"}), 200)
    changed = snapshot()
    assert changed.counts["users"] == before.counts["users"]
    assert changed.rows["users"] != before.rows["users"]
    assert changed.audit_head != before.audit_head
    ok(Req("POST", "/vos/atlas/members", {"user": "dave"}), 201)
    joined = snapshot()
    assert joined.revision > changed.revision
    assert joined.counts["memberships"] == changed.counts["memberships"] + 1


@pytest.mark.parametrize(("req", "status"), [
    pytest.param(Req("POST", "/users", new_user(username="a" * 32, uid=399_999,
                                                email="n@example.org")), 201, id="user"),
    pytest.param(Req("POST", "/vos", {"name": "x" * 31}), 201, id="vo"),
    pytest.param(Req("POST", "/vos/atlas/groups", {"path": "/atlas/" + "x" * 26}), 201,
                 id="group-32"),
    pytest.param(Req("POST", "/vos/atlas/roles", {"name": "R" * 64}), 201, id="role"),
    pytest.param(Req("POST", "/nodes", {"name": "a" * 63 + ".example", "vos": ["cms"]}), 201,
                 id="node"),
    pytest.param(Req("POST", "/vos/atlas/members", {"user": "dave", "expires_on": "@{future}"}),
                 201, id="member"),
    pytest.param(Req("POST", "/users", data=json.dumps(new_user()).encode("utf-16"),
                     content_type="application/json; charset=utf-16"), 201, id="utf-16"),
])
def test_the_boundary_values_next_to_the_refused_ones_are_accepted(world, client, req, status):
    """The refusals above are about the values, not about the endpoints or the world."""
    response = send(client, world, req)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/json"


def test_hostile_values_are_stored_nowhere_and_never_echoed_raw(world, client):
    """Across every refused request, nothing hostile entered any table."""
    before = snapshot()
    for hostile in ["<script>", "*)(uid=*", "'; DROP TABLE users;--", "a:b", "a\nb"]:
        for req in (Req("POST", "/users", new_user(username=hostile)),
                    Req("POST", "/vos", {"name": hostile}),
                    Req("POST", "/vos/atlas/groups", {"path": f"/atlas/{hostile}"}),
                    Req("POST", "/nodes", {"name": hostile})):
            response = send(client, world, req)
            assert response.status_code == 422
            detail = response.get_json()["detail"]
            assert "\n" not in detail
    assert_unchanged(before)
    stored = "".join("".join(rows) for rows in snapshot().rows.values())
    for needle in ("<script>", "*)(uid=*", "DROP TABLE"):
        assert needle not in stored


@pytest.mark.parametrize("text", [
    "Robert'); DROP TABLE users;--", "<script>alert(1)</script>", "*)(uid=*)(|(uid=*",
    "O'Brien \"Bob\" \\ Jr.", "%s %n {0} ${jndi}",
])
def test_hostile_free_text_is_stored_verbatim(world, client, text):
    """Display names are free text (O'Brien): stored as given by parameterised queries,
    returned JSON-encoded, and no table is harmed."""
    before = snapshot()
    response = send(client, world, Req("POST", "/users", new_user(display_name=text)))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["display_name"] == text
    response = send(client, world, Req("GET", "/users/newbie"))
    assert response.mimetype == "application/json"
    assert response.get_json()["display_name"] == text
    after = snapshot()
    assert after.counts["users"] == before.counts["users"] + 1
    assert {t: n for t, n in after.counts.items() if t not in (
        "users", "unix_names", "audit_events")} == {
        t: n for t, n in before.counts.items() if t not in (
            "users", "unix_names", "audit_events")}

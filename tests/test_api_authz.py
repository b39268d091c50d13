"""Who may do what: every registered API operation, called by every kind of caller.

The table ``CASES`` names, for each operation in ``vo_service.api.registry.OPERATIONS``,
one or more concrete requests and the callers allowed to make them. The test matrix
calls each request as each caller in a fresh world (a per-test rolled-back transaction)
and checks: allowed -> the operation's success status; denied -> 403 (401 without a
valid credential) and nothing changed in the database. An operation missing from the
table fails ``test_every_operation_is_in_the_table``, so a new route cannot escape.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from flask import current_app
from sqlalchemy import func, select

from vo_service.api.registry import OPERATIONS
from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.pki.authority import authority
from vo_service.pki.services import CertificateService
from vo_service.sync.revisions import RevisionLog
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

# -- callers ------------------------------------------------------------------------
#: Callers with a working credential.
USERS = ("sysop", "atlas_admin", "cms_admin", "manager", "member", "pending", "outsider")
NODE = "node"
#: Every caller of the matrix. "suspended": the key of a suspended user; "revoked": a
#: revoked key of the active member; "anonymous": no Authorization header at all.
ROLES = (*USERS, NODE, "suspended", "revoked", "anonymous")
ALL = frozenset((*USERS, NODE))
EVERY_USER = frozenset(USERS)
SA = frozenset({"sysop"})
VO_ADMINS = frozenset({"sysop", "atlas_admin"})
VO_READERS = VO_ADMINS | {"manager"}

TOMORROW = (dt.date.today() + dt.timedelta(days=30)).isoformat()


def _csr(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _ssh_key() -> str:
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


CSR, NODE_CSR, SSH_KEY = _csr("whoever"), _csr("n1.example"), _ssh_key()
NO_MEMBERSHIP = {"sysop": 409, "atlas_admin": 409, "cms_admin": 409, "pending": 409,
                 "outsider": 409}


@dataclass(frozen=True)
class Case:
    """One concrete request of one operation and who may make it."""

    method: str
    rule: str  # the operation's registered rule, to match it in OPERATIONS
    path: str  # the concrete path, formatted with the world's values
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    #: Callers who pass the permission check but whose request clashes with the state
    #: (e.g. asking to join a VO one already belongs to): role -> expected status.
    other: dict[str, int] = field(default_factory=dict)
    writes: bool = False  # a successful call adds rows or bumps the revision
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.label}]" if self.label else "")


def case(method: str, rule: str, allowed: frozenset[str], path: str | None = None,
         **kwargs: Any) -> Case:
    return Case(method, rule, path or rule, allowed, **kwargs)


CASES: list[Case] = [
    # -- meta
    case("GET", "/openapi.json", frozenset(ROLES)),
    # -- users
    case("GET", "/me", EVERY_USER),
    case("POST", "/users", SA, body={"username": "newbie", "display_name": "New"},
         writes=True),
    case("GET", "/users", SA),
    case("GET", "/users", SA, path="/users?q=ali&limit=5", label="search"),
    case("GET", "/users/<user>", VO_ADMINS | {"member"}, path="/users/alice"),
    case("GET", "/users/<user>", VO_ADMINS | {"pending"}, path="/users/pete",
         label="a pending member is readable by the VO's admins"),
    case("GET", "/users/<user>", SA | {"outsider"}, path="/users/oscar",
         label="no VO admin reads a user outside the VO"),
    case("PATCH", "/users/<user>", SA | {"member"}, path="/users/alice",
         body={"display_name": "Alice A"}, writes=True),
    case("POST", "/users/<user>/suspend", SA, path="/users/alice/suspend", writes=True),
    case("POST", "/users/<user>/reinstate", SA, path="/users/sam/reinstate", writes=True),
    case("POST", "/users/<user>/delete", SA, path="/users/alice/delete", writes=True),
    case("PUT", "/users/<user>/service-admin", SA, path="/users/alice/service-admin",
         body={"is_service_admin": True}, writes=True),
    case("PUT", "/users/<user>/password", SA | {"member"}, path="/users/alice/password",
         body={"password": "a long new password"}, writes=True),
    case("GET", "/users/<user>/memberships", VO_ADMINS | {"member"},
         path="/users/alice/memberships"),
    case("POST", "/users/<user>/api-keys", SA | {"member"}, path="/users/alice/api-keys",
         body={"description": "laptop"}, writes=True),
    case("DELETE", "/api-keys/<key_id>", SA | {"member"}, path="/api-keys/{alice_key}",
         writes=True),
    case("DELETE", "/api-keys/<key_id>", SA, path="/api-keys/{node_key}",
         label="a node's key: service admins only", writes=True),
    # -- VOs, groups, roles, admins, managers
    case("POST", "/vos", SA, body={"name": "lhcb"}, writes=True),
    case("GET", "/vos", ALL),
    case("GET", "/vos/<vo>", ALL, path="/vos/atlas"),
    case("PATCH", "/vos/<vo>", VO_ADMINS, path="/vos/atlas", body={"cert_hours": 24},
         writes=True),
    case("POST", "/vos/<vo>/groups", VO_ADMINS, path="/vos/atlas/groups",
         body={"path": "/atlas/new"}, writes=True),
    case("GET", "/vos/<vo>/groups", ALL, path="/vos/atlas/groups"),
    case("DELETE", "/vos/<vo>/groups/<path:group>", VO_ADMINS,
         path="/vos/atlas/groups/production", writes=True),
    case("GET", "/vos/<vo>/groups/<path:group>/managers", VO_READERS,
         path="/vos/atlas/groups/analysis/managers"),
    case("PUT", "/vos/<vo>/groups/<path:group>/managers/<user>", VO_ADMINS,
         path="/vos/atlas/groups/analysis/managers/alice", writes=True),
    case("DELETE", "/vos/<vo>/groups/<path:group>/managers/<user>", VO_ADMINS,
         path="/vos/atlas/groups/analysis/managers/mona", writes=True),
    case("POST", "/vos/<vo>/roles", VO_ADMINS, path="/vos/atlas/roles",
         body={"name": "lcgadmin"}, writes=True),
    case("PUT", "/vos/<vo>/admins/<user>", SA, path="/vos/atlas/admins/alice", writes=True),
    case("DELETE", "/vos/<vo>/admins/<user>", SA, path="/vos/atlas/admins/adam",
         writes=True),
    case("GET", "/audit", SA),
    case("GET", "/audit", VO_ADMINS, path="/audit?vo=atlas", label="one VO"),
    # -- memberships
    case("POST", "/vos/<vo>/requests", EVERY_USER - {"member", "manager", "pending"},
         path="/vos/atlas/requests", body={"reason": "analysis"}, writes=True,
         other={"member": 409, "manager": 409, "pending": 409}),
    case("GET", "/vos/<vo>/members", VO_READERS, path="/vos/atlas/members"),
    case("GET", "/vos/<vo>/members", VO_READERS, path="/vos/atlas/members?status=pending",
         label="filtered"),
    case("POST", "/vos/<vo>/members", VO_ADMINS, path="/vos/atlas/members",
         body={"user": "oscar"}, writes=True),
    case("GET", "/vos/<vo>/members/<user>", VO_READERS | {"member"},
         path="/vos/atlas/members/alice"),
    case("GET", "/vos/<vo>/members/<user>", VO_READERS | {"pending"},
         path="/vos/atlas/members/pete", label="the pending member themself"),
    case("POST", "/vos/<vo>/members/<user>/approve", VO_ADMINS,
         path="/vos/atlas/members/pete/approve", body={}, writes=True),
    case("POST", "/vos/<vo>/members/<user>/reject", VO_ADMINS,
         path="/vos/atlas/members/pete/reject", body={"reason": "no"}, writes=True),
    case("POST", "/vos/<vo>/members/<user>/suspend", VO_ADMINS,
         path="/vos/atlas/members/alice/suspend", body={}, writes=True),
    case("POST", "/vos/<vo>/members/<user>/reinstate", VO_ADMINS,
         path="/vos/atlas/members/sid/reinstate", body={}, writes=True),
    case("POST", "/vos/<vo>/members/<user>/remove", VO_ADMINS,
         path="/vos/atlas/members/alice/remove", body={}, writes=True),
    case("PUT", "/vos/<vo>/members/<user>/expiry", VO_ADMINS,
         path="/vos/atlas/members/alice/expiry", body={"expires_on": TOMORROW}, writes=True),
    case("PUT", "/vos/<vo>/groups/<path:group>/members/<user>", VO_READERS,
         path="/vos/atlas/groups/analysis/members/alice", writes=True),
    case("PUT", "/vos/<vo>/groups/<path:group>/members/<user>", VO_READERS,
         path="/vos/atlas/groups/analysis/higgs/members/alice", writes=True,
         label="a subgroup of the managed group"),
    case("PUT", "/vos/<vo>/groups/<path:group>/members/<user>", VO_ADMINS,
         path="/vos/atlas/groups/production/members/alice", writes=True,
         label="a sibling of the managed group"),
    case("DELETE", "/vos/<vo>/groups/<path:group>/members/<user>", VO_READERS,
         path="/vos/atlas/groups/analysis/members/bob", writes=True),
    case("PUT", "/vos/<vo>/members/<user>/roles/<role>", VO_ADMINS,
         path="/vos/atlas/members/alice/roles/production", writes=True),
    case("DELETE", "/vos/<vo>/members/<user>/roles/<role>", VO_ADMINS,
         path="/vos/atlas/members/bob/roles/production", writes=True),
    # -- nodes and sync
    case("POST", "/nodes", SA, body={"name": "n3.example", "vos": ["atlas"]}, writes=True),
    case("GET", "/nodes", SA),
    case("GET", "/nodes", VO_ADMINS, path="/nodes?vo=atlas", label="one VO"),
    case("GET", "/nodes/<node>", SA | {NODE}, path="/nodes/n1.example"),
    case("GET", "/nodes/<node>", SA, path="/nodes/n2.example", label="another node"),
    case("PUT", "/nodes/<node>/vos", SA, path="/nodes/n1.example/vos",
         body={"vos": ["atlas", "cms"]}, writes=True),
    case("POST", "/nodes/<node>/api-keys", SA, path="/nodes/n1.example/api-keys", body={},
         writes=True),
    case("GET", "/nodes/<node>/snapshot", SA | {NODE}, path="/nodes/n1.example/snapshot"),
    case("GET", "/nodes/<node>/snapshot", SA, path="/nodes/n2.example/snapshot",
         label="another node"),
    case("GET", "/nodes/<node>/changes", SA | {NODE}, path="/nodes/n1.example/changes?since=0"),
    case("GET", "/nodes/<node>/changes", SA, path="/nodes/n2.example/changes?since=0",
         label="another node"),
    # -- enrolment
    case("POST", "/nodes/<node>/enrolment-tokens", SA, path="/nodes/n1.example/enrolment-tokens",
         body={}, writes=True),
    case("POST", "/enroll", frozenset(ROLES), body={"token": "{enrolment_token}",
                                                    "csr": NODE_CSR}, writes=True),
    # -- certificates
    case("POST", "/certificates/xos", frozenset({"member", "manager"}), body={"csr": CSR},
         other=NO_MEMBERSHIP, writes=True),
    case("POST", "/certificates/ssh", frozenset({"member", "manager"}),
         body={"public_key": SSH_KEY}, other=NO_MEMBERSHIP, writes=True),
    case("POST", "/nodes/<node>/certificate", SA | {NODE}, path="/nodes/n1.example/certificate",
         body={"csr": NODE_CSR}, writes=True),
    case("POST", "/nodes/<node>/ssh-host-certificate", SA | {NODE},
         path="/nodes/n1.example/ssh-host-certificate", body={"public_key": SSH_KEY},
         writes=True),
    case("GET", "/certificates", EVERY_USER),
    case("GET", "/certificates", VO_ADMINS | {"member"}, path="/certificates?user=alice",
         label="a user's certificates: their VOs' admins too"),
    case("GET", "/certificates/<serial>", SA | {"member"}, path="/certificates/{alice_serial}"),
    case("POST", "/certificates/<serial>/revoke", SA | {"member"},
         path="/certificates/{alice_serial}/revoke", body={"reason": "keyCompromise"},
         writes=True),
]

PUBLIC_RULES = {op.rule for op in OPERATIONS if op.public}


def _operation(c: Case) -> Any:
    for op in OPERATIONS:
        if op.method == c.method and op.rule == c.rule:
            return op
    raise AssertionError(f"case {c.id} names no registered operation {c.method} {c.rule}")


def test_every_operation_is_in_the_table() -> None:
    covered = {(c.method, c.rule) for c in CASES}
    missing = [f"{op.method} {op.rule}" for op in OPERATIONS
               if (op.method, op.rule) not in covered]
    assert not missing, ("operations without an authorization entry in CASES: "
                         + ", ".join(missing))
    stale = [c.id for c in CASES if not any(
        op.method == c.method and op.rule == c.rule for op in OPERATIONS)]
    assert not stale, f"CASES names operations that are not registered: {stale}"
    assert len(OPERATIONS) >= 47


def test_the_table_is_consistent() -> None:
    for c in CASES:
        assert c.allowed <= set(ROLES), c.id
        assert not set(c.other) & c.allowed, c.id
        op = _operation(c)
        assert (c.body is not None) == (op.body is not None), c.id
        if op.public:
            assert c.allowed == set(ROLES), f"{c.id} is public: everybody may call it"
        else:
            assert not c.allowed & {"suspended", "revoked", "anonymous"}, c.id


# -- the world ----------------------------------------------------------------------
class World:
    """sysop (service admin); VO atlas with adam (admin), groups /atlas/analysis (mona
    manages it), /atlas/analysis/higgs and /atlas/production, role production; alice
    (active member), bob (active, in /atlas/analysis, holds /atlas/Role=production),
    pete (pending), sid (suspended membership); VO cms with carl (admin); oscar (no
    membership); sam (suspended user, with a key); node n1 serving atlas (with a key),
    node n2 serving cms."""

    def __init__(self, ctx: Any, system: Any, users: Any) -> None:
        vos, ms, nodes = VOService(ctx), MembershipService(ctx), NodeService(ctx)
        keys = ApiKeyService(ctx)
        self.sysop = users.make("sysop", is_service_admin=True)
        atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
        analysis = vos.create_group(system, atlas, "/atlas/analysis")
        vos.create_group(system, atlas, "/atlas/analysis/higgs")
        vos.create_group(system, atlas, "/atlas/production")
        production = vos.create_role(system, atlas, "production")
        self.people = {name: users.make(name, email=f"{name}@example.org") for name in
                       ("adam", "carl", "mona", "alice", "bob", "pete", "sid", "oscar",
                        "sam")}
        p = self.people
        vos.set_admin(system, atlas, p["adam"], True)
        vos.set_admin(system, cms, p["carl"], True)
        vos.set_manager(system, atlas, analysis, p["mona"], True)
        for name in ("mona", "alice", "bob", "sid"):
            ms.add(system, atlas, p[name])
        ms.add_to_group(system, atlas, analysis, p["bob"])
        ms.set_role(system, atlas, p["bob"], production, True)
        ms.transition(system, atlas, p["sid"], "suspend")
        ms.request(actor_of(p["pete"]), atlas, p["pete"], "please")
        n1 = nodes.register(system, "n1.example", vos=["atlas"])
        nodes.register(system, "n2.example", vos=["cms"])
        db.session.commit()
        owners = {"sysop": self.sysop, "atlas_admin": p["adam"], "cms_admin": p["carl"],
                  "manager": p["mona"], "member": p["alice"], "pending": p["pete"],
                  "outsider": p["oscar"], "suspended": p["sam"]}
        self.keys: dict[str, str | None] = {role: users.key(u) for role, u in owners.items()}
        self.keys["anonymous"] = None
        node_key, self.keys[NODE] = keys.issue(system, node=n1)
        revoked, self.keys["revoked"] = keys.issue(system, user=p["alice"])
        keys.revoke(system, revoked.key_id)
        UserService(ctx).set_status(system, p["sam"], "suspended")
        db.session.commit()
        cert, _ = CertificateService(ctx, authority(), current_app.config).issue_user(
            actor_of(p["alice"]), p["alice"], CSR)
        db.session.commit()
        from vo_service.nodes.enrolment import EnrolmentService

        enrolment_token, _ = EnrolmentService(ctx).issue(system, n1, 1)
        db.session.commit()
        self.values = {"alice_key": self.key_id("member"), "node_key": node_key.key_id,
                       "alice_serial": cert.serial, "enrolment_token": enrolment_token}

    def key_id(self, role: str) -> str:
        key = self.keys[role]
        assert key is not None
        return key.split("_")[1]


def actor_of(user: Any) -> Actor:
    return Actor(label=f"user:{user.username}", user_id=user.id)


@pytest.fixture
def world(ctx, system, users) -> World:
    return World(ctx, system, users)


def state(session: Any) -> tuple[dict[str, int], int]:
    """Row counts of every table (in one query), and the global revision."""
    tables = db.metadata.sorted_tables
    row = session.execute(select(*[select(func.count()).select_from(t).scalar_subquery()
                                   for t in tables])).one()
    return dict(zip([t.name for t in tables], row, strict=True)), \
        RevisionLog(session).current()


def check_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (status, response.get_json(silent=True))
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


def send(client: Any, c: Case, key: str | None, values: dict[str, str]) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = c.body if c.body is None else {  # "{name}" values come from the world
        k: values[v[1:-1]] if isinstance(v, str) and v[:1] == "{" and v[-1:] == "}" else v
        for k, v in c.body.items()}
    return client.open("/api/v1" + c.path.format(**values), method=c.method,
                       headers=headers, json=body)


# -- the matrix ---------------------------------------------------------------------
@contextmanager
def undone(session: Any) -> Iterator[None]:
    """Run one request inside a connection savepoint rolled back afterwards, so that
    every caller of a case meets the same world (a world per pair would be slow)."""
    connection = session.connection()
    session.commit()
    savepoint = connection.begin_nested()
    try:
        yield
    finally:
        session.close()  # drops whatever the request left in the identity map
        savepoint.rollback()


def expected_status(c: Case, role: str) -> int:
    if role in c.allowed:
        return _operation(c).status
    if role in c.other:
        return c.other[role]
    return 401 if role in ("anonymous", "revoked") else 403


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_who_may_call_what(app, client, world, c: Case) -> None:
    """Every caller in ROLES against one request: the status, and on refusal no change."""
    failures: list[str] = []
    original = state(db.session)
    for role in ROLES:
        with undone(db.session):
            response = send(client, c, world.keys[role], world.values)
            after = state(db.session)
        if state(db.session) != original:
            pytest.fail(f"{role}: the world was not restored after {c.id}")
        before = original
        want = expected_status(c, role)
        got = response.status_code
        body = response.get_json(silent=True)
        if got != want:
            failures.append(f"{role}: expected {want}, got {got} {body}")
            continue
        if role in c.allowed:
            if c.writes and after == before:
                failures.append(f"{role}: allowed and succeeded but changed nothing")
            if not c.writes and after != before:
                failures.append(f"{role}: a read changed the database")
            continue
        if after != before:
            failures.append(f"{role}: refused with {got} but the database changed")
        if response.mimetype != "application/problem+json" or body.get("status") != got:
            failures.append(f"{role}: the refusal is not a problem detail: {body}")
        if got == 403 and body.get("title") != "Permission denied":
            failures.append(f"{role}: 403 titled {body.get('title')!r}")
        if got == 401 and not response.headers.get("WWW-Authenticate", "").startswith("Bearer"):
            failures.append(f"{role}: 401 without a WWW-Authenticate: Bearer header")
    assert not failures, f"{c.id}:\n  " + "\n  ".join(failures)


# -- the cases the matrix covers, spelt out -----------------------------------------
def call(client: Any, method: str, path: str, key: str | None, json: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.open("/api/v1" + path, method=method, headers=headers, json=json)


def test_a_vo_admin_cannot_act_on_another_vo(app, client, world) -> None:
    carl = world.keys["cms_admin"]
    before = state(db.session)
    for method, path, body in [
        ("POST", "/vos/atlas/members", {"user": "oscar"}),
        ("POST", "/vos/atlas/members/pete/approve", {}),
        ("POST", "/vos/atlas/members/alice/remove", {}),
        ("POST", "/vos/atlas/groups", {"path": "/atlas/cmsgroup"}),
        ("PUT", "/vos/atlas/groups/analysis/members/alice", None),
        ("PUT", "/vos/atlas/members/alice/roles/production", None),
        ("GET", "/vos/atlas/members", None),
        ("GET", "/audit?vo=atlas", None),
        ("GET", "/nodes?vo=atlas", None),
    ]:
        response = call(client, method, path, carl, body)
        assert "VO 'atlas'" in check_problem(response, 403)["detail"], path
    assert state(db.session) == before
    # ... while the same admin may act on their own VO.
    response = call(client, "POST", "/vos/cms/members", carl, {"user": "oscar"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "active"


def test_a_vo_admin_sees_a_users_memberships_in_their_vo_only(app, client, world) -> None:
    response = call(client, "POST", "/vos/cms/members", world.keys["cms_admin"],
                    {"user": "alice"})
    assert response.status_code == 201, response.get_json()
    seen = {}
    for role in ("sysop", "member", "atlas_admin", "cms_admin"):
        response = call(client, "GET", "/users/alice/memberships", world.keys[role])
        assert response.status_code == 200, (role, response.get_json())
        seen[role] = [m["vo"] for m in response.get_json()["items"]]
    assert seen == {"sysop": ["atlas", "cms"], "member": ["atlas", "cms"],
                    "atlas_admin": ["atlas"], "cms_admin": ["cms"]}
    check_problem(call(client, "GET", "/users/alice/memberships", world.keys["outsider"]), 403)


def test_a_member_cannot_act_as_admin(app, client, world) -> None:
    alice = world.keys["member"]
    before = state(db.session)
    for method, path, body in [
        ("POST", "/vos/atlas/members/pete/approve", {}),
        ("POST", "/vos/atlas/members/bob/suspend", {}),
        ("PUT", "/vos/atlas/members/alice/expiry", {"expires_on": TOMORROW}),
        ("PUT", "/vos/atlas/members/alice/roles/production", None),
        ("PUT", "/vos/atlas/groups/analysis/members/alice", None),
        ("PUT", "/vos/atlas/admins/alice", None),
        ("PUT", "/users/alice/service-admin", {"is_service_admin": True}),
        ("GET", "/vos/atlas/members", None),
        ("GET", "/vos/atlas/members/bob", None),
        ("GET", "/users/bob", None),
    ]:
        check_problem(call(client, method, path, alice, body), 403)
    assert state(db.session) == before
    # Her own record and membership she may read.
    me = call(client, "GET", "/vos/atlas/members/alice", alice)
    assert me.status_code == 200 and me.get_json()["status"] == "active"


def group_paths(client: Any, key: str, user: str) -> list[str]:
    response = call(client, "GET", f"/vos/atlas/members/{user}", key)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["groups"]


def test_a_group_manager_manages_their_group_and_below_only(app, client, world) -> None:
    mona = world.keys["manager"]
    response = call(client, "PUT", "/vos/atlas/groups/analysis/members/alice", mona)
    assert response.status_code == 204, response.get_json()
    assert group_paths(client, mona, "alice") == ["/atlas", "/atlas/analysis"]
    response = call(client, "PUT", "/vos/atlas/groups/analysis/higgs/members/alice", mona)
    assert response.status_code == 204, response.get_json()
    assert "/atlas/analysis/higgs" in group_paths(client, mona, "alice")

    before = state(db.session)
    body = check_problem(call(client, "PUT", "/vos/atlas/groups/production/members/alice",
                              mona), 403)
    assert "/atlas/production" in body["detail"]
    # Nor may a manager admit people to the VO, or name other managers.
    check_problem(call(client, "POST", "/vos/atlas/members", mona, {"user": "oscar"}), 403)
    check_problem(call(client, "PUT", "/vos/atlas/groups/analysis/managers/alice", mona), 403)
    check_problem(call(client, "POST", "/vos/atlas/members/pete/approve", mona, {}), 403)
    assert state(db.session) == before
    assert "/atlas/production" not in group_paths(client, mona, "alice")

    response = call(client, "DELETE", "/vos/atlas/groups/analysis/members/alice", mona)
    assert response.status_code == 204, response.get_json()
    assert group_paths(client, mona, "alice") == ["/atlas"]


def test_a_node_reads_only_its_own_view(app, client, world) -> None:
    node = world.keys[NODE]
    before = state(db.session)
    for path in ("/nodes/n2.example/snapshot", "/nodes/n2.example/changes?since=0",
                 "/nodes/n2.example", "/nodes", "/users", "/vos/atlas/members", "/me"):
        check_problem(call(client, "GET", path, node), 403)
    assert state(db.session) == before
    own = call(client, "GET", "/nodes/n1.example/snapshot", node)
    assert own.status_code == 200
    snap = own.get_json()
    assert snap["node"] == "n1.example" and snap["vos"] == ["atlas"]
    assert "carl" not in {u["name"] for u in snap["users"]}


def test_a_suspended_users_key_is_refused_until_reinstated(app, client, world) -> None:
    sam = world.keys["suspended"]
    before = state(db.session)
    body = check_problem(call(client, "GET", "/me", sam), 403)
    assert "suspended" in body["detail"]
    check_problem(call(client, "POST", "/vos/atlas/requests", sam, {}), 403)
    assert state(db.session) == before
    response = call(client, "POST", "/users/sam/reinstate", world.keys["sysop"])
    assert response.status_code == 200, response.get_json()
    response = call(client, "GET", "/me", sam)
    assert response.status_code == 200 and response.get_json()["username"] == "sam"
    # Suspending an active user refuses their key at once.
    alice = world.keys["member"]
    assert call(client, "GET", "/me", alice).status_code == 200
    assert call(client, "POST", "/users/alice/suspend", world.keys["sysop"]).status_code == 200
    check_problem(call(client, "GET", "/me", alice), 403)


def test_a_deleted_users_key_is_refused(app, client, world) -> None:
    alice = world.keys["member"]
    assert call(client, "POST", "/users/alice/delete", world.keys["sysop"]).status_code == 200
    assert "deleted" in check_problem(call(client, "GET", "/me", alice), 403)["detail"]


def test_a_revoked_key_is_refused(app, client, world) -> None:
    body = check_problem(call(client, "GET", "/me", world.keys["revoked"]), 401)
    assert "revoked" in body["detail"]
    # Revoking a working key through the API stops it at once.
    alice = world.keys["member"]
    response = call(client, "DELETE", f"/api-keys/{world.key_id('member')}", alice)
    assert response.status_code == 204
    check_problem(call(client, "GET", "/me", alice), 401)
    node = world.keys[NODE]
    response = call(client, "DELETE", f"/api-keys/{world.key_id(NODE)}", world.keys["sysop"])
    assert response.status_code == 204
    check_problem(call(client, "GET", "/nodes/n1.example/snapshot", node), 401)


def _bad_credentials(world: World) -> list[tuple[str, dict[str, str]]]:
    good = world.keys["member"]
    assert good is not None
    prefix, key_id, secret = good.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return [
        ("no header", {}),
        ("empty bearer", {"Authorization": "Bearer "}),
        ("wrong scheme", {"Authorization": f"Basic {good}"}),
        ("no scheme", {"Authorization": good}),
        ("malformed", {"Authorization": "Bearer not-a-key"}),
        ("truncated", {"Authorization": f"Bearer {good[:-1]}"}),
        ("unknown key id", {"Authorization": f"Bearer xos_{'0' * 16}_{secret}"}),
        ("wrong secret", {"Authorization": f"Bearer {prefix}_{key_id}_{flipped}"}),
        ("key id only", {"Authorization": f"Bearer {prefix}_{key_id}"}),
    ]


@pytest.mark.parametrize("op", [op for op in OPERATIONS if not op.public],
                         ids=lambda op: f"{op.method} {op.rule}")
def test_bad_credentials_get_401_on_every_operation(app, client, world, op) -> None:
    # The rule's placeholders filled with names that exist; the credential fails first.
    path = (op.rule.replace("<vo>", "atlas").replace("<path:group>", "analysis")
            .replace("<user>", "alice").replace("<role>", "production")
            .replace("<node>", "n1.example").replace("<key_id>", world.key_id("member")))
    before = state(db.session)
    for label, headers in _bad_credentials(world):
        response = client.open("/api/v1" + path, method=op.method, headers=headers,
                               json={} if op.body else None)
        body = check_problem(response, 401)
        assert body["title"] == "Authentication required", label
    assert state(db.session) == before


def test_public_operations_need_no_key(app, client, world) -> None:
    public = [op for op in OPERATIONS if op.public]
    assert sorted(op.rule for op in public) == ["/enroll", "/openapi.json"]
    for headers in ({}, {"Authorization": "Bearer garbage"}):
        response = client.get("/api/v1/openapi.json", headers=headers)
        assert response.status_code == 200
        assert "WWW-Authenticate" not in response.headers

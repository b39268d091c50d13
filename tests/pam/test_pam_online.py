"""VO passwords, checked online against the real VO service; and a service that is gone.

Why the real service: the helper speaks the service's password grant (client xos-login,
audience = this node) and verifies its answer with the node's keys; a fake would only
repeat our own assumptions. The node's state is what the agent would hold: the
service's own snapshot for the node and its JWKS.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e.live import Live, live_service
from e2e.nodens import missing_requirements
from flask import Flask
from pam_fixtures import (
    ALICE,
    NODE,
    closed_port,
    pam_node,
    relay_into,
    run_helper,
    silent_listener,
    token_for,
    write_state,
)
from sqlalchemy import select

from pam_module.checks import PAM_EXEC_MAX_SECRET
from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.oauth.models import RefreshToken
from vo_service.sync.services import SyncService
from vo_service.users.models import User
from vo_service.users.services import UserService
from vo_service.vos.services import VOService
from xos_tokens import SigningKey

if os.geteuid() != 0:
    pytest.skip("state files must be root-owned: run as root", allow_module_level=True)

PASSWORD = "correct horse battery"
CAROL_PASSWORD = "staple battery horse"


def seed(app: Flask) -> None:
    """alice and carol, active members of atlas, which the node wn1 serves."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        atlas = VOService(ctx).create(system, "atlas")
        for name, password in (("alice", PASSWORD), ("carol", CAROL_PASSWORD)):
            user = UserService(ctx).create(system, name, name.capitalize())
            MembershipService(ctx).add(system, atlas, user)
            PasswordService(ctx).set(system, user, password)
        NodeService(ctx).register(system, NODE, vos=["atlas"])
        db.session.commit()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(seed, prefix="xos-pam-") as service:
        yield service


def node_snapshot(live: Live) -> dict[str, Any]:
    """The snapshot the node agent would fetch now."""
    with live.app.app_context():
        ctx = ServiceContext.build(db.session, live.app.config)
        node = NodeService(ctx).get(NODE)
        snapshot = SyncService(ctx).snapshot(Actor.system("pytest"), node)
        db.session.commit()
        return snapshot


@pytest.fixture
def state(live: Live, tmp_path: Path) -> Path:
    """The node's state as the agent keeps it: the service's snapshot and JWKS."""
    jwks_doc = requests.get(f"{live.base}/oauth/jwks", timeout=10).json()
    return write_state(tmp_path / "state", jwks_doc=jwks_doc, snapshot=node_snapshot(live),
                       issuer=live.base)


def refresh_tokens(live: Live, name: str) -> dict[int, bool]:
    """The refresh tokens the service holds for ``name``: row id -> revoked?"""
    with live.app.app_context():
        user = db.session.scalars(select(User).where(User.username == name)).one()
        revoked = {row.id: row.revoked_at is not None for row in db.session.scalars(
            select(RefreshToken).where(RefreshToken.user_id == user.id))}
        db.session.commit()
        return revoked


def test_the_vo_password_logs_alice_in(live: Live, state: Path) -> None:
    run = run_helper("auth", state, secret=PASSWORD)
    assert run.code == os.EX_OK, run.log
    assert "accepted the VO password (checked online)" in run.log
    assert PASSWORD not in run.log


def test_a_pam_login_leaves_no_refresh_token_behind(live: Live, state: Path) -> None:
    before = refresh_tokens(live, "alice")
    assert run_helper("auth", state, secret=PASSWORD).code == os.EX_OK
    new = {row: revoked for row, revoked in refresh_tokens(live, "alice").items()
           if row not in before}
    assert new and all(new.values())


def test_a_wrong_password_is_refused(live: Live, state: Path) -> None:
    run = run_helper("auth", state, secret="not her password")
    assert run.code == os.EX_NOPERM
    assert "the VO service refused the password" in run.log
    assert "not her password" not in run.log


def test_the_service_decides_even_when_the_snapshot_is_behind(live: Live, state: Path
                                                              ) -> None:
    """The node's snapshot still lists carol as active, but the service has suspended
    her: her VO password no longer opens the node (the service said so, in words)."""
    assert run_helper("auth", state, user="carol", secret=CAROL_PASSWORD).code == os.EX_OK
    with live.app.app_context():
        ctx = ServiceContext.build(db.session, live.app.config)
        system = Actor.system("pytest")
        carol = db.session.scalars(select(User).where(User.username == "carol")).one()
        MembershipService(ctx).transition(system, VOService(ctx).get("atlas"), carol,
                                          "suspend", reason="pytest")
        db.session.commit()
    run = run_helper("auth", state, user="carol", secret=CAROL_PASSWORD)
    assert run.code == os.EX_NOPERM
    assert "not an active member" in run.log, run.log


def test_a_token_from_the_service_for_this_node(live: Live, state: Path) -> None:
    """What xos-login's "token --audience <node>" returns is accepted by the helper, and
    is compact enough to pass through pam_exec (see test_pam_stack)."""
    answer = requests.post(f"{live.base}/oauth/token", data={
        "grant_type": "password", "client_id": "xos-login", "username": "alice",
        "password": PASSWORD, "audience": NODE}, timeout=10).json()
    token = answer["access_token"]
    assert len(token) <= PAM_EXEC_MAX_SECRET
    run = run_helper("auth", state, secret=token)
    assert run.code == os.EX_OK, run.log
    own = requests.post(f"{live.base}/oauth/token", data={
        "grant_type": "password", "client_id": "xos-login", "username": "alice",
        "password": PASSWORD}, timeout=10).json()["access_token"]  # for the service itself
    assert "wrong audience" in run_helper("auth", state, secret=own).log


# -- a service that is not there, or not the service ------------------------------------
def test_an_unreachable_service_is_a_quick_no(tmp_path: Path) -> None:
    state = write_state(tmp_path / "state", keys=[SigningKey.generate()],
                        issuer=f"http://127.0.0.1:{closed_port()}")
    run = run_helper("auth", state, secret=PASSWORD)
    assert run.code == os.EX_UNAVAILABLE and "cannot be reached" in run.log
    assert run.seconds < 1


def test_a_service_that_never_answers_is_cut_off(tmp_path: Path) -> None:
    with silent_listener() as port:
        state = write_state(tmp_path / "state", keys=[SigningKey.generate()],
                            issuer=f"http://127.0.0.1:{port}")
        run = run_helper("auth", state, secret=PASSWORD, args=["--timeout", "1"])
    assert run.code == os.EX_UNAVAILABLE and "timed out" in run.log, run.log
    assert 0.9 < run.seconds < 3


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a well-formed token response, signed by its own key."""

    key = SigningKey.generate()
    answer: tuple[int, bytes] = (200, b"")

    def do_POST(self) -> None:  # noqa: N802 -- the http.server protocol
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[tuple[type[_Impostor], Path]]:
    """Something at the issuer's address that is not the VO service."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        issuer = f"http://127.0.0.1:{server.server_address[1]}"
        state = write_state(tmp_path / "state", keys=[SigningKey.generate()], issuer=issuer,
                            users=[ALICE])
        yield _Impostor, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_impostor_saying_yes_logs_nobody_in(impostor: tuple[type[_Impostor], Path]
                                               ) -> None:
    handler, state = impostor
    issuer = json.loads((state / "node.json").read_text())["issuer"]
    forged = token_for(handler.key, ALICE, issuer=issuer)
    handler.answer = (200, json.dumps({"access_token": forged, "token_type": "Bearer"}).encode())
    run = run_helper("auth", state, secret="anything at all")
    assert run.code == os.EX_NOPERM
    assert "the VO service's answer does not verify: token refused: unknown key id" in run.log


@pytest.mark.parametrize("status, body, code, message", [
    (500, b"<html>oops</html>", os.EX_UNAVAILABLE, "cannot check passwords now: HTTP 500"),
    (503, b'{"error": "temporarily_unavailable"}', os.EX_UNAVAILABLE, "temporarily_unavail"),
    (200, b"not json", os.EX_UNAVAILABLE, "holds no access token"),
    (429, b'{"error": "slow_down", "error_description": "too many attempts\\u0007"}',
     os.EX_NOPERM, "refused the password: too many attempts?"),
    (302, b"", os.EX_UNAVAILABLE, "HTTP 302"),
])
def test_odd_answers_never_log_anyone_in(impostor: tuple[type[_Impostor], Path], status: int,
                                         body: bytes, code: int, message: str) -> None:
    handler, state = impostor
    handler.answer = (status, body)
    run = run_helper("auth", state, secret="anything at all")
    assert run.code == code and message in run.log, run.log


# -- the whole chain: the service, the agent's state, real PAM ---------------------------
@pytest.mark.skipif(missing_requirements("pamtester") is not None,
                    reason=str(missing_requirements("pamtester")))
def test_a_vo_password_through_real_pam(live: Live) -> None:
    """pamtester on a namespace node whose state is the service's own snapshot and JWKS;
    the helper reaches the service through a relay (the node has its own loopback)."""
    snapshot = node_snapshot(live)
    jwks_doc = requests.get(f"{live.base}/oauth/jwks", timeout=10).json()
    with pam_node(users=snapshot["users"]) as node:
        write_state(node.state, jwks_doc=jwks_doc, snapshot=snapshot, issuer=live.base)
        with relay_into(node.ns, int(urllib.parse.urlsplit(live.base).port or 80)):
            result = node.pamtester("alice", "authenticate", "acct_mgmt", "open_session",
                                    secret=PASSWORD)
            assert result.returncode == 0, result.stderr + node.helper_log()
            assert node.pamtester("alice", "authenticate",
                                  secret="not her password").returncode != 0
        log = node.helper_log()
    assert "accepted the VO password (checked online)" in log
    assert "refused the password: wrong username or password" in log
    assert PASSWORD not in log

"""``xos-node enroll`` against the real service: a one-time token brings the node its
credentials, which the next ``xos-node sync`` and ``xos-node storage`` use."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from e2e.live import Live, live_service
from flask import Flask

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.enrolment import EnrolmentService
from vo_service.nodes.services import NodeService
from vo_service.oauth.keys import KeyRing
from vo_service.users.services import UserService
from vo_service.vos.services import VOService
from xos_node.agent import NodeIdentity, refresh_jwks, refresh_ssh_files, renew_certificate
from xos_node.cli import main
from xos_node.run import main as xos_run
from xos_node.store import SnapshotStore

PASSWORD = "correct horse battery"


def seed(app: Flask) -> None:
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        atlas = VOService(ctx).create(system, "atlas")
        VOService(ctx).create_group(system, atlas, "/atlas/analysis")
        alice = UserService(ctx).create(system, "alice", "Alice")
        MembershipService(ctx).add(system, atlas, alice)
        PasswordService(ctx).set(system, alice, PASSWORD)
        node = NodeService(ctx).register(system, "wn1.grid.example", vos=["atlas"])
        app.config["TEST_TOKEN"] = EnrolmentService(ctx).issue(system, node, 1)[0]
        db.session.commit()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(seed, prefix="xos-node-enroll-") as service:
        yield service


def test_enroll_then_sync_then_lay_out_storage(live: Live, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(live.app.config["TEST_TOKEN"] + "\n")
    os.chmod(token, 0o600)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "host")], check=True, timeout=30)
    state = tmp_path / "state"
    runner = CliRunner()
    done = runner.invoke(main, ["enroll", "--url", live.base, "--token-file", str(token),
                                "--state-dir", str(state), "--ssh-host-key",
                                str(tmp_path / "host.pub")])
    assert done.exit_code == 0, done.output
    assert "enrolled wn1.grid.example (VOs: atlas)" in done.output
    for name in ("api-key", "tls.key"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((state / "tls.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == ["wn1.grid.example"]
    node = json.loads((state / "node.json").read_text())
    assert node == {"node": "wn1.grid.example", "issuer": live.base, "url": live.base}
    assert json.loads((state / "jwks.json").read_text())["keys"]
    assert (state / "ssh_user_ca.pub").read_text().startswith("ssh-ed25519 ")
    listing = subprocess.run(["ssh-keygen", "-L", "-f", str(state / "ssh_host_cert.pub")],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    assert "host certificate" in listing and "wn1.grid.example" in listing
    # the token is spent: a second enrolment is refused in one readable line
    again = runner.invoke(main, ["enroll", "--url", live.base, "--token-file", str(token),
                                 "--state-dir", str(tmp_path / "other")])
    assert again.exit_code != 0 and "unknown, used or expired" in again.output
    assert "Traceback" not in again.output
    # the credentials it wrote are what sync and storage use
    synced = runner.invoke(main, ["sync", "--url", live.base, "--node", "wn1.grid.example",
                                  "--key-file", str(state / "api-key"), "--state-dir",
                                  str(state), "--once"])
    assert synced.exit_code == 0, synced.output
    shared = tmp_path / "shared"
    shared.mkdir()
    laid = runner.invoke(main, ["storage", "--state-dir", str(state), str(shared)])
    assert laid.exit_code == 0, laid.output
    assert (shared / "atlas" / "analysis").is_dir()
    assert stat.S_IMODE((shared / "atlas").stat().st_mode) == 0o2770
    # xos-run: a token for this node starts a job as alice with her VO groups
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "xos-login",
                                   "username": "alice", "password": PASSWORD,
                                   "audience": "wn1.grid.example"}).encode()
    with urllib.request.urlopen(f"{live.base}/oauth/token", form, timeout=10) as answer:  # noqa: S310
        node_token = json.loads(answer.read())["access_token"]
    view = SnapshotStore(state).load()
    assert view is not None
    alice = next(u for u in view.to_json()["users"] if u["name"] == "alice")
    os.environ["XOS_TOKEN"] = node_token
    try:
        assert xos_run(["--state-dir", str(state), "--", "sh", "-c",
                        f'test "$(id -u)" = {alice["uid"]}']) == 0
        os.environ["XOS_TOKEN"] = node_token[:-4] + "AAAA"
        assert xos_run(["--state-dir", str(state), "--", "true"]) == os.EX_NOPERM
    finally:
        del os.environ["XOS_TOKEN"]


def test_a_wrong_token_changes_nothing(live: Live, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("xet_" + "A" * 43)
    os.chmod(token, 0o600)
    state = tmp_path / "state"
    result = CliRunner().invoke(main, ["enroll", "--url", live.base, "--token-file",
                                       str(token), "--state-dir", str(state)])
    assert result.exit_code != 0 and "refused the enrolment (401)" in result.output
    assert not state.exists()


def test_the_agent_keeps_keys_and_certificate_current(live: Live, tmp_path: Path) -> None:
    """Upkeep after enrolment: a new token key is fetched while it is announced, the SSH
    files are rewritten only when they change, and the certificate is renewed (new key
    made here) once two thirds of its lifetime have passed, and not before."""
    with live.app.app_context():
        ctx = ServiceContext.build(db.session, live.app.config)
        node = NodeService(ctx).get("wn1.grid.example")
        enrolment = EnrolmentService(ctx).issue(Actor.system("pytest"), node, 1)[0]
        db.session.commit()
    token = tmp_path / "token"
    token.write_text(enrolment)
    os.chmod(token, 0o600)
    state = tmp_path / "state"
    done = CliRunner().invoke(main, ["enroll", "--url", live.base, "--token-file", str(token),
                                     "--state-dir", str(state)])
    assert done.exit_code == 0, done.output
    assert (state / "revoked_keys").read_bytes().startswith(b"SSHKRL")
    client = NodeIdentity.load(state).client()
    assert not refresh_jwks(client, state) and not refresh_ssh_files(client, state)
    with live.app.app_context():
        new_kid = KeyRing(ServiceContext.build(db.session, live.app.config), live.app.config,
                          live.app.config["CA_PASSPHRASE"].encode()).rotate()
        db.session.commit()
    assert refresh_jwks(client, state)
    assert new_kid in {k["kid"] for k in json.loads((state / "jwks.json").read_text())["keys"]}
    before = x509.load_pem_x509_certificate((state / "tls.pem").read_bytes())
    old_key = (state / "tls.key").read_bytes()
    lifetime = before.not_valid_after_utc - before.not_valid_before_utc
    assert not renew_certificate(client, state, before.not_valid_before_utc + lifetime / 2)
    assert (state / "tls.key").read_bytes() == old_key
    assert renew_certificate(client, state, before.not_valid_before_utc + lifetime * 0.7)
    after = x509.load_pem_x509_certificate((state / "tls.pem").read_bytes())
    assert after.serial_number != before.serial_number and after.subject == before.subject
    assert (state / "tls.key").read_bytes() != old_key
    assert stat.S_IMODE((state / "tls.key").stat().st_mode) == 0o600

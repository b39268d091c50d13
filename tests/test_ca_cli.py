"""``xos-ca``: create, inspect, export and rotate a CA directory; keys at rest; and a
running service that picks up a rotation without a restart."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.cli import main

PASSPHRASE = "correct horse battery staple"


def run(*args: str, env: dict[str, str] | None = None, ok: bool = True):
    result = CliRunner().invoke(main, list(args), env={"XOS_CA_PASSPHRASE": PASSPHRASE,
                                                       **(env or {})})
    assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    path = tmp_path / "ca"
    run("init", "--dir", str(path), "--name", "Grid Example")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_private_keys_and_public_certificates(ca_dir: Path):
    assert mode(ca_dir) == 0o700
    keys = sorted(ca_dir.rglob("*.key"))
    assert [k.relative_to(ca_dir).as_posix() for k in keys] == [
        "issuing/0001.key", "root.key", "ssh/0001.key"]
    for key in keys:
        assert mode(key) == 0o600 and mode(key.parent) == 0o700
        text = key.read_bytes()
        assert b"ENCRYPTED" in text and PASSPHRASE.encode() not in text
    root = x509.load_pem_x509_certificate((ca_dir / "root.pem").read_bytes())
    assert root.subject.rfc4514_string() == "CN=Grid Example Root CA"


def test_show_and_export(ca_dir: Path):
    shown = run("show", "--dir", str(ca_dir)).output
    assert "issuing 1 (current)" in shown and "root key: online" in shown
    assert "ssh ca: ssh-ed25519 " in shown
    chain = x509.load_pem_x509_certificates(run("export", "--dir", str(ca_dir),
                                                "chain").output.encode())
    assert len(chain) == 2 and chain[0].issuer == chain[1].subject
    assert run("export", "--dir", str(ca_dir), "ssh").output.startswith("ssh-ed25519 ")


def test_init_refuses_an_existing_ca(ca_dir: Path):
    before = (ca_dir / "root.pem").read_bytes()
    result = run("init", "--dir", str(ca_dir), "--name", "Again", ok=False)
    assert "already holds a CA" in result.output
    assert (ca_dir / "root.pem").read_bytes() == before


def test_no_passphrase_no_ca(tmp_path: Path):
    result = CliRunner().invoke(main, ["init", "--dir", str(tmp_path / "ca"), "--name", "X"],
                                env={"XOS_CA_PASSPHRASE": ""})
    assert result.exit_code != 0 and "empty or unset" in result.output
    assert not (tmp_path / "ca").exists()


def test_rotation_keeps_old_generations(ca_dir: Path, tmp_path: Path):
    run("rotate", "--dir", str(ca_dir))
    run("rotate", "--dir", str(ca_dir), "--ssh")
    shown = run("show", "--dir", str(ca_dir)).output
    assert "issuing 1: " in shown and "issuing 2 (current)" in shown
    assert shown.count("ssh ca: ") == 2
    passfile = tmp_path / "pass"
    passfile.write_text("wrong\n")
    result = run("rotate", "--dir", str(ca_dir), "--passphrase-file", str(passfile), ok=False)
    assert "passphrase" in result.output.lower()
    assert "issuing 3" not in run("show", "--dir", str(ca_dir)).output


def test_an_offline_root_key(ca_dir: Path, tmp_path: Path):
    offline = tmp_path / "usb" / "root.key"
    offline.parent.mkdir(mode=0o700)
    os.rename(ca_dir / "root.key", offline)
    assert "root key: offline" in run("show", "--dir", str(ca_dir)).output
    result = run("rotate", "--dir", str(ca_dir), ok=False)
    assert "offline storage" in result.output
    run("rotate", "--dir", str(ca_dir), "--root-key", str(offline))
    assert "issuing 2 (current)" in run("show", "--dir", str(ca_dir)).output


def test_a_readable_key_is_refused(ca_dir: Path):
    os.chmod(ca_dir / "root.key", 0o644)
    result = run("rotate", "--dir", str(ca_dir), ok=False)
    assert "accessible by group or others" in result.output


def test_the_service_signs_with_the_new_generation_after_rotation(api, users, ctx, system,
                                                                  instance_path):
    from vo_service.db import db
    from vo_service.memberships.services import MembershipService
    from vo_service.vos.services import VOService

    alice = users.make("alice")
    MembershipService(ctx).add(system, VOService(ctx).create(system, "atlas"), alice)
    db.session.commit()
    key = users.key(alice)

    def issuer_cn() -> str:
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(
            ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        status, body = api.call("POST", "/certificates/xos", key, json={
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
        assert status == 201, body
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        return cert.issuer.rfc4514_string()

    from support import CA_PASSPHRASE

    path = Path(instance_path) / "ca"
    assert issuer_cn().endswith("Issuing CA 1")
    run("rotate", "--dir", str(path), env={"XOS_CA_PASSPHRASE": CA_PASSPHRASE})
    try:
        assert issuer_cn().endswith("Issuing CA 2")
        # the old generation still publishes its CRL
        assert api.client.get("/ca/crl/1.der").status_code == 200
    finally:
        # the session's CA is shared by every test: put it back as it was
        (path / "issuing" / "current").write_text("0001\n")
        for leftover in (path / "issuing").glob("0002.*"):
            leftover.unlink()

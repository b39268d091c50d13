"""SSH certificates: one principal, a POSIX name; keys checked like X.509 keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import SSHCertificateType

import ca
from ca.keys import MAX_INPUT_BYTES

HOUR = timedelta(hours=1)


def line(key, comment=""):
    return ca.ssh_public_line(key.public_key(), comment)


@pytest.fixture(scope="module")
def ssh_user_key():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("make", [
    pytest.param(ed25519.Ed25519PrivateKey.generate, id="ed25519"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="nistp256"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="nistp384"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), id="nistp521"),
])
def test_accepted_key_types_load(make):
    key = make()
    assert ca.load_ssh_public_key(line(key, "alice@laptop")) == key.public_key()


def test_rsa_2048_loads_from_bytes_with_a_trailing_newline(rsa_key):
    text = (line(rsa_key, "alice") + "\n").encode()
    assert ca.load_ssh_public_key(text) == rsa_key.public_key()
    assert ca.load_ssh_public_key(line(rsa_key) + "\r\n") == rsa_key.public_key()


def test_public_line_format(ssh_user_key, ssh_ca):
    text = line(ssh_user_key, "alice@laptop")
    assert text.startswith("ssh-ed25519 AAAA") and text.endswith(" alice@laptop")
    assert len(line(ssh_user_key).split()) == 2
    assert ssh_ca.public_line().startswith("ssh-ed25519 AAAA")
    assert ssh_ca.public_line().endswith(" xos-ssh-ca")
    with pytest.raises(ca.PolicyError, match="one line"):
        ca.ssh_public_line(ssh_user_key.public_key(), "a\nb")


def test_small_rsa_is_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ca.WeakKey, match="RSA key of 1024 bits refused"):
        ca.load_ssh_public_key(line(key))


def test_dsa_and_security_key_types_are_refused():
    dss = "ssh-dss AAAAB3NzaC1kc3MAAACBAP"
    with pytest.raises(ca.WeakKey, match="SSH key type 'ssh-dss' refused"):
        ca.load_ssh_public_key(dss)
    sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t"
    with pytest.raises(ca.WeakKey, match="sk-ssh-ed25519@openssh.com"):
        ca.load_ssh_public_key(sk)


def test_a_dsa_key_object_is_refused(ssh_ca):
    key = dsa.generate_private_key(key_size=1024).public_key()
    with pytest.raises(ca.WeakKey, match="DSAPublicKey refused"):
        ssh_ca.issue_user(key, principal="alice", key_id="k", lifetime=HOUR)  # type: ignore[arg-type]


def test_certificates_are_refused(ssh_ca, ssh_user_key):
    cert = ssh_ca.issue_user(ssh_user_key.public_key(), principal="alice", key_id="k",
                             lifetime=HOUR)
    with pytest.raises(ca.MalformedInput, match="is an SSH certificate"):
        ca.load_ssh_public_key(cert.public_bytes())


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("garbage", "not an OpenSSH public key line"),
    ("ssh-ed25519", "not an OpenSSH public key line"),
    ("ssh-ed25519 !!!notbase64", "cannot parse the SSH public key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "cannot parse the SSH public key"),
    ('from="10.0.0.1" ssh-ed25519 AAAA', "not an OpenSSH public key line"),
    ("ssh-ed25519 AAAA\x00", "one line of printable text"),
    ("ssh-ed25519 AAAA caf\u00e9", "not ASCII"),
    ("x" * (MAX_INPUT_BYTES + 1), "larger than 16384 bytes"),
])
def test_garbage_is_refused(text, message):
    with pytest.raises(ca.MalformedInput, match=message):
        ca.load_ssh_public_key(text)


def test_a_key_of_another_type_than_announced_is_refused(ssh_user_key):
    body = line(ssh_user_key).split()[1]
    with pytest.raises(ca.MalformedInput, match="cannot parse"):
        ca.load_ssh_public_key(f"ssh-rsa {body}")


def test_multiple_lines_are_refused(ssh_user_key, rsa_key):
    two = line(ssh_user_key) + "\n" + line(rsa_key) + "\n"
    with pytest.raises(ca.MalformedInput, match="one line"):
        ca.load_ssh_public_key(two)


def test_user_certificate(ssh_ca, ssh_user_key, now):
    cert = ssh_ca.issue_user(line(ssh_user_key), principal="alice", key_id="alice@xos serial 1",
                             lifetime=HOUR, serial=42, now=now)
    cert.verify_cert_signature()
    assert cert.type == SSHCertificateType.USER
    assert cert.valid_principals == [b"alice"]
    assert cert.key_id == b"alice@xos serial 1"
    assert cert.serial == 42
    assert cert.valid_after == int((now - timedelta(minutes=5)).timestamp())
    assert cert.valid_before == int((now + HOUR).timestamp())
    assert cert.critical_options == {}
    assert sorted(cert.extensions) == sorted([
        b"permit-pty", b"permit-port-forwarding", b"permit-agent-forwarding",
        b"permit-X11-forwarding", b"permit-user-rc"])
    assert cert.public_key() == ssh_user_key.public_key()
    assert cert.signature_key() == ssh_ca._key.public_key()


def test_random_serials_are_64_bit(ssh_ca, ssh_user_key):
    serials = {ssh_ca.issue_user(ssh_user_key.public_key(), principal="alice", key_id="k",
                                 lifetime=HOUR).serial for _ in range(4)}
    assert len(serials) == 4 and all(0 <= s < 2**64 for s in serials)


@pytest.mark.parametrize("principal", [
    "alice:root", "alice\nroot", "Alice", "", "a" * 33, "-alice", "al ice", "alice,root",
])
def test_bad_principals_are_refused(ssh_ca, ssh_user_key, principal):
    with pytest.raises(ca.PolicyError, match="is not a POSIX name"):
        ssh_ca.issue_user(ssh_user_key.public_key(), principal=principal, key_id="k",
                          lifetime=HOUR)


def test_user_lifetime_cap_is_a_day(ssh_ca, ssh_user_key):
    with pytest.raises(ca.PolicyError, match="above the cap of 1 day"):
        ssh_ca.issue_user(ssh_user_key.public_key(), principal="alice", key_id="k",
                          lifetime=timedelta(hours=25))
    with pytest.raises(ca.PolicyError, match="lifetime must be positive"):
        ssh_ca.issue_user(ssh_user_key.public_key(), principal="alice", key_id="k",
                          lifetime=timedelta(0))


@pytest.mark.parametrize("key_id", ["", "line\nbreak", "x" * 257, "caf\u00e9"])
def test_bad_key_ids_are_refused(ssh_ca, ssh_user_key, key_id):
    with pytest.raises(ca.PolicyError, match="key id"):
        ssh_ca.issue_user(ssh_user_key.public_key(), principal="alice", key_id=key_id,
                          lifetime=HOUR)


@pytest.mark.parametrize("serial", [-1, 2**64, True])
def test_bad_serials_are_refused(ssh_ca, ssh_user_key, serial):
    with pytest.raises(ca.PolicyError, match="serial"):
        ssh_ca.issue_user(ssh_user_key.public_key(), principal="alice", key_id="k",
                          lifetime=HOUR, serial=serial)


def test_host_certificate(ssh_ca, rsa_key, now):
    cert = ssh_ca.issue_host(rsa_key.public_key(), hostnames=["WN01.grid.example", "wn01"],
                             key_id="host wn01", lifetime=timedelta(days=400), now=now)
    cert.verify_cert_signature()
    assert cert.type == SSHCertificateType.HOST
    assert cert.valid_principals == [b"wn01.grid.example", b"wn01"]
    assert cert.extensions == {} and cert.critical_options == {}
    assert cert.valid_before == int((now + timedelta(days=400)).timestamp())


@pytest.mark.parametrize(("hostnames", "message"), [
    ([], "at least one hostname"),
    ("wn01.example", "not a single string"),
    (["wn01", "WN01"], "listed twice"),
    (["*.example"], "not a DNS host name"),
    (["wn01:22"], "not a DNS host name"),
    ([f"h{i}" for i in range(257)], "at most 256 hostnames"),
])
def test_bad_hostnames_are_refused(ssh_ca, ssh_user_key, hostnames, message):
    with pytest.raises(ca.PolicyError, match=message):
        ssh_ca.issue_host(ssh_user_key.public_key(), hostnames=hostnames, key_id="k",
                          lifetime=HOUR)


def test_host_lifetime_cap(ssh_ca, ssh_user_key):
    with pytest.raises(ca.PolicyError, match="above the cap of 400 days"):
        ssh_ca.issue_host(ssh_user_key.public_key(), hostnames=["h"], key_id="k",
                          lifetime=timedelta(days=401))


def test_the_ssh_ca_key_must_be_ed25519():
    with pytest.raises(ca.KeyStoreError, match="must be an Ed25519 private key"):
        ca.SSHCertificateAuthority(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]


def test_public_line_matches_the_openssh_encoding(ssh_ca):
    key = ca.load_ssh_public_key(ssh_ca.public_line())
    assert key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode() in ssh_ca.public_line()

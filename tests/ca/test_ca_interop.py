"""Interop with the real tools: openssl 3 (verify, asn1parse, crl, ocsp) and ssh-keygen."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

import ca

pytestmark = pytest.mark.skipif(
    shutil.which("openssl", path="/usr/bin") is None
    or shutil.which("ssh-keygen", path="/usr/bin") is None,
    reason="needs /usr/bin/openssl and /usr/bin/ssh-keygen",
)
OPENSSL = "/usr/bin/openssl"
HOUR = timedelta(hours=1)


@pytest.fixture
def chain(root, issuing, write_pem):
    """root.pem and issuing.pem on disk."""
    return write_pem("root.pem", root[1]), write_pem("issuing.pem", issuing.certificate)


@pytest.fixture
def user(issuing, make_csr, attributes):
    return ca.issue_user_certificate(issuing, make_csr(), username="alice",
                                     attributes=attributes, lifetime=HOUR)


def test_openssl_verifies_a_user_certificate(run, chain, user, write_pem):
    root_pem, issuing_pem = chain
    user_pem = write_pem("user.pem", user)
    result = run(OPENSSL, "verify", "-CAfile", root_pem, "-untrusted", issuing_pem,
                 "-purpose", "sslclient", "-x509_strict", user_pem)
    assert result.stdout.strip() == f"{user_pem}: OK"


def test_openssl_verifies_a_node_certificate_for_tls_servers(run, chain, issuing, make_csr,
                                                            write_pem):
    root_pem, issuing_pem = chain
    node = ca.issue_node_certificate(issuing, make_csr(), hostname="wn01.grid.example",
                                     vos=["atlas"], lifetime=HOUR)
    node_pem = write_pem("node.pem", node)
    run(OPENSSL, "verify", "-CAfile", root_pem, "-untrusted", issuing_pem, "-purpose",
        "sslserver", "-verify_hostname", "wn01.grid.example", "-x509_strict", node_pem)


def test_openssl_refuses_a_certificate_of_another_ca(run, chain, other_ca, make_csr,
                                                     attributes, write_pem):
    root_pem, issuing_pem = chain
    foreign = ca.issue_user_certificate(other_ca, make_csr(), username="mallory",
                                        attributes=attributes, lifetime=HOUR)
    foreign_pem = write_pem("foreign.pem", foreign)
    result = run(OPENSSL, "verify", "-CAfile", root_pem, "-untrusted", issuing_pem,
                 foreign_pem, check=False)
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


def test_openssl_asn1parse_shows_the_attribute_strings(run, attributes, tmp_path):
    der = tmp_path / "ext.der"
    der.write_bytes(attributes.to_der())
    out = run(OPENSSL, "asn1parse", "-inform", "DER", "-in", der).stdout
    strings = re.findall(r"prim: UTF8STRING\s+:(.*)", out)
    assert strings == [
        "urn:uuid:6f1c8e52-3a7d-4b8e-9a51-0c2d4e6f8a10", "atlas", "cms", "/atlas/analysis",
        "/atlas", "/cms/higgs", "/atlas/Role=production", "/cms/Role=admin",
    ]
    assert re.search(r"prim: INTEGER\s+:01", out)


def test_openssl_shows_the_extension_inside_the_certificate(run, user, write_pem):
    out = run(OPENSSL, "x509", "-noout", "-text", "-in", write_pem("user.pem", user)).stdout
    assert f"{ca.XOS_ARC}.1:" in out
    assert "URI:urn:uuid:6f1c8e52-3a7d-4b8e-9a51-0c2d4e6f8a10" in out
    assert "Subject: O = XOS, OU = atlas, CN = alice" in out


def test_openssl_reads_the_crl_and_refuses_a_revoked_certificate(run, chain, issuing, user,
                                                                 make_csr, attributes,
                                                                 write_pem, tmp_path):
    root_pem, issuing_pem = chain
    good = ca.issue_user_certificate(issuing, make_csr(), username="bob",
                                     attributes=attributes, lifetime=HOUR)
    now = datetime.now(UTC)
    crl = ca.build_crl(issuing, [ca.Revoked(user.serial_number, now,
                                            x509.ReasonFlags.key_compromise)],
                       number=3, this_update=now, next_update=now + HOUR)
    crl_der = tmp_path / "issuing.crl"
    crl_der.write_bytes(crl.public_bytes(Encoding.DER))
    text = run(OPENSSL, "crl", "-inform", "DER", "-in", crl_der, "-noout", "-text").stdout
    assert f"Serial Number: {user.serial_number:040X}" in text
    assert "Key Compromise" in text and "X509v3 CRL Number" in text
    crl_pem = write_pem("issuing.crl.pem", crl)
    verify = (OPENSSL, "verify", "-crl_check", "-CRLfile", crl_pem, "-CAfile", root_pem,
              "-untrusted", issuing_pem)
    refused = run(*verify, write_pem("user.pem", user), check=False)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    run(*verify, write_pem("good.pem", good))


@pytest.fixture
def ocsp_files(run, chain, user, write_pem, tmp_path):
    """user.pem and an OCSP request for it made by openssl (with its default nonce)."""
    _, issuing_pem = chain
    user_pem = write_pem("user.pem", user)
    request = tmp_path / "req.der"
    run(OPENSSL, "ocsp", "-issuer", issuing_pem, "-cert", user_pem, "-reqout", request)
    return user_pem, request


def test_openssl_ocsp_request_is_answered_and_verified(run, chain, issuing, user, ocsp_files,
                                                       tmp_path):
    root_pem, issuing_pem = chain
    user_pem, request = ocsp_files
    response = tmp_path / "resp.der"
    revoked_at = datetime.now(UTC).replace(microsecond=0) - HOUR

    def lookup(found, serial):
        assert (found, serial) == (issuing, user.serial_number)
        return ca.CertStatus(revoked_at, x509.ReasonFlags.superseded)

    response.write_bytes(ca.answer_ocsp(request.read_bytes(), [issuing], lookup))
    # Against the original request: signature, chain up to the root and nonce all check.
    # (Without -issuer: openssl would otherwise trust the issuer directly as a fallback.)
    checked = run(OPENSSL, "ocsp", "-reqin", request, "-respin", response, "-CAfile", root_pem,
                  "-verify_other", issuing_pem)
    assert checked.stderr == "Response verify OK\n"
    status = run(OPENSSL, "ocsp", "-respin", response, "-CAfile", root_pem, "-issuer",
                 issuing_pem, "-cert", user_pem, "-no_nonce")
    assert f"{user_pem}: revoked" in status.stdout
    assert "Reason: superseded" in status.stdout
    assert "Response verify OK" in status.stderr
    # -VAfile trusts the issuing CA directly as the responder.
    run(OPENSSL, "ocsp", "-respin", response, "-VAfile", issuing_pem, "-issuer", issuing_pem,
        "-cert", user_pem, "-no_nonce")


def test_openssl_refuses_an_ocsp_answer_under_another_root(run, chain, issuing, other_ca,
                                                          ocsp_files, write_pem, tmp_path):
    _, issuing_pem = chain
    _, request = ocsp_files
    other_root = write_pem("other-root.pem", other_ca.chain[-1])
    response = tmp_path / "resp.der"
    response.write_bytes(ca.answer_ocsp(request.read_bytes(), [issuing],
                                        lambda found, serial: ca.CertStatus()))
    result = run(OPENSSL, "ocsp", "-reqin", request, "-respin", response, "-CAfile",
                 other_root, "-verify_other", issuing_pem, check=False)
    assert "Response Verify Failure" in result.stderr


def test_openssl_sees_a_nonce_of_another_request(run, chain, issuing, ocsp_files, tmp_path):
    root_pem, issuing_pem = chain
    user_pem, request = ocsp_files
    second, response = tmp_path / "req2.der", tmp_path / "resp2.der"
    run(OPENSSL, "ocsp", "-issuer", issuing_pem, "-cert", user_pem, "-reqout", second)
    response.write_bytes(ca.answer_ocsp(second.read_bytes(), [issuing],
                                        lambda found, serial: ca.CertStatus()))
    result = run(OPENSSL, "ocsp", "-reqin", request, "-respin", response, "-CAfile", root_pem,
                 "-verify_other", issuing_pem, check=False)
    assert "Nonce Verify error" in result.stderr


def test_openssl_multi_certificate_request_is_malformed(run, chain, issuing, user, write_pem,
                                                        tmp_path):
    _, issuing_pem = chain
    request = tmp_path / "multi.der"
    run(OPENSSL, "ocsp", "-issuer", issuing_pem, "-cert", write_pem("a.pem", user),
        "-cert", write_pem("b.pem", issuing.certificate), "-reqout", request)
    response = ocsp.load_der_ocsp_response(
        ca.answer_ocsp(request.read_bytes(), [issuing], lambda found, serial: None))
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def keygen_listing(run, tmp_path, cert):
    path = tmp_path / "id-cert.pub"
    path.write_bytes(cert.public_bytes() + b"\n")
    return run("/usr/bin/ssh-keygen", "-L", "-f", path).stdout


def test_ssh_keygen_lists_a_user_certificate(run, ssh_ca, tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    cert = ssh_ca.issue_user(ca.ssh_public_line(key.public_key(), "alice@laptop"),
                             principal="alice", key_id="alice@xos 7", lifetime=HOUR,
                             serial=7, now=now)
    out = keygen_listing(run, tmp_path, cert)
    assert "Type: ssh-ed25519-cert-v01@openssh.com user certificate" in out
    assert 'Key ID: "alice@xos 7"' in out
    assert "Serial: 7" in out
    assert "Valid: from 2030-01-02T02:59:05 to 2030-01-02T04:04:05" in out
    assert re.search(r"Principals:\s*\n\s+alice\n\s+Critical Options: \(none\)", out)
    for extension in ("permit-X11-forwarding", "permit-agent-forwarding",
                      "permit-port-forwarding", "permit-pty", "permit-user-rc"):
        assert extension in out
    fingerprint = run("/usr/bin/ssh-keygen", "-l", "-f", "/dev/stdin",
                      stdin=ssh_ca.public_line() + "\n").stdout.split()[1]
    assert f"Signing CA: ED25519 {fingerprint}" in out


def test_ssh_keygen_lists_a_host_certificate(run, ssh_ca, rsa_key, tmp_path):
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    cert = ssh_ca.issue_host(rsa_key.public_key(), hostnames=["wn01.grid.example", "wn01"],
                             key_id="host wn01", lifetime=timedelta(days=365), now=now)
    out = keygen_listing(run, tmp_path, cert)
    assert "Type: ssh-rsa-cert-v01@openssh.com host certificate" in out
    assert 'Key ID: "host wn01"' in out
    assert "Valid: from 2030-01-02T02:59:05 to 2031-01-02T03:04:05" in out
    assert re.search(r"Principals:\s*\n\s+wn01.grid.example\n\s+wn01\n", out)
    assert re.search(r"Extensions: \(none\)", out)

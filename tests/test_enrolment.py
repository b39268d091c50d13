"""Enrolling a node with a one-time token, on SQLite and PostgreSQL: what the node gets,
and that a token works once, expires, and that a bad one changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from test_bad_input import snapshot

import ca
from vo_service.db import db
from vo_service.nodes.enrolment import EnrolmentService
from vo_service.nodes.models import EnrolmentToken
from vo_service.nodes.services import NodeService
from vo_service.vos.services import VOService


def node_csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "ignored")])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def host_key() -> str:
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture
def node(ctx, system):
    VOService(ctx).create(system, "atlas")
    node = NodeService(ctx).register(system, "wn7.grid.example", vos=["atlas"])
    db.session.commit()
    return node


def test_a_node_enrols_once_and_gets_what_it_needs(api, admin_key, node):
    status, made = api.call("POST", "/nodes/wn7.grid.example/enrolment-tokens", admin_key,
                            json={"hours": 2})
    assert status == 201 and made["token"].startswith("xet_")
    body = {"token": made["token"], "csr": node_csr(), "ssh_host_key": host_key()}
    status, answer = api.call("POST", "/enroll", None, json=body)
    assert status == 200, answer
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == ["wn7.grid.example"]
    attributes = ca.NodeAttributes.from_certificate(cert)
    assert attributes is not None and attributes.vos == ("atlas",) == tuple(answer["vos"])
    chain = x509.load_pem_x509_certificates(answer["chain"].encode())
    assert cert.issuer == chain[0].subject
    assert answer["ssh_ca_keys"] and answer["ssh_ca_keys"][0].startswith("ssh-ed25519 ")
    assert answer["jwks"]["keys"] and answer["issuer"].startswith("http")
    host = serialization.load_ssh_public_identity(answer["ssh_host_certificate"].encode())
    assert isinstance(host, serialization.SSHCertificate)
    assert host.valid_principals == [b"wn7.grid.example"]
    # the node's new API key reads its own account view
    status, view = api.call("GET", "/nodes/wn7.grid.example/snapshot", answer["api_key"])
    assert status == 200 and view["vos"] == ["atlas"]
    # the token works once
    before = snapshot()
    status, problem = api.call("POST", "/enroll", None, json=body)
    assert status == 401 and "unknown, used or expired" in problem["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("token", ["xet_" + "A" * 43, "garbage", "xet_" + "x" * 200, ""])
def test_bad_tokens_change_nothing(api, node, token):
    before = snapshot()
    status, problem = api.call("POST", "/enroll", None,
                               json={"token": token, "csr": node_csr()})
    assert status in (401, 422), problem
    assert snapshot() == before


def test_an_expired_token(api, ctx, system, node):
    token, _ = EnrolmentService(ctx).issue(system, node, 1)
    row = db.session.query(EnrolmentToken).one()
    row.expires_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    db.session.commit()
    status, problem = api.call("POST", "/enroll", None, json={"token": token, "csr": node_csr()})
    assert status == 401 and "expired" in problem["detail"]


def test_a_bad_csr_consumes_nothing(api, ctx, system, node):
    token, _ = EnrolmentService(ctx).issue(system, node, 1)
    db.session.commit()
    before = snapshot()
    status, problem = api.call("POST", "/enroll", None, json={"token": token, "csr": "junk"})
    assert status == 422 and "CSR" in problem["detail"]
    assert snapshot() == before  # the token is still unused: the node may try again
    status, _ = api.call("POST", "/enroll", None, json={"token": token, "csr": node_csr()})
    assert status == 200

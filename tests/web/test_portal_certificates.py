"""The portal's certificates page through the test client (CSRF on): the signed-in user's
certificates with their state, revoking one, and XOS and SSH certificates requested by
uploading or pasting a CSR or public key made here with ``cryptography``.

The CA is the one tests/conftest.py makes for the whole session (``instance_path``);
CSRs and SSH keys come from tests/test_certificates.py's helpers, and "nothing changed"
is test_bad_input's snapshot of every table. Bad input (malformed, hostile, oversized,
no CSRF token) gets a readable refusal and issues nothing."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import os
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from portal_support import SCRIPT, csrf, sign_in
from sqlalchemy import func, select, update
from support import actor_for
from test_bad_input import State, assert_unchanged, snapshot
from test_certificates import make_csr, ssh_key

from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.pki.authority import authority
from vo_service.pki.models import IssuedCertificate
from vo_service.pki.services import CertificateService
from vo_service.users.services import UserService

KIB = 1024


# -- helpers --------------------------------------------------------------------------
def _service(app: Flask) -> tuple[ServiceContext, CertificateService]:
    ctx = ServiceContext.build(db.session, app.config)
    return ctx, CertificateService(ctx, authority(), app.config)


def issue(app: Flask, username: str, kind: str = "xos") -> str:
    """Issue a certificate to ``username`` through the service; its serial."""
    with app.app_context():
        ctx, service = _service(app)
        user = UserService(ctx).get(username)
        if kind == "xos":
            row, _ = service.issue_user(actor_for(user), user, make_csr())
        else:
            row, _ = service.issue_ssh_user(actor_for(user), user, ssh_key()[1])
        db.session.commit()
        return row.serial


def state(app: Flask) -> State:
    with app.app_context():
        return snapshot()


def unchanged(app: Flask, before: State) -> None:
    with app.app_context():
        assert_unchanged(before)


def count(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(IssuedCertificate)) or 0)


def signed_in(app: Flask, user: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, user).status_code == 302
    return client


def token(client: FlaskClient) -> str:
    return csrf(client.get("/certificates").data)


def row_of(page: str, serial: str) -> str:
    rows = [r for r in page.split("<tbody>")[1].split("<tr>") if f">{serial}<" in r]
    assert len(rows) == 1, f"serial {serial} is not listed once"
    return rows[0]


def issued_block(page: str, name: str) -> str:
    found = re.search(rf'<pre class="pem" id="{name}"[^>]*>(.*?)</pre>', page, re.S)
    assert found, f"the page shows no {name}"
    return html.unescape(found.group(1))


def post_xos(client: FlaskClient, **fields: Any) -> Any:
    data = {"csrf_token": token(client), **fields}
    return client.post("/certificates/xos", data=data, content_type="multipart/form-data")


def post_ssh(client: FlaskClient, **fields: Any) -> Any:
    data = {"csrf_token": token(client), **fields}
    return client.post("/certificates/ssh", data=data, content_type="multipart/form-data")


def upload(content: str | bytes, name: str = "request.csr") -> tuple[io.BytesIO, str]:
    return io.BytesIO(content.encode() if isinstance(content, str) else content), name


# -- the list ----------------------------------------------------------------------------
def test_the_list_shows_each_certificate_newest_first_with_its_state(portal: Flask) -> None:
    expired = issue(portal, "alice")
    revoked = issue(portal, "alice", "ssh")
    valid = issue(portal, "alice")
    with portal.app_context():
        ctx, service = _service(portal)
        alice = UserService(ctx).get("alice")
        service.revoke(actor_for(alice), service.get(revoked, "ssh-user"), "superseded")
        db.session.execute(update(IssuedCertificate).where(IssuedCertificate.serial == expired)
                           .values(not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
        db.session.commit()
    page = signed_in(portal, "alice").get("/certificates").get_data(as_text=True)
    assert '<a href="/certificates">My certificates</a>' in page
    assert page.index(valid) < page.index(revoked) < page.index(expired)  # newest first
    row = row_of(page, valid)
    assert 'class="status valid">valid<' in row and ">XOS<" in row
    assert "<code>atlas</code>" in row and "<code>/atlas</code>" in row
    assert 'name="serial" value="' + valid in row and ">Revoke<" in row
    row = row_of(page, revoked)
    assert 'class="status revoked">revoked<' in row and "superseded" in row
    assert ">SSH<" in row and "principal alice" in row and ">Revoke<" not in row
    row = row_of(page, expired)
    assert 'class="status expired">expired<' in row and ">Revoke<" not in row
    assert "xos-login cert" in page and "private key never comes here" in page


def test_a_user_without_certificates_is_told_so(portal: Flask) -> None:
    page = signed_in(portal, "mallory").get("/certificates").get_data(as_text=True)
    assert "No certificate has been issued to you yet." in page
    assert "You need an active VO membership first." in page


def test_the_page_needs_a_signed_in_user(portal: Flask) -> None:
    answer = portal.test_client().get("/certificates")
    assert answer.status_code == 302 and "/signin" in answer.headers["Location"]


# -- revoking ----------------------------------------------------------------------------
def test_the_owner_revokes_a_certificate(portal: Flask) -> None:
    serial = issue(portal, "alice")
    client = signed_in(portal, "alice")
    answer = client.post("/certificates/revoke", data={
        "csrf_token": token(client), "serial": serial, "kind": "x509-user",
        "reason": "keyCompromise"}, follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and f"Certificate {serial} is revoked." in page
    assert 'class="status revoked">revoked<' in row_of(page, serial)
    with portal.app_context():
        row = db.session.scalars(select(IssuedCertificate)
                                 .where(IssuedCertificate.serial == serial)).one()
        assert row.revoked_at is not None and row.revocation_reason == "keyCompromise"


def test_another_users_certificate_is_neither_listed_nor_revocable(portal: Flask) -> None:
    serial = issue(portal, "alice")
    client = signed_in(portal, "bob")
    assert serial not in client.get("/certificates").get_data(as_text=True)
    before = state(portal)
    for kind in ("x509-user", "ssh-user"):
        answer = client.post("/certificates/revoke", data={
            "csrf_token": token(client), "serial": serial, "kind": kind,
            "reason": "keyCompromise"})
        page = answer.get_data(as_text=True)
        assert answer.status_code == 404 and answer.mimetype == "text/html"
        assert "You have no certificate with that serial number." in page
        assert serial not in page
    unchanged(portal, before)


def test_revoking_twice_or_with_a_made_up_reason_changes_nothing(portal: Flask) -> None:
    serial = issue(portal, "alice")
    client = signed_in(portal, "alice")
    form = {"serial": serial, "kind": "x509-user"}
    client.post("/certificates/revoke", data={"csrf_token": token(client), **form,
                                              "reason": "superseded"})
    before = state(portal)
    answer = client.post("/certificates/revoke", data={
        "csrf_token": token(client), **form, "reason": "superseded"}, follow_redirects=True)
    assert "is already revoked" in answer.get_data(as_text=True)
    invalid = "That request was not valid"
    for bad, message in (({"reason": "removeFromCRL"}, invalid), ({"reason": SCRIPT}, invalid),
                         ({"kind": "x509-node"}, invalid),
                         ({"serial": "zz' OR 1=1 --"}, "1 to 40 hexadecimal digits")):
        answer = client.post("/certificates/revoke", data={
            "csrf_token": token(client), **form, "reason": "superseded", **bad},
            follow_redirects=True)
        page = answer.get_data(as_text=True)
        assert answer.status_code == 200 and message in page, bad
        assert SCRIPT not in page
    unchanged(portal, before)


# -- requesting an XOS certificate ---------------------------------------------------------
def test_an_uploaded_csr_gets_an_xos_certificate_naming_the_user(portal: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client = signed_in(portal, "alice")
    before = count(portal)
    answer = post_xos(client, csr_file=upload(make_csr(key)))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200, page
    assert "Your new XOS certificate" in page and "shown only now" in page
    pem = issued_block(page, "issued-certificate")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.public_key() == key.public_key()
    chain = x509.load_pem_x509_certificates(issued_block(page, "issued-chain").encode())
    assert len(chain) == 2 and cert.issuer == chain[0].subject
    cert.verify_directly_issued_by(chain[0])
    # the download link holds the same certificate
    link = re.search(r'href="data:application/octet-stream;base64,([^"]+)" download="xos-cert.pem"',
                     page)
    assert link and base64.b64decode(link.group(1)).decode() == pem
    serial = format(cert.serial_number, "x")
    assert count(portal) == before + 1
    assert 'class="status valid"' in row_of(page, serial)


def test_a_pasted_csr_with_a_vo_and_a_lifetime(portal: Flask) -> None:
    client = signed_in(portal, "alice")
    answer = post_xos(client, csr_text=make_csr(), vos="atlas", xos_hours="2")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200, page
    cert = x509.load_pem_x509_certificate(issued_block(page, "issued-certificate").encode())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(hours=2) <= lifetime <= dt.timedelta(hours=2, minutes=6)


def test_a_script_in_the_csr_subject_is_never_copied(portal: Flask) -> None:
    client = signed_in(portal, "alice")
    answer = post_xos(client, csr_file=upload(make_csr(common_name=SCRIPT)))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and SCRIPT not in page
    cert = x509.load_pem_x509_certificate(issued_block(page, "issued-certificate").encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert "script" not in cert.subject.rfc4514_string()


def _rsa_1024_csr() -> str:
    return make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))


BAD_XOS: list[tuple[str, dict[str, Any], str]] = [
    ("malformed PEM", {"csr_text": "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n"
                                   "-----END CERTIFICATE REQUEST-----"}, "cannot parse the CSR"),
    ("CA:true", {"csr_file": "ca"}, "basicConstraints"),
    ("RSA-1024", {"csr_file": "rsa1024"}, "RSA key of 1024 bits refused"),
    ("garbage file", {"csr_file": "garbage"}, "not PEM or OpenSSH text"),
    ("text that is no CSR", {"csr_file": "text"}, "cannot parse the CSR"),
    ("a script as the CSR", {"csr_text": SCRIPT}, "cannot parse the CSR"),
    ("two PEM blocks", {"csr_text": "two"}, "exactly one PEM block"),
    ("empty file", {"csr_file": "empty"}, "is empty"),
    ("nothing sent", {}, "Choose a CSR file or paste it."),
    ("file and text", {"csr_file": "good", "csr_text": "good"}, "not both"),
    ("a VO not held", {"csr_file": "good", "vos": "cms"}, "Choose only VOs you are"),
    ("a VO twice", {"csr_file": "good", "vos": ["atlas", "atlas"]}, "each once"),
    ("a hostile VO", {"csr_file": "good", "vos": SCRIPT}, "Choose only VOs you are"),
    ("a lifetime over policy", {"csr_file": "good", "xos_hours": "100"},
     "lifetime must be 1 to 12 hours"),
    ("a lifetime of zero", {"csr_file": "good", "xos_hours": "0"}, "1 hour or more"),
    ("a lifetime that is text", {"csr_file": "good", "xos_hours": SCRIPT},
     "Not a valid integer value"),
]


def _content(name: str) -> str | bytes:
    return {"ca": lambda: make_csr(extensions=[x509.BasicConstraints(ca=True, path_length=None)]),
            "rsa1024": _rsa_1024_csr, "garbage": lambda: os.urandom(2000) + b"\xff",
            "text": lambda: "hello, CA\n", "two": lambda: make_csr() + make_csr(),
            "empty": lambda: b"", "good": make_csr}[name]()


@pytest.mark.parametrize(("case", "fields", "message"), BAD_XOS, ids=[c[0] for c in BAD_XOS])
def test_a_bad_csr_request_is_refused_and_issues_nothing(
        portal: Flask, case: str, fields: dict[str, Any], message: str) -> None:
    client = signed_in(portal, "alice")
    form = {name: upload(_content(value)) if name == "csr_file" else
            _content(value) if name == "csr_text" and value in ("two", "good") else value
            for name, value in fields.items()}
    before = state(portal)
    answer = post_xos(client, **form)
    page = answer.get_data(as_text=True)
    assert 400 <= answer.status_code < 500, page
    assert message in html.unescape(page), case
    assert SCRIPT not in page and "Your new XOS certificate" not in page
    unchanged(portal, before)


def test_a_user_without_an_active_membership_gets_no_certificate(portal: Flask) -> None:
    client = signed_in(portal, "bob")  # his request to join atlas is pending
    before = state(portal)
    answer = post_xos(client, csr_file=upload(make_csr()))
    assert answer.status_code == 409 or answer.status_code == 422
    assert "has no active VO membership" in html.unescape(answer.get_data(as_text=True))
    unchanged(portal, before)


# -- requesting an SSH certificate ---------------------------------------------------------
def test_a_pasted_public_key_gets_an_ssh_certificate_and_its_comment_is_not_echoed(
        portal: Flask) -> None:
    key, line = ssh_key()
    client = signed_in(portal, "alice")
    answer = post_ssh(client, key_text=f"{line} {SCRIPT}", ssh_hours="3")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200, page
    assert SCRIPT not in page and html.escape(SCRIPT) not in page
    cert_line = issued_block(page, "issued-certificate")
    cert = serialization.load_ssh_public_identity(cert_line.encode())
    assert isinstance(cert, serialization.SSHCertificate)
    assert cert.valid_principals == [b"alice"]
    assert cert.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PublicFormat.Raw) == \
        key.public_key().public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
    assert cert.valid_before - cert.valid_after <= 3 * 3600 + 6 * 60
    assert 'download="id_ed25519-cert.pub"' in page and "issued-chain" not in page
    assert 'class="status valid"' in row_of(page, format(cert.serial, "x"))


def test_an_uploaded_public_key_file_gets_an_ssh_certificate(portal: Flask) -> None:
    client = signed_in(portal, "alice")
    before = count(portal)
    answer = post_ssh(client, key_file=upload(ssh_key()[1] + "\n", "id_ed25519.pub"))
    assert answer.status_code == 200
    assert "Your new SSH certificate" in answer.get_data(as_text=True)
    assert count(portal) == before + 1


def _ssh_rsa_1024() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


@pytest.mark.parametrize(("text", "message"), [
    (lambda: "ssh-ed25519 " + SCRIPT, "cannot parse the SSH public key"),
    (lambda: SCRIPT, "not an OpenSSH public key line"),
    (_ssh_rsa_1024, "RSA key of 1024 bits refused"),
    (lambda: ssh_key()[1] + "\n" + ssh_key()[1], "one line of printable text"),
    (lambda: "   ", "Choose a public key file or paste it."),
], ids=["script as key", "script", "rsa-1024", "two lines", "blank"])
def test_a_bad_public_key_is_refused_and_issues_nothing(portal: Flask, text: Any,
                                                        message: str) -> None:
    client = signed_in(portal, "alice")
    before = state(portal)
    answer = post_ssh(client, key_text=text())
    page = answer.get_data(as_text=True)
    assert 400 <= answer.status_code < 500
    assert message in html.unescape(page)
    assert SCRIPT not in page and "Your new SSH certificate" not in page
    unchanged(portal, before)


# -- CSRF and sizes ------------------------------------------------------------------------
def test_without_a_csrf_token_nothing_changes(portal: Flask) -> None:
    serial = issue(portal, "alice")
    client = signed_in(portal, "alice")
    before = state(portal)
    xos = client.post("/certificates/xos", content_type="multipart/form-data",
                      data={"csr_file": upload(make_csr())})
    assert xos.status_code == 400 and "not valid" in xos.get_data(as_text=True)
    ssh = client.post("/certificates/ssh", data={"key_text": ssh_key()[1],
                                                 "csrf_token": "forged"})
    assert ssh.status_code == 400
    revoke = client.post("/certificates/revoke", data={
        "serial": serial, "kind": "x509-user", "reason": "superseded"}, follow_redirects=True)
    assert "That request was not valid" in revoke.get_data(as_text=True)
    unchanged(portal, before)


@pytest.mark.parametrize(("path", "fields", "message"), [
    ("/certificates/xos", {"csr_file": "file"}, "The CSR file is over 16 KiB"),
    ("/certificates/xos", {"csr_text": "text"}, "The pasted CSR is over 16 KiB"),
    ("/certificates/ssh", {"key_file": "file"}, "The public key file is over 16 KiB"),
    ("/certificates/ssh", {"key_text": "text"}, "The pasted public key is over 16 KiB"),
], ids=["csr file", "pasted csr", "key file", "pasted key"])
def test_an_upload_over_the_field_cap_is_refused_before_parsing(
        portal: Flask, path: str, fields: dict[str, str], message: str) -> None:
    # a real CSR padded past 16 KiB: the size is what is refused, not the content
    big = make_csr() + "\n" * (16 * KIB)
    client = signed_in(portal, "alice")
    before = state(portal)
    data: dict[str, Any] = {name: upload(big) if kind == "file" else big
                            for name, kind in fields.items()}
    answer = client.post(path, data={"csrf_token": token(client), **data},
                         content_type="multipart/form-data")
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    unchanged(portal, before)


def test_a_body_over_max_content_length_gets_the_portals_413_page(portal: Flask) -> None:
    client = signed_in(portal, "alice")
    assert portal.config["MAX_CONTENT_LENGTH"] == 256 * KIB
    before = state(portal)
    for path in ("/certificates/xos", "/certificates/ssh", "/certificates/revoke", "/join"):
        answer = client.post(path, content_type="multipart/form-data", data={
            "csrf_token": token(client), "csr_file": upload(b"A" * (300 * KIB))})
        page = answer.get_data(as_text=True)
        assert answer.status_code == 413 and answer.mimetype == "text/html", path
        assert "That upload is too large" in page and "over 256 KiB" in page
        assert "portal.css" in page and "My certificates" in page  # the portal's look
        assert "Content-Security-Policy" in answer.headers
    unchanged(portal, before)


def test_the_api_keeps_its_json_problem_for_a_body_over_the_limit(portal: Flask) -> None:
    with portal.app_context():
        ctx = ServiceContext.build(db.session, portal.config)
        alice = UserService(ctx).get("alice")
        _, secret = ApiKeyService(ctx).issue(Actor.system("pytest"), user=alice)
        db.session.commit()
    before = count(portal)
    answer = portal.test_client().post(
        "/api/v1/certificates/xos", headers={"Authorization": f"Bearer {secret}"},
        data=json.dumps({"csr": "A" * (300 * KIB)}), content_type="application/json")
    assert answer.status_code == 413
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["status"] == 413
    assert count(portal) == before

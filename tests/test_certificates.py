"""Certificates through the VO service's API, on SQLite and PostgreSQL: what an XOS
certificate says, who gets one, what is refused (and then nothing is issued or changed),
revocation when access is withdrawn, CRL publication, OCSP and the SSH KRL.

The real tools (openssl, ssh-keygen, sshd) against a running server are in
``tests/e2e/test_ca_service.py``; the CA library alone in ``tests/ca``.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_bad_input import snapshot

import ca
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

# -- requests -------------------------------------------------------------------------


def make_csr(key: Any = None, common_name: str = "anything",
             extensions: list[x509.ExtensionType] | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    for extension in extensions or []:
        builder = builder.add_extension(extension, critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def ssh_key() -> tuple[ed25519.Ed25519PrivateKey, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                              serialization.PublicFormat.OpenSSH).decode()


class Grid:
    """VO atlas (groups /atlas/analysis, /atlas/analysis/higgs, /atlas/production; role
    production) and VO cms; alice: atlas (in /atlas/analysis/higgs, holds production) and
    cms; bob: atlas only; adam: atlas admin; pete: pending; node wn1 serves atlas."""

    def __init__(self, ctx: Any, system: Any, users: Any) -> None:
        vos, ms = VOService(ctx), MembershipService(ctx)
        self.atlas, self.cms = vos.create(system, "atlas"), vos.create(system, "cms")
        vos.create_group(system, self.atlas, "/atlas/analysis")
        self.higgs = vos.create_group(system, self.atlas, "/atlas/analysis/higgs")
        vos.create_group(system, self.atlas, "/atlas/production")
        self.production = vos.create_role(system, self.atlas, "production")
        self.alice, self.bob = users.make("alice"), users.make("bob")
        self.adam, self.pete = users.make("adam"), users.make("pete")
        self.sysop = users.make("sysop", is_service_admin=True)
        vos.set_admin(system, self.atlas, self.adam, True)
        for user in (self.alice, self.bob):
            ms.add(system, self.atlas, user)
        ms.add(system, self.cms, self.alice)
        ms.add_to_group(system, self.atlas, self.higgs, self.alice)
        ms.set_role(system, self.atlas, self.alice, self.production, True)
        from support import actor_for

        ms.request(actor_for(self.pete), self.atlas, self.pete)
        self.node = NodeService(ctx).register(system, "wn1.grid.example", vos=["atlas"])
        db.session.commit()
        self.keys = {name: users.key(getattr(self, name))
                     for name in ("alice", "bob", "adam", "pete", "sysop")}
        from vo_service.apikeys.services import ApiKeyService

        self.keys["node"] = ApiKeyService(ctx).issue(system, node=self.node)[1]
        db.session.commit()


@pytest.fixture
def grid(ctx, system, users) -> Grid:
    return Grid(ctx, system, users)


def issue(api, key: str, **body: Any) -> tuple[int, Any]:
    body.setdefault("csr", make_csr())
    return api.call("POST", "/certificates/xos", key, json=body)


def pem_cert(body: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(body["certificate"].encode())


# -- what an XOS certificate says ---------------------------------------------------------


def test_xos_certificate_carries_identity_and_held_attributes(api, grid):
    status, body = issue(api, grid.keys["alice"], csr=make_csr(common_name="root"))
    assert status == 201, body
    cert = pem_cert(body)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:uuid:{grid.alice.id}"]
    attributes = ca.VOAttributes.from_certificate(cert)
    assert attributes is not None
    assert attributes.global_user_id == grid.alice.id
    assert (attributes.primary_vo, attributes.other_vos) == ("atlas", ("cms",))
    assert attributes.primary_group == "/atlas"
    assert set(attributes.other_groups) == {"/atlas/analysis", "/atlas/analysis/higgs",
                                            "/cms"}
    assert attributes.roles == ()  # roles only when asked for (VOMS practice)
    ext = cert.extensions.get_extension_for_oid(ca.XOS_VO_ATTRIBUTES_OID)
    assert not ext.critical
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(hours=12) <= lifetime <= dt.timedelta(hours=12, minutes=6)
    chain = x509.load_pem_x509_certificates(body["chain"].encode())
    assert cert.issuer == chain[0].subject and chain[-1].subject == chain[-1].issuer
    assert body["serial"] == format(cert.serial_number, "x")
    assert body["vos"] == ["atlas", "cms"]


def test_a_request_narrows_vos_groups_and_asks_for_roles(api, grid):
    status, body = issue(api, grid.keys["alice"], vos=["cms", "atlas"],
                         groups=["/atlas/analysis"], roles=["/atlas/Role=production"],
                         lifetime_hours=2)
    assert status == 201, body
    attributes = ca.VOAttributes.from_certificate(pem_cert(body))
    assert attributes is not None
    assert (attributes.primary_vo, attributes.other_vos) == ("cms", ("atlas",))
    assert attributes.primary_group == "/cms"
    assert attributes.other_groups == ("/atlas/analysis",)
    assert attributes.roles == ("/atlas/Role=production",)
    cert = pem_cert(body)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=2,
                                                                               minutes=6)


def test_vo_policy_bounds_the_lifetime(api, grid):
    status, body = api.call("PATCH", "/vos/atlas", grid.keys["adam"], json={"cert_hours": 4})
    assert (status, body["cert_hours"]) == (200, 4)
    status, body = issue(api, grid.keys["bob"])
    cert = pem_cert(body)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=4,
                                                                               minutes=6)
    status, body = issue(api, grid.keys["bob"], lifetime_hours=5)
    assert status == 422 and "1 to 4 hours" in body["detail"] and "atlas" in body["detail"]
    status, body = api.call("PATCH", "/vos/atlas", grid.keys["adam"],
                            json={"cert_hours": 169})
    assert status == 422 and "1 to 168" in body["detail"]


# -- refusals: nothing issued, nothing changed ----------------------------------------------
RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _bad_signature_csr() -> str:
    der = bytearray(x509.load_pem_x509_csr(make_csr().encode()).public_bytes(
        serialization.Encoding.DER))
    der[-3] ^= 0x40
    return x509.load_der_x509_csr(bytes(der)).public_bytes(
        serialization.Encoding.PEM).decode()


REFUSED: list[tuple[str, dict[str, Any], int, str]] = [
    ("a CSR with a bad signature", {"csr": _bad_signature_csr()}, 422, "signature"),
    ("RSA below 2048 bits", {"csr": make_csr(RSA_1024)}, 422, "1024"),
    ("an unsupported curve", {"csr": make_csr(ec.generate_private_key(ec.SECP256K1()))},
     422, "curve"),
    ("a CSR asking for CA:true", {"csr": make_csr(extensions=[
        x509.BasicConstraints(ca=True, path_length=None)])}, 422, "basicConstraints"),
    ("a CSR asking for a SAN", {"csr": make_csr(extensions=[
        x509.SubjectAlternativeName([x509.DNSName("evil.example")])])}, 422,
     "subjectAltName"),
    ("malformed PEM", {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n"
                              "-----END CERTIFICATE REQUEST-----\n"}, 422, "CSR"),
    ("not a CSR at all", {"csr": "hello"}, 422, "CSR"),
    ("an oversized CSR", {"csr": "A" * (16 * 1024 + 1)}, 422, "at most"),
    ("a VO not held", {"vos": ["atlas", "lhcb"]}, 403, "lhcb"),
    ("a group not held", {"groups": ["/atlas/production"]}, 403, "/atlas/production"),
    ("a group of a VO not chosen", {"vos": ["cms"], "groups": ["/atlas/analysis"]}, 403,
     "/atlas/analysis"),
    ("a role not held", {"roles": ["/cms/Role=admin"]}, 403, "/cms/Role=admin"),
    ("an injected group path", {"groups": ["/atlas\n/cms"]}, 403, "atlas"),
    ("a lifetime above the policy", {"lifetime_hours": 13}, 422, "1 to 12 hours"),
    ("no VO", {"vos": []}, 422, "at least one VO"),
    ("an unknown field", {"subject": "CN=root"}, 422, "subject"),
]


@pytest.mark.parametrize("why, body, status, detail", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_requests_issue_nothing(api, grid, why, body, status, detail):
    before = snapshot()
    got, answer = issue(api, grid.keys["alice"], **body)
    assert got == status, answer
    assert detail in answer["detail"], answer["detail"]
    assert snapshot() == before


def test_a_dsa_key_is_refused(api, grid):
    key = dsa.generate_private_key(key_size=2048)
    before = snapshot()
    status, body = issue(api, grid.keys["alice"], csr=make_csr(key))
    assert status == 422 and "DSA" in body["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("who, status, detail", [
    ("pete", 409, "no active VO membership"),
    ("adam", 409, "no active VO membership"),
    ("node", 403, "user's credential"),
])
def test_only_active_members_get_certificates(api, grid, who, status, detail):
    before = snapshot()
    got, body = issue(api, grid.keys[who])
    assert got == status and detail in body["detail"]
    got, body = api.call("POST", "/certificates/ssh", grid.keys[who],
                         json={"public_key": ssh_key()[1]})
    assert got == status and detail in body["detail"]
    assert snapshot() == before


def test_suspended_and_removed_requesters_get_nothing(api, grid, system, ctx):
    MembershipService(ctx).transition(system, grid.atlas, grid.bob, "suspend")
    db.session.commit()
    status, body = issue(api, grid.keys["bob"])
    assert status == 409 and "no active VO membership" in body["detail"]
    MembershipService(ctx).transition(system, grid.atlas, grid.bob, "remove")
    UserService(ctx).set_status(system, grid.alice, "suspended")
    db.session.commit()
    assert issue(api, grid.keys["bob"])[0] == 409
    # a suspended user's API key is refused before any certificate code runs
    status, body = issue(api, grid.keys["alice"])
    assert status == 403 and "suspended" in body["detail"]


@pytest.mark.parametrize("line, detail", [
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "ssh-dss"),
    ("garbage", "OpenSSH"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\nssh-ed25519 AAAA", "one"),
    ("ssh-rsa " + "A" * 20000, "at most"),
])
def test_bad_ssh_keys_are_refused(api, grid, line, detail):
    before = snapshot()
    status, body = api.call("POST", "/certificates/ssh", grid.keys["alice"],
                            json={"public_key": line})
    assert status == 422, body
    assert detail.lower() in body["detail"].lower(), body["detail"]
    assert snapshot() == before


def test_an_ssh_certificate_cannot_be_certified_again(api, grid):
    status, body = api.call("POST", "/certificates/ssh", grid.keys["alice"],
                            json={"public_key": ssh_key()[1]})
    assert status == 201
    before = snapshot()
    status, body = api.call("POST", "/certificates/ssh", grid.keys["alice"],
                            json={"public_key": body["certificate"]})
    assert status == 422 and "certificate" in body["detail"]
    assert snapshot() == before


# -- SSH and node certificates ------------------------------------------------------------------


def test_ssh_user_certificate_names_the_unix_user(api, grid):
    _, line = ssh_key()
    status, body = api.call("POST", "/certificates/ssh", grid.keys["alice"],
                            json={"public_key": line, "lifetime_hours": 1})
    assert status == 201, body
    cert = serialization.load_ssh_public_identity(body["certificate"].encode())
    assert isinstance(cert, serialization.SSHCertificate)
    assert cert.valid_principals == [b"alice"]
    assert cert.key_id == str(grid.alice.id).encode()
    assert cert.type == serialization.SSHCertificateType.USER
    assert cert.valid_before - cert.valid_after <= 3600 + 300
    assert body["kind"] == "ssh-user" and body["subject"] == "alice"


def test_node_certificates_for_the_node_itself(api, grid):
    status, body = api.call("POST", "/nodes/wn1.grid.example/certificate", grid.keys["node"],
                            json={"csr": make_csr(common_name="other.example")})
    assert status == 201, body
    cert = pem_cert(body)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["wn1.grid.example"]
    eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    node = ca.NodeAttributes.from_certificate(cert)
    assert node is not None and node.vos == ("atlas",)
    status, body = api.call("POST", "/nodes/wn1.grid.example/ssh-host-certificate",
                            grid.keys["node"], json={"public_key": ssh_key()[1]})
    assert status == 201
    host = serialization.load_ssh_public_identity(body["certificate"].encode())
    assert isinstance(host, serialization.SSHCertificate)
    assert host.type == serialization.SSHCertificateType.HOST
    assert host.valid_principals == [b"wn1.grid.example"]


# -- revocation -----------------------------------------------------------------------------------


def ocsp_status(client, body: dict[str, Any], chain: str) -> ocsp.OCSPResponse:
    cert = pem_cert(body)
    issuer = x509.load_pem_x509_certificates(chain.encode())[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    response = client.post("/ocsp", data=request.public_bytes(serialization.Encoding.DER),
                           content_type="application/ocsp-request")
    assert response.status_code == 200
    assert response.mimetype == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.data)


def crl(client) -> x509.CertificateRevocationList:
    response = client.get("/ca/crl.der")
    assert response.status_code == 200 and response.mimetype == "application/pkix-crl"
    return x509.load_der_x509_crl(response.data)


def test_suspending_a_membership_revokes_what_carried_it(api, client, grid, system, ctx):
    _, atlas_cert = issue(api, grid.keys["alice"], vos=["atlas"])
    _, cms_cert = issue(api, grid.keys["alice"], vos=["cms"])
    _, ssh = api.call("POST", "/certificates/ssh", grid.keys["alice"],
                      json={"public_key": ssh_key()[1]})
    chain = atlas_cert["chain"]
    assert ocsp_status(client, atlas_cert, chain).certificate_status == ocsp.OCSPCertStatus.GOOD
    first = crl(client)
    MembershipService(ctx).transition(system, grid.atlas, grid.alice, "suspend")
    db.session.commit()
    answer = ocsp_status(client, atlas_cert, chain)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.privilege_withdrawn
    assert ocsp_status(client, cms_cert, chain).certificate_status == ocsp.OCSPCertStatus.GOOD
    listed = crl(client)
    assert listed.get_revoked_certificate_by_serial_number(int(atlas_cert["serial"], 16))
    assert listed.get_revoked_certificate_by_serial_number(int(cms_cert["serial"], 16)) is None
    number = listed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == first.extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number + 1
    # nothing changed: the same CRL again, not a new number
    assert crl(client).public_bytes(serialization.Encoding.DER) == listed.public_bytes(
        serialization.Encoding.DER)
    # alice still holds cms: her SSH certificate stays valid
    status, record = api.call("GET", f"/certificates/{ssh['serial']}", grid.keys["alice"])
    assert status == 200 and record["revoked_at"] is None
    status, record = api.call("GET", f"/certificates/{atlas_cert['serial']}",
                              grid.keys["alice"])
    assert record["revocation_reason"] == "privilegeWithdrawn"


def test_losing_a_group_or_role_revokes_certificates_that_carried_it(api, client, grid,
                                                                     system, ctx):
    _, with_higgs = issue(api, grid.keys["alice"], vos=["atlas"],
                          groups=["/atlas", "/atlas/analysis/higgs"])
    _, without = issue(api, grid.keys["alice"], vos=["atlas"], groups=["/atlas"])
    _, with_role = issue(api, grid.keys["alice"], vos=["atlas"], groups=["/atlas"],
                         roles=["/atlas/Role=production"])
    ms = MembershipService(ctx)
    ms.remove_from_group(system, grid.atlas, grid.higgs, grid.alice)
    db.session.commit()
    chain = with_higgs["chain"]
    assert ocsp_status(client, with_higgs, chain).certificate_status == \
        ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(client, without, chain).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert ocsp_status(client, with_role, chain).certificate_status == ocsp.OCSPCertStatus.GOOD
    ms.set_role(system, grid.atlas, grid.alice, grid.production, False)
    db.session.commit()
    assert ocsp_status(client, with_role, chain).certificate_status == \
        ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(client, without, chain).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_suspending_a_user_revokes_everything_and_the_krl_says_so(api, client, grid, system,
                                                                 ctx, tmp_path: Path):
    _, x509_cert = issue(api, grid.keys["alice"])
    _, ssh = api.call("POST", "/certificates/ssh", grid.keys["alice"],
                      json={"public_key": ssh_key()[1]})
    cert_file = tmp_path / "id-cert.pub"
    cert_file.write_text(ssh["certificate"] + "\n")
    krl_file = tmp_path / "krl"

    def revoked_in_krl() -> bool:
        response = client.get("/ca/ssh-krl")
        assert response.status_code == 200
        krl_file.write_bytes(response.data)
        query = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl_file), str(cert_file)],
                               capture_output=True, text=True, timeout=30)
        assert query.returncode in (0, 1), query.stderr
        return query.returncode == 1 and "REVOKED" in query.stdout

    assert not revoked_in_krl()
    UserService(ctx).set_status(system, grid.alice, "suspended")
    db.session.commit()
    assert revoked_in_krl()
    assert ocsp_status(client, x509_cert, x509_cert["chain"]).certificate_status == \
        ocsp.OCSPCertStatus.REVOKED


def test_removing_the_last_membership_revokes_the_ssh_certificate(api, grid, system, ctx):
    _, ssh = api.call("POST", "/certificates/ssh", grid.keys["bob"],
                      json={"public_key": ssh_key()[1]})
    MembershipService(ctx).transition(system, grid.atlas, grid.bob, "remove")
    db.session.commit()
    status, record = api.call("GET", f"/certificates/{ssh['serial']}", grid.keys["bob"])
    assert record["revocation_reason"] == "affiliationChanged"


def test_owner_revokes_own_certificate_once(api, client, grid):
    _, body = issue(api, grid.keys["bob"])
    path = f"/certificates/{body['serial']}/revoke"
    status, record = api.call("POST", path, grid.keys["bob"], json={"reason": "keyCompromise"})
    assert status == 200 and record["revocation_reason"] == "keyCompromise"
    before = snapshot()
    status, problem = api.call("POST", path, grid.keys["bob"], json={"reason": "superseded"})
    assert status == 409 and "already revoked" in problem["detail"]
    status, problem = api.call("POST", path, grid.keys["alice"], json={})
    assert status == 403
    assert snapshot() == before
    entry = crl(client).get_revoked_certificate_by_serial_number(int(body["serial"], 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise


@pytest.mark.parametrize("serial, status", [("zz", 422), ("1" * 41, 422), ("abc", 404)])
def test_bad_serials(api, grid, serial, status):
    assert api.call("GET", f"/certificates/{serial}", grid.keys["alice"])[0] == status


def test_reinstating_does_not_revive_revoked_certificates(api, client, grid, system, ctx):
    _, body = issue(api, grid.keys["bob"])
    ms = MembershipService(ctx)
    ms.transition(system, grid.atlas, grid.bob, "suspend")
    ms.transition(system, grid.atlas, grid.bob, "reinstate")
    db.session.commit()
    assert ocsp_status(client, body, body["chain"]).certificate_status == \
        ocsp.OCSPCertStatus.REVOKED
    assert issue(api, grid.keys["bob"])[0] == 201


def test_deleting_a_group_revokes_certificates_carrying_it(api, client, grid, system, ctx):
    _, body = issue(api, grid.keys["alice"], vos=["atlas"],
                    groups=["/atlas", "/atlas/analysis"])
    VOService(ctx).delete_group(system, grid.atlas, "/atlas/analysis")
    db.session.commit()
    assert ocsp_status(client, body, body["chain"]).certificate_status == \
        ocsp.OCSPCertStatus.REVOKED


# -- the public CA endpoints -------------------------------------------------------------------


def test_public_material_needs_no_credential(client, grid):
    root = x509.load_pem_x509_certificate(client.get("/ca/root.pem").data)
    chain = x509.load_pem_x509_certificates(client.get("/ca/chain.pem").data)
    assert chain[-1] == root and chain[0].issuer == root.subject
    pem = x509.load_pem_x509_crl(client.get("/ca/crl.pem").data)
    assert pem.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]
    assert client.get("/ca/crl/1.der").status_code == 200
    assert client.get("/ca/crl/99.der").status_code == 404
    assert client.get("/ca/issuers/1.pem").status_code == 200
    lines = client.get("/ca/ssh-ca.pub").data.decode().splitlines()
    assert lines and all(line.startswith("ssh-ed25519 ") for line in lines)


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30" * 70000])
def test_ocsp_answers_malformed_requests_without_failing(client, data):
    response = client.post("/ocsp", data=data, content_type="application/ocsp-request")
    assert response.status_code == 200
    answer = ocsp.load_der_ocsp_response(response.data)
    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    response = client.get("/ocsp/not-base64!")
    assert ocsp.load_der_ocsp_response(response.data).response_status == \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_says_unknown_for_a_serial_never_issued(client, grid):
    chain = x509.load_pem_x509_certificates(client.get("/ca/chain.pem").data)
    stranger = x509.CertificateBuilder().subject_name(chain[0].subject).issuer_name(
        chain[0].subject).public_key(ec.generate_private_key(ec.SECP256R1()).public_key()
                                     ).serial_number(12345).not_valid_before(
        dt.datetime(2020, 1, 1)).not_valid_after(dt.datetime(2030, 1, 1)).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    request = ocsp.OCSPRequestBuilder().add_certificate(stranger, chain[0],
                                                        hashes.SHA1()).build()
    response = client.post("/ocsp", data=request.public_bytes(serialization.Encoding.DER),
                           content_type="application/ocsp-request")
    answer = ocsp.load_der_ocsp_response(response.data)
    assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_without_a_ca_the_service_says_so(app, api, grid, tmp_path):
    app.extensions["xos_ca"].directory.path = tmp_path / "missing"
    app.extensions["xos_ca"].loaded = None
    before = snapshot()
    status, body = issue(api, grid.keys["alice"])
    assert status == 503 and "xos-ca init" in body["detail"]
    assert snapshot() == before

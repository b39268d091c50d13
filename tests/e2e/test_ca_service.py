"""End to end: the VO service's certificate authority, served for real over HTTP and
checked only with the tools a grid site would use (openssl, ssh-keygen, ssh, sshd).

Why: the unit tests of ``ca/`` and the API tests through Flask's test client cannot show
that a stock ``openssl verify``/``openssl ocsp`` or an unmodified sshd accepts what the
running service hands out, that the URLs written into certificates really answer, and
that withdrawing access (membership or user suspension) reaches the relying parties.

One module-scoped service: a migrated SQLite file, the app served by werkzeug on a free
port of 127.0.0.1 with ``PUBLIC_URL`` pointing at it, seeded through the domain services.
After seeding, the tests talk to it only over HTTP. Everything (server thread, database,
key files) is gone at the end of the module; the sshd test runs in a NodeNamespace,
which cleans up after itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID

import ca
from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

from .live import live_service
from .nodens import SSH_TOOLS, NodeNamespace, SshServer, keygen, missing_requirements, ssh_login

TOOL_TIMEOUT = 30
NODE = "wn01.grid.example"
SSH_PORT = 2222
# Tools must talk to 127.0.0.1 directly, whatever proxy the environment names.
TOOL_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
TOOL_ENV |= {"TZ": "UTC", "LC_ALL": "C", "no_proxy": "*", "NO_PROXY": "*"}


# -- tools -------------------------------------------------------------------------------
def run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a real tool with a timeout; on failure, the assertion carries its output."""
    result = subprocess.run([os.fspath(a) for a in argv], capture_output=True,
                            timeout=TOOL_TIMEOUT, env=TOOL_ENV, check=False)
    out = result.stdout.decode(errors="replace")
    err = result.stderr.decode(errors="replace")
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}:\n{out}\n{err}")
    return subprocess.CompletedProcess(result.args, result.returncode, out, err)


def utf8_strings(asn1parse_output: str) -> list[str]:
    return re.findall(r"prim: UTF8STRING\s+:(.*)$", asn1parse_output, re.MULTILINE)


def crl_number(text: str) -> int:
    match = re.search(r"X509v3 CRL Number: *\n\s+(\d+)", text)
    assert match, text
    return int(match.group(1))


def crl_serials(text: str) -> set[int]:
    return {int(s, 16) for s in re.findall(r"Serial Number: ([0-9A-F]+)", text)}


# -- HTTP --------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Http:
    """A plain HTTP client (urllib, no proxy) that remembers every body it sent."""

    base: str
    sent: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None,
                data: bytes | None = None, content_type: str | None = None) -> Reply:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            data = json.dumps(body).encode()
            content_type = "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        if data is not None:
            self.sent.append(data)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers)
        try:
            with self.opener.open(req, timeout=15) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, dict(error.headers), error.read())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)

    def fetch(self, path: str, to: Path) -> Path:
        """GET a public file and write it (in place: sshd rereads it on each login)."""
        reply = self.get(path)
        assert reply.status == 200, (path, reply)
        with to.open("wb") as fh:
            fh.write(reply.body)
        return to


# -- the running service --------------------------------------------------------------------
@dataclass
class Service:
    base: str
    http: Http
    work: Path
    keys: dict[str, str]  # API keys by username, and "node"
    ids: dict[str, str]  # global user ids
    uids: dict[str, int]

    def path(self, name: str) -> Path:
        return self.work / name


def _seed(app: Any) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    """Users, VOs, a group, a role, memberships, a node and API keys, via the services."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("e2e-ca")
        users = UserService(ctx)
        people = {name: users.create(system, name, name.capitalize(),
                                     is_service_admin=name == "sysop")
                  for name in ("sysop", "voadm", "alice", "bob", "carol")}
        vos = VOService(ctx)
        atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
        vos.set_admin(system, atlas, people["voadm"], True)
        analysis = vos.create_group(system, atlas, "/atlas/analysis")
        production = vos.create_role(system, atlas, "production")
        members = MembershipService(ctx)
        members.add(system, atlas, people["alice"])
        members.add(system, cms, people["alice"])
        members.add_to_group(system, atlas, analysis, people["alice"])
        members.set_role(system, atlas, people["alice"], production, True)
        members.add(system, atlas, people["bob"])
        members.add(system, cms, people["carol"])
        node = NodeService(ctx).register(system, NODE, vos=["atlas"])
        apikeys = ApiKeyService(ctx)
        keys = {name: apikeys.issue(system, user=user)[1] for name, user in people.items()}
        keys["node"] = apikeys.issue(system, node=node)[1]
        ids = {name: str(user.id) for name, user in people.items()}
        uids = {name: user.uid for name, user in people.items()}
        db.session.commit()
        db.session.remove()
    return keys, ids, uids


@pytest.fixture(scope="module")
def service(instance_path: str) -> Iterator[Service]:
    """The real VO service on 127.0.0.1:<free port>, stopped and wiped at module end
    (``live_service`` checks that nothing outlives it)."""
    seeded: list[tuple[dict[str, str], dict[str, str], dict[str, int]]] = []
    with live_service(lambda app: seeded.append(_seed(app)), prefix="xos-ca-e2e-") as live:
        keys, ids, uids = seeded[0]
        yield Service(live.base, Http(live.base), live.work, keys, ids, uids)


@dataclass
class Pki:
    """The CA's public files as a relying party fetches them."""

    root: Path
    chain: Path
    issuing: Path
    ssh_ca: Path


@pytest.fixture(scope="module")
def pki(service: Service) -> Pki:
    root = service.http.fetch("/ca/root.pem", service.path("root.pem"))
    chain = service.http.fetch("/ca/chain.pem", service.path("chain.pem"))
    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    assert len(certs) == 2 and certs[1] == x509.load_pem_x509_certificate(root.read_bytes())
    issuing = service.path("issuing.pem")
    issuing.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    ssh_ca = service.http.fetch("/ca/ssh-ca.pub", service.path("ssh-ca.pub"))
    return Pki(root, chain, issuing, ssh_ca)


def make_csr(service: Service, stem: str, subject: str = "/CN=evil/O=root") -> tuple[Path, Path]:
    """A P-256 key and CSR made by openssl on the 'user's machine'."""
    key, csr = service.path(f"{stem}.key"), service.path(f"{stem}.csr")
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-subj", subject, "-keyout", key, "-out", csr)
    return key, csr


def fetch_crl(service: Service, pki: Pki, stem: str) -> tuple[Path, str]:
    """GET /ca/crl.der with urllib; openssl checks its signature and shows it."""
    der = service.http.fetch("/ca/crl.der", service.path(f"{stem}.der"))
    shown = run("openssl", "crl", "-inform", "DER", "-in", der, "-noout", "-text",
                "-CAfile", pki.chain)
    assert "verify OK" in shown.stderr, shown
    return der, shown.stdout


@dataclass
class Issued:
    key: Path
    cert: Path
    serial: int
    record: dict[str, Any]
    request: bytes  # exactly what went over the wire


def request_xos(service: Service, user: str, stem: str, **extra: Any) -> Issued:
    key, csr = make_csr(service, stem)
    body = {"csr": csr.read_text(), **extra}
    reply = service.http.post("/api/v1/certificates/xos", key=service.keys[user], body=body)
    assert reply.status == 201, reply
    record = reply.json()
    cert = service.path(f"{stem}.pem")
    cert.write_text(record["certificate"])
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    assert int(record["serial"], 16) == serial
    return Issued(key, cert, serial, record, service.http.sent[-1])


@pytest.fixture(scope="module")
def alice_cert(service: Service, pki: Pki) -> Issued:
    return request_xos(service, "alice", "alice", vos=["atlas", "cms"],
                       roles=["/atlas/Role=production"])


# -- 1. an XOS certificate for a CSR ----------------------------------------------------------
def test_xos_certificate_verifies_and_carries_the_service_identity(
        service: Service, pki: Pki, alice_cert: Issued) -> None:
    cert = alice_cert.cert
    verify = run("openssl", "verify", "-CAfile", pki.root, "-untrusted", pki.chain, cert)
    assert verify.stdout.strip() == f"{cert}: OK"
    verify = run("openssl", "verify", "-purpose", "sslclient", "-CAfile", pki.root,
                 "-untrusted", pki.chain, cert)
    assert verify.stdout.strip() == f"{cert}: OK"

    text = run("openssl", "x509", "-in", cert, "-noout", "-text").stdout
    # The CSR asked for CN=evil, O=root: the subject is the service's, not the requester's.
    assert re.search(r"^\s+Subject: O = XOS, OU = atlas, CN = alice$", text, re.MULTILINE)
    assert "evil" not in text
    assert re.search(r"X509v3 Subject Alternative Name: *\n\s+"
                     rf"URI:urn:uuid:{service.ids['alice']}\n", text)
    assert re.search(r"X509v3 CRL Distribution Points: *\n\s+Full Name:\n\s+"
                     rf"URI:{re.escape(service.base)}/ca/crl/1\.der\n", text)
    assert re.search(r"Authority Information Access: *\n\s+"
                     rf"OCSP - URI:{re.escape(service.base)}/ocsp\n", text)
    assert re.search(r"X509v3 Extended Key Usage: *\n\s+TLS Web Client Authentication\n",
                     text)
    assert f"{ca.XOS_VO_ATTRIBUTES_OID.dotted_string}:" in text

    # The XOS VO attributes, read by openssl without knowing the structure.
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    extension = loaded.extensions.get_extension_for_oid(ca.XOS_VO_ATTRIBUTES_OID)
    assert not extension.critical
    ext_der = service.path("alice-ext.der")
    ext_der.write_bytes(extension.value.value)
    parsed = run("openssl", "asn1parse", "-inform", "DER", "-in", ext_der).stdout
    assert re.search(r"prim: INTEGER\s+:01$", parsed, re.MULTILINE)
    assert utf8_strings(parsed) == [
        f"urn:uuid:{service.ids['alice']}", "atlas", "cms", "/atlas", "/atlas/analysis",
        "/cms", "/atlas/Role=production"]

    # At most the VO policy (12 h by default), counted from now.
    policy = service.http.get("/api/v1/vos/atlas", key=service.keys["alice"]).json()
    assert policy["cert_hours"] == 12
    remaining = loaded.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=11, minutes=59) < remaining <= dt.timedelta(hours=12)

    # The key never left the user's side: the API saw the CSR only, and the certificate
    # certifies the key openssl made locally.
    assert json.loads(alice_cert.request).keys() == {"csr", "vos", "roles"}
    key_text = alice_cert.key.read_text()
    key_body = "".join(key_text.strip().splitlines()[1:-1])
    assert "PRIVATE KEY" in key_text and key_body
    for sent in service.http.sent:
        assert b"PRIVATE KEY" not in sent and key_body.encode() not in sent
    local = run("openssl", "pkey", "-in", alice_cert.key, "-pubout").stdout
    certified = run("openssl", "x509", "-in", cert, "-noout", "-pubkey").stdout
    assert local == certified


# -- 2. OCSP ------------------------------------------------------------------------------------
def ocsp_query(service: Service, pki: Pki, issuer: Path, cert: Path, *extra: str,
               digest: str = "sha1") -> subprocess.CompletedProcess[str]:
    """``openssl ocsp`` against the running responder (with a nonce, by POST)."""
    return run("openssl", "ocsp", "-issuer", issuer, f"-{digest}", "-cert", cert, "-url",
               f"{service.base}/ocsp", "-CAfile", pki.root, "-resp_text", *extra, check=False)


def test_ocsp_good_then_revoked_after_membership_suspension(
        service: Service, pki: Pki, alice_cert: Issued) -> None:
    cert = alice_cert.cert
    for digest in ("sha1", "sha256"):  # CertID hashes: SHA-1 (the default) and SHA-256
        before = ocsp_query(service, pki, pki.issuing, cert, digest=digest)
        assert before.returncode == 0, before
        assert "Response verify OK" in before.stderr
        assert "WARNING" not in before.stderr  # e.g. "no nonce in response"
        assert re.search(rf"^{re.escape(str(cert))}: good$", before.stdout, re.MULTILINE)
        assert f"Hash Algorithm: {digest}\n" in before.stdout

    reply = service.http.post("/api/v1/vos/atlas/members/alice/suspend",
                              key=service.keys["voadm"], body={})
    assert reply.status == 200, reply
    assert reply.json()["status"] == "suspended"

    answer = service.path("alice-ocsp.resp")
    after = ocsp_query(service, pki, pki.issuing, cert, "-respout", str(answer))
    assert after.returncode == 0, after
    assert "Response verify OK" in after.stderr
    assert re.search(rf"^{re.escape(str(cert))}: revoked$", after.stdout, re.MULTILINE)
    assert "Revocation Time:" in after.stdout
    # The reason is privilegeWithdrawn (CRLReason 9). OpenSSL 3.0's OCSP_crl_reason_str()
    # only names reasons 0-8 and prints "(UNKNOWN)" for it (keyCompromise is named, see
    # test_ocsp_get_answers_like_post), so read the code from the DER answer itself.
    assert re.search(r"^\s+Reason: (privilegeWithdrawn|\(UNKNOWN\))$", after.stdout,
                     re.MULTILINE)
    parsed = ocsp.load_der_ocsp_response(answer.read_bytes())
    assert parsed.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert parsed.serial_number == alice_cert.serial
    assert parsed.revocation_reason == x509.ReasonFlags.privilege_withdrawn

    # The CRL says the same, with the reason spelled out.
    _, crl_text = fetch_crl(service, pki, "crl-alice")
    entry = re.search(rf"Serial Number: 0*{alice_cert.serial:X}\n(.*\n){{1,4}}", crl_text)
    assert entry and "Privilege Withdrawn" in entry.group(0), crl_text
    # The owner sees the same in the API.
    record = service.http.get(f"/api/v1/certificates/{alice_cert.serial:x}",
                              key=service.keys["alice"]).json()
    assert record["revoked_at"] and record["revocation_reason"] == "privilegeWithdrawn"
    # ... and cannot get a new certificate naming the VO she no longer holds.
    _, csr = make_csr(service, "alice-again")
    again = service.http.post("/api/v1/certificates/xos", key=service.keys["alice"],
                              body={"csr": csr.read_text(), "vos": ["atlas"]})
    assert again.status == 403, again
    assert "you do not hold VO 'atlas'" in again.json()["detail"]


def test_ocsp_refuses_other_cas_and_garbage(service: Service, pki: Pki) -> None:
    other_key, other_ca = service.path("other-ca.key"), service.path("other-ca.pem")
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-subj", "/CN=Unrelated CA", "-days", "1", "-keyout", other_key,
        "-out", other_ca)
    _, csr = make_csr(service, "other-leaf", "/CN=stranger")
    leaf = service.path("other-leaf.pem")
    run("openssl", "x509", "-req", "-in", csr, "-CA", other_ca, "-CAkey", other_key,
        "-CAcreateserial", "-days", "1", "-out", leaf)
    foreign = ocsp_query(service, pki, other_ca, leaf)
    assert foreign.returncode != 0
    assert "Responder Error: unauthorized (6)" in foreign.stdout + foreign.stderr

    for garbage in (b"garbage", b"", b"\x30\x03\x02\x01\x01"):
        reply = service.http.post("/ocsp", data=garbage, content_type="application/ocsp-request")
        assert reply.status == 200, reply
        assert reply.headers["Content-Type"] == "application/ocsp-response"
        answer = ocsp.load_der_ocsp_response(reply.body)
        assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_get_answers_like_post(service: Service, pki: Pki) -> None:
    issued = request_xos(service, "carol", "carol-ocsp")
    request_der = service.path("carol-ocsp.req")
    run("openssl", "ocsp", "-issuer", pki.issuing, "-cert", issued.cert, "-reqout", request_der)
    der = request_der.read_bytes()
    encoded = urllib.parse.quote(base64.b64encode(der).decode(), safe="")

    def status_by_both() -> tuple[ocsp.OCSPResponse, ocsp.OCSPResponse]:
        by_get = service.http.get(f"/ocsp/{encoded}")
        by_post = service.http.post("/ocsp", data=der, content_type="application/ocsp-request")
        assert by_get.status == by_post.status == 200
        answers = ocsp.load_der_ocsp_response(by_get.body), \
            ocsp.load_der_ocsp_response(by_post.body)
        for answer in answers:
            assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            assert answer.serial_number == issued.serial
        return answers

    got, posted = status_by_both()
    assert got.certificate_status == posted.certificate_status == ocsp.OCSPCertStatus.GOOD

    reply = service.http.post(f"/api/v1/certificates/{issued.serial:x}/revoke",
                              key=service.keys["carol"], body={"reason": "keyCompromise"})
    assert reply.status == 200, reply
    got, posted = status_by_both()
    for answer in (got, posted):
        assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    assert got.revocation_time_utc == posted.revocation_time_utc

    # openssl checks the GET answer (signature up to the root, nonce) and reads it.
    answer_der = service.path("carol-ocsp.resp")
    answer_der.write_bytes(service.http.get(f"/ocsp/{encoded}").body)
    checked = run("openssl", "ocsp", "-reqin", request_der, "-respin", answer_der,
                  "-CAfile", pki.root, "-verify_other", pki.issuing, "-resp_text")
    assert "Response verify OK" in checked.stderr
    assert re.search(rf"Serial Number: 0*{issued.serial:X}\n\s+Cert Status: revoked\n",
                     checked.stdout)
    assert "Revocation Reason: keyCompromise (0x1)" in checked.stdout


# -- 3. CRL -------------------------------------------------------------------------------------
def test_crl_lists_revoked_certificates_and_numbers_changes(service: Service, pki: Pki) -> None:
    first = request_xos(service, "carol", "carol-crl-1")
    second = request_xos(service, "carol", "carol-crl-2")

    # The CRL named in the certificate is the current one.
    cdp = x509.load_pem_x509_certificate(first.cert.read_bytes()).extensions \
        .get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    named = cdp[0].full_name[0].value
    assert named == f"{service.base}/ca/crl/1.der"

    _, text = fetch_crl(service, pki, "crl-0")
    start = crl_number(text)
    assert first.serial not in crl_serials(text)

    reply = service.http.post(f"/api/v1/certificates/{first.serial:x}/revoke",
                              key=service.keys["carol"], body={"reason": "keyCompromise"})
    assert reply.status == 200 and reply.json()["revocation_reason"] == "keyCompromise"

    der, text = fetch_crl(service, pki, "crl-1")
    number = crl_number(text)
    assert number > start
    assert first.serial in crl_serials(text) and second.serial not in crl_serials(text)
    assert "Key Compromise" in text
    assert service.http.get(named.removeprefix(service.base)).body == der.read_bytes()

    crl_pem = service.http.fetch("/ca/crl.pem", service.path("crl-1.pem"))
    assert x509.load_pem_x509_crl(crl_pem.read_bytes()) == x509.load_der_x509_crl(
        der.read_bytes())
    revoked = run("openssl", "verify", "-crl_check", "-CRLfile", crl_pem, "-CAfile", pki.root,
                  "-untrusted", pki.chain, first.cert, check=False)
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    fine = run("openssl", "verify", "-crl_check", "-CRLfile", crl_pem, "-CAfile", pki.root,
               "-untrusted", pki.chain, second.cert)
    assert fine.stdout.strip() == f"{second.cert}: OK"
    # openssl can also fetch the CRL itself from the address the certificate names.
    downloaded = run("openssl", "verify", "-crl_check", "-crl_download", "-CAfile", pki.root,
                     "-untrusted", pki.chain, first.cert, check=False)
    assert downloaded.returncode != 0
    assert "certificate revoked" in downloaded.stdout + downloaded.stderr
    downloaded = run("openssl", "verify", "-crl_check", "-crl_download", "-CAfile", pki.root,
                     "-untrusted", pki.chain, second.cert)
    assert downloaded.stdout.strip() == f"{second.cert}: OK"

    # Nothing changed: the same CRL, same number.
    again, text = fetch_crl(service, pki, "crl-2")
    assert crl_number(text) == number and again.read_bytes() == der.read_bytes()

    reply = service.http.post(f"/api/v1/certificates/{second.serial:x}/revoke",
                              key=service.keys["carol"], body={"reason": "superseded"})
    assert reply.status == 200
    _, text = fetch_crl(service, pki, "crl-3")
    assert crl_number(text) > number
    assert {first.serial, second.serial} <= crl_serials(text)


# -- 4. SSH user certificates against a real sshd -----------------------------------------------
def ssh_fields(listing: str) -> dict[str, Any]:
    """The parts of ``ssh-keygen -L`` output the tests check (TZ=UTC)."""
    valid = re.search(r"Valid: from (\S+) to (\S+)", listing)
    principals = re.search(r"Principals: *\n((?:\s{16}\S+\n)+)", listing)
    kind = re.search(r"Type: \S+ (user|host) certificate", listing)
    key_id = re.search(r'Key ID: "([^"]*)"', listing)
    ca_fp = re.search(r"Signing CA: \S+ (SHA256:\S+)", listing)
    serial = re.search(r"Serial: (\d+)", listing)
    assert valid and principals and kind and key_id and ca_fp and serial, listing
    return {
        "kind": kind.group(1), "key_id": key_id.group(1), "ca": ca_fp.group(1),
        "serial": int(serial.group(1)),
        "principals": principals.group(1).split(),
        "from": dt.datetime.fromisoformat(valid.group(1)).replace(tzinfo=dt.UTC),
        "to": dt.datetime.fromisoformat(valid.group(2)).replace(tzinfo=dt.UTC),
    }


def ssh_fingerprint(path: Path) -> str:
    return run("ssh-keygen", "-l", "-f", path).stdout.split()[1]


_ssh_missing = missing_requirements(*SSH_TOOLS)


@pytest.mark.skipif(_ssh_missing is not None, reason=_ssh_missing or "")
def test_ssh_certificate_logs_in_until_the_user_is_suspended(
        service: Service, pki: Pki) -> None:
    with NodeNamespace("xos-ca-node") as ns:
        key = ns.tmp / "bob_ed25519"
        public = keygen(ns, key, "bob@laptop")
        reply = service.http.post("/api/v1/certificates/ssh", key=service.keys["bob"],
                                  body={"public_key": public.read_text()})
        assert reply.status == 201, reply
        cert = ns.tmp / "bob_ed25519-cert.pub"
        cert.write_text(reply.json()["certificate"])
        issued_at = dt.datetime.now(dt.UTC)

        fields = ssh_fields(run("ssh-keygen", "-L", "-f", cert).stdout)
        assert fields["kind"] == "user"
        assert fields["principals"] == ["bob"]
        assert fields["key_id"] == service.ids["bob"]
        assert fields["ca"] == ssh_fingerprint(pki.ssh_ca)
        assert fields["serial"] == int(reply.json()["serial"], 16)
        assert fields["from"] <= issued_at
        assert fields["to"] - issued_at <= dt.timedelta(hours=12)  # the VO policy
        assert fields["to"] - issued_at > dt.timedelta(hours=11, minutes=59)

        trusted = ns.tmp / "xos-ssh-ca.pub"
        shutil.copyfile(pki.ssh_ca, trusted)
        krl = service.http.fetch("/ca/ssh-krl", ns.tmp / "xos.krl")
        clean = run("ssh-keygen", "-Q", "-f", krl, cert, check=False)
        assert clean.returncode == 0 and clean.stdout.rstrip().endswith(": ok"), clean
        ns.add_local_user("bob", service.uids["bob"], service.uids["bob"])

        with SshServer(ns, port=SSH_PORT, trusted_user_ca_keys=trusted,
                       extra_config=f"RevokedKeys {krl}") as sshd:
            login = ssh_login(ns, "bob", key, cert, port=SSH_PORT)
            assert login.returncode == 0, login.stderr + sshd.log
            assert login.stdout.strip() == "bob"
            sshd.wait_for_log(
                r"Accepted publickey for bob from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT"
                rf" \S+ ID {service.ids['bob']} \(serial {fields['serial']}\) CA ED25519"
                rf" {re.escape(fields['ca'])}")

            reply = service.http.post("/api/v1/users/bob/suspend", key=service.keys["sysop"])
            assert reply.status == 200, reply
            assert reply.json()["status"] == "suspended"
            service.http.fetch("/ca/ssh-krl", krl)  # same path: sshd reads it per login
            denied = service.http.post("/api/v1/certificates/ssh", key=service.keys["bob"],
                                       body={"public_key": public.read_text()})
            assert denied.status == 403, denied  # no fresh certificate either
            assert "suspended" in denied.json()["detail"]

            refused = ssh_login(ns, "bob", key, cert, port=SSH_PORT)
            assert refused.returncode == 255
            assert "Permission denied" in refused.stderr
            assert refused.stdout == ""
            sshd.wait_for_log(rf"Authentication key ED25519-CERT \S+ revoked by file"
                              rf" {re.escape(str(krl))}")

        listed = run("ssh-keygen", "-Q", "-f", krl, cert, check=False)
        assert listed.returncode != 0
        assert listed.stdout.rstrip().endswith(": REVOKED"), listed


# -- 5. node certificates -------------------------------------------------------------------------
def test_node_certificates(service: Service, pki: Pki) -> None:
    _, csr = make_csr(service, "node", "/CN=not-the-node/O=root")
    path = f"/api/v1/nodes/{NODE}/certificate"
    # A user's key cannot get a node certificate.
    denied = service.http.post(path, key=service.keys["alice"], body={"csr": csr.read_text()})
    assert denied.status == 403
    reply = service.http.post(path, key=service.keys["node"], body={"csr": csr.read_text()})
    assert reply.status == 201, reply
    cert = service.path("node.pem")
    cert.write_text(reply.json()["certificate"])

    text = run("openssl", "x509", "-in", cert, "-noout", "-text").stdout
    assert re.search(rf"^\s+Subject: CN = {re.escape(NODE)}$", text, re.MULTILINE)
    assert re.search(rf"^\s+DNS:{re.escape(NODE)}$", text, re.MULTILINE)
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    verify = run("openssl", "verify", "-purpose", "sslserver", "-verify_hostname", NODE,
                 "-CAfile", pki.root, "-untrusted", pki.chain, cert)
    assert verify.stdout.strip() == f"{cert}: OK"

    host_key = service.path("ssh_host_ed25519_key")
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host", "-f", host_key)
    reply = service.http.post(f"/api/v1/nodes/{NODE}/ssh-host-certificate",
                              key=service.keys["node"],
                              body={"public_key": Path(f"{host_key}.pub").read_text()})
    assert reply.status == 201, reply
    host_cert = service.path("ssh_host_ed25519_key-cert.pub")
    host_cert.write_text(reply.json()["certificate"])
    fields = ssh_fields(run("ssh-keygen", "-L", "-f", host_cert).stdout)
    assert fields["kind"] == "host"
    assert fields["principals"] == [NODE]
    assert fields["key_id"] == NODE
    assert fields["ca"] == ssh_fingerprint(pki.ssh_ca)


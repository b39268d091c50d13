"""``xos-node enroll``: join the VO service with a one-time token.

The node makes its TLS key here (it never leaves the node), sends a CSR and, if given,
its SSH host public key, and writes what the service answers into the state directory:

    api-key            the node's API key for syncing (0600)
    tls.key tls.pem    the node's key (0600) and certificate
    chain.pem          the VO CA chain: the TLS trust for talking to the service
    ssh_user_ca.pub    the SSH CA keys sshd trusts for users (TrustedUserCAKeys)
    jwks.json          the keys access tokens are signed with
    node.json          {"node", "issuer", "url"[, "ca_file"]}: who this node is, whose
                       tokens count, where the service is
    service-ca.pem     a copy of --ca-file: the service's TLS trust (when given)
    ssh_host_cert.pub  the SSH host certificate, when a host key was given
    revoked_keys       the SSH CA's key revocation list (sshd's RevokedKeys)

Files are written atomically (``ca.store``); a refused token changes nothing here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.store import write_private, write_public
from xos_net import opener

from .client import normalize_url, parse_json
from .errors import BadAnswer, Refused, ServiceError, Unreachable, UsageError

log = logging.getLogger(__name__)

TIMEOUT = 30.0
MAX_ANSWER = 1 << 20
SERVICE_CA = "service-ca.pem"
KRL = "revoked_keys"


@dataclass(frozen=True)
class Enrolled:
    node: str
    vos: list[str]
    state_dir: Path


def _post(url: str, path: str, body: dict[str, Any], ca_file: str | None) -> Any:
    # normalize_url admitted http(s) only: no file: or custom scheme reaches urllib
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    try:
        with opener(url, ca_file).open(request, timeout=TIMEOUT) as answer:
            return parse_json(answer.read(MAX_ANSWER + 1)[:MAX_ANSWER])
    except urllib.error.HTTPError as error:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(parse_json(error.read(65536)).get("detail", ""))[:300]
        raise Refused(f"the VO service refused the enrolment ({error.code}):"
                            f" {detail or error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"cannot reach the VO service at {url}: "
                            f"{getattr(error, 'reason', error)}") from None


def new_key_and_csr() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key made here (it never leaves the node) and its CSR in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "xos-node")])).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def write_node_certificate(state: Path, key: ec.EllipticCurvePrivateKey,
                           certificate: x509.Certificate, chain: str) -> None:
    """The node's key (0600), certificate and CA chain, each written atomically."""
    write_private(state / "tls.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_public(state / "tls.pem", certificate.public_bytes(serialization.Encoding.PEM))
    write_public(state / "chain.pem", chain.encode())


def enrol(url: str, token: str, state_dir: Path, *, ca_file: str | None = None,
          ssh_host_key: Path | None = None) -> Enrolled:
    url = normalize_url(url)
    if not token.startswith("xet_") or len(token) > 128:
        raise UsageError("that is not an enrolment token (xet_...)")
    key, csr = new_key_and_csr()
    body: dict[str, Any] = {"token": token, "csr": csr}
    if ssh_host_key is not None:
        body["ssh_host_key"] = ssh_host_key.read_text().strip()
    answer = _post(url, "/api/v1/enroll", body, ca_file)
    try:
        node, api_key = str(answer["node"]), str(answer["api_key"])
        certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
        x509.load_pem_x509_certificates(answer["chain"].encode())
        ssh_ca = [str(line) for line in answer["ssh_ca_keys"]]
        jwks, issuer = dict(answer["jwks"]), str(answer["issuer"])
    except (KeyError, TypeError, ValueError) as error:
        raise BadAnswer(f"the enrolment answer is not usable: {error}") from None
    if certificate.public_key() != key.public_key():
        raise BadAnswer("the certificate is not for the key made here")
    state = Path(state_dir)
    write_private(state / "api-key", (api_key + "\n").encode())
    write_node_certificate(state, key, certificate, answer["chain"])
    node_info: dict[str, str] = {"node": node, "issuer": issuer, "url": url}
    if ca_file is not None:  # the service's TLS trust, kept where PAM and the agent look
        write_public(state / SERVICE_CA, Path(ca_file).read_bytes())
        node_info["ca_file"] = str((state / SERVICE_CA).resolve())
    write_public(state / "ssh_user_ca.pub", "".join(f"{line}\n" for line in ssh_ca).encode())
    write_public(state / "jwks.json", json.dumps(jwks).encode())
    write_public(state / "node.json", json.dumps(node_info).encode())
    # sshd refuses every key while its RevokedKeys file is missing: fetch the KRL now
    from .client import NodeClient

    try:
        write_public(state / KRL, NodeClient(url, node, api_key, ca_file=ca_file).ssh_krl())
    except ServiceError as error:  # the token is spent: xos-node run fetches it later
        log.warning("no SSH key revocation list yet: %s", error.message)
    if answer.get("ssh_host_certificate"):
        write_public(state / "ssh_host_cert.pub",
                     (str(answer["ssh_host_certificate"]) + "\n").encode())
    return Enrolled(node, [str(v) for v in answer.get("vos", [])], state)

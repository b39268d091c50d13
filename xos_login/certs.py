"""Keys made on this machine, certificates fetched for them: the XOS X.509 certificate
(P-256 key, CSR) and the OpenSSH user certificate (ed25519 key).

The private keys never leave the machine: only the CSR and the public key are sent.
What comes back is checked to certify exactly our key before anything is written, and
the keys are written only together with their certificates, so a failed request leaves
the previous working pair in place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from .errors import BadAnswer, LoginError, Refused, TryLater, UsageError
from .http import Answer, Service
from .store import SSH_CERT, SSH_KEY, SSH_PUBLIC, XOS_CERT, XOS_CHAIN, XOS_KEY, Store

SSH_CERT_TYPE = "ssh-ed25519-cert-v01@openssh.com"


@dataclass(frozen=True)
class Saved:
    xos_key: Path
    xos_cert: Path
    xos_chain: Path
    xos_expires: dt.datetime
    ssh_key: Path
    ssh_public: Path
    ssh_cert: Path
    ssh_expires: dt.datetime


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def _api_failure(service: Service, answer: Answer, what: str) -> LoginError:
    """An API refusal (RFC 9457 problem) in the service's words."""
    text = f"no {what}: {answer.error_text()}"
    if answer.status in (401, 403):
        return Refused(text)
    if answer.status == 429:
        return TryLater(text)
    if answer.status in (400, 404, 409, 422):
        return UsageError(text)
    return BadAnswer(f"{text} (HTTP {answer.status} from {service.url})")


def xos_certificate(service: Service, token: str, username: str,
                    options: dict[str, Any]) -> tuple[ec.EllipticCurvePrivateKey,
                                                      x509.Certificate, str, str]:
    """A new P-256 key and the XOS certificate for it: (key, cert, cert PEM, chain PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    # The service sets the subject itself; the CN only helps a human reading the CSR.
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, username)]))
           .sign(key, hashes.SHA256()))
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode(), **options}
    answer = service.post_json("/api/v1/certificates/xos", body, token)
    if answer.status != 201:
        raise _api_failure(service, answer, "XOS certificate")
    record = service.expect_json(answer, "the XOS certificate")
    pem, chain = record.get("certificate"), record.get("chain", "")
    try:
        if not isinstance(pem, str) or not isinstance(chain, str):
            raise ValueError("missing")
        cert = x509.load_pem_x509_certificate(pem.encode())
        if chain:
            x509.load_pem_x509_certificates(chain.encode())
    except ValueError:
        raise BadAnswer(f"the VO service at {service.url} sent an unreadable XOS"
                        " certificate") from None
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise BadAnswer(f"the VO service at {service.url} certified another key than ours")
    return key, cert, pem, chain


def ssh_certificate(service: Service, token: str, username: str
                    ) -> tuple[ed25519.Ed25519PrivateKey, str, str, dt.datetime]:
    """A new ed25519 key and its SSH user certificate: (key, public line, cert line,
    valid before)."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {username}@xos\n"
    answer = service.post_json("/api/v1/certificates/ssh", {"public_key": line}, token)
    if answer.status != 201:
        raise _api_failure(service, answer, "SSH certificate")
    record = service.expect_json(answer, "the SSH certificate")
    cert_line = record.get("certificate")
    try:
        if not isinstance(cert_line, str) or not cert_line.startswith(SSH_CERT_TYPE + " "):
            raise ValueError("not an ed25519 user certificate")
        identity = serialization.load_ssh_public_identity(cert_line.strip().encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadAnswer(f"the VO service at {service.url} sent an unreadable SSH"
                        " certificate") from None
    if not isinstance(identity, serialization.SSHCertificate) or \
            _public_der(identity.public_key()) != _public_der(key.public_key()):
        raise BadAnswer(f"the VO service at {service.url} certified another key than ours")
    valid_before = dt.datetime.fromtimestamp(identity.valid_before, dt.UTC)
    return key, line, cert_line.strip() + "\n", valid_before


def fetch_and_save(service: Service, store: Store, token: str, username: str,
                   options: dict[str, Any]) -> Saved:
    """Both certificates, then all six files (keys 0600, the rest 0644)."""
    xos_key, cert, pem, chain = xos_certificate(service, token, username, options)
    ssh_key, ssh_line, ssh_cert, ssh_expires = ssh_certificate(service, token, username)
    no_password = serialization.NoEncryption()
    key_pem = xos_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8, no_password)
    ssh_private = ssh_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.OpenSSH, no_password)
    return Saved(
        xos_key=store.write_file(XOS_KEY, key_pem, 0o600),
        xos_cert=store.write_file(XOS_CERT, pem.encode(), 0o644),
        xos_chain=store.write_file(XOS_CHAIN, chain.encode(), 0o644),
        xos_expires=cert.not_valid_after_utc,
        ssh_key=store.write_file(SSH_KEY, ssh_private, 0o600),
        ssh_public=store.write_file(SSH_PUBLIC, ssh_line.encode(), 0o644),
        ssh_cert=store.write_file(SSH_CERT, ssh_cert.encode(), 0o644),
        ssh_expires=ssh_expires)

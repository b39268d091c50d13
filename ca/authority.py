"""The CA hierarchy: an offline root (P-384) over online issuing CAs (P-256).

The root signs only issuing CAs (path length 0 below them); an issuing CA signs user
and node certificates, its CRLs and its own OCSP answers. Nothing here reads or writes
files: see :mod:`ca.store` for keys at rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._internal import names
from ._internal.clock import CLOCK_SKEW, utc
from ._internal.signing import PrivateKey, authority_key_id, hash_for
from .errors import KeyStoreError, PolicyError
from .keys import check_public_key

ROOT_LIFETIME = timedelta(days=20 * 365)
ISSUING_LIFETIME = timedelta(days=5 * 365)


@dataclass(frozen=True)
class IssuingCA:
    """An issuing CA ready to sign: its key, certificate and chain (itself, then the root).

    Raises KeyStoreError when the parts do not fit together (key of another
    certificate, chain not starting with the certificate, not a CA certificate), and
    PolicyError for a CRL or OCSP URL that is not http(s).
    """

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    crl_url: str | None = None
    ocsp_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "chain", tuple(self.chain))
        if self.key.public_key() != self.certificate.public_key():
            raise KeyStoreError("the issuing CA key does not match its certificate")
        if not self.chain or self.chain[0] != self.certificate:
            raise KeyStoreError("the chain must start with the issuing CA certificate")
        if not _is_ca(self.certificate):
            raise KeyStoreError("the issuing certificate is not a CA certificate")
        for url in (self.crl_url, self.ocsp_url):
            if url is not None and not url.startswith(("http://", "https://")):
                raise PolicyError(f"URL {names.describe(url)} must be http:// or https://")


def create_root(
    common_name: str,
    *,
    lifetime: timedelta = ROOT_LIFETIME,
    key: PrivateKey | None = None,
    now: datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Create a self-signed root: CA:true (critical), keyCertSign + cRLSign, SKI.

    A new P-384 key is generated unless ``key`` is given; keep the root key offline.
    """
    key = ec.generate_private_key(ec.SECP384R1()) if key is None else key
    check_public_key(key.public_key())
    subject = _name(common_name)
    moment = utc(now)
    _positive(lifetime)
    cert = (
        _ca_builder(subject, subject, key, moment, moment + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(digital_signature=False), critical=True)
        .sign(key, hash_for(key))
    )
    return key, cert


def create_issuing(
    root_key: PrivateKey,
    root_cert: x509.Certificate,
    common_name: str,
    *,
    lifetime: timedelta = ISSUING_LIFETIME,
    key: PrivateKey | None = None,
    now: datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Create an issuing CA under the root: CA:true pathlen 0, AKI/SKI.

    Its key usage includes digitalSignature because it signs its own OCSP answers.
    Validity ends at the latest with the root's; PolicyError if the root has expired,
    KeyStoreError if ``root_key`` is not the root certificate's key.
    """
    if root_key.public_key() != root_cert.public_key() or not _is_ca(root_cert):
        raise KeyStoreError("root_key and root_cert are not a matching CA key and certificate")
    key = ec.generate_private_key(ec.SECP256R1()) if key is None else key
    check_public_key(key.public_key())
    moment = utc(now)
    _positive(lifetime)
    root_end = root_cert.not_valid_after_utc
    if root_end <= moment:
        raise PolicyError(f"the root CA expired at {root_end.isoformat()}")
    cert = (
        _ca_builder(_name(common_name), root_cert.subject, key, moment,
                    min(moment + lifetime, root_end))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(digital_signature=True), critical=True)
        .add_extension(authority_key_id(root_cert), critical=False)
        .sign(root_key, hash_for(root_key))
    )
    return key, cert


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, key: PrivateKey, start: datetime, end: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )


def _ca_key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, names.common_name(common_name, "CA common name"))])


def _positive(lifetime: timedelta) -> None:
    if lifetime <= timedelta(0):
        raise PolicyError(f"lifetime must be positive, got {lifetime}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False

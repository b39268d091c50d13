"""End-entity certificates for users and nodes, signed by an issuing CA.

Every field is chosen by the CA: the subject is built from the username or host name
the caller vouches for, never copied from the CSR, and the CSR may ask for no
extension at all (see :func:`ca.keys.load_csr`). Validity starts five minutes in the
past (clock skew) and never outlives the issuing CA.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ._internal import names
from ._internal.clock import CLOCK_SKEW, check_lifetime, utc
from ._internal.signing import authority_key_id, hash_for
from .attributes import (
    XOS_NODE_ATTRIBUTES_OID,
    XOS_VO_ATTRIBUTES_OID,
    NodeAttributes,
    VOAttributes,
)
from .authority import IssuingCA
from .errors import PolicyError
from .keys import load_csr

USER_MAX_LIFETIME = timedelta(hours=12)
NODE_MAX_LIFETIME = timedelta(days=90)
SERIAL_MAX_BITS = 159  # RFC 5280: at most 20 octets, positive
CN_MAX = 64

CSRInput = x509.CertificateSigningRequest | bytes | str


def issue_user_certificate(
    ca: IssuingCA,
    csr: CSRInput,
    *,
    username: str,
    attributes: VOAttributes,
    lifetime: timedelta,
    max_lifetime: timedelta = USER_MAX_LIFETIME,
    organization: str = "XOS",
    now: datetime | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a short-lived client certificate: O=organization, OU=primary VO, CN=username.

    The SAN is the global id as ``urn:uuid:``, the VO attributes ride in their own
    non-critical extension. The CSR (object, PEM or DER) is checked again here.
    Raises InvalidRequest subclasses for the CSR, PolicyError for names, lifetime
    (not positive or above ``max_lifetime``), serial, or an expired issuing CA.
    """
    if not isinstance(attributes, VOAttributes):
        raise PolicyError("attributes must be a VOAttributes")
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                           names.common_name(organization, "organization")),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, attributes.primary_vo),
        x509.NameAttribute(NameOID.COMMON_NAME, names.posix_name(username, "username")),
    ])
    request = _checked(csr)
    check_lifetime(lifetime, max_lifetime)
    san = x509.UniformResourceIdentifier(f"urn:uuid:{attributes.global_user_id}")
    return (
        _end_entity_builder(ca, request, subject, lifetime, now, serial)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(XOS_VO_ATTRIBUTES_OID, attributes.to_der()),
            critical=False,
        )
        .sign(ca.key, hash_for(ca.key))
    )


def issue_node_certificate(
    ca: IssuingCA,
    csr: CSRInput,
    *,
    hostname: str,
    vos: Sequence[str],
    lifetime: timedelta,
    max_lifetime: timedelta = NODE_MAX_LIFETIME,
    now: datetime | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a node certificate: CN and SAN DNS = ``hostname``, serverAuth + clientAuth.

    The host name is lower-cased and must be a DNS name of at most 64 characters (it is
    also the CN); the node's VOs ride in the XOS node attributes extension.
    Raises as :func:`issue_user_certificate`.
    """
    host = names.dns_name(hostname, "hostname")
    if len(host) > CN_MAX:
        raise PolicyError(f"hostname {names.describe(host)} is longer than {CN_MAX} characters")
    attributes = NodeAttributes(hostname=host, vos=tuple(vos))
    request = _checked(csr)
    check_lifetime(lifetime, max_lifetime)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return (
        _end_entity_builder(ca, request, subject, lifetime, now, serial)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(XOS_NODE_ATTRIBUTES_OID, attributes.to_der()),
            critical=False,
        )
        .sign(ca.key, hash_for(ca.key))
    )


def _checked(csr: CSRInput) -> x509.CertificateSigningRequest:
    """Run :func:`load_csr` on any CSR, even an already parsed one: no path skips the checks."""
    if isinstance(csr, x509.CertificateSigningRequest):
        return load_csr(csr.public_bytes(serialization.Encoding.DER))
    return load_csr(csr)


def _end_entity_builder(
    ca: IssuingCA,
    csr: x509.CertificateSigningRequest,
    subject: x509.Name,
    lifetime: timedelta,
    now: datetime | None,
    serial: int | None,
) -> x509.CertificateBuilder:
    """The fields user and node certificates share."""
    moment = utc(now)
    ca_end = ca.certificate.not_valid_after_utc
    if ca_end <= moment:
        raise PolicyError(f"the issuing CA expired at {ca_end.isoformat()}")
    public_key = csr.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(_serial(serial))
        .not_valid_before(moment - CLOCK_SKEW)
        .not_valid_after(min(moment + lifetime, ca_end))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(rsa_key=isinstance(public_key, rsa.RSAPublicKey)),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id(ca.certificate), critical=False)
    )
    if ca.crl_url is not None:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(ca.crl_url)],
            relative_name=None, reasons=None, crl_issuer=None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ca.ocsp_url is not None:
        access = x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                        x509.UniformResourceIdentifier(ca.ocsp_url))
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]),
                                        critical=False)
    return builder


def _key_usage(*, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )


def _serial(serial: int | None) -> int:
    if serial is None:
        return x509.random_serial_number()
    if isinstance(serial, bool) or not isinstance(serial, int) or not (
        0 < serial < 2**SERIAL_MAX_BITS
    ):
        raise PolicyError(f"serial must be a positive integer of at most {SERIAL_MAX_BITS} bits")
    return serial

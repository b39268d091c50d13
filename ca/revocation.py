"""Revocation: CRLs and OCSP answers, both signed by the issuing CA itself.

The CA keeps no revocation state: the caller passes the revoked serials (CRL) or a
lookup function (OCSP). :func:`answer_ocsp` faces the network, so it never raises on
what a client sends: every bad request becomes an unsuccessful OCSP response.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyasn1.codec.der import decoder as der_decoder

from ._internal.clock import utc
from ._internal.inputs import MAX_INPUT_BYTES
from ._internal.signing import authority_key_id, hash_for
from .authority import IssuingCA
from .errors import PolicyError

SERIAL_LIMIT = 2**159  # RFC 5280: positive, at most 20 octets
OCSP_VALIDITY = timedelta(hours=1)
NONCE_MAX = 32  # RFC 8954: longer (or empty) nonces are refused as malformed
_OCSP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}


@dataclass(frozen=True)
class Revoked:
    """One CRL entry: the serial, when it was revoked, and why (None: no reason code)."""

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True)
class CertStatus:
    """What the caller's records say about a serial the CA issued; no revoked_at: good."""

    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


Lookup = Callable[[IssuingCA, int], CertStatus | None]


def build_crl(
    ca: IssuingCA,
    revoked: Iterable[Revoked],
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """Build and sign a full CRL with CRL number and AKI extensions.

    Linear in the number of entries (see docs/ca.md for the 100,000-entry figure).
    PolicyError on a serial out of range or listed twice, a naive datetime, a CRL
    number out of range, or ``next_update`` not after ``this_update``.
    """
    start = utc(this_update, "this_update")
    end = utc(next_update, "next_update")
    if end <= start:
        raise PolicyError("next_update must be after this_update")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < SERIAL_LIMIT:
        raise PolicyError("the CRL number must be an integer in [0, 2**159)")
    # The builder's add_revoked_certificate copies its list on every call (quadratic for
    # 100,000 entries); its constructor takes the whole list at once.
    builder = x509.CertificateRevocationListBuilder(revoked_certificates=_entries(revoked))
    return (
        builder.issuer_name(ca.certificate.subject)
        .last_update(start)
        .next_update(end)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(authority_key_id(ca.certificate), critical=False)
        .sign(ca.key, hash_for(ca.key))
    )


def answer_ocsp(
    request_der: bytes,
    issuers: Sequence[IssuingCA],
    lookup: Lookup,
    *,
    now: datetime | None = None,
    validity: timedelta = OCSP_VALIDITY,
) -> bytes:
    """Answer one DER OCSP request with a DER OCSPResponse; never raises on its content.

    Oversized, unparsable or multi-certificate requests, a serial that is not positive
    and a nonce outside 1..32 bytes (RFC 8954) get MALFORMED_REQUEST; an issuer matching
    none of ``issuers`` (SHA-1 or SHA-256 CertID) gets UNAUTHORIZED. Otherwise
    ``lookup(issuer, serial)`` decides: None is UNKNOWN (never issued; not even called
    for a serial above 159 bits), a revocation time is REVOKED, else GOOD.
    The answer is signed by that issuing CA (responder id by key hash) and echoes the
    nonce. Errors raised by ``lookup`` itself propagate.
    """
    if validity <= timedelta(0):
        raise PolicyError("validity must be positive")
    moment = utc(now)
    parsed = _parse_request(request_der)
    if parsed is None:
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    request, nonce = parsed
    issuer = _matching_issuer(request, issuers)
    if issuer is None:
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    serial = request.serial_number
    status = lookup(issuer, serial) if serial < SERIAL_LIMIT else None
    if status is None:
        cert_status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    elif status.revoked_at is None:
        cert_status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
    else:
        cert_status = ocsp.OCSPCertStatus.REVOKED
        revoked_at, reason = utc(status.revoked_at, "revoked_at"), status.reason
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=serial,
        algorithm=request.hash_algorithm,
        cert_status=cert_status,
        this_update=moment,
        next_update=moment + validity,
        revocation_time=revoked_at,
        revocation_reason=reason,
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate).sign(
        issuer.key, hash_for(issuer.key))
    return response.public_bytes(serialization.Encoding.DER)


def _entries(revoked: Iterable[Revoked]) -> list[x509.RevokedCertificate]:
    entries = []
    seen: set[int] = set()
    for item in revoked:
        serial = item.serial
        if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < SERIAL_LIMIT:
            raise PolicyError(f"revoked serial {serial!r} is not a positive 159-bit integer")
        if serial in seen:
            raise PolicyError(f"serial {serial:#x} is listed twice")
        seen.add(serial)
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(utc(item.revoked_at, "revoked_at"))
        )
        # RFC 5280 5.3.1: the reason code "unspecified" should be left out.
        if item.reason is not None and item.reason is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(item.reason), critical=False)
        entries.append(entry.build())
    return entries


def _parse_request(data: object) -> tuple[ocsp.OCSPRequest, bytes | None] | None:
    """The request and its nonce, or None for anything that is not one sane request."""
    if not isinstance(data, bytes) or not data or len(data) > MAX_INPUT_BYTES:
        return None
    try:
        request = ocsp.load_der_ocsp_request(data)
        request.hash_algorithm  # noqa: B018  (unknown hash OIDs raise here)
        positive = request.serial_number > 0  # a negative serial cannot even be answered
        nonces = [ext.value.nonce for ext in request.extensions
                  if isinstance(ext.value, x509.OCSPNonce)]
    except (ValueError, NotImplementedError, UnsupportedAlgorithm, x509.DuplicateExtension):
        return None
    if not positive:
        return None
    if not nonces:
        return request, None
    return (request, nonces[0]) if 0 < len(nonces[0]) <= NONCE_MAX else None


def _matching_issuer(
    request: ocsp.OCSPRequest, issuers: Sequence[IssuingCA]
) -> IssuingCA | None:
    algorithm = request.hash_algorithm.name
    if algorithm not in _OCSP_HASHES:
        return None
    wanted = (request.issuer_name_hash, request.issuer_key_hash)
    for issuer in issuers:
        if _issuer_hashes(issuer.certificate, algorithm) == wanted:
            return issuer
    return None


@functools.lru_cache(maxsize=64)
def _issuer_hashes(certificate: x509.Certificate, algorithm: str) -> tuple[bytes, bytes]:
    """The CertID hashes naming ``certificate`` as issuer (RFC 6960 4.1.1).

    The name hash covers the DER subject; the key hash the *contents* of the
    subjectPublicKey BIT STRING, read out of the SPKI with pyasn1.
    """
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_bits = bytes(der_decoder.decode(spki)[0][1].asOctets())
    return _digest(algorithm, certificate.subject.public_bytes()), _digest(algorithm, key_bits)


def _digest(algorithm: str, data: bytes) -> bytes:
    digest = hashes.Hash(_OCSP_HASHES[algorithm]())
    digest.update(data)
    return digest.finalize()


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)

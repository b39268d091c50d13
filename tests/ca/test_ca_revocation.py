"""CRLs and OCSP: signed by the issuing CA, fast for big lists, unbreakable by input."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

import ca
from ca.keys import MAX_INPUT_BYTES

DAY = timedelta(days=1)
Status = ocsp.OCSPCertStatus


def ext(item, cls):
    return item.extensions.get_extension_for_class(cls)


# -- CRL --------------------------------------------------------------------------------
def test_crl_lists_the_revoked_serials(issuing, now):
    revoked = [ca.Revoked(11, now - DAY, x509.ReasonFlags.key_compromise),
               ca.Revoked(12, now), ca.Revoked(13, now, x509.ReasonFlags.unspecified)]
    crl = ca.build_crl(issuing, revoked, number=5, this_update=now, next_update=now + DAY)
    assert crl.is_signature_valid(issuing.key.public_key())
    assert crl.issuer == issuing.certificate.subject
    assert crl.last_update_utc == now and crl.next_update_utc == now + DAY
    assert ext(crl, x509.CRLNumber).value.crl_number == 5
    assert ext(crl, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(issuing.certificate, x509.SubjectKeyIdentifier).value.digest
    first = crl.get_revoked_certificate_by_serial_number(11)
    assert first.revocation_date_utc == now - DAY
    assert ext(first, x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    for serial in (12, 13):  # no reason, or "unspecified": no reason code entry (RFC 5280)
        assert len(crl.get_revoked_certificate_by_serial_number(serial).extensions) == 0
    assert crl.get_revoked_certificate_by_serial_number(14) is None


def test_empty_crl(issuing, now):
    crl = ca.build_crl(issuing, [], number=0, this_update=now, next_update=now + DAY)
    assert len(crl) == 0 and crl.is_signature_valid(issuing.key.public_key())


def test_crl_with_100000_entries_builds_fast(issuing, now):
    revoked = [ca.Revoked(x509.random_serial_number(), now,
                          x509.ReasonFlags.superseded if i % 3 == 0 else None)
               for i in range(100_000)]
    started = time.perf_counter()
    crl = ca.build_crl(issuing, revoked, number=1, this_update=now, next_update=now + DAY)
    elapsed = time.perf_counter() - started
    print(f"CRL of 100,000 entries built and signed in {elapsed:.2f} s")
    assert len(crl) == 100_000
    assert elapsed < 10  # measured ~0.8 s; the quadratic builder path took ~15 s


def test_a_serial_listed_twice_is_refused(issuing, now):
    with pytest.raises(ca.PolicyError, match="serial 0x7 is listed twice"):
        ca.build_crl(issuing, [ca.Revoked(7, now), ca.Revoked(7, now)], number=1,
                     this_update=now, next_update=now + DAY)


@pytest.mark.parametrize("serial", [0, -3, 2**159, True])
def test_bad_revoked_serials_are_refused(issuing, now, serial):
    with pytest.raises(ca.PolicyError, match="not a positive 159-bit integer"):
        ca.build_crl(issuing, [ca.Revoked(serial, now)], number=1, this_update=now,
                     next_update=now + DAY)


def test_crl_times_and_number_are_checked(issuing, now):
    with pytest.raises(ca.PolicyError, match="next_update must be after this_update"):
        ca.build_crl(issuing, [], number=1, this_update=now, next_update=now)
    with pytest.raises(ca.PolicyError, match="this_update must be a timezone-aware"):
        ca.build_crl(issuing, [], number=1, this_update=now.replace(tzinfo=None),
                     next_update=now + DAY)
    with pytest.raises(ca.PolicyError, match="revoked_at must be a timezone-aware"):
        ca.build_crl(issuing, [ca.Revoked(1, now.replace(tzinfo=None))], number=1,
                     this_update=now, next_update=now + DAY)
    with pytest.raises(ca.PolicyError, match="CRL number"):
        ca.build_crl(issuing, [], number=-1, this_update=now, next_update=now + DAY)


# -- OCSP -------------------------------------------------------------------------------
class Records:
    """A lookup that records its calls and answers from a dict of serial -> status."""

    def __init__(self, statuses):
        self.statuses = statuses
        self.calls = []

    def __call__(self, issuer, serial):
        self.calls.append((issuer, serial))
        return self.statuses.get(serial)


def cert_id_hashes(issuer_cert, algorithm):
    """RFC 6960 CertID hashes, computed here independently of ``ca`` (EC issuers only)."""
    point = issuer_cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return tuple(digest(algorithm, data) for data in (issuer_cert.subject.public_bytes(), point))


def digest(algorithm, data):
    hasher = hashes.Hash(algorithm)
    hasher.update(data)
    return hasher.finalize()


def request_for(issuer_cert, serial, *, algorithm=None, nonce=None, key_hash=None):
    """A DER request for ``serial`` under ``issuer_cert``, built from its CertID hashes."""
    algorithm = algorithm or hashes.SHA1()
    name_hash, real_key_hash = cert_id_hashes(issuer_cert, algorithm)
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash or real_key_hash, serial, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def answer(der, issuers, lookup, **kwargs):
    return ocsp.load_der_ocsp_response(ca.answer_ocsp(der, issuers, lookup, **kwargs))


@pytest.fixture
def user_cert(issuing, make_csr, attributes):
    return ca.issue_user_certificate(issuing, make_csr(), username="alice",
                                     attributes=attributes, lifetime=timedelta(hours=1))


def test_good_answer_is_signed_by_the_issuing_ca(issuing, other_ca, user_cert, now):
    lookup = Records({user_cert.serial_number: ca.CertStatus()})
    request = ocsp.OCSPRequestBuilder().add_certificate(
        user_cert, issuing.certificate, hashes.SHA1()).build()
    response = answer(request.public_bytes(Encoding.DER),
                      [other_ca, issuing], lookup, now=now, validity=timedelta(minutes=30))
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert lookup.calls == [(issuing, user_cert.serial_number)]
    assert response.certificate_status == Status.GOOD
    assert response.serial_number == user_cert.serial_number
    assert response.this_update_utc == now
    assert response.next_update_utc == now + timedelta(minutes=30)
    assert response.responder_key_hash == \
        ext(issuing.certificate, x509.SubjectKeyIdentifier).value.digest
    assert isinstance(response.signature_hash_algorithm, hashes.SHA256)
    issuing.key.public_key().verify(response.signature, response.tbs_response_bytes,
                                    ec.ECDSA(hashes.SHA256()))
    assert response.certificates == []
    assert len(response.extensions) == 0


def test_cert_id_sha1_key_hash_is_the_ski(issuing):
    assert cert_id_hashes(issuing.certificate, hashes.SHA1())[1] == \
        ext(issuing.certificate, x509.SubjectKeyIdentifier).value.digest


def test_sha256_cert_ids_are_answered(issuing, user_cert):
    der = request_for(issuing.certificate, user_cert.serial_number, algorithm=hashes.SHA256())
    response = answer(der, [issuing], Records({user_cert.serial_number: ca.CertStatus()}))
    assert response.certificate_status == Status.GOOD
    assert isinstance(response.hash_algorithm, hashes.SHA256)


def test_revoked_answer_carries_time_and_reason(issuing, now):
    revoked = ca.CertStatus(now - DAY, x509.ReasonFlags.key_compromise)
    response = answer(request_for(issuing.certificate, 99), [issuing], Records({99: revoked}),
                      now=now)
    assert response.certificate_status == Status.REVOKED
    assert response.revocation_time_utc == now - DAY
    assert response.revocation_reason == x509.ReasonFlags.key_compromise


def test_unknown_serial_is_unknown(issuing):
    lookup = Records({})
    response = answer(request_for(issuing.certificate, 12345), [issuing], lookup)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == Status.UNKNOWN
    assert lookup.calls == [(issuing, 12345)]


def test_a_serial_above_159_bits_is_unknown_without_a_lookup(issuing):
    lookup = Records({})
    response = answer(request_for(issuing.certificate, 2**200), [issuing], lookup)
    assert response.certificate_status == Status.UNKNOWN and lookup.calls == []


def test_unknown_issuer_is_unauthorized(issuing, other_ca, make_csr, attributes):
    foreign = ca.issue_user_certificate(other_ca, make_csr(), username="mallory",
                                        attributes=attributes, lifetime=timedelta(hours=1))
    lookup = Records({})
    request = ocsp.OCSPRequestBuilder().add_certificate(
        foreign, other_ca.certificate, hashes.SHA256()).build()
    response = answer(request.public_bytes(Encoding.DER),
                      [issuing], lookup)
    assert response.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert lookup.calls == []


def test_right_name_wrong_key_is_unauthorized(issuing):
    der = request_for(issuing.certificate, 5, key_hash=b"\x01" * 20)
    assert answer(der, [issuing], Records({})).response_status == \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_an_unsupported_cert_id_hash_is_unauthorized(issuing):
    der = request_for(issuing.certificate, 5, algorithm=hashes.SHA384())
    assert answer(der, [issuing], Records({})).response_status == \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_no_issuers_is_unauthorized(issuing):
    assert answer(request_for(issuing.certificate, 5), [], Records({})).response_status == \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_the_nonce_is_echoed(issuing):
    nonce = bytes(range(16))
    response = answer(request_for(issuing.certificate, 5, nonce=nonce), [issuing], Records({}))
    assert ext(response, x509.OCSPNonce).value.nonce == nonce


@pytest.mark.parametrize("nonce", [b"", b"n" * 33])
def test_nonce_out_of_rfc8954_range_is_malformed(issuing, nonce):
    response = answer(request_for(issuing.certificate, 5, nonce=nonce), [issuing], Records({}))
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("der", [
    pytest.param(b"", id="empty"),
    pytest.param(b"garbage", id="garbage"),
    pytest.param(b"\x30\x00", id="empty-sequence"),
    pytest.param(b"\x30" + b"\x84\xff\xff\xff\xff", id="huge-length"),
    pytest.param(b"\x30\x82\x40\x00" + b"\x00" * (MAX_INPUT_BYTES), id="oversized"),
    pytest.param("not bytes", id="text"),
    pytest.param(None, id="none"),
])
def test_garbage_requests_are_malformed(issuing, der):
    lookup = Records({})
    response = answer(der, [issuing], lookup)
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert lookup.calls == []


def test_a_negative_serial_is_malformed(issuing):
    der = request_for(issuing.certificate, 0x55)
    assert der.count(b"\x02\x01\x55") == 1
    negative = der.replace(b"\x02\x01\x55", b"\x02\x01\xd5")  # -43
    assert ocsp.load_der_ocsp_request(negative).serial_number == -43
    assert answer(negative, [issuing], Records({})).response_status == \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_every_truncation_and_bit_flip_gets_an_answer(issuing):
    """Hostile input never raises: each damaged request still yields an OCSPResponse."""
    der = request_for(issuing.certificate, 77, nonce=b"n" * 16)
    lookup = Records({77: ca.CertStatus()})
    damaged = [der[:cut] for cut in range(len(der))]
    damaged += [der[:i] + bytes([der[i] ^ bit]) + der[i + 1:]
                for i in range(len(der)) for bit in (0x01, 0x80)]
    for item in damaged:
        ocsp.load_der_ocsp_response(ca.answer_ocsp(item, [issuing], lookup))


def test_validity_must_be_positive(issuing):
    with pytest.raises(ca.PolicyError, match="validity must be positive"):
        ca.answer_ocsp(b"", [issuing], Records({}), validity=timedelta(0))

"""The hierarchy: root and issuing CA certificates carry exactly the CA profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

import ca


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_root_profile(root):
    key, cert = root
    assert isinstance(key.curve, ec.SECP384R1)
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=XOS Test Root CA"
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length is None
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def test_root_lifetime_and_skew(now):
    _, cert = ca.create_root("Root", lifetime=timedelta(days=10), now=now)
    assert cert.not_valid_before_utc == now - timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + timedelta(days=10)


def test_default_root_lifetime_is_twenty_years(root):
    _, cert = root
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=20 * 365)


def test_issuing_profile(root, issuing):
    root_key, root_cert = root
    cert = issuing.certificate
    assert isinstance(issuing.key.curve, ec.SECP256R1)
    cert.verify_directly_issued_by(root_cert)
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert usage.value.digital_signature  # it signs its own OCSP answers
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(root_cert, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(issuing.key.public_key())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=5 * 365)


def test_issuing_lifetime_is_capped_at_the_roots(now):
    root_key, root_cert = ca.create_root("Short Root", lifetime=timedelta(days=30), now=now)
    _, cert = ca.create_issuing(root_key, root_cert, "Issuing", now=now)
    assert cert.not_valid_after_utc == root_cert.not_valid_after_utc


def test_an_expired_root_cannot_sign(now):
    root_key, root_cert = ca.create_root("Old Root", lifetime=timedelta(days=1),
                                         now=now - timedelta(days=2))
    with pytest.raises(ca.PolicyError, match="root CA expired at"):
        ca.create_issuing(root_key, root_cert, "Issuing", now=now)


def test_a_root_key_must_match_its_certificate(root, other_ca):
    _, root_cert = root
    with pytest.raises(ca.KeyStoreError, match="not a matching CA key and certificate"):
        ca.create_issuing(other_ca.key, root_cert, "Issuing")


def test_given_keys_are_used_and_checked():
    key = ec.generate_private_key(ec.SECP256R1())
    used, cert = ca.create_root("Root P-256", key=key)
    assert used is key and isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ca.WeakKey, match="1024 bits"):
        ca.create_root("Weak Root", key=weak)


@pytest.mark.parametrize("make_key", [
    pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                 id="rsa"),
    pytest.param(ed25519.Ed25519PrivateKey.generate, id="ed25519"),
])
def test_rsa_and_ed25519_hierarchies_work(make_key, make_csr, attributes):
    root_key, root_cert = ca.create_root("Other Root", key=make_key())
    key, cert = ca.create_issuing(root_key, root_cert, "Other Issuing", key=make_key())
    cert.verify_directly_issued_by(root_cert)
    issuing = ca.IssuingCA(key, cert, (cert, root_cert))
    leaf = ca.issue_user_certificate(issuing, make_csr(), username="alice",
                                     attributes=attributes, lifetime=timedelta(hours=1))
    leaf.verify_directly_issued_by(cert)


def handmade_root(key, *extensions):
    """A self-signed certificate with only the given extensions (no SKI)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Handmade")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
               .not_valid_after(datetime(2090, 1, 1, tzinfo=UTC)))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(key, hashes.SHA256())


def test_aki_comes_from_the_root_key_when_the_root_has_no_ski():
    key = ec.generate_private_key(ec.SECP256R1())
    root_cert = handmade_root(key, x509.BasicConstraints(ca=True, path_length=None))
    _, cert = ca.create_issuing(key, root_cert, "Issuing")
    assert ext(cert, x509.AuthorityKeyIdentifier).value == \
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def test_a_root_without_basic_constraints_cannot_sign():
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ca.KeyStoreError, match="not a matching CA key and certificate"):
        ca.create_issuing(key, handmade_root(key), "Issuing")


@pytest.mark.parametrize("name", ["", "x" * 65, "line\nbreak"])
def test_bad_ca_names_are_refused(name):
    with pytest.raises(ca.PolicyError, match="CA common name"):
        ca.create_root(name, key=ca.new_private_key())


def test_lifetime_must_be_positive(root):
    with pytest.raises(ca.PolicyError, match="lifetime must be positive"):
        ca.create_root("Root", lifetime=timedelta(0), key=ca.new_private_key())
    with pytest.raises(ca.PolicyError, match="lifetime must be positive"):
        ca.create_issuing(*root, "Issuing", lifetime=timedelta(seconds=-1))


def test_naive_now_is_refused(now):
    with pytest.raises(ca.PolicyError, match="timezone-aware"):
        ca.create_root("Root", key=ca.new_private_key(), now=now.replace(tzinfo=None))


def test_issuing_ca_parts_must_fit(root, issuing, other_ca):
    _, root_cert = root
    with pytest.raises(ca.KeyStoreError, match="does not match its certificate"):
        ca.IssuingCA(other_ca.key, issuing.certificate, issuing.chain)
    with pytest.raises(ca.KeyStoreError, match="chain must start with"):
        ca.IssuingCA(issuing.key, issuing.certificate, (root_cert,))
    with pytest.raises(ca.KeyStoreError, match="chain must start with"):
        ca.IssuingCA(issuing.key, issuing.certificate, ())
    with pytest.raises(ca.PolicyError, match="must be http:// or https://"):
        ca.IssuingCA(issuing.key, issuing.certificate, issuing.chain, crl_url="ldap://x/crl")


def test_a_leaf_certificate_is_not_an_issuing_ca(issuing, make_csr, attributes, user_key):
    leaf = ca.issue_user_certificate(issuing, make_csr(), username="alice",
                                     attributes=attributes, lifetime=timedelta(hours=1))
    with pytest.raises(ca.KeyStoreError, match="not a CA certificate"):
        ca.IssuingCA(user_key, leaf, (leaf,))


def test_issuing_ca_chain_is_a_tuple(root, issuing):
    _, root_cert = root
    rebuilt = ca.IssuingCA(issuing.key, issuing.certificate, [issuing.certificate, root_cert])
    assert rebuilt.chain == (issuing.certificate, root_cert)

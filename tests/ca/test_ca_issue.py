"""User and node certificates: the CA decides every field, within the caps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

import ca

HOUR = timedelta(hours=1)


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def user_cert(issuing, csr, attributes, **kwargs):
    kwargs.setdefault("lifetime", HOUR)
    return ca.issue_user_certificate(issuing, csr, username="alice", attributes=attributes,
                                     **kwargs)


def test_user_certificate_profile(issuing, make_csr, attributes, user_key, now):
    cert = user_cert(issuing, make_csr(), attributes, now=now)
    cert.verify_directly_issued_by(issuing.certificate)
    assert cert.public_key() == user_key.public_key()
    assert cert.subject.rfc4514_string() == "CN=alice,OU=atlas,O=XOS"
    assert cert.issuer == issuing.certificate.subject
    assert cert.not_valid_before_utc == now - timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + HOUR
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["urn:uuid:6f1c8e52-3a7d-4b8e-9a51-0c2d4e6f8a10"]
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(cert, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(user_key.public_key())
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(issuing.certificate, x509.SubjectKeyIdentifier).value.digest
    points = ext(cert, x509.CRLDistributionPoints).value
    assert points[0].full_name == [x509.UniformResourceIdentifier(issuing.crl_url)]
    (access,) = ext(cert, x509.AuthorityInformationAccess).value
    assert access.access_method == AuthorityInformationAccessOID.OCSP
    assert access.access_location == x509.UniformResourceIdentifier(issuing.ocsp_url)
    vo_ext = cert.extensions.get_extension_for_oid(ca.XOS_VO_ATTRIBUTES_OID)
    assert not vo_ext.critical
    assert ca.VOAttributes.from_certificate(cert) == attributes
    assert ca.NodeAttributes.from_certificate(cert) is None


def test_csr_may_be_given_as_object_pem_text_or_der(issuing, make_csr, attributes):
    csr = make_csr()
    for form in (csr, csr.public_bytes(serialization.Encoding.PEM).decode(),
                 csr.public_bytes(serialization.Encoding.DER)):
        assert user_cert(issuing, form, attributes).public_key() == csr.public_key()


def test_a_parsed_csr_object_is_still_checked(issuing, make_csr, attributes):
    csr = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    with pytest.raises(ca.ForbiddenExtension, match="basicConstraints CA:true"):
        user_cert(issuing, csr, attributes)


def test_the_csr_subject_is_ignored(issuing, make_csr, attributes):
    csr = make_csr(subject=[
        (NameOID.COMMON_NAME, "root"), (NameOID.ORGANIZATION_NAME, "XOS Test Root CA"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "admins"), (NameOID.EMAIL_ADDRESS, "ca@xos.example"),
        (NameOID.USER_ID, "0"), (NameOID.DOMAIN_COMPONENT, "example"),
    ])
    cert = user_cert(issuing, csr, attributes, organization="XOS Grid")
    assert cert.subject == x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "XOS Grid"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "atlas"),
        x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
    ])


def test_rsa_keys_also_get_key_encipherment(issuing, make_csr, rsa_key, attributes):
    cert = user_cert(issuing, make_csr(rsa_key), attributes)
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment


def test_without_urls_there_is_no_crl_point_or_ocsp(other_ca, make_csr, attributes):
    cert = user_cert(other_ca, make_csr(), attributes)
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.CRLDistributionPoints)
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.AuthorityInformationAccess)


def test_serials_are_random_unless_given(issuing, make_csr, attributes):
    first = user_cert(issuing, make_csr(), attributes).serial_number
    second = user_cert(issuing, make_csr(), attributes).serial_number
    assert first != second and first.bit_length() > 64
    assert user_cert(issuing, make_csr(), attributes, serial=4242).serial_number == 4242


@pytest.mark.parametrize("serial", [0, -1, 2**159, True])
def test_bad_serials_are_refused(issuing, make_csr, attributes, serial):
    with pytest.raises(ca.PolicyError, match="serial must be a positive integer"):
        user_cert(issuing, make_csr(), attributes, serial=serial)


def test_lifetime_above_the_cap_is_refused(issuing, make_csr, attributes):
    with pytest.raises(ca.PolicyError, match=r"lifetime 12:00:01 is above the cap of 12:00:00"):
        user_cert(issuing, make_csr(), attributes, lifetime=timedelta(hours=12, seconds=1))
    with pytest.raises(ca.PolicyError, match="above the cap of 2:00:00"):
        user_cert(issuing, make_csr(), attributes, lifetime=3 * HOUR,
                  max_lifetime=2 * HOUR)
    user_cert(issuing, make_csr(), attributes, lifetime=timedelta(hours=12))


@pytest.mark.parametrize("lifetime", [timedelta(0), -HOUR])
def test_lifetime_must_be_positive(issuing, make_csr, attributes, lifetime):
    with pytest.raises(ca.PolicyError, match="lifetime must be positive"):
        user_cert(issuing, make_csr(), attributes, lifetime=lifetime)


def test_not_after_never_passes_the_issuing_ca(root, make_csr, attributes, now):
    root_key, root_cert = root
    key, cert = ca.create_issuing(root_key, root_cert, "Short", lifetime=2 * HOUR, now=now)
    short = ca.IssuingCA(key, cert, (cert, root_cert))
    leaf = user_cert(short, make_csr(), attributes, lifetime=timedelta(hours=12), now=now)
    assert leaf.not_valid_after_utc == cert.not_valid_after_utc == now + 2 * HOUR
    with pytest.raises(ca.PolicyError, match="issuing CA expired at"):
        user_cert(short, make_csr(), attributes, now=now + 3 * HOUR)


def test_naive_now_is_refused(issuing, make_csr, attributes, now):
    with pytest.raises(ca.PolicyError, match="timezone-aware"):
        user_cert(issuing, make_csr(), attributes, now=now.replace(tzinfo=None))


@pytest.mark.parametrize("username", ["Alice", "al:ice", "alice\n", "", "9lives", "a" * 33])
def test_usernames_must_be_posix_names(issuing, make_csr, attributes, username):
    with pytest.raises(ca.PolicyError, match="is not a POSIX name"):
        ca.issue_user_certificate(issuing, make_csr(), username=username,
                                  attributes=attributes, lifetime=HOUR)


def test_attributes_must_be_vo_attributes(issuing, make_csr):
    with pytest.raises(ca.PolicyError, match="must be a VOAttributes"):
        ca.issue_user_certificate(issuing, make_csr(), username="alice",
                                  attributes={"primary_vo": "atlas"},  # type: ignore[arg-type]
                                  lifetime=HOUR)


def test_bad_organization_is_refused(issuing, make_csr, attributes):
    with pytest.raises(ca.PolicyError, match="organization"):
        user_cert(issuing, make_csr(), attributes, organization="")


def test_node_certificate_profile(issuing, make_csr, now):
    cert = ca.issue_node_certificate(issuing, make_csr(), hostname="WN01.Grid.Example",
                                     vos=["atlas", "cms"], lifetime=timedelta(days=30), now=now)
    cert.verify_directly_issued_by(issuing.certificate)
    assert cert.subject.rfc4514_string() == "CN=wn01.grid.example"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == \
        ["wn01.grid.example"]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    assert ext(cert, x509.BasicConstraints).critical
    assert cert.not_valid_after_utc == now + timedelta(days=30)
    assert ca.NodeAttributes.from_certificate(cert) == ca.NodeAttributes(
        hostname="wn01.grid.example", vos=("atlas", "cms"))
    assert ca.VOAttributes.from_certificate(cert) is None


def test_node_rsa_key_gets_key_encipherment(issuing, make_csr, rsa_key):
    cert = ca.issue_node_certificate(issuing, make_csr(rsa_key), hostname="n1.example",
                                     vos=(), lifetime=HOUR, serial=7)
    assert ext(cert, x509.KeyUsage).value.key_encipherment and cert.serial_number == 7


@pytest.mark.parametrize("hostname", [
    "", "*.grid.example", "wn_01.example", "10.0.0.1", "wn01.example.", "-wn.example",
    "wn..example", "h\u00f6st.example", "a" * 64 + ".example", "wn01.example\n",
])
def test_node_hostnames_must_be_dns_names(issuing, make_csr, hostname):
    with pytest.raises(ca.PolicyError, match="hostname"):
        ca.issue_node_certificate(issuing, make_csr(), hostname=hostname, vos=(), lifetime=HOUR)


def test_node_hostname_longer_than_a_cn_is_refused(issuing, make_csr):
    hostname = ".".join(["a" * 30] * 3)
    with pytest.raises(ca.PolicyError, match="longer than 64 characters"):
        ca.issue_node_certificate(issuing, make_csr(), hostname=hostname, vos=(), lifetime=HOUR)


def test_node_lifetime_cap_is_90_days(issuing, make_csr):
    with pytest.raises(ca.PolicyError, match="above the cap of 90 days"):
        ca.issue_node_certificate(issuing, make_csr(), hostname="n1.example", vos=(),
                                  lifetime=timedelta(days=91))


def test_node_vos_are_validated(issuing, make_csr):
    with pytest.raises(ca.PolicyError, match="VO 'Atlas'"):
        ca.issue_node_certificate(issuing, make_csr(), hostname="n1.example", vos=["Atlas"],
                                  lifetime=HOUR)


def test_node_csr_is_checked(issuing, make_csr):
    san = x509.SubjectAlternativeName([x509.DNSName("other.example")])
    with pytest.raises(ca.ForbiddenExtension, match="subjectAltName"):
        ca.issue_node_certificate(issuing, make_csr(extensions=[(san, False)]),
                                  hostname="n1.example", vos=(), lifetime=HOUR)

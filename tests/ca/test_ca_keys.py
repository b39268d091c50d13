"""The CSR gate and key checks: everything a requester can send wrong is refused by name."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x25519
from cryptography.x509.oid import NameOID

import ca
from ca.keys import MAX_INPUT_BYTES

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


def test_valid_csr_loads_from_pem_text_pem_bytes_and_der(make_csr):
    csr = make_csr()
    assert ca.load_csr(csr.public_bytes(PEM).decode()) == csr
    assert ca.load_csr(csr.public_bytes(PEM)) == csr
    assert ca.load_csr(csr.public_bytes(DER)) == csr


def test_rsa_and_ed25519_csrs_are_accepted(make_csr, rsa_key, ed25519_key):
    assert isinstance(ca.load_csr(make_csr(rsa_key).public_bytes(DER)).public_key(),
                      rsa.RSAPublicKey)
    ca.load_csr(make_csr(ed25519_key).public_bytes(DER))


def test_tampered_signature_is_refused(make_csr):
    der = bytearray(make_csr().public_bytes(DER))
    der[-1] ^= 0x01  # the last byte lies inside the signature
    with pytest.raises(ca.BadSignature, match="self-signature does not verify"):
        ca.load_csr(bytes(der))


def test_rsa_1024_is_refused(make_csr):
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ca.WeakKey, match="RSA key of 1024 bits refused"):
        ca.load_csr(make_csr(key).public_bytes(DER))


def test_dsa_is_refused(make_csr):
    key = dsa.generate_private_key(key_size=1024)
    with pytest.raises(ca.WeakKey, match="DSAPublicKey refused"):
        ca.load_csr(make_csr(key).public_bytes(DER))


@pytest.mark.parametrize("curve", [ec.SECP256K1(), ec.BrainpoolP256R1(), ec.BrainpoolP384R1()])
def test_unsupported_curves_are_refused(make_csr, curve):
    key = ec.generate_private_key(curve)
    with pytest.raises(ca.WeakKey, match=f"EC curve {curve.name} refused"):
        ca.load_csr(make_csr(key).public_bytes(PEM))


def test_an_unknown_key_algorithm_is_refused(make_csr):
    der = make_csr().public_bytes(DER)
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")  # OID id-ecPublicKey
    assert der.count(ec_public_key) == 1
    with pytest.raises(ca.WeakKey, match="unsupported key in the CSR"):
        ca.load_csr(der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209")))


def test_a_malformed_extension_request_is_refused(make_csr):
    garbage_san = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"garbage")
    csr = make_csr(extensions=[(garbage_san, False)])
    with pytest.raises(ca.MalformedInput, match="cannot parse the CSR's extension request"):
        ca.load_csr(csr.public_bytes(DER))


def test_ed448_is_refused(make_csr):
    key = ed448.Ed448PrivateKey.generate()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, None)
    with pytest.raises(ca.WeakKey, match="Ed448PublicKey refused"):
        ca.load_csr(csr.public_bytes(DER))


@pytest.mark.parametrize("key", [
    pytest.param(ec.generate_private_key(ec.SECP384R1()).public_key(), id="p384"),
    pytest.param(ec.generate_private_key(ec.SECP521R1()).public_key(), id="p521"),
])
def test_check_public_key_accepts_the_nist_curves(key):
    ca.check_public_key(key)


def test_check_public_key_refuses_a_key_agreement_key():
    with pytest.raises(ca.WeakKey, match="X25519PublicKey refused"):
        ca.check_public_key(x25519.X25519PrivateKey.generate().public_key())


def test_check_public_key_refuses_oversized_rsa():
    huge = rsa.RSAPublicNumbers(65537, (1 << 16400) + 1).public_key()
    with pytest.raises(ca.WeakKey, match="RSA key of 16401 bits refused: use 2048 to 16384"):
        ca.check_public_key(huge)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "is empty"),
    ("  \n", "is empty"),
    (b"garbage", "cannot parse the CSR"),
    (b"\x30\x03\x02\x01\x01", "cannot parse the CSR"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
     "cannot parse the CSR"),
    ("caf\u00e9", "not ASCII"),
    (b"x" * (MAX_INPUT_BYTES + 1), "larger than 16384 bytes"),
])
def test_malformed_input_is_refused(data, message):
    with pytest.raises(ca.MalformedInput, match=message):
        ca.load_csr(data)


def test_non_bytes_input_is_refused():
    with pytest.raises(ca.MalformedInput, match="must be bytes or text"):
        ca.load_csr(bytearray(b"x"))  # type: ignore[arg-type]


def test_truncated_der_and_trailing_bytes_are_refused(make_csr):
    der = make_csr().public_bytes(DER)
    with pytest.raises(ca.MalformedInput, match="cannot parse the CSR"):
        ca.load_csr(der[:-10])
    with pytest.raises(ca.MalformedInput, match="cannot parse the CSR"):
        ca.load_csr(der + b"\x00")


def test_oversized_pem_is_refused_before_parsing(make_csr):
    pem = make_csr().public_bytes(PEM)
    with pytest.raises(ca.MalformedInput, match="larger than"):
        ca.load_csr(pem + b"\n" * MAX_INPUT_BYTES)


def test_two_pem_blocks_are_refused(make_csr):
    pem = make_csr().public_bytes(PEM)
    with pytest.raises(ca.MalformedInput, match="exactly one PEM block"):
        ca.load_csr(pem + pem)


def test_csr_asking_for_ca_true_is_refused(make_csr):
    csr = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    with pytest.raises(ca.ForbiddenExtension, match="basicConstraints CA:true"):
        ca.load_csr(csr.public_bytes(DER))


def test_csr_asking_for_a_subject_alt_name_is_refused(make_csr):
    san = x509.SubjectAlternativeName([x509.DNSName("www.bank.example")])
    csr = make_csr(extensions=[(san, False)])
    with pytest.raises(ca.ForbiddenExtension, match="subjectAltName"):
        ca.load_csr(csr.public_bytes(PEM))


def test_every_requested_extension_is_named(make_csr):
    csr = make_csr(extensions=[
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), False),
        (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"), False),
    ])
    with pytest.raises(ca.ForbiddenExtension,
                       match=r"\(basicConstraints CA:false, extendedKeyUsage, 1\.2\.3\.4\)"):
        ca.load_csr(csr.public_bytes(DER))


def test_a_subject_of_any_shape_is_accepted_here(make_csr):
    """The subject is never used, so an odd one is no reason to refuse."""
    csr = make_csr(subject=[(NameOID.COMMON_NAME, "root"), (NameOID.ORGANIZATION_NAME, "CA")])
    ca.load_csr(csr.public_bytes(DER))


def test_encrypted_key_round_trip(user_key):
    pem = ca.encrypt_private_key(user_key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    loaded = ca.decrypt_private_key(pem, b"correct horse")
    assert loaded.public_key() == user_key.public_key()


def test_wrong_passphrase_is_a_keystore_error(user_key):
    pem = ca.encrypt_private_key(user_key, b"correct horse")
    with pytest.raises(ca.KeyStoreError, match="wrong passphrase"):
        ca.decrypt_private_key(pem, b"battery staple")


def test_unencrypted_or_garbage_key_files_are_keystore_errors(user_key):
    plain = user_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    with pytest.raises(ca.KeyStoreError, match="not encrypted"):
        ca.decrypt_private_key(plain, b"pass")
    with pytest.raises(ca.KeyStoreError, match="not a PEM private key"):
        ca.decrypt_private_key(b"garbage", b"pass")


def test_a_key_the_ca_cannot_sign_with_is_refused():
    pem = ca.encrypt_private_key(ed448.Ed448PrivateKey.generate(), b"pw")
    with pytest.raises(ca.KeyStoreError, match="Ed448PrivateKey; the CA signs only with"):
        ca.decrypt_private_key(pem, b"pw")


def test_empty_passphrase_is_refused(user_key):
    with pytest.raises(ca.KeyStoreError, match="empty passphrase"):
        ca.encrypt_private_key(user_key, b"")


def test_new_private_key_is_p256():
    assert isinstance(ca.new_private_key().curve, ec.SECP256R1)

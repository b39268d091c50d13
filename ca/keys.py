"""Key checks, CSR loading and key encryption: the gate every requester's key passes.

:func:`load_csr` is the only way a CSR enters the CA. It refuses oversized or
unparsable input, a self-signature that does not verify (no proof of possession),
weak keys, and any requested extension: the CA alone decides what a certificate says.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtensionOID

from ._internal.inputs import MAX_INPUT_BYTES, as_bytes
from ._internal.signing import PrivateKey
from .errors import BadSignature, ForbiddenExtension, KeyStoreError, MalformedInput, WeakKey

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384
ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

__all__ = [
    "MAX_INPUT_BYTES",
    "check_public_key",
    "decrypt_private_key",
    "encrypt_private_key",
    "load_csr",
    "new_private_key",
]

_EXTENSION_NAMES = {
    ExtensionOID.BASIC_CONSTRAINTS: "basicConstraints",
    ExtensionOID.KEY_USAGE: "keyUsage",
    ExtensionOID.EXTENDED_KEY_USAGE: "extendedKeyUsage",
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: "subjectAltName",
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: "subjectKeyIdentifier",
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: "authorityKeyIdentifier",
    ExtensionOID.NAME_CONSTRAINTS: "nameConstraints",
    ExtensionOID.CERTIFICATE_POLICIES: "certificatePolicies",
    ExtensionOID.CRL_DISTRIBUTION_POINTS: "crlDistributionPoints",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "authorityInfoAccess",
    ExtensionOID.TLS_FEATURE: "tlsFeature",
}


def check_public_key(key: PublicKeyTypes) -> None:
    """Accept RSA 2048..16384 bits, EC on P-256/P-384/P-521, or Ed25519; else WeakKey.

    The message names the key so the requester knows what to generate instead.
    (cryptography itself refuses RSA keys with an even or tiny public exponent.)
    """
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise WeakKey(f"RSA key of {bits} bits refused: use {RSA_MIN_BITS} to {RSA_MAX_BITS}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ACCEPTED_CURVES):
            raise WeakKey(
                f"EC curve {key.curve.name} refused: use secp256r1 (P-256), secp384r1 or"
                " secp521r1"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise WeakKey(
            f"key type {type(key).__name__} refused: use Ed25519, EC P-256/P-384/P-521"
            " or RSA of at least 2048 bits"
        )


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and run every check the CA makes before signing.

    Raises MalformedInput (oversized, not one CSR, trailing data), BadSignature,
    WeakKey, or ForbiddenExtension (the message names each requested extension).
    The CSR's subject is *not* checked: issuers never copy it.
    """
    raw = as_bytes(data, "CSR")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            if raw.count(b"-----BEGIN") != 1:
                raise MalformedInput("expected exactly one PEM block in the CSR")
            csr = x509.load_pem_x509_csr(raw)
        else:
            csr = x509.load_der_x509_csr(raw)
    except ValueError as exc:
        raise MalformedInput(f"cannot parse the CSR: {exc}") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise WeakKey(f"unsupported key in the CSR: {exc}") from None
    if not _signature_valid(csr):
        raise BadSignature("the CSR's self-signature does not verify")
    check_public_key(public_key)
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise MalformedInput(f"cannot parse the CSR's extension request: {exc}") from None
    if extensions:
        names = ", ".join(_extension_name(ext) for ext in extensions)
        raise ForbiddenExtension(
            f"the CSR requests extensions ({names}); the CA sets every extension itself,"
            " send a CSR without any"
        )
    return csr


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """Generate a P-256 key, the curve of issuing CAs (and of keys made in tests)."""
    return ec.generate_private_key(ec.SECP256R1())


def encrypt_private_key(key: PrivateKeyTypes, passphrase: bytes) -> bytes:
    """Serialize ``key`` as encrypted PKCS#8 PEM; an empty passphrase is refused."""
    if not passphrase:
        raise KeyStoreError("refusing to store a private key under an empty passphrase")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def decrypt_private_key(pem: bytes, passphrase: bytes) -> PrivateKey:
    """Load an encrypted PEM CA key; KeyStoreError on a wrong passphrase or bad file.

    An unencrypted key is refused (keys at rest must be encrypted), and so is a key the
    CA cannot sign with (anything but EC, RSA or Ed25519).
    """
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        raise KeyStoreError("the private key is not encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyStoreError(
            "cannot decrypt the private key: wrong passphrase or not a PEM private key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise KeyStoreError(
            f"the private key is a {type(key).__name__}; the CA signs only with EC, RSA"
            " or Ed25519 keys"
        )
    return key


def _signature_valid(csr: x509.CertificateSigningRequest) -> bool:
    """Guarded: cryptography 50 answers False for every odd signature algorithm tried, but
    a raise here must still end as BadSignature, not as an unexpected 500."""
    try:
        return csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        return False


def _extension_name(ext: x509.Extension[x509.ExtensionType]) -> str:
    name = _EXTENSION_NAMES.get(ext.oid, ext.oid.dotted_string)
    value = ext.value
    if isinstance(value, x509.BasicConstraints):
        return f"{name} CA:{'true' if value.ca else 'false'}"
    return name

"""Which hash each CA key signs with, and the key identifier extensions."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

#: Keys a CA may sign with.
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

SigningHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512

_EC_HASHES: dict[str, type[SigningHash]] = {
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def hash_for(key: PrivateKey) -> SigningHash | None:
    """SHA-256, or the hash matching a larger EC curve; None for Ed25519 (built in)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _EC_HASHES.get(key.curve.name, hashes.SHA256)()
    return hashes.SHA256()


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI naming ``issuer``: its own SKI when it has one, else one derived from its key."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

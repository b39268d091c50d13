"""Signing keys and the JWKS: what the issuer signs with and what a verifier trusts.

Only one kind of key exists here: EC P-256 for ES256. The key id (``kid``) is the RFC 7638
JWK thumbprint of the public key, so it is derived from the key and never chosen: two keys
cannot share a kid, and a JWKS entry whose kid does not match its key is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from xos_tokens.errors import InvalidKey, InvalidToken

ALGORITHM = "ES256"
CURVE = "P-256"
COORDINATE_BYTES = 32  # P-256 field elements, big-endian, fixed length (RFC 7518 6.2.1.2)
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # used with fullmatch: no "/", ".", "\n"
# Members of a JWK that hold secrets (RFC 7518 6.2.2, 6.3.2, 6.4.1): never in a public JWKS.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: refuses '=', other alphabets and non-canonical
    trailing bits, so that one value has exactly one spelling. Raises ValueError."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def is_valid_kid(kid: object) -> TypeGuard[str]:
    """True for a string of 1 to 128 characters of ``[A-Za-z0-9_-]``: the only kids we
    look up, so that a kid can never be a path, a URL or a log-injection payload."""
    return isinstance(kid, str) and KID_PATTERN.fullmatch(kid) is not None


def _coordinates(public_key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    numbers = public_key.public_numbers()
    return (b64url_encode(numbers.x.to_bytes(COORDINATE_BYTES, "big")),
            b64url_encode(numbers.y.to_bytes(COORDINATE_BYTES, "big")))


def thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint of a P-256 key: SHA-256 over the required members (crv, kty,
    x, y) in lexicographic order, no whitespace; base64url without padding."""
    x, y = _coordinates(public_key)
    canonical = json.dumps({"crv": CURVE, "kty": "EC", "x": x, "y": y},
                           separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    x, y = _coordinates(public_key)
    return {"kty": "EC", "crv": CURVE, "x": x, "y": y, "kid": kid, "use": "sig",
            "alg": ALGORITHM}


def _require_p256(key: object) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        raise InvalidKey(f"not an EC key: {type(key).__name__} (ES256 needs EC P-256)")
    if not isinstance(key.curve, ec.SECP256R1):
        raise InvalidKey(f"EC key on curve {key.curve.name}, not P-256 (ES256 needs P-256)")


@dataclass(frozen=True)
class SigningKey:
    """An issuer's private ES256 key and its kid (the RFC 7638 thumbprint).

    Construct it with :meth:`generate`, :meth:`from_private_key` or :meth:`from_pem`; the
    constructor refuses a kid that is not the key's thumbprint and any key that is not
    P-256 (InvalidKey). The private key is left out of ``repr``; keep objects of this
    class out of logs and error reports all the same.
    """

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _require_p256(self.private_key)
        if self.kid != thumbprint(self.private_key.public_key()):
            raise InvalidKey("kid is not the RFC 7638 thumbprint of the key; "
                             "use SigningKey.from_private_key to derive it")

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random P-256 key from the operating system's random source."""
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_private_key(cls, private_key: ec.EllipticCurvePrivateKey) -> SigningKey:
        """Wrap an existing P-256 private key, deriving its kid. InvalidKey otherwise."""
        _require_p256(private_key)
        return cls(kid=thumbprint(private_key.public_key()), private_key=private_key)

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK (RFC 7517/7518) with kid, ``use: sig``, ``alg: ES256``:
        the entry published in the JWKS. Contains no private member."""
        return _public_jwk(self.private_key.public_key(), self.kid)

    def to_pem(self, passphrase: bytes) -> bytes:
        """The private key as encrypted PKCS#8 PEM, for a file written 0600 in a 0700
        directory.

        Security: the result is only as strong as ``passphrase``; never log it, and never
        write the key in clear (there is deliberately no way to). ValueError for an empty
        passphrase.
        """
        if not passphrase:
            raise ValueError("a non-empty passphrase is required to export a signing key")
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase))

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes) -> SigningKey:
        """Load a key written by :meth:`to_pem`. InvalidKey for a wrong passphrase, a PEM
        that is not encrypted (a key stored in clear is refused, not silently used), a
        corrupt file or a key that is not P-256; the message never contains key material.
        """
        if not passphrase:
            raise ValueError("a non-empty passphrase is required to load a signing key")
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except TypeError:
            raise InvalidKey("signing key PEM is not encrypted; refusing a key stored "
                             "in clear") from None
        except ValueError:
            raise InvalidKey("cannot load signing key: wrong passphrase, or not an "
                             "encrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidKey(f"signing key PEM holds a {type(key).__name__}, not an EC "
                             "P-256 key")
        return cls.from_private_key(key)


def _entry_name(index: int, entry: Mapping[str, Any]) -> str:
    kid = entry.get("kid")
    return f"JWKS entry {index}" + (f" (kid {kid!r})" if is_valid_kid(kid) else "")


def _coordinate(entry: Mapping[str, Any], member: str, name: str) -> int:
    value = entry.get(member)
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        data = b64url_decode(value)
    except ValueError as exc:
        raise InvalidKey(f"{name}: member {member!r} is {exc}") from None
    if len(data) != COORDINATE_BYTES:
        raise InvalidKey(f"{name}: member {member!r} is {len(data)} bytes, "
                         f"P-256 needs {COORDINATE_BYTES}")
    return int.from_bytes(data, "big")


def load_public_jwk(entry: object, index: int = 0) -> tuple[str, ec.EllipticCurvePublicKey]:
    """Check one JWKS entry and return (kid, public key).

    Refused (InvalidKey naming the entry), never skipped: an entry that is not a JSON
    object; any private member (``d``, ``k``, ...); a key type other than EC or a curve
    other than P-256 (RSA, symmetric ``oct``, OKP, P-384); ``alg`` other than ES256, ``use``
    other than ``sig``, ``key_ops`` without ``verify``; a point not on the curve (invalid-
    curve attacks); a kid that is not its key's RFC 7638 thumbprint.
    """
    if not isinstance(entry, Mapping):
        raise InvalidKey(f"JWKS entry {index} is not a JSON object")
    name = _entry_name(index, entry)
    private = [member for member in PRIVATE_MEMBERS if member in entry]
    if private:
        raise InvalidKey(f"{name}: private key member {private[0]!r} in a public JWKS "
                         "(the private key is exposed; replace it)")
    if entry.get("kty") != "EC":
        raise InvalidKey(f"{name}: key type {entry.get('kty')!r} is not EC "
                         "(only EC P-256 ES256 signing keys are accepted)")
    if entry.get("crv") != CURVE:
        raise InvalidKey(f"{name}: curve {entry.get('crv')!r} is not P-256")
    if entry.get("alg", ALGORITHM) != ALGORITHM:
        raise InvalidKey(f"{name}: alg {entry.get('alg')!r} is not ES256")
    if entry.get("use", "sig") != "sig":
        raise InvalidKey(f"{name}: use {entry.get('use')!r} is not 'sig'")
    key_ops = entry.get("key_ops", ["verify"])
    if not isinstance(key_ops, list) or "verify" not in key_ops:
        raise InvalidKey(f"{name}: key_ops does not allow 'verify'")
    kid = entry.get("kid")
    if not is_valid_kid(kid):
        raise InvalidKey(f"{name}: kid missing or not 1-128 characters of [A-Za-z0-9_-]")
    x, y = _coordinate(entry, "x", name), _coordinate(entry, "y", name)
    try:
        public_key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        raise InvalidKey(f"{name}: point is not on the P-256 curve") from None
    if thumbprint(public_key) != kid:
        raise InvalidKey(f"{name}: kid is not the RFC 7638 thumbprint of the key")
    return kid, public_key


def jwks(keys: Iterable[SigningKey | Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """The JWKS document ``{"keys": [...]}`` to publish: public members only.

    Accepts signing keys and already-public JWKs (for example old keys kept published
    until their last token expires); each JWK passes the same checks as
    :class:`KeySet` (InvalidKey otherwise), so a private ``d`` can never be published
    through this function. A kid given twice is refused.
    """
    entries: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if isinstance(key, SigningKey):
            kid, public_key = key.kid, key.private_key.public_key()
        else:
            kid, public_key = load_public_jwk(key, index)
        if kid in seen:
            raise InvalidKey(f"JWKS entry {index} (kid {kid!r}): kid given twice")
        seen.add(kid)
        entries.append(_public_jwk(public_key, kid))
    return {"keys": entries}


class KeySet:
    """What a verifier trusts: ES256 public keys by kid, from a JWKS document.

    Loading is all-or-nothing: one bad entry (see :func:`load_public_jwk`), a kid given
    twice, or a document without keys raises InvalidKey naming the problem, because a
    verifier that quietly drops entries would refuse valid tokens later with a
    misleading "unknown key id".
    """

    __slots__ = ("_keys",)

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping):
            raise InvalidKey("JWKS document is not a JSON object")
        entries = document.get("keys")
        if not isinstance(entries, list) or not entries:
            raise InvalidKey("JWKS document has no non-empty 'keys' list")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for index, entry in enumerate(entries):
            kid, public_key = load_public_jwk(entry, index)
            if kid in keys:
                raise InvalidKey(f"JWKS entry {index} (kid {kid!r}): kid given twice")
            keys[kid] = public_key
        self._keys = keys

    @classmethod
    def from_keys(cls, keys: Iterable[SigningKey]) -> KeySet:
        """The public halves of ``keys``, as a verifier would load them from our JWKS."""
        return cls(jwks(keys))

    def get(self, kid: str) -> ec.EllipticCurvePublicKey:
        """The public key for ``kid``; InvalidToken("unknown key id") otherwise."""
        try:
            return self._keys[kid]
        except (KeyError, TypeError):
            shown = f" {kid!r}" if is_valid_kid(kid) else ""
            raise InvalidToken(f"unknown key id{shown}") from None

    @property
    def kids(self) -> frozenset[str]:
        """The key ids this set trusts."""
        return frozenset(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self._keys)!r})"

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The document again (normalised), for handing on to another verifier."""
        return {"keys": [_public_jwk(key, kid) for kid, key in self._keys.items()]}

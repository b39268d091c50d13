"""Shared helpers of the xos_tokens tests: keys, a fixed clock, and a token forger.

Not a conftest (tests/ has its own, and this folder must not shadow it); test files import
what they need. The forger builds compact JWS by hand so that tests can produce every
malformed or hostile token an attacker could, including ones PyJWT refuses to encode
(a kid that is not a string, HS256 keyed with a PEM public key, a header that is a list).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from xos_tokens import KeySet, SigningKey, sign_access_token

ISSUER = "https://vo.example.org"
AUDIENCE = "xos-node"
SUBJECT = "urn:uuid:5c4b6f0e-59a3-4a55-9f3c-0f3f9d1f6b2a"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the clock of most tests
LIFETIME = timedelta(minutes=20)
GROUPS = [f"/atlas/site{i:02d}/analysis" for i in range(10)]  # ten VO paths, as in production
PROFILE = {"client_id": "xos-login", "scope": "openid compute.read compute.create",
           "groups": GROUPS, "preferred_username": "alice"}

# RFC 7515 Appendix A.3: a published P-256 key, so coordinates can be checked by value.
RFC7515_A3 = {"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
              "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}

Signer = Callable[[bytes], bytes]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def rfc7515_key() -> SigningKey:
    d = b64url_int(RFC7515_A3["d"])
    return SigningKey.from_private_key(ec.derive_private_key(d, ec.SECP256R1()))


def es256_signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    """Raw r||s ES256 signature (RFC 7518 3.4), as a JWS carries it."""

    def sign(signing_input: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def hs256_signer(secret: bytes) -> Signer:
    return lambda signing_input: hmac.new(secret, signing_input, hashlib.sha256).digest()


def forge(header: Any, payload: Any, sign: Signer | None = None) -> str:
    """A compact JWS of any header and payload; no signature when ``sign`` is None."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    signature = b64url(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


def claims_at(now: datetime = T0, lifetime: timedelta = LIFETIME, **changes: Any
              ) -> dict[str, Any]:
    """A complete payload as sign_access_token makes it; ``changes`` set or (None) drop."""
    iat = int(now.timestamp())
    payload: dict[str, Any] = {"iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "iat": iat,
                               "nbf": iat, "exp": iat + int(lifetime.total_seconds()),
                               "jti": "test-jti-1", **PROFILE}
    for name, value in changes.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


@dataclass(frozen=True)
class World:
    """An issuer key the verifier trusts, another key it trusts, one it does not."""

    key: SigningKey
    second: SigningKey
    stranger: SigningKey
    keys: KeySet

    def header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt", "kid": self.key.kid}
        for name, value in changes.items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return header

    def forge(self, header: Any = None, payload: Any = None,
              sign: Signer | None = None) -> str:
        """Signed by our key unless ``sign`` says otherwise."""
        return forge(self.header() if header is None else header,
                     claims_at() if payload is None else payload,
                     sign or es256_signer(self.key.private_key))

    def token(self, now: datetime = T0, **kwargs: Any) -> str:
        args: dict[str, Any] = {"issuer": ISSUER, "subject": SUBJECT, "audience": AUDIENCE,
                                "lifetime": LIFETIME, "claims": PROFILE, "now": now, **kwargs}
        return sign_access_token(self.key, **args)


def make_world() -> World:
    key, second, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    return World(key=key, second=second, stranger=stranger,
                 keys=KeySet.from_keys([key, second]))

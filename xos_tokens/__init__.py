"""Access tokens: signing keys, JWKS, and the one verification function (no Flask).

Compute nodes import this package too, so it depends only on the standard library, PyJWT
and cryptography. Everything public is exported here; the modules are implementation.

    key = SigningKey.generate()
    token = sign_access_token(key, issuer=ISS, subject=uid, audience="xos-node",
                              lifetime=timedelta(minutes=20), claims={"groups": [...]})
    claims = verify_access_token(token, keys=KeySet(jwks_document), issuer=ISS,
                                 audience="xos-node")

Errors: TokenError is the root; InvalidToken for a presented token that is refused,
InvalidKey for a key or JWKS that cannot be used.
"""

from xos_tokens.access import (
    DEFAULT_LEEWAY,
    MAX_LEEWAY,
    MAX_TOKEN_BYTES,
    REGISTERED_CLAIMS,
    TOKEN_TYPE,
    Claims,
    sign_access_token,
    verify_access_token,
)
from xos_tokens.errors import InvalidKey, InvalidToken, TokenError
from xos_tokens.keys import ALGORITHM, KeySet, SigningKey, jwks, thumbprint

__all__ = [
    "ALGORITHM",
    "DEFAULT_LEEWAY",
    "MAX_LEEWAY",
    "MAX_TOKEN_BYTES",
    "REGISTERED_CLAIMS",
    "TOKEN_TYPE",
    "Claims",
    "InvalidKey",
    "InvalidToken",
    "KeySet",
    "SigningKey",
    "TokenError",
    "jwks",
    "sign_access_token",
    "thumbprint",
    "verify_access_token",
]

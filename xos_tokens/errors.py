"""The error tree of ``xos_tokens``: callers catch :class:`TokenError`, or one subclass.

Subclasses carry only a docstring; the message says what went wrong. Messages never
contain a key, a whole token or a traceback of the library underneath, so they may be
logged and shown to the client that presented the token.
"""

from __future__ import annotations


class TokenError(Exception):
    """Root of every error raised by ``xos_tokens``."""


class InvalidToken(TokenError):
    """A presented token is refused: malformed, too large, algorithm not allowed, unknown
    key, bad signature, expired, not yet valid, wrong issuer or audience, missing claim."""


class InvalidKey(TokenError):
    """A signing key or a JWKS document cannot be used: wrong passphrase, corrupt PEM, a key
    that is not EC P-256 for ES256, private members in a public document."""

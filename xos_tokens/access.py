"""RFC 9068 access tokens: the one signing function and the one verification function.

Every token the project issues comes from :func:`sign_access_token` and every token it
accepts goes through :func:`verify_access_token`; nothing else decodes a token. The
algorithm is pinned to ES256 in both, and the time checks run against an explicit
``now``, so tests can move the clock without patching anything.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.types import Options

from xos_tokens.errors import InvalidToken
from xos_tokens.keys import ALGORITHM, KeySet, SigningKey, is_valid_kid

MAX_TOKEN_BYTES = 8192
DEFAULT_LEEWAY = 60  # seconds of clock skew accepted by default
MAX_LEEWAY = 300  # the most any caller gets, whatever it asks for
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT "typ" header value, not a secret
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 2.1, compared lowered
REGISTERED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti")
# Header parameters that change how the token is processed (RFC 7515 4.1.11, RFC 7797);
# our tokens never carry them, so their presence alone is a refusal.
REFUSED_HEADERS = ("crit", "b64")
# Three base64url parts; the signature may be empty here so that an unsigned token is
# refused for its algorithm (or as "not signed") rather than as a shapeless string.
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_LATEST_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: datetime's range, no overflow
_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})
_DECODE_OPTIONS: Options = {  # PyJWT copies options on each call; never mutated
    "require": list(REGISTERED_CLAIMS), "verify_signature": True, "verify_aud": True,
    "verify_iss": True, "verify_sub": True, "verify_jti": True, "strict_aud": False,
    "enforce_minimum_key_length": True,
    # checked in _check_times against the caller's clock, which PyJWT cannot take
    "verify_exp": False, "verify_nbf": False, "verify_iat": False}


@dataclass(frozen=True)
class Claims:
    """The verified content of an access token.

    ``raw`` is the whole verified payload (for claims not mapped here); do not modify it.
    ``scope`` is the space-separated ``scope`` claim as a set, ``groups`` the VO paths of
    the WLCG-style ``groups`` claim, both empty when the claim is absent.
    """

    raw: dict[str, Any]
    subject: str
    issuer: str
    audience: list[str]
    expires_at: datetime
    issued_at: datetime
    jti: str
    scope: set[str]
    groups: list[str]
    client_id: str | None
    preferred_username: str | None


def _show(value: object) -> str:
    """A short repr of an attacker-controlled value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _profile_problem(claims: Mapping[str, Any]) -> str | None:
    """What is wrong with the profile claims we read (scope, groups, client_id,
    preferred_username), or None; shared by signing and verifying so that we never issue
    a token that our own verifiers refuse."""
    scope = claims.get("scope")
    if scope is not None and not isinstance(scope, str):
        return "claim 'scope' must be a space-separated string"
    groups = claims.get("groups")
    if groups is not None and (not isinstance(groups, list)
                               or not all(isinstance(g, str) for g in groups)):
        return "claim 'groups' must be a list of strings"
    for name in ("client_id", "preferred_username"):
        value = claims.get(name)
        if value is not None and not isinstance(value, str):
            return f"claim {name!r} must be a string"
    return None


def _aware(moment: datetime | None, name: str) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return moment


def sign_access_token(key: SigningKey, *, issuer: str, subject: str,
                      audience: str | list[str], lifetime: timedelta,
                      claims: Mapping[str, Any] = _NO_CLAIMS, now: datetime | None = None,
                      jti: str | None = None) -> str:
    """Sign an RFC 9068 access token with ES256: header ``typ: at+jwt``, ``alg: ES256`` and
    the key's ``kid``; claims ``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``nbf``, ``jti``
    (128 random bits unless given), then ``claims`` (``client_id``, ``scope``, ``groups``,
    ``preferred_username`` ...).

    ValueError, and no token, when ``claims`` holds a registered claim (so they cannot be
    overridden), when a profile claim has the wrong type, when ``now`` is naive, for an
    empty issuer, subject, audience or jti, for a lifetime under one second, or when the
    token would exceed MAX_TOKEN_BYTES (verifiers would refuse it: too many groups).
    TypeError when a claim is not JSON-serialisable.
    """
    overridden = sorted(set(claims) & set(REGISTERED_CLAIMS))
    if overridden:
        raise ValueError(f"registered claims cannot be set through claims: {overridden}")
    problem = _profile_problem(claims)
    if problem:
        raise ValueError(problem)
    for name, value in (("issuer", issuer), ("subject", subject)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    audiences = [audience] if isinstance(audience, str) else audience
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise ValueError("audience must be a non-empty string or list of non-empty strings")
    seconds = int(lifetime.total_seconds())
    if seconds < 1:
        raise ValueError("lifetime must be at least one second")
    if jti is None:
        jti = secrets.token_urlsafe(16)
    elif not isinstance(jti, str) or not jti:
        raise ValueError("jti must be a non-empty string")
    issued = int(_aware(now, "now").timestamp())
    payload = {**claims, "iss": issuer, "sub": subject, "aud": audience, "iat": issued,
               "nbf": issued, "exp": issued + seconds, "jti": jti}
    token = jwt.encode(payload, key.private_key, algorithm=ALGORITHM,
                       headers={"typ": TOKEN_TYPE, "kid": key.kid})
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"token of {len(token)} bytes exceeds MAX_TOKEN_BYTES "
                         f"({MAX_TOKEN_BYTES}); verifiers would refuse it")
    return token


def _compact_bytes(token: object) -> bytes:
    """The token as ASCII bytes of compact-JWS shape; size is checked before anything
    else looks at it, so a huge token costs no parsing."""
    if isinstance(token, str):
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token too large: more than {MAX_TOKEN_BYTES} bytes")
        if not token.isascii():
            raise InvalidToken("malformed token: contains non-ASCII characters")
        data = token.encode("ascii")
    elif isinstance(token, bytes):
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token too large: more than {MAX_TOKEN_BYTES} bytes")
        data = token
    else:
        raise InvalidToken(f"malformed token: a {type(token).__name__}, not a string")
    if _COMPACT_JWS.fullmatch(data) is None:
        raise InvalidToken("malformed token: not three base64url parts separated by dots")
    return data


@functools.lru_cache(maxsize=256)
def _checked_kid(header_segment: bytes) -> str:
    """Read alg, typ and kid from the unverified header segment and return the kid.

    The header is attacker-controlled until the signature is checked: it only selects a
    key among those we already trust, and its ``alg`` only decides whether to refuse.
    PyJWT is handed the header segment alone (``header..``): it decodes every segment it
    is given, and the payload and signature are decoded once more by ``jwt.decode``.
    The result is a pure function of the segment, and an issuer's header is the same for
    every token of a key, so it is cached (bounded; refusals raise and are never cached).
    """
    try:
        header = jwt.get_unverified_header(header_segment + b"..")
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"malformed token header: {exc}") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise InvalidToken(f"algorithm not allowed: {_show(alg)}; only {ALGORITHM} is accepted")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise InvalidToken(f"wrong token type: typ {_show(typ)}, expected {TOKEN_TYPE!r}")
    for name in REFUSED_HEADERS:
        if name in header:
            raise InvalidToken(f"unsupported header parameter {name!r}")
    if "kid" not in header:
        raise InvalidToken("missing key id (kid) in the token header")
    kid = header["kid"]
    if not is_valid_kid(kid):
        raise InvalidToken("malformed key id (kid): must be a string of 1-128 characters "
                           "of [A-Za-z0-9_-]")
    return kid


def _decode(data: bytes, public_key: ec.EllipticCurvePublicKey, issuer: str,
            audience: str) -> dict[str, Any]:
    """Signature, required claims, issuer and audience, by PyJWT; times are ours."""
    try:
        return jwt.decode(data, public_key, algorithms=[ALGORITHM], audience=audience,
                          issuer=issuer, options=_DECODE_OPTIONS)
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"missing required claim {exc.claim!r}") from None
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken(f"wrong audience: {exc}") from None
    except jwt.InvalidIssuerError as exc:
        raise InvalidToken(f"wrong issuer: {exc}") from None
    except jwt.DecodeError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    except jwt.PyJWTError as exc:  # sub or jti of the wrong type, and what PyJWT adds later
        raise InvalidToken(f"invalid token: {exc}") from None


def _numeric_date(payload: Mapping[str, Any], name: str) -> float:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value <= _LATEST_NUMERIC_DATE):  # NaN fails the comparison too
        raise InvalidToken(f"malformed claim {name!r}: not a NumericDate")
    return float(value)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _check_times(payload: Mapping[str, Any], now: float, leeway: int,
                 max_age: timedelta | None) -> tuple[float, float]:
    """exp, nbf, iat (and max_age) against ``now`` with at most ``leeway`` seconds of skew;
    returns (exp, iat)."""
    exp, nbf, iat = (_numeric_date(payload, n) for n in ("exp", "nbf", "iat"))
    if exp <= now - leeway:
        raise InvalidToken(f"token expired at {_stamp(exp)} (leeway {leeway} s)")
    if nbf > now + leeway:
        raise InvalidToken(f"token not yet valid: nbf {_stamp(nbf)} (leeway {leeway} s)")
    if iat > now + leeway:
        raise InvalidToken(f"token issued in the future: iat {_stamp(iat)} "
                           f"(leeway {leeway} s)")
    if max_age is not None and now - iat > max_age.total_seconds() + leeway:
        raise InvalidToken(f"token too old: issued {_stamp(iat)}, max_age {max_age}")
    return exp, iat


def _claims(payload: dict[str, Any], exp: float, iat: float) -> Claims:
    for name in ("sub", "jti"):
        if not payload[name]:
            raise InvalidToken(f"claim {name!r} is empty")
    problem = _profile_problem(payload)
    if problem:
        raise InvalidToken(f"malformed token: {problem}")
    aud = payload["aud"]
    return Claims(
        raw=payload, subject=payload["sub"], issuer=payload["iss"],
        audience=[aud] if isinstance(aud, str) else list(aud),
        expires_at=datetime.fromtimestamp(exp, UTC), issued_at=datetime.fromtimestamp(iat, UTC),
        jti=payload["jti"], scope=set(payload.get("scope", "").split()),
        groups=list(payload.get("groups", [])), client_id=payload.get("client_id"),
        preferred_username=payload.get("preferred_username"))


def verify_access_token(token: str | bytes, *, keys: KeySet, issuer: str, audience: str,
                        leeway: int = DEFAULT_LEEWAY, now: datetime | None = None,
                        max_age: timedelta | None = None) -> Claims:
    """Verify an access token presented by anyone and return its claims.

    This is THE verification function: every token accepted anywhere must pass here. In
    order: size (MAX_TOKEN_BYTES, before any parsing), compact-JWS shape, header ``alg``
    exactly ES256 (``none``, HS*, RS*, PS*, EdDSA refused; the algorithm is never taken from
    the token), ``typ`` at+jwt, ``kid`` of [A-Za-z0-9_-]{1,128} known in ``keys``, the
    signature, the required claims (exp, iat, nbf, iss, aud, sub, jti), ``iss`` equal to
    ``issuer``, ``audience`` in ``aud``, then exp/nbf/iat (and ``max_age`` since iat)
    against ``now`` (default: the system clock) with ``leeway`` seconds of skew, clamped
    to 0..MAX_LEEWAY.

    Security: never add an algorithm, a key taken from the token (``jwk``, ``jku``, ``x5u``
    headers are ignored), or a switch that skips a check; a caller that needs less is
    wrong. Every refusal is InvalidToken with a short message that is safe to log and to
    return to the client; anything else raised is a bug. ValueError for a naive ``now`` or
    a negative ``max_age`` (caller errors, not token errors).
    """
    if max_age is not None and max_age < timedelta(0):
        raise ValueError("max_age must not be negative")
    data = _compact_bytes(token)
    public_key = keys.get(_checked_kid(data[:data.index(b".")]))
    if data.endswith(b"."):
        raise InvalidToken("token is not signed: signature missing")
    bounded = min(max(int(leeway), 0), MAX_LEEWAY)
    moment = _aware(now, "now").timestamp()
    payload = _decode(data, public_key, issuer, audience)
    exp, iat = _check_times(payload, moment, bounded, max_age)
    return _claims(payload, exp, iat)

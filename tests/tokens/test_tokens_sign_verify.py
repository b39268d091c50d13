"""Signing and verifying good tokens: the round trip, the claims, the clock and its skew."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from tokens_fixtures import (
    AUDIENCE,
    GROUPS,
    ISSUER,
    LIFETIME,
    SUBJECT,
    T0,
    b64url,
    claims_at,
    make_world,
)

from xos_tokens import (
    DEFAULT_LEEWAY,
    MAX_LEEWAY,
    MAX_TOKEN_BYTES,
    Claims,
    InvalidToken,
    KeySet,
    SigningKey,
    sign_access_token,
    verify_access_token,
)

WORLD = make_world()  # immutable keys, shared by every test here


def verify(token: str | bytes, **kwargs: Any) -> Claims:
    args: dict[str, Any] = {"keys": WORLD.keys, "issuer": ISSUER, "audience": AUDIENCE,
                            "now": T0, **kwargs}
    return verify_access_token(token, **args)


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return (json.loads(jwt.utils.base64url_decode(header)),
            json.loads(jwt.utils.base64url_decode(payload)))


# -- round trip --------------------------------------------------------------------------
def test_sign_verify_round_trip() -> None:
    token = WORLD.token()
    claims = verify(token)
    assert claims.subject == SUBJECT and claims.issuer == ISSUER
    assert claims.audience == [AUDIENCE]
    assert claims.issued_at == T0 and claims.expires_at == T0 + LIFETIME
    assert claims.scope == {"openid", "compute.read", "compute.create"}
    assert claims.groups == GROUPS
    assert claims.client_id == "xos-login" and claims.preferred_username == "alice"
    assert len(claims.jti) >= 22 and claims.raw["jti"] == claims.jti
    assert verify(token.encode("ascii")) == claims


def test_header_and_claims_follow_rfc9068() -> None:
    header, payload = segments(WORLD.token())
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": WORLD.key.kid}
    assert {"iss", "sub", "aud", "exp", "iat", "nbf", "jti"} <= set(payload)
    assert payload["nbf"] == payload["iat"] == int(T0.timestamp())
    assert payload["exp"] - payload["iat"] == LIFETIME.total_seconds()


def test_jti_is_random_128_bits_unless_given() -> None:
    jtis = {segments(WORLD.token())[1]["jti"] for _ in range(20)}
    assert len(jtis) == 20
    assert all(len(jwt.utils.base64url_decode(j)) == 16 for j in jtis)
    assert verify(WORLD.token(jti="fixed-1")).jti == "fixed-1"


def test_minimal_token_has_empty_profile_claims() -> None:
    claims = verify(WORLD.token(claims={}))
    assert claims.scope == set() and claims.groups == []
    assert claims.client_id is None and claims.preferred_username is None


def test_default_clock_is_the_system_clock() -> None:
    token = sign_access_token(WORLD.key, issuer=ISSUER, subject=SUBJECT, audience=AUDIENCE,
                              lifetime=timedelta(minutes=5))
    claims = verify_access_token(token, keys=WORLD.keys, issuer=ISSUER, audience=AUDIENCE)
    assert abs(claims.issued_at - datetime.now(UTC)) < timedelta(seconds=5)
    with pytest.raises(InvalidToken, match="expired"):
        verify_access_token(WORLD.token(), keys=WORLD.keys, issuer=ISSUER, audience=AUDIENCE)


def test_a_second_published_key_verifies_too() -> None:
    """Key rotation: both keys are in the JWKS while tokens of the old one live."""
    token = sign_access_token(WORLD.second, issuer=ISSUER, subject=SUBJECT,
                              audience=AUDIENCE, lifetime=LIFETIME, now=T0)
    assert verify(token).subject == SUBJECT


def test_aud_list_containing_ours_is_accepted() -> None:
    token = WORLD.token(audience=["other-service", AUDIENCE])
    assert verify(token).audience == ["other-service", AUDIENCE]


def test_from_pem_key_signs_tokens_the_old_jwks_accepts() -> None:
    loaded = SigningKey.from_pem(WORLD.key.to_pem(b"pass"), b"pass")
    token = sign_access_token(loaded, issuer=ISSUER, subject=SUBJECT, audience=AUDIENCE,
                              lifetime=LIFETIME, now=T0)
    assert verify(token, keys=KeySet(json.loads(json.dumps(WORLD.keys.to_jwks())))).subject


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt",
                                 "Application/AT+JWT"])
def test_typ_is_compared_case_insensitively(typ: str) -> None:
    assert verify(WORLD.forge(WORLD.header(typ=typ))).subject == SUBJECT


# -- the clock ---------------------------------------------------------------------------
def test_now_moves_the_clock_for_exp() -> None:
    token = WORLD.token()
    end = T0 + LIFETIME
    assert verify(token, now=end - timedelta(seconds=1)).subject == SUBJECT
    # just expired, within the default leeway of 60 s: accepted
    assert verify(token, now=end + timedelta(seconds=DEFAULT_LEEWAY - 1)).subject == SUBJECT
    with pytest.raises(InvalidToken, match="token expired at"):
        verify(token, now=end + timedelta(seconds=DEFAULT_LEEWAY))
    with pytest.raises(InvalidToken, match="token expired at"):
        verify(token, now=end + timedelta(seconds=1), leeway=0)


def test_now_moves_the_clock_for_nbf_and_iat() -> None:
    token = WORLD.token()
    assert verify(token, now=T0 - timedelta(seconds=DEFAULT_LEEWAY)).subject == SUBJECT
    with pytest.raises(InvalidToken, match="not yet valid"):
        verify(token, now=T0 - timedelta(seconds=DEFAULT_LEEWAY + 1))


def test_leeway_is_capped() -> None:
    token = WORLD.token()
    late = T0 + LIFETIME + timedelta(seconds=MAX_LEEWAY)
    assert verify(token, now=late - timedelta(seconds=1), leeway=10_000).subject
    with pytest.raises(InvalidToken, match=f"leeway {MAX_LEEWAY} s"):
        verify(token, now=late, leeway=10_000)
    with pytest.raises(InvalidToken, match="leeway 0 s"):
        verify(token, now=T0 + LIFETIME, leeway=-100)


def test_max_age() -> None:
    token = WORLD.token(lifetime=timedelta(hours=12))
    assert verify(token, now=T0 + timedelta(minutes=30), max_age=timedelta(hours=1)).subject
    with pytest.raises(InvalidToken, match="token too old"):
        verify(token, now=T0 + timedelta(hours=2), max_age=timedelta(hours=1))
    with pytest.raises(ValueError, match="max_age"):
        verify(token, max_age=timedelta(seconds=-1))


def test_naive_now_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(WORLD.token(), now=datetime(2026, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        WORLD.token(now=datetime(2026, 3, 1, 12, 0))


def test_non_integer_numeric_dates_are_accepted() -> None:
    """RFC 7519 NumericDate may carry fractions."""
    payload = claims_at(exp=int(T0.timestamp()) + 600.5)
    assert verify(WORLD.forge(payload=payload)).expires_at.microsecond == 500000


# -- what sign_access_token refuses ------------------------------------------------------------
@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"])
def test_registered_claims_cannot_be_overridden(claim: str) -> None:
    with pytest.raises(ValueError, match=f"registered claims cannot be set.*'{claim}'"):
        WORLD.token(claims={"groups": [], claim: "x"})


@pytest.mark.parametrize("kwargs, message", [
    ({"issuer": ""}, "issuer"),
    ({"subject": ""}, "subject"),
    ({"audience": ""}, "audience"),
    ({"audience": []}, "audience"),
    ({"audience": ["ok", ""]}, "audience"),
    ({"lifetime": timedelta(0)}, "lifetime"),
    ({"lifetime": timedelta(seconds=-5)}, "lifetime"),
    ({"jti": ""}, "jti"),
    ({"claims": {"groups": "/atlas"}}, "'groups' must be a list of strings"),
    ({"claims": {"groups": ["/atlas", 3]}}, "'groups' must be a list of strings"),
    ({"claims": {"scope": ["openid"]}}, "'scope' must be a space-separated string"),
    ({"claims": {"client_id": 7}}, "'client_id' must be a string"),
])
def test_sign_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WORLD.token(**kwargs)


def test_sign_refuses_a_token_verifiers_would_refuse_as_too_large() -> None:
    groups = [f"/vo{i:05d}/group/with/a/long/path" for i in range(400)]
    with pytest.raises(ValueError, match="exceeds MAX_TOKEN_BYTES"):
        WORLD.token(claims={"groups": groups})
    fits = WORLD.token(claims={"groups": groups[:100]})
    assert len(fits) <= MAX_TOKEN_BYTES and len(verify(fits).groups) == 100


def test_claims_mapping_is_not_modified() -> None:
    given = {"groups": list(GROUPS), "scope": "openid"}
    before = json.dumps(given)
    WORLD.token(claims=given)
    assert json.dumps(given) == before


def test_helper_encoding_matches_pyjwt() -> None:
    assert b64url(b"\xff\xfe") == jwt.utils.base64url_encode(b"\xff\xfe").decode()

"""The JWT attack set: every hostile or broken token is InvalidToken with a message that
says what was wrong. Tests named ``test_advisory_*`` pin a class of bug that has a public
advisory in some JWT library, so a regression reads as the advisory it reopens.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokens_fixtures import (
    AUDIENCE,
    ISSUER,
    LIFETIME,
    T0,
    b64json,
    b64url,
    claims_at,
    es256_signer,
    forge,
    hs256_signer,
    make_world,
)

from xos_tokens import Claims, InvalidToken, verify_access_token

WORLD = make_world()  # immutable keys, shared by every test here
GOOD = WORLD.token()
FUZZ = settings(database=None, deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow])


def verify(token: Any, **kwargs: Any) -> Claims:
    args: dict[str, Any] = {"keys": WORLD.keys, "issuer": ISSUER, "audience": AUDIENCE,
                            "now": T0, **kwargs}
    return verify_access_token(token, **args)


def refused(token: Any, match: str, **kwargs: Any) -> InvalidToken:
    """Assert the token is refused with a message matching ``match``, cleanly: the
    exception carries no chained PyJWT error whose traceback a logger would print."""
    with pytest.raises(InvalidToken, match=match) as caught:
        verify(token, **kwargs)
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    assert "Traceback" not in str(error) and len(str(error)) < 200
    return error


def public_pem() -> bytes:
    return WORLD.key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_good_token_passes() -> None:
    assert verify(GOOD).subject


# -- algorithm ---------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_advisory_alg_none_unsigned_token(alg: str) -> None:
    """CVE-2015-9235 class: an unsigned token with alg none accepted as valid."""
    token = forge(WORLD.header(alg=alg), claims_at())
    assert token.endswith(".")
    refused(token, f"algorithm not allowed: '{alg}'")


def test_alg_none_with_a_signature_part_is_refused_too() -> None:
    token = forge(WORLD.header(alg="none"), claims_at(), lambda _: b"\x00" * 64)
    refused(token, "algorithm not allowed: 'none'")


@pytest.mark.parametrize("secret", [
    pytest.param(lambda: public_pem(), id="public-key-pem"),
    pytest.param(lambda: public_pem().strip(), id="public-key-pem-stripped"),
    pytest.param(lambda: json.dumps(WORLD.key.public_jwk()).encode(), id="public-jwk-json"),
    pytest.param(lambda: json.dumps(WORLD.key.public_jwk(), separators=(",", ":")).encode(),
                 id="public-jwk-compact"),
    pytest.param(lambda: WORLD.key.private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
        id="public-point"),
    pytest.param(lambda: WORLD.key.kid.encode(), id="kid"),
])
def test_advisory_key_confusion_hs256_with_public_key(secret: Any) -> None:
    """CVE-2016-10555 / CVE-2022-29217 class: HS256 keyed with the verifier's public key
    (which the attacker has) verified with that public key as the HMAC secret."""
    for alg in ("HS256", "HS384", "HS512"):
        token = forge(WORLD.header(alg=alg), claims_at(), hs256_signer(secret()))
        refused(token, f"algorithm not allowed: '{alg}'")


def test_rs256_signed_by_another_key_is_refused() -> None:
    other = rsa.generate_private_key(65537, 2048)
    token = jwt.encode(claims_at(), other, algorithm="RS256",
                       headers={"typ": "at+jwt", "kid": WORLD.key.kid})
    refused(token, "algorithm not allowed: 'RS256'")


@pytest.mark.parametrize("alg", ["PS256", "RS512", "EdDSA", "Ed25519", "ES384", "ES512",
                                 "ES256K", "es256", "ES256 ", ""])
def test_any_other_algorithm_is_refused(alg: str) -> None:
    token = forge(WORLD.header(alg=alg), claims_at(), es256_signer(WORLD.key.private_key))
    refused(token, "algorithm not allowed")


@pytest.mark.parametrize("alg", [None, 256, ["ES256"], {"alg": "ES256"}])
def test_alg_missing_or_not_a_string(alg: Any) -> None:
    refused(forge(WORLD.header(alg=alg), claims_at(), es256_signer(WORLD.key.private_key)),
            "algorithm not allowed")


# -- keys and signatures -------------------------------------------------------------------------
def test_es256_signed_by_an_unknown_key_with_a_known_kid_is_a_bad_signature() -> None:
    refused(WORLD.forge(sign=es256_signer(WORLD.stranger.private_key)), "bad signature")


def test_signature_of_our_other_key_under_this_kid_is_a_bad_signature() -> None:
    refused(WORLD.forge(sign=es256_signer(WORLD.second.private_key)), "bad signature")


def test_unknown_kid_is_refused() -> None:
    token = forge(WORLD.header(kid=WORLD.stranger.kid), claims_at(),
                  es256_signer(WORLD.stranger.private_key))
    refused(token, f"unknown key id '{WORLD.stranger.kid}'")


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/etc/passwd", "..", "key.pem",
                                 "a b", "kid\n", "kid%2F..", "k" * 129, "",
                                 "https://evil.example/jwks.json", "kid;rm -rf /", "ké"])
def test_path_like_or_malformed_kid_is_refused(kid: str) -> None:
    refused(WORLD.forge(WORLD.header(kid=kid)), "malformed key id")


@pytest.mark.parametrize("kid", [123, ["kid"], {"kid": 1}, None, True])
def test_kid_not_a_string_is_refused(kid: Any) -> None:
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    refused(forge(header, claims_at(), es256_signer(WORLD.key.private_key)),
            "malformed token header: Key ID header parameter must be a string")


def test_missing_kid_is_refused() -> None:
    refused(WORLD.forge(WORLD.header(kid=None)), "missing key id")


def test_advisory_embedded_jwk_header_is_ignored() -> None:
    """CVE-2018-0114 class: the verifier trusts a key embedded in the token's own header
    (``jwk``, ``jku``, ``x5u``, ``x5c``). Only keys from the KeySet are ever used."""
    attacker = WORLD.stranger
    header = WORLD.header(jwk=attacker.public_jwk(), jku="https://evil.example/jwks",
                          x5u="https://evil.example/cert.pem", x5c=["MIIB"])
    refused(forge(header, claims_at(), es256_signer(attacker.private_key)), "bad signature")


def test_advisory_psychic_signature_r_s_zero() -> None:
    """CVE-2022-21449 class: an ECDSA signature with r = s = 0 accepted for any message."""
    refused(WORLD.forge(sign=lambda _: b"\x00" * 64), "bad signature")


def test_advisory_ecdsa_signature_malleability_and_encoding() -> None:
    """Signatures in the wrong encoding (DER instead of raw r||s) or length are refused."""
    der = WORLD.key.private_key.sign(b"x", ec.ECDSA(jwt.algorithms.hashes.SHA256()))
    refused(WORLD.forge(sign=lambda _: der), "bad signature")
    refused(WORLD.forge(sign=lambda _: b"\x01" * 63), "bad signature")
    refused(WORLD.forge(sign=lambda _: b"\x01" * 65), "bad signature")


def test_tampered_payload_with_the_signature_kept_is_refused() -> None:
    header, payload, signature = GOOD.split(".")
    data = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    at = data.index(b"alice")
    data[at] = ord("A")  # one byte: alice -> Alice
    tampered = f"{header}.{b64url(bytes(data))}.{signature}"
    refused(tampered, "bad signature")


def test_tampered_header_with_the_signature_kept_is_refused() -> None:
    _, payload, signature = GOOD.split(".")
    header = b64json({"alg": "ES256", "typ": "at+jwt", "kid": WORLD.second.kid})
    refused(f"{header}.{payload}.{signature}", "bad signature")


def test_stripped_signature_is_refused() -> None:
    header, payload, _ = GOOD.split(".")
    refused(f"{header}.{payload}.", "not signed: signature missing")


def test_signature_of_another_token_is_refused() -> None:
    other = WORLD.token(jti="another")
    refused(".".join(GOOD.split(".")[:2] + other.split(".")[2:]), "bad signature")


# -- header ------------------------------------------------------------------------------
@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "application/jwt", "at-jwt",
                                 "dpop+jwt", "", 1, None])
def test_wrong_typ_is_refused(typ: Any) -> None:
    refused(WORLD.forge(WORLD.header(typ=typ)), "wrong token type")


def test_missing_typ_is_refused() -> None:
    refused(WORLD.forge(WORLD.header(typ=None)), "wrong token type: typ None")


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"crit": ["b64"], "b64": False},
                                   {"b64": True}])
def test_critical_and_b64_headers_are_refused(extra: dict[str, Any]) -> None:
    header = {**WORLD.header(), **extra}
    error = refused(WORLD.forge(header), "unsupported header parameter|malformed token header")
    assert "crit" in str(error) or "b64" in str(error) or "critical" in str(error)


@pytest.mark.parametrize("header", [["ES256", "at+jwt"], "ES256", 256, None, True])
def test_json_header_that_is_not_an_object_is_refused(header: Any) -> None:
    refused(forge(header, claims_at(), es256_signer(WORLD.key.private_key)),
            "malformed token header: .*must be a json object")


def test_header_that_is_not_json_is_refused() -> None:
    token = f"{b64url(b'{alg: ES256')}.{b64json(claims_at())}.{b64url(b'x' * 64)}"
    refused(token, "malformed token header")


# -- claims --------------------------------------------------------------------------------------
def test_expired_beyond_leeway_is_refused() -> None:
    refused(GOOD, "token expired at", now=T0 + LIFETIME + timedelta(seconds=61))


def test_just_expired_within_leeway_is_accepted() -> None:
    assert verify(GOOD, now=T0 + LIFETIME + timedelta(seconds=59)).subject


def test_nbf_in_the_future_is_refused() -> None:
    future = int(T0.timestamp()) + 600
    refused(WORLD.forge(payload=claims_at(nbf=future, exp=future + 600)), "not yet valid: nbf")


def test_iat_in_the_future_is_refused() -> None:
    future = int(T0.timestamp()) + 600
    refused(WORLD.forge(payload=claims_at(iat=future, exp=future + 600)),
            "issued in the future: iat")


def test_iat_in_the_future_within_leeway_is_accepted() -> None:
    assert verify(WORLD.forge(payload=claims_at(iat=int(T0.timestamp()) + 59))).subject


def test_wrong_issuer_is_refused() -> None:
    refused(WORLD.forge(payload=claims_at(iss="https://evil.example")), "wrong issuer")
    refused(GOOD, "wrong issuer", issuer="https://other-vo.example.org")


@pytest.mark.parametrize("iss", [123, ["https://vo.example.org"]])
def test_issuer_of_the_wrong_type_is_refused(iss: Any) -> None:
    refused(WORLD.forge(payload=claims_at(iss=iss)), "wrong issuer")


def test_wrong_audience_is_refused() -> None:
    refused(WORLD.forge(payload=claims_at(aud="another-service")), "wrong audience")
    refused(WORLD.forge(payload=claims_at(aud=["a", "b"])), "wrong audience")
    refused(WORLD.forge(payload=claims_at(aud=[AUDIENCE, 5])), "wrong audience")
    refused(GOOD, "wrong audience", audience="xos-portal")


def test_aud_list_containing_ours_is_accepted() -> None:
    assert verify(WORLD.forge(payload=claims_at(aud=["a", AUDIENCE]))).audience == \
        ["a", AUDIENCE]


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"])
def test_missing_required_claim_is_refused(claim: str) -> None:
    refused(WORLD.forge(payload=claims_at(**{claim: None})),
            f"missing required claim '{claim}'")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"])
def test_null_required_claim_is_refused(claim: str) -> None:
    payload = claims_at()
    payload[claim] = None
    refused(WORLD.forge(payload=payload), f"missing required claim '{claim}'")


def test_empty_aud_list_is_a_missing_audience() -> None:
    refused(WORLD.forge(payload=claims_at(aud=[])), "missing required claim 'aud'")


@pytest.mark.parametrize("claim, value", [
    ("exp", "1772367600"), ("exp", True), ("exp", 10**30), ("exp", -1), ("exp", [1]),
    ("iat", "now"), ("nbf", {"t": 1}), ("nbf", 1e400),
])
def test_numeric_dates_of_the_wrong_type_are_refused(claim: str, value: Any) -> None:
    refused(WORLD.forge(payload=claims_at(**{claim: value})), f"malformed claim '{claim}'")


@pytest.mark.parametrize("changes, message", [
    ({"sub": 42}, "invalid token: Subject must be a string"),
    ({"jti": 42}, "invalid token: JWT ID must be a string"),
    ({"sub": ""}, "claim 'sub' is empty"),
    ({"jti": ""}, "claim 'jti' is empty"),
    ({"groups": "/atlas"}, "'groups' must be a list of strings"),
    ({"groups": [1, 2]}, "'groups' must be a list of strings"),
    ({"scope": ["openid"]}, "'scope' must be a space-separated string"),
    ({"client_id": {"id": 1}}, "'client_id' must be a string"),
    ({"preferred_username": 7}, "'preferred_username' must be a string"),
])
def test_claims_of_the_wrong_type_are_refused(changes: dict[str, Any], message: str) -> None:
    refused(WORLD.forge(payload=claims_at(**changes)), message)


@pytest.mark.parametrize("payload", [["sub"], "sub", 1, None])
def test_payload_that_is_not_an_object_is_refused(payload: Any) -> None:
    refused(WORLD.forge(payload=payload) if payload is not None else
            forge(WORLD.header(), None, es256_signer(WORLD.key.private_key)),
            "malformed token: Invalid payload string")


# -- shape and size ----------------------------------------------------------------------------
def test_oversized_token_is_refused_before_parsing() -> None:
    groups: list[str] = []
    big = GOOD
    while len(big) < 9 * 1024:  # a signed, otherwise valid token of 9 KB
        groups.append(f"/vo/{len(groups):04d}/" + "g" * 50)
        big = WORLD.forge(payload=claims_at(groups=groups))
    assert 9 * 1024 <= len(big) < 9 * 1024 + 100
    refused(big, "token too large")
    refused(big.encode(), "token too large")
    refused("x" * (9 * 1024), "token too large")  # rejected by length alone
    refused("é" * 9000, "token too large")


@pytest.mark.parametrize("garbage", [
    "", " ", "null", "abc", "a.b", "a.b.c.d", "..", "...", ".a.b", "a..b", "!!!.###.$$$",
    "Bearer " + GOOD, GOOD + " ", " " + GOOD, GOOD + "\n", GOOD + ".", GOOD.replace(".", ",", 1),
    "eyJ.eyJ.", "====.====.====", "a=.b=.c=", GOOD + "=",
], ids=lambda g: repr(g[:20]))
def test_garbage_strings_are_refused(garbage: str) -> None:
    refused(garbage, "malformed token|not signed")


def test_two_dots_only_is_refused() -> None:
    refused("..", "malformed token: not three base64url parts")


@pytest.mark.parametrize("token", ["é.é.é", GOOD[:-1] + "ü", "eyJ\u200b.eyJ.sig",
                                   "\udcff.a.b"])
def test_non_ascii_is_refused(token: str) -> None:
    refused(token, "malformed token: contains non-ASCII characters")


def test_non_ascii_bytes_are_refused() -> None:
    refused(GOOD.encode() + b"\xff", "malformed token: not three base64url parts")
    refused(b"\xff\xfe.\x00.\x80", "malformed token")


@pytest.mark.parametrize("token", [None, 123, ["a.b.c"], bytearray(b"a.b.c"), {"t": 1}])
def test_non_string_input_is_refused(token: Any) -> None:
    refused(token, "malformed token: a .*, not a string")


def test_non_canonical_base64_is_refused() -> None:
    """A 64-byte signature leaves 4 unused low bits in its last base64 character; a
    twin spelling with them set must not verify (one token, one spelling)."""
    header, payload, signature = GOOD.split(".")
    assert signature[-1] in "AQgw"  # canonical: low bits zero
    twin = signature[:-1] + chr(ord(signature[-1]) + 1)  # B, R, h or x: same top bits
    refused(f"{header}.{payload}.{twin}", "malformed token")


# -- fuzz: nothing but InvalidToken ever escapes ------------------------------------------
@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_fuzz_random_input_is_only_ever_invalid_token(token: str | bytes) -> None:
    with pytest.raises(InvalidToken):
        verify(token)


@FUZZ
@given(st.integers(min_value=0, max_value=len(GOOD) - 1),
       st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="))
def test_fuzz_one_changed_character_is_refused(position: int, character: str) -> None:
    token = GOOD[:position] + character + GOOD[position + 1:]
    if token != GOOD:
        with pytest.raises(InvalidToken):
            verify(token)


@FUZZ
@given(st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jwk", "x"]),
                       st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                       | st.lists(st.text(max_size=5), max_size=3)))
def test_fuzz_hostile_headers_are_only_ever_invalid_token(header: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        verify(forge(header, claims_at(), es256_signer(WORLD.stranger.private_key)))

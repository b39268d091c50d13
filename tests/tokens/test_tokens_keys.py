"""Signing keys, kid thumbprints, PEM at rest, JWKS documents and KeySet loading."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from tokens_fixtures import RFC7515_A3, World, b64url, make_world, rfc7515_key

from xos_tokens import InvalidKey, InvalidToken, KeySet, SigningKey, TokenError, jwks

PASSPHRASE = b"correct horse battery staple"


WORLD = make_world()  # immutable keys, shared by every test here


def hand_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 section 3, by hand: the required EC members crv, kty, x, y in
    lexicographic order, no whitespace, UTF-8, SHA-256, base64url without padding."""
    numbers = public_key.public_numbers()
    x = b64url(numbers.x.to_bytes(32, "big"))
    y = b64url(numbers.y.to_bytes(32, "big"))
    members = '{"crv":"P-256","kty":"EC","x":"' + x + '","y":"' + y + '"}'
    return b64url(hashlib.sha256(members.encode("utf-8")).digest())


# -- keys -------------------------------------------------------------------------------
def test_kid_is_the_rfc7638_thumbprint() -> None:
    for key in (WORLD.key, WORLD.second, WORLD.stranger):
        assert key.kid == hand_thumbprint(key.private_key.public_key())
        assert len(key.kid) == 43  # 32 bytes of SHA-256, unpadded base64url


def test_rfc7515_key_has_the_published_coordinates_and_its_thumbprint_kid() -> None:
    key = rfc7515_key()
    jwk = key.public_jwk()
    assert (jwk["x"], jwk["y"]) == (RFC7515_A3["x"], RFC7515_A3["y"])
    members = ('{"crv":"P-256","kty":"EC","x":"' + RFC7515_A3["x"] + '","y":"'
               + RFC7515_A3["y"] + '"}')
    assert key.kid == b64url(hashlib.sha256(members.encode()).digest())


def test_generated_keys_are_p256_and_distinct() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert isinstance(a.private_key.curve, ec.SECP256R1)
    assert a.kid != b.kid


def test_public_jwk_has_exactly_the_public_members() -> None:
    jwk = WORLD.key.public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert jwk["kid"] == WORLD.key.kid


def test_kid_cannot_be_chosen() -> None:
    with pytest.raises(InvalidKey, match="not the RFC 7638 thumbprint"):
        SigningKey(kid="my-key", private_key=WORLD.key.private_key)
    with pytest.raises(InvalidKey, match="not the RFC 7638 thumbprint"):
        SigningKey(kid=WORLD.second.kid, private_key=WORLD.key.private_key)


@pytest.mark.parametrize("private_key", [
    ec.generate_private_key(ec.SECP384R1()),
    ec.generate_private_key(ec.SECP256K1()),
], ids=["P-384", "secp256k1"])
def test_other_curves_are_refused(private_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(InvalidKey, match="not P-256"):
        SigningKey.from_private_key(private_key)


def test_signing_key_repr_hides_the_private_key() -> None:
    assert "private_key" not in repr(WORLD.key)
    assert WORLD.key.kid in repr(WORLD.key)


# -- PEM at rest ----------------------------------------------------------------------------
def test_encrypted_pem_round_trip() -> None:
    pem = WORLD.key.to_pem(PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = SigningKey.from_pem(pem, PASSPHRASE)
    assert loaded.kid == WORLD.key.kid
    assert loaded.private_key.private_numbers() == WORLD.key.private_key.private_numbers()


def test_wrong_passphrase_is_refused_without_leaking() -> None:
    pem = WORLD.key.to_pem(PASSPHRASE)
    with pytest.raises(InvalidKey, match="wrong passphrase") as caught:
        SigningKey.from_pem(pem, b"wrong horse")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "horse" not in str(caught.value)


def test_unencrypted_pem_is_refused() -> None:
    clear = WORLD.key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(InvalidKey, match="not encrypted"):
        SigningKey.from_pem(clear, PASSPHRASE)


def test_corrupt_pem_is_refused() -> None:
    with pytest.raises(InvalidKey, match="cannot load signing key"):
        SigningKey.from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n", PASSPHRASE)


def test_pem_of_an_rsa_key_is_refused() -> None:
    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE))
    with pytest.raises(InvalidKey, match="not an EC P-256 key"):
        SigningKey.from_pem(pem, PASSPHRASE)


def test_empty_passphrase_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="passphrase"):
        WORLD.key.to_pem(b"")
    with pytest.raises(ValueError, match="passphrase"):
        SigningKey.from_pem(WORLD.key.to_pem(PASSPHRASE), b"")


# -- JWKS ------------------------------------------------------------------------------------
def test_jwks_round_trip() -> None:
    document = jwks([WORLD.key, WORLD.second])
    assert [k["kid"] for k in document["keys"]] == [WORLD.key.kid, WORLD.second.kid]
    assert all("d" not in k for k in document["keys"])
    reloaded = KeySet(json.loads(json.dumps(document)))
    assert reloaded.kids == {WORLD.key.kid, WORLD.second.kid}
    assert reloaded.get(WORLD.key.kid).public_numbers() == \
        WORLD.key.private_key.public_key().public_numbers()
    assert reloaded.to_jwks() == document
    # an already-published JWK (a retired key kept until its tokens expire) passes through
    assert jwks([WORLD.key, WORLD.second.public_jwk()]) == document


def test_keyset_get_unknown_kid() -> None:
    with pytest.raises(InvalidToken, match="unknown key id"):
        WORLD.keys.get(WORLD.stranger.kid)
    assert WORLD.stranger.kid not in WORLD.keys and WORLD.key.kid in WORLD.keys
    assert len(WORLD.keys) == 2


def ec_entry(world: World = WORLD) -> dict[str, str]:
    return copy.deepcopy(world.key.public_jwk())


def rsa_entry() -> dict[str, object]:
    numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    return {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
            "n": b64url(numbers.n.to_bytes(256, "big")), "e": b64url(b"\x01\x00\x01")}


def bad_entries(world: World) -> list[object]:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = ed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    own = world.key.private_key.private_numbers()
    x_plus_1 = b64url((own.public_numbers.x + 1).to_bytes(32, "big"))
    cases: list[tuple[str, object, str]] = [
        ("rsa", rsa_entry(), "key type 'RSA' is not EC"),
        ("symmetric", {"kty": "oct", "kid": "hmac-1", "k": b64url(b"s" * 32)},
         "private key member 'k'"),
        ("symmetric-without-k", {"kty": "oct", "kid": "hmac-2"}, "key type 'oct' is not EC"),
        ("private-d", {**ec_entry(world), "d": b64url(own.private_value.to_bytes(32, "big"))},
         "private key member 'd' in a public JWKS"),
        ("okp", {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": "ed-1"},
         "key type 'OKP' is not EC"),
        ("p384", {"kty": "EC", "crv": "P-384", "kid": "p384",
                  "x": b64url(p384.x.to_bytes(48, "big")),
                  "y": b64url(p384.y.to_bytes(48, "big"))}, "curve 'P-384' is not P-256"),
        ("alg-rs256", {**ec_entry(world), "alg": "RS256"}, "alg 'RS256' is not ES256"),
        ("alg-hs256", {**ec_entry(world), "alg": "HS256"}, "alg 'HS256' is not ES256"),
        ("use-enc", {**ec_entry(world), "use": "enc"}, "use 'enc' is not 'sig'"),
        ("key-ops-sign", {**ec_entry(world), "key_ops": ["sign"]}, "key_ops"),
        ("no-kid", {k: v for k, v in ec_entry(world).items() if k != "kid"}, "kid missing"),
        ("path-kid", {**ec_entry(world), "kid": "../../etc/passwd"}, "kid missing or not"),
        ("chosen-kid", {**ec_entry(world), "kid": "key-2026"}, "not the RFC 7638 thumbprint"),
        ("off-curve", {**ec_entry(world), "x": x_plus_1}, "not on the P-256 curve"),
        ("short-x", {**ec_entry(world), "x": b64url(b"\x01" * 31)}, "31 bytes"),
        ("padded-x", {**ec_entry(world), "x": ec_entry(world)["x"] + "="}, "base64url"),
        ("x-number", {**ec_entry(world), "x": 5}, "not a string"),
        ("not-object", ["EC"], "not a JSON object"),
    ]
    return [pytest.param(entry, message, id=name) for name, entry, message in cases]


@pytest.mark.parametrize("entry, message", bad_entries(WORLD))
def test_keyset_refuses_bad_entries_at_load(entry: object, message: str) -> None:
    """A verifier configuration with one unusable entry fails loudly, naming the entry;
    jwks() refuses to publish the same entry."""
    document = {"keys": [WORLD.second.public_jwk(), entry]}
    with pytest.raises(InvalidKey, match=message) as caught:
        KeySet(document)
    assert "JWKS entry 1" in str(caught.value)
    with pytest.raises(InvalidKey, match=message):
        jwks([WORLD.second, entry])  # type: ignore[list-item]


def test_private_d_message_names_the_entry_by_kid() -> None:
    own = WORLD.key.private_key.private_numbers()
    entry = {**ec_entry(), "d": b64url(own.private_value.to_bytes(32, "big"))}
    with pytest.raises(InvalidKey, match=f"JWKS entry 0 \\(kid '{WORLD.key.kid}'\\)"):
        KeySet({"keys": [entry]})


@pytest.mark.parametrize("document, message", [
    ({}, "no non-empty 'keys' list"),
    ({"keys": []}, "no non-empty 'keys' list"),
    ({"keys": {"a": 1}}, "no non-empty 'keys' list"),
    ([], "not a JSON object"),
])
def test_keyset_refuses_bad_documents(document: object, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        KeySet(document)  # type: ignore[arg-type]


def test_duplicate_kid_is_refused() -> None:
    with pytest.raises(InvalidKey, match="kid given twice"):
        KeySet({"keys": [WORLD.key.public_jwk(), WORLD.key.public_jwk()]})
    with pytest.raises(InvalidKey, match="kid given twice"):
        jwks([WORLD.key, WORLD.key])


def test_errors_share_one_root() -> None:
    assert issubclass(InvalidKey, TokenError) and issubclass(InvalidToken, TokenError)

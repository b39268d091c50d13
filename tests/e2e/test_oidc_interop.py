"""A standard OAuth/OpenID Connect client library (authlib's requests client, with
joserfc for the JWTs), given only the issuer URL, discovers the provider, gets tokens
and verifies them; a signing-key rotation in the middle breaks nothing.

Nothing here knows our code: the client reads the discovery document, the JWKS and the
token endpoint like it would for any provider.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import update

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.oauth.clients import ClientService
from vo_service.oauth.keys import KeyRing
from vo_service.oauth.models import TokenSigningKey
from vo_service.pki.authority import passphrase
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

from .live import Live, live_service

PASSWORD = "correct horse battery"


def seed(app: Flask) -> None:
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        alice = UserService(ctx).create(system, "alice", "Alice")
        atlas = VOService(ctx).create(system, "atlas")
        MembershipService(ctx).add(system, atlas, alice)
        PasswordService(ctx).set(system, alice, PASSWORD)
        app.config["TEST_MONITOR_SECRET"] = ClientService(ctx).create(
            system, "monitor", "Monitoring", [])
        db.session.commit()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(seed, prefix="xos-oidc-") as service:
        yield service


def discover(issuer: str) -> dict[str, Any]:
    metadata = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["issuer"] == issuer
    return metadata


def verify(token: str, jwks: dict[str, Any], issuer: str, audience: str) -> dict[str, Any]:
    """What a relying party does with joserfc (authlib's JOSE successor): decode against
    the JWKS with the algorithm pinned, then check the registered claims."""
    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    jose_jwt.JWTClaimsRegistry(
        leeway=60, iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience}, exp={"essential": True},
        sub={"essential": True}).validate(decoded.claims)
    return dict(decoded.claims)


def test_a_standard_client_discovers_logs_in_and_verifies(live: Live) -> None:
    metadata = discover(live.base)
    session = OAuth2Session(client_id="xos-login", token_endpoint_auth_method="none")
    token = session.fetch_token(metadata["token_endpoint"], grant_type="password",
                                username="alice", password=PASSWORD, timeout=10)
    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    claims = verify(token["access_token"], jwks, live.base, live.base)
    assert claims["preferred_username"] == "alice" and claims["groups"] == ["/atlas"]
    # the token opens the userinfo endpoint the discovery document names
    info = session.get(metadata["userinfo_endpoint"], timeout=10).json()
    assert info["preferred_username"] == "alice"
    # a refresh through the library's own refresh_token() rotates the refresh token
    renewed = session.refresh_token(metadata["token_endpoint"],
                                    refresh_token=token["refresh_token"], timeout=10)
    assert renewed["refresh_token"] != token["refresh_token"]
    verify(renewed["access_token"], jwks, live.base, live.base)


def test_client_credentials_and_introspection_by_a_service(live: Live) -> None:
    metadata = discover(live.base)
    service = OAuth2Session(client_id="monitor",
                            client_secret=live.app.config["TEST_MONITOR_SECRET"])
    own = service.fetch_token(metadata["token_endpoint"], grant_type="client_credentials",
                              timeout=10)
    user = OAuth2Session(client_id="xos-login", token_endpoint_auth_method="none").fetch_token(
        metadata["token_endpoint"], grant_type="password", username="alice",
        password=PASSWORD, timeout=10)
    answer = requests.post(metadata["introspection_endpoint"],
                           data={"token": user["access_token"]},
                           auth=("monitor", live.app.config["TEST_MONITOR_SECRET"]),
                           timeout=10).json()
    assert answer["active"] and answer["username"] == "alice"
    assert own["token_type"].lower() == "bearer" and "refresh_token" not in own


def test_key_rotation_in_the_middle_breaks_nothing(live: Live) -> None:
    metadata = discover(live.base)
    session = OAuth2Session(client_id="xos-login", token_endpoint_auth_method="none")
    before = session.fetch_token(metadata["token_endpoint"], grant_type="password",
                                 username="alice", password=PASSWORD, timeout=10)
    # the provider announces a new key; the relying party refreshes its JWKS as usual
    with live.app.app_context():
        ctx = ServiceContext.build(db.session, live.app.config)
        new_kid = KeyRing(ctx, live.app.config, passphrase()).rotate()
        db.session.commit()
    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    assert new_kid in {k["kid"] for k in jwks["keys"]}
    # the announcement period passes (moved, not waited for): the new key signs
    with live.app.app_context():
        db.session.execute(update(TokenSigningKey).where(TokenSigningKey.kid == new_kid)
                           .values(signs_from=dt.datetime.now(dt.UTC)))
        db.session.commit()
    after = session.refresh_token(metadata["token_endpoint"],
                                  refresh_token=before["refresh_token"], timeout=10)
    # the JWKS fetched before the switch verifies both: the old key's tokens still live,
    # and the new key was published before it signed anything
    assert verify(after["access_token"], jwks, live.base, live.base)["sub"]
    assert verify(before["access_token"], jwks, live.base, live.base)["sub"]
    from jwt import get_unverified_header

    assert get_unverified_header(after["access_token"])["kid"] == new_kid
    assert get_unverified_header(before["access_token"])["kid"] != new_kid
    # and the library refuses what it should: a token for another audience
    with pytest.raises(JoseError):
        verify(after["access_token"], jwks, live.base, "https://elsewhere.example")


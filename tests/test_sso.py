"""Single sign-on through the real endpoints, on SQLite and PostgreSQL: discovery and
JWKS, the password, refresh, device and client-credentials grants, introspection,
revocation, userinfo, access tokens on the API, audiences, key rotation, throttling.

The token format and its attack set are in ``tests/tokens``; LDAP logins against a real
slapd in ``tests/test_ldap_auth.py``; a standard OIDC client against a running server in
``tests/e2e/test_oidc_interop.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import jwt
import pytest
from flask import current_app
from support import actor_for

import xos_tokens
from vo_service.auth.passwords import PasswordService
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.oauth.clients import ClientService
from vo_service.oauth.keys import KeyRing
from vo_service.oauth.models import RefreshToken
from vo_service.pki.authority import passphrase
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

PASSWORD = "correct horse battery"
ISSUER = "http://127.0.0.1:8080"  # PUBLIC_URL's default
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class World:
    """alice: active in atlas (group /atlas/analysis, role production); pete: pending;
    node wn1 serves atlas, wn2 serves cms; a service client 'monitor'."""

    def __init__(self, ctx: Any, system: Any, users: Any) -> None:
        vos, ms, passwords = VOService(ctx), MembershipService(ctx), PasswordService(ctx)
        atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
        analysis = vos.create_group(system, atlas, "/atlas/analysis")
        production = vos.create_role(system, atlas, "production")
        self.alice, self.pete = users.make("alice"), users.make("pete")
        ms.add(system, atlas, self.alice)
        ms.add_to_group(system, atlas, analysis, self.alice)
        ms.set_role(system, atlas, self.alice, production, True)
        ms.request(actor_for(self.pete), cms, self.pete)
        for user in (self.alice, self.pete):
            passwords.set(system, user, PASSWORD)
        NodeService(ctx).register(system, "wn1.grid.example", vos=["atlas"])
        NodeService(ctx).register(system, "wn2.grid.example", vos=["cms"])
        self.monitor_secret = ClientService(ctx).create(system, "monitor", "Monitoring",
                                                        ["wn1.grid.example"])
        self.atlas, self.ctx, self.system = atlas, ctx, system
        db.session.commit()


@pytest.fixture
def world(ctx, system, users) -> World:
    return World(ctx, system, users)


def token_call(client, **form: str) -> tuple[int, dict[str, Any]]:
    auth = form.pop("_auth", None)
    headers = {"Authorization": auth} if auth else {}
    response = client.post("/oauth/token", data=form, headers=headers)
    return response.status_code, response.get_json()


def password_login(client, username: str = "alice", password: str = PASSWORD,
                   **extra: str) -> tuple[int, dict[str, Any]]:
    return token_call(client, grant_type="password", client_id="xos-login",
                      username=username, password=password, **extra)


def keys(client) -> xos_tokens.KeySet:
    return xos_tokens.KeySet(client.get("/oauth/jwks").get_json())


def basic(client_id: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# -- discovery --------------------------------------------------------------------------


def test_discovery_names_every_endpoint(client, world):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == ISSUER
    for name in ("jwks_uri", "token_endpoint", "device_authorization_endpoint",
                 "introspection_endpoint", "revocation_endpoint", "userinfo_endpoint"):
        assert doc[name].startswith(ISSUER + "/"), name
    assert DEVICE_GRANT in doc["grant_types_supported"]
    jwks = client.get("/oauth/jwks").get_json()
    assert jwks["keys"] and all(k["alg"] == "ES256" and "d" not in k for k in jwks["keys"])


# -- the password grant -------------------------------------------------------------------


def test_password_login_gives_an_rfc9068_token_with_vo_groups(client, world):
    status, body = password_login(client)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["refresh_token"].startswith("xrt_")
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = xos_tokens.verify_access_token(body["access_token"], keys=keys(client),
                                            issuer=ISSUER, audience=ISSUER)
    assert claims.subject == str(world.alice.id)
    assert claims.preferred_username == "alice"
    assert claims.groups == ["/atlas", "/atlas/analysis"]
    assert claims.raw["roles"] == ["/atlas/Role=production"]
    assert claims.client_id == "xos-login"
    assert body["expires_in"] == 600


@pytest.mark.parametrize("username, password", [
    ("alice", "wrong password!"), ("nobody", PASSWORD), ("alice", ""),
    ("*)(uid=*", PASSWORD), ("alice\n", PASSWORD), ("a" * 5000, PASSWORD),
    ("alice", "x" * 5000),
])
def test_wrong_credentials_get_one_answer(client, world, username, password):
    status, body = password_login(client, username, password)
    assert (status, body) == (400, {"error": "invalid_grant",
                                    "error_description": "wrong username or password"})


def test_a_pending_member_hears_why(client, world):
    status, body = password_login(client, "pete")
    assert (status, body["error"]) == (400, "access_denied")
    assert body["error_description"] == "your membership of VO cms is still pending approval"


def test_failed_logins_are_throttled_per_account_not_forever(client, world):
    for _ in range(5):
        assert password_login(client, password="wrong password!")[0] == 400
    status, body = password_login(client)  # even the right password waits now
    assert status == 429 and body["error"] == "slow_down"
    assert re.search(r"try again in \d+ s", body["error_description"])
    # the block ends: move the window into the past
    from vo_service.auth.models import LoginThrottle

    row = db.session.get(LoginThrottle, "user:alice")
    row.blocked_until = row.window_start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    db.session.commit()
    assert password_login(client)[0] == 200
    assert db.session.get(LoginThrottle, "user:alice") is None  # success clears it


def test_failed_logins_are_throttled_per_address(client, world, users, system, ctx):
    names = [users.make(f"spray{i}").username for i in range(3)]
    from vo_service.auth import passwords

    limit = passwords.ADDRESS_LIMIT
    passwords.ADDRESS_LIMIT = 4
    try:
        for i in range(4):
            assert password_login(client, names[i % 3], "wrong password!")[0] == 400
        status, body = password_login(client, "alice")
        assert status == 429 and "too many failed logins" in body["error_description"]
    finally:
        passwords.ADDRESS_LIMIT = limit


# -- refresh tokens -------------------------------------------------------------------------


def test_refresh_rotates_and_a_replay_revokes_the_family(client, world):
    _, first = password_login(client)
    status, second = token_call(client, grant_type="refresh_token", client_id="xos-login",
                                refresh_token=first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    status, third = token_call(client, grant_type="refresh_token", client_id="xos-login",
                               refresh_token=second["refresh_token"])
    assert status == 200
    # the first token comes back: someone copied it; every token of the login dies
    status, body = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=first["refresh_token"])
    assert status == 400 and "already used" in body["error_description"]
    status, body = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=third["refresh_token"])
    assert status == 400 and "revoked" in body["error_description"]
    rows = db.session.query(RefreshToken).all()
    assert len(rows) == 3 and all(r.revoked_at is not None for r in rows)
    assert all(len(r.token_hash) == 64 and not r.token_hash.startswith("xrt_") for r in rows)


def test_refresh_keeps_the_family_end(client, world):
    _, first = password_login(client)
    row = db.session.query(RefreshToken).one()
    row.family_expires_at = row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    db.session.commit()
    status, body = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=first["refresh_token"])
    assert status == 400 and "expired" in body["error_description"]


def test_refresh_after_suspension_is_refused(client, world):
    _, first = password_login(client)
    MembershipService(world.ctx).transition(world.system, world.atlas, world.alice, "suspend")
    db.session.commit()
    status, body = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=first["refresh_token"])
    assert (status, body["error"]) == (400, "access_denied")
    assert body["error_description"] == "you are not an active member of any VO"


# -- the device flow --------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def approve(client, user_code: str, username: str = "alice", password: str = PASSWORD,
            decision: str = "approve") -> Any:
    page = client.get(f"/device?user_code={user_code}")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    return client.post("/device", data={
        "csrf_token": csrf_of(page.get_data(as_text=True)), "user_code": user_code,
        "username": username, "password": password, "decision": decision})


def test_device_login_approved_on_the_page(client, world):
    start = client.post("/oauth/device_authorization", data={"client_id": "xos-login"})
    assert start.status_code == 200
    grant = start.get_json()
    assert grant["verification_uri"] == ISSUER + "/device"
    assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", grant["user_code"])
    poll = {"grant_type": DEVICE_GRANT, "client_id": "xos-login",
            "device_code": grant["device_code"]}
    status, body = token_call(client, **poll)
    assert (status, body["error"]) == (400, "authorization_pending")
    status, body = token_call(client, **poll)  # at once again: too fast
    assert body["error"] == "slow_down"
    page = approve(client, grant["user_code"].lower().replace("-", " "))
    assert page.status_code == 200 and "Approved" in page.get_data(as_text=True)
    status, body = token_call(client, **poll)
    assert status == 200, body
    claims = xos_tokens.verify_access_token(body["access_token"], keys=keys(client),
                                            issuer=ISSUER, audience=ISSUER)
    assert claims.preferred_username == "alice"
    status, body = token_call(client, **poll)  # a device code is good once
    assert status == 400


def test_device_login_denied_or_wrongly_approved(client, world):
    grant = client.post("/oauth/device_authorization",
                        data={"client_id": "xos-login"}).get_json()
    page = approve(client, grant["user_code"], password="wrong password!")
    assert page.status_code == 401 and "wrong username or password" in page.get_data(
        as_text=True)
    page = approve(client, grant["user_code"], decision="deny")
    assert "Denied" in page.get_data(as_text=True)
    status, body = token_call(client, grant_type=DEVICE_GRANT, client_id="xos-login",
                              device_code=grant["device_code"])
    assert body == {"error": "access_denied",
                    "error_description": "the login was denied on the approval page"}


def test_device_page_needs_its_csrf_token(client, world):
    grant = client.post("/oauth/device_authorization",
                        data={"client_id": "xos-login"}).get_json()
    response = client.post("/device", data={"user_code": grant["user_code"],
                                            "username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    status, body = token_call(client, grant_type=DEVICE_GRANT, client_id="xos-login",
                              device_code=grant["device_code"])
    assert body["error"] == "authorization_pending"


def test_device_page_escapes_what_it_shows(client, world):
    page = client.get('/device?user_code=<script>alert(1)</script>')
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_an_expired_device_code(client, world):
    from vo_service.oauth.models import DeviceAuthorization

    grant = client.post("/oauth/device_authorization",
                        data={"client_id": "xos-login"}).get_json()
    row = db.session.query(DeviceAuthorization).one()
    row.expires_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    db.session.commit()
    status, body = token_call(client, grant_type=DEVICE_GRANT, client_id="xos-login",
                              device_code=grant["device_code"])
    assert body["error"] == "expired_token"
    page = approve(client, grant["user_code"])
    assert page.status_code == 400 and "expired" in page.get_data(as_text=True)


# -- services: client credentials, introspection, revocation ---------------------------------


def test_client_credentials_and_introspection(client, world):
    monitor = basic("monitor", world.monitor_secret)
    status, body = token_call(client, grant_type="client_credentials", _auth=monitor,
                              audience="wn1.grid.example")
    assert status == 200, body
    claims = xos_tokens.verify_access_token(body["access_token"], keys=keys(client),
                                            issuer=ISSUER, audience="wn1.grid.example")
    assert claims.subject == "monitor" and "refresh_token" not in body
    status, body = token_call(client, grant_type="client_credentials", _auth=monitor,
                              audience="wn2.grid.example")
    assert status == 400 and "wn2.grid.example" in body["error_description"]
    assert token_call(client, grant_type="client_credentials",
                      _auth=basic("monitor", "wrong"))[0] == 401
    _, user = password_login(client)
    answer = client.post("/oauth/introspect", data={"token": user["access_token"]},
                         headers={"Authorization": monitor}).get_json()
    assert answer["active"] and answer["username"] == "alice"
    assert answer["groups"] == ["/atlas", "/atlas/analysis"]
    for garbage in ("garbage", user["access_token"][:-4] + "AAAA", "x" * 10000):
        answer = client.post("/oauth/introspect", data={"token": garbage},
                             headers={"Authorization": monitor}).get_json()
        assert answer == {"active": False}
    assert client.post("/oauth/introspect", data={"token": user["access_token"]}
                       ).status_code == 401


def test_revoking_tokens(client, world):
    _, body = password_login(client)
    monitor = basic("monitor", world.monitor_secret)
    response = client.post("/oauth/revoke", data={"token": body["access_token"],
                                                  "client_id": "xos-login"})
    assert response.status_code == 200
    answer = client.post("/oauth/introspect", data={"token": body["access_token"]},
                         headers={"Authorization": monitor}).get_json()
    assert answer == {"active": False}
    api = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 401 and "revoked" in api.get_json()["detail"]
    response = client.post("/oauth/revoke", data={"token": body["refresh_token"],
                                                  "client_id": "xos-login"})
    assert response.status_code == 200
    status, answer = token_call(client, grant_type="refresh_token", client_id="xos-login",
                                refresh_token=body["refresh_token"])
    assert status == 400 and "revoked" in answer["error_description"]
    # an unknown token is no error (RFC 7009 2.2)
    assert client.post("/oauth/revoke", data={"token": "nonsense", "client_id": "xos-login"}
                       ).status_code == 200


def test_userinfo_and_the_api_take_access_tokens(client, world):
    _, body = password_login(client)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    info = client.get("/oauth/userinfo", headers=bearer).get_json()
    assert info["preferred_username"] == "alice" and info["groups"] == [
        "/atlas", "/atlas/analysis"]
    me = client.get("/api/v1/me", headers=bearer)
    assert me.status_code == 200 and me.get_json()["username"] == "alice"
    assert client.get("/oauth/userinfo").status_code == 401


def test_audiences_are_nodes_of_the_users_vos(client, world):
    status, body = password_login(client, audience="wn1.grid.example")
    assert status == 200 and body["audience"] == "wn1.grid.example"
    # a node's token is compact (RFC 9068's minimum): the node takes groups from its
    # snapshot, and the token must fit through pam_exec's 511 bytes
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id"}
    assert len(body["access_token"]) <= 511
    api = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 401 and "audience" in api.get_json()["detail"]
    status, body = password_login(client, audience="wn2.grid.example")
    assert status == 400 and "not a node of your VOs" in body["error_description"]
    status, body = password_login(client, audience="x" * 300)
    assert status == 400
    # a refresh may ask for a node's token; the login keeps its own audience
    _, login = password_login(client)
    status, node = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=login["refresh_token"], audience="wn1.grid.example")
    assert status == 200 and node["audience"] == "wn1.grid.example"
    status, again = token_call(client, grant_type="refresh_token", client_id="xos-login",
                               refresh_token=node["refresh_token"])
    assert status == 200 and again["audience"] == ISSUER
    # a refused audience changes nothing: the refresh token presented stays good
    status, body = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=again["refresh_token"], audience="wn2.grid.example")
    assert status == 400 and "not a node of your VOs" in body["error_description"]
    status, body = token_call(client, grant_type="refresh_token", client_id="xos-login",
                              refresh_token=again["refresh_token"])
    assert status == 200, body


# -- signing keys -----------------------------------------------------------------------------


def test_key_rotation_publishes_first_and_retires_late(app, client, world):
    _, before = password_login(client)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    ring = KeyRing(world.ctx, current_app.config, passphrase())
    new_kid = ring.rotate()
    db.session.commit()
    published = {k["kid"] for k in client.get("/oauth/jwks").get_json()["keys"]}
    assert {old_kid, new_kid} <= published
    _, during = password_login(client)  # still signed by the old key: announced first
    assert jwt.get_unverified_header(during["access_token"])["kid"] == old_kid
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)
    assert ring.signing_key(later).kid == new_kid
    db.session.commit()
    # the old key stays published while its last tokens live, then goes
    assert old_kid in {r.kid for r in ring.published(later)}
    gone = later + dt.timedelta(minutes=12)
    assert old_kid not in {r.kid for r in ring.published(gone)}
    xos_tokens.verify_access_token(before["access_token"], keys=keys(client),
                                   issuer=ISSUER, audience=ISSUER)


def test_signing_keys_are_encrypted_at_rest(world, client):
    password_login(client)
    from vo_service.oauth.models import TokenSigningKey

    rows = db.session.query(TokenSigningKey).all()
    assert rows and all(b"ENCRYPTED" in r.private_pem for r in rows)


# -- forged tokens on the API -----------------------------------------------------------------


def test_forged_tokens_are_refused_by_the_api(client, world):
    _, body = password_login(client)
    header, payload, signature = body["access_token"].split(".")
    public_jwks = client.get("/oauth/jwks").get_json()
    forged = {
        "alg none": jwt.encode(jwt.decode(body["access_token"],
                                          options={"verify_signature": False}),
                               None, algorithm="none", headers={"typ": "at+jwt"}),
        "stripped signature": f"{header}.{payload}.",
        "tampered payload": f"{header}.{payload[:-2]}AA.{signature}",
        "HS256 with the public key": jwt.encode(
            jwt.decode(body["access_token"], options={"verify_signature": False}),
            str(public_jwks["keys"][0]), algorithm="HS256",
            headers={"typ": "at+jwt", "kid": public_jwks["keys"][0]["kid"]}),
    }
    for name, token in forged.items():
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert "invalid access token" in response.get_json()["detail"], name


def test_passwords_are_argon2id_and_have_rules(world, ctx, system):
    from vo_service.auth.models import PasswordCredential
    from vo_service.errors import InvalidInput

    row = db.session.get(PasswordCredential, world.alice.id)
    assert row.hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    for bad in ("short", "x" * 257, "nul\x00in the middle"):
        with pytest.raises(InvalidInput):
            PasswordService(ctx).set(system, world.alice, bad)
    with pytest.raises(Exception, match="service admin"):
        PasswordService(ctx).set(actor_for(world.pete), world.alice, "a new long password")
    UserService(ctx).get("alice")


def test_behind_a_trusted_proxy_the_client_address_counts(database_url):
    """With TRUSTED_PROXIES=1 the throttle keys on X-Forwarded-For, not on the proxy."""
    from support import make_app, rolled_back

    from vo_service.auth.models import LoginThrottle

    app = make_app(database_url, TRUSTED_PROXIES=1)
    with rolled_back(app):
        client = app.test_client()
        client.post("/oauth/token", data={"grant_type": "password", "client_id": "xos-login",
                                          "username": "nobody", "password": "wrong password"},
                    headers={"X-Forwarded-For": "198.51.100.7"})
        assert db.session.get(LoginThrottle, "addr:198.51.100.7") is not None
        assert db.session.get(LoginThrottle, "addr:127.0.0.1") is None


def test_a_user_sets_their_own_password_through_the_api(client, world, users):
    key = users.key(world.alice)
    response = client.put("/api/v1/users/alice/password", json={"password": "brand new words"},
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 204
    assert password_login(client, password="brand new words")[0] == 200
    assert password_login(client)[1]["error_description"] == "wrong username or password"
    response = client.put("/api/v1/users/alice/password", json={"password": "short"},
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422 and "10 to 256" in response.get_json()["detail"]

"""The authorization server: authlib's protocol machinery (grants, client
authentication, RFC 8628, 7662 and 7009 endpoints) bound to our clients, users and
tokens. Every grant turns the service's own errors into OAuth error answers here, so
a client always gets ``{"error": ..., "error_description": ...}``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant
from authlib.oauth2.rfc8628.errors import ExpiredTokenError
from flask import Flask, current_app, g, request
from sqlalchemy import select

import xos_tokens

from ..context import ServiceContext
from ..db import db
from ..errors import (
    AuthenticationRequired,
    InvalidTransition,
    PermissionDenied,
    TooManyAttempts,
    XosError,
)
from ..memberships.models import Membership
from ..memberships.services import MembershipService
from ..pki.authority import passphrase
from ..timeutil import aware, utcnow
from ..users.models import User
from ..vos.models import VO
from .models import DeviceAuthorization, OAuthClient, RefreshToken
from .tokens import TokenService, digest

#: the public client of the ``xos-login`` command, made by the migrations
XOS_LOGIN_CLIENT = "xos-login"
SCOPES = ("openid", "profile", "email", "offline_access")


class SlowDown(OAuth2Error):
    error = "slow_down"
    status_code = 429


def _ascii(text: str) -> str:
    """OAuth error descriptions may hold printable ASCII only, without quotes or '\\'."""
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "?" for c in text)


@contextmanager
def oauth_errors() -> Iterator[None]:
    try:
        yield
    except TooManyAttempts as error:
        raise SlowDown(_ascii(error.detail)) from None
    except (AuthenticationRequired, InvalidTransition, PermissionDenied) as error:
        raise InvalidGrantError(_ascii(error.detail)) from None
    except XosError as error:
        raise InvalidRequestError(_ascii(error.detail)) from None


def tokens() -> TokenService:
    if "xos_tokens" not in g:
        ctx = ServiceContext.build(db.session, current_app.config)
        g.xos_tokens = TokenService(ctx, current_app.config, passphrase())
    service: TokenService = g.xos_tokens
    return service


class Client(ClientMixin):  # type: ignore[misc]
    """authlib's view of an OAuthClient row."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.row.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        if self.row.secret_hash is None or not client_secret or len(client_secret) > 256:
            return False
        return hmac.compare_digest(self.row.secret_hash, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.secret_hash is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types.split()


def query_client(client_id: str) -> Client | None:
    if not client_id or len(client_id) > 64:
        return None
    row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id,
                                                      OAuthClient.disabled_at.is_(None)))
    return Client(row) if row else None


def _user_with_access(user: User) -> User:
    """Tokens go to users with at least one active membership; a user whose requests are
    all pending hears so, in words."""
    if user.status != "active":
        raise InvalidGrantError(f"the account {user.username} is {user.status}")
    held = MembershipService(tokens().ctx).holdings(user)
    g.xos_holdings = (user.id, held)  # the token's groups, read once per request
    if held.vos:
        return user
    statuses = dict(db.session.execute(select(VO.name, Membership.status).join(
        Membership, Membership.vo_id == VO.id).where(Membership.user_id == user.id)).all())
    pending = sorted(v for v, s in statuses.items() if s == "pending")
    if pending:
        raise AccessDeniedError("your membership of VO " + ", ".join(pending)
                                + " is still pending approval")
    raise AccessDeniedError("you are not an active member of any VO")


def generate_token(grant_type: str, client: Client, user: User | None = None,
                   scope: str | None = None, expires_in: int | None = None,
                   include_refresh_token: bool = True) -> dict[str, Any]:
    service = tokens()
    previous: RefreshToken | None = g.get("xos_refresh_previous")
    requested = request.form.get("audience")
    try:
        with oauth_errors():
            # A refresh may ask for another audience (a node) for this one access token;
            # the login's own audience stays with its refresh tokens.
            audience = previous.audience if previous is not None and not requested else \
                service.audience_for(client.row, user, requested)
            known = g.get("xos_holdings")
            held = known[1] if known is not None and user is not None and \
                known[0] == user.id else None
            issued = service.issue(client.row, user, scope or "", audience,
                                   refresh=include_refresh_token, family=previous, held=held)
    except OAuth2Error:
        db.session.rollback()  # nothing of a refused request stands: the refresh token
        raise                  # it presented stays unused and good
    body = {"token_type": "Bearer", "access_token": issued.access_token,
            "expires_in": issued.expires_in, "scope": issued.scope,
            "audience": issued.audience}
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    return body


# -- grants -----------------------------------------------------------------------------
class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]

    def authenticate_user(self, username: str, password: str) -> User:
        from ..auth.passwords import Login

        ctx = ServiceContext.build(db.session, current_app.config)
        with oauth_errors():
            user = Login(ctx, current_app.config).authenticate(
                username, password, request.remote_addr or "unknown")
        return _user_with_access(user)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    class _Credential:
        def __init__(self, row: RefreshToken) -> None:
            self.row = row

        def get_scope(self) -> str:
            return self.row.scope

        def check_client(self, client: Client) -> bool:
            return self.row.client_id == client.get_client_id()

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        with oauth_errors():
            row = tokens().redeem_refresh(self.request.client.row, refresh_token)
        g.xos_refresh_previous = row
        return self._Credential(row)

    def authenticate_user(self, credential: Any) -> User | None:
        user = db.session.get(User, credential.row.user_id)
        return _user_with_access(user) if user is not None else None

    def revoke_old_credential(self, credential: Any) -> None:
        """Done already: redeeming marked it used (a second use revokes the family)."""


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]

    class _Credential:
        def __init__(self, row: DeviceAuthorization) -> None:
            self.row = row

        def get_client_id(self) -> str:
            return self.row.client_id

        def get_scope(self) -> str:
            return self.row.scope

        def get_user_code(self) -> str:
            return self.row.user_code

        def is_expired(self) -> bool:
            return aware(self.row.expires_at) <= utcnow()

    def query_device_credential(self, device_code: str) -> Any:
        if len(device_code) > 128:
            return None
        row = db.session.scalar(select(DeviceAuthorization).where(
            DeviceAuthorization.device_code_hash == digest(device_code)).with_for_update())
        if row is None or row.used_at is not None:
            return None
        return self._Credential(row)

    def validate_device_credential(self, credential: Any) -> Any:
        if credential.is_expired():
            raise ExpiredTokenError("the device code has expired; start the login again")
        try:
            return super().validate_device_credential(credential)
        except AccessDeniedError as error:
            if error.description != AccessDeniedError.description:
                raise  # ours, saying why (a pending membership, ...)
            raise AccessDeniedError("the login was denied on the approval page") from None

    def query_user_grant(self, user_code: str) -> tuple[User, bool] | None:
        row = db.session.scalar(select(DeviceAuthorization).where(
            DeviceAuthorization.user_code == user_code))
        if row is None or row.decision == "pending":
            return None
        row.used_at = utcnow()
        db.session.commit()  # a device code is good for one token, even if issuing fails
        user = db.session.get(User, row.user_id) if row.user_id else None
        if user is None:
            return None
        if row.decision == "approved":
            return _user_with_access(user), True
        return user, False

    def should_slow_down(self, credential: Any) -> bool:
        """RFC 8628 3.5: polling faster than the interval earns slow_down and a longer
        interval; the poll time is committed even though the answer is an error."""
        row = credential.row
        now = utcnow()
        last = row.last_poll_at
        last = aware(last) if last is not None else None
        too_fast = last is not None and now - last < dt.timedelta(seconds=row.interval)
        if too_fast:
            row.interval += 5
        row.last_poll_at = now
        db.session.commit()
        return too_fast


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    USER_CODE_TYPE = "string"

    def get_verification_uri(self) -> str:
        return current_app.config["PUBLIC_URL"].rstrip("/") + "/device"

    def create_endpoint_response(self, request: Any) -> Any:
        self.EXPIRES_IN = 60 * current_app.config["DEVICE_CODE_MINUTES"]
        self.INTERVAL = current_app.config["DEVICE_POLL_SECONDS"]
        return super().create_endpoint_response(request)

    def save_device_credential(self, client_id: str, scope: str | None,
                               data: dict[str, Any]) -> None:
        db.session.add(DeviceAuthorization(
            device_code_hash=digest(data["device_code"]), user_code=data["user_code"],
            client_id=client_id, scope=scope or "", interval=data["interval"],
            expires_at=utcnow() + dt.timedelta(seconds=data["expires_in"])))
        db.session.commit()


# -- introspection and revocation ---------------------------------------------------------
class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        try:
            return tokens().verify(token_string, audience=_any_audience(token_string))
        except AuthenticationRequired:
            return None

    def check_permission(self, token: Any, client: Client, request: Any) -> bool:
        return client.check_grant_type("client_credentials")

    def introspect_token(self, token: xos_tokens.Claims) -> dict[str, Any]:
        raw = token.raw
        return {"active": True, "token_type": "Bearer", "sub": token.subject,
                "iss": token.issuer, "aud": token.audience, "exp": raw["exp"],
                "iat": raw["iat"], "jti": token.jti, "scope": raw.get("scope", ""),
                "client_id": token.client_id, "username": token.preferred_username,
                "groups": token.groups}

    def create_introspection_payload(self, token: Any) -> dict[str, Any]:
        return self.introspect_token(token) if token is not None else {"active": False}


def _any_audience(token: str) -> str | None:
    """Introspection answers for a token of any audience: read the audience from the
    unverified payload, then verify the token for exactly that audience."""
    import jwt

    try:
        audience = jwt.decode(token[:xos_tokens.MAX_TOKEN_BYTES],
                              options={"verify_signature": False}).get("aud")
    except jwt.PyJWTError:
        return None
    if isinstance(audience, list):
        audience = audience[0] if audience else None
    return audience if isinstance(audience, str) else None


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        if token_string.startswith("xrt_"):
            return ("refresh", token_string)
        try:
            return ("access", tokens().verify(token_string,
                                              audience=_any_audience(token_string)))
        except AuthenticationRequired:
            return None

    def revoke_token(self, token: Any, request: Any) -> None:
        kind, value = token
        if kind == "refresh":
            tokens().revoke_refresh(value, request.client.row)
        else:
            tokens().revoke_access(value)
        db.session.commit()

    def authenticate_token(self, request: Any, client: Client) -> Any:
        # RFC 7009: an unknown or invalid token is not an error; answer 200 all the same.
        self.check_params(request, client)
        return self.query_token(request.form["token"], request.form.get("token_type_hint"))

    def create_endpoint_response(self, request: Any) -> Any:
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        if token is not None:
            self.revoke_token(token, request)
        return 200, {}, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


class Server(AuthorizationServer):  # type: ignore[misc]
    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Nothing to do: refresh tokens were stored when generated, access tokens are
        self-contained."""

    def validate_requested_scope(self, scope: str | None) -> None:
        if scope and not set(scope.split()) <= set(SCOPES):
            raise InvalidScopeError("unknown scope")


def new_client_secret() -> str:
    return "xcs_" + secrets.token_urlsafe(32)


def init_app(app: Flask) -> Server:
    server = Server(app, query_client=query_client)
    server.register_token_generator("default", generate_token)
    server.register_grant(PasswordGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_grant(DeviceGrant)
    server.register_endpoint(DeviceEndpoint)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    app.extensions["xos_oauth"] = server
    return server

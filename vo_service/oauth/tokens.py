"""Access and refresh tokens: what they say, who may ask for which audience, refresh
rotation with reuse detection, revocation, and the check of a presented access token.

Access tokens follow RFC 9068 (``at+jwt``) with the WLCG-style ``groups`` claim (VOMS
paths of the groups held now) and ``roles`` (role FQANs held now). The audience is the
service itself unless the client names another: a registered node that serves one of
the user's active VOs, or an audience registered for the client.

A token for a node is compact: the RFC 9068 minimum (registered claims and
``client_id``), without ``groups``, ``roles``, ``scope`` or ``preferred_username``. A node
decides who gets in and with which groups from its synced snapshot, which a revocation
reaches within seconds, never from a token's copy of them; and a token typed at a node's
password prompt passes through pam_exec, which hands on at most 511 bytes (a full token
is 540-600). The compact one is about 440 bytes plus the issuer URL and node name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select, update

import xos_tokens

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AuthenticationRequired, InvalidInput, PermissionDenied
from ..memberships.services import Holdings, MembershipService
from ..nodes.models import Node, NodeVO
from ..timeutil import aware, utcnow
from ..users.models import User
from .keys import KeyRing
from .models import OAuthClient, RefreshToken, RevokedAccessToken

MAX_AUDIENCE = 253


def digest(secret: str) -> str:
    """Refresh tokens, device codes and client secrets are stored as their SHA-256: they
    are long random strings, so a fast hash is enough and a stolen table is useless."""
    return hashlib.sha256(secret.encode()).hexdigest()



class RefreshReused(AuthenticationRequired):
    """A refresh token that was already used came back: its family is revoked."""


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    refresh_token: str | None
    scope: str
    audience: str


class TokenService:
    def __init__(self, ctx: ServiceContext, config: Mapping[str, Any],
                 passphrase: bytes) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.config = config
        self.issuer = config["PUBLIC_URL"].rstrip("/")
        self.keys = KeyRing(ctx, config, passphrase)
        self.access_lifetime = dt.timedelta(minutes=config["ACCESS_TOKEN_MINUTES"])
        self.refresh_idle = dt.timedelta(hours=config["REFRESH_TOKEN_HOURS"])
        self.refresh_family = dt.timedelta(days=config["REFRESH_FAMILY_DAYS"])

    # -- audiences ---------------------------------------------------------------------
    def audience_for(self, client: OAuthClient, user: User | None, requested: str | None
                     ) -> str:
        if not requested or requested == self.issuer:
            return self.issuer
        if len(requested) > MAX_AUDIENCE or not requested.isprintable():
            raise InvalidInput("the audience is not a valid name")
        if requested in client.audiences.split():
            return requested
        if user is not None and self.session.scalar(select(exists().where(
                Node.name == requested, NodeVO.node_id == Node.id,
                NodeVO.vo_id.in_([vo.id for vo in
                                  MembershipService(self.ctx).holdings(user).vos.values()])))):
            return requested
        raise PermissionDenied(f"no token for audience {requested[:80]!r}: not a node of"
                               " your VOs, nor an audience of this client")

    def _is_node(self, client: OAuthClient, audience: str) -> bool:
        """True for an audience that :meth:`audience_for` admitted as a node."""
        return audience != self.issuer and audience not in client.audiences.split()

    # -- access tokens -----------------------------------------------------------------
    def access_token(self, client: OAuthClient, user: User | None, scope: str, audience: str,
                     now: dt.datetime | None = None, held: Holdings | None = None
                     ) -> tuple[str, int]:
        """Sign an access token; ``held`` saves reading the user's groups again when the
        caller has just read them."""
        now = now or utcnow()
        claims: dict[str, Any] = {"client_id": client.client_id}
        subject = str(user.id) if user is not None else client.client_id
        if not self._is_node(client, audience):
            claims["scope"] = scope
            if user is not None:
                held = held or MembershipService(self.ctx).holdings(user)
                claims.update(preferred_username=user.username,
                              groups=[g for vo in held.vos for g in held.groups[vo]],
                              roles=[r for vo in held.vos for r in held.roles[vo]])
        token = xos_tokens.sign_access_token(
            self.keys.signing_key(now), issuer=self.issuer, subject=subject,
            audience=audience, lifetime=self.access_lifetime, claims=claims, now=now)
        return token, int(self.access_lifetime.total_seconds())

    def issue(self, client: OAuthClient, user: User | None, scope: str, audience: str,
              refresh: bool, family: RefreshToken | None = None,
              held: Holdings | None = None) -> Issued:
        token, expires_in = self.access_token(client, user, scope, audience, held=held)
        refresh_token = self._new_refresh(client, user, scope,
                                          family.audience if family else audience, family) \
            if refresh and user is not None else None
        return Issued(token, expires_in, refresh_token, scope, audience)

    # -- refresh tokens ----------------------------------------------------------------
    def _new_refresh(self, client: OAuthClient, user: User, scope: str, audience: str,
                     previous: RefreshToken | None) -> str:
        now = utcnow()
        secret = "xrt_" + secrets.token_urlsafe(32)
        family_end = aware(previous.family_expires_at) if previous else now + self.refresh_family
        self.session.add(RefreshToken(
            token_hash=digest(secret), family=previous.family if previous else uuid.uuid4().hex,
            user_id=user.id, client_id=client.client_id, scope=scope, audience=audience,
            issued_at=now, expires_at=min(now + self.refresh_idle, family_end),
            family_expires_at=family_end))
        self.session.flush()
        return secret

    def redeem_refresh(self, client: OAuthClient, secret: str) -> RefreshToken:
        """The live refresh token behind ``secret``, marked used. A used one presented
        again revokes its whole family (it was copied) and is refused."""
        row = self.session.scalar(select(RefreshToken).where(
            RefreshToken.token_hash == digest(secret)).with_for_update()) \
            if secret and len(secret) <= 256 else None
        now = utcnow()
        if row is None or row.client_id != client.client_id:
            raise AuthenticationRequired("the refresh token is unknown")
        if row.used_at is not None:
            self.revoke_family(row.family, now)
            self.session.commit()  # the revocation stands even though this request fails
            raise RefreshReused("the refresh token was already used: every token of this"
                                " login is revoked; log in again")
        if row.revoked_at is not None:
            raise AuthenticationRequired("the refresh token was revoked; log in again")
        if aware(row.expires_at) <= now:
            raise AuthenticationRequired("the refresh token has expired; log in again")
        row.used_at = now
        self.session.flush()
        return row

    def revoke_family(self, family: str, now: dt.datetime | None = None) -> None:
        self.session.execute(update(RefreshToken).where(
            RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now or utcnow()))

    def revoke_refresh(self, secret: str, client: OAuthClient) -> bool:
        row = self.session.scalar(select(RefreshToken).where(
            RefreshToken.token_hash == digest(secret)))
        if row is None or row.client_id != client.client_id:
            return False
        self.revoke_family(row.family)
        return True

    def revoke_access(self, claims: xos_tokens.Claims) -> None:
        if self.session.get(RevokedAccessToken, claims.jti) is None:
            self.session.add(RevokedAccessToken(jti=claims.jti, expires_at=claims.expires_at))
            self.session.flush()

    # -- presented access tokens ---------------------------------------------------------
    def verify(self, token: str, audience: str | None = None) -> xos_tokens.Claims:
        """A valid, unrevoked access token for ``audience`` (default: this service)."""
        try:
            claims = xos_tokens.verify_access_token(
                token, keys=self.keys.key_set(), issuer=self.issuer,
                audience=audience or self.issuer)
        except xos_tokens.InvalidKey:  # no key published yet: nothing can be valid
            raise AuthenticationRequired("invalid access token: unknown key id") from None
        except xos_tokens.InvalidToken as error:
            raise AuthenticationRequired(f"invalid access token: {error}") from None
        if self.session.get(RevokedAccessToken, claims.jti) is not None:
            raise AuthenticationRequired("invalid access token: it was revoked")
        return claims

    def actor(self, token: str) -> Actor:
        """The caller behind an access token presented to this service's API."""
        claims = self.verify(token)
        try:
            user_id = uuid.UUID(claims.subject)
        except ValueError:
            raise PermissionDenied("a client's own token cannot act as a user") from None
        user = self.session.get(User, user_id)
        if user is None or user.status != "active":
            raise PermissionDenied("the token's user is not active")
        return Actor(label=f"user:{user.username}", user_id=user.id,
                     is_service_admin=user.is_service_admin)


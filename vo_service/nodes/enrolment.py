"""Enrolling a node with a one-time token: the operator makes a token for a registered
node; the node presents it once, with a CSR for its TLS key and its SSH host key, and
receives everything it needs to run: its API key, its certificate and the CA chain, the
SSH CA keys it must trust, the token-signing JWKS and an SSH host certificate.

Tokens are stored as their SHA-256, expire (``ENROLMENT_TOKEN_HOURS``) and work once;
a used, expired or unknown token gets the same 401 and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from ..apikeys.services import ApiKeyService
from ..authz import Actor
from ..context import ServiceContext
from ..errors import AuthenticationRequired
from ..oauth.tokens import digest
from ..timeutil import aware, utcnow
from .models import EnrolmentToken, Node

PREFIX = "xet_"



@dataclass(frozen=True)
class Enrolled:
    node: Node
    api_key: str


class EnrolmentService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def issue(self, actor: Actor, node: Node, hours: int) -> tuple[str, dt.datetime]:
        """A service admin makes a one-time token for ``node``; shown once."""
        self.ctx.authz.require_service_admin(actor)
        secret = PREFIX + secrets.token_urlsafe(32)
        expires = utcnow() + dt.timedelta(hours=hours)
        self.session.add(EnrolmentToken(node_id=node.id, token_hash=digest(secret),
                                        expires_at=expires))
        self.session.flush()
        self.ctx.audit.append(actor.label, "node.enrolment_token", "node", node.name,
                              after={"expires_at": expires.isoformat()})
        return secret, expires

    def redeem(self, token: str) -> Enrolled:
        """Use a token once: the node gets a fresh API key (its earlier keys stay until
        an admin revokes them)."""
        row = self.session.scalar(select(EnrolmentToken).where(
            EnrolmentToken.token_hash == digest(token)).with_for_update()) \
            if token.startswith(PREFIX) and len(token) <= 128 else None
        if row is None or row.used_at is not None or aware(row.expires_at) <= utcnow():
            raise AuthenticationRequired("the enrolment token is unknown, used or expired")
        node = self.session.get(Node, row.node_id)
        assert node is not None
        row.used_at = utcnow()
        actor = Actor(label=f"node:{node.name}", node_id=node.id)
        _, api_key = ApiKeyService(self.ctx).issue(Actor.system("enrolment"), node=node,
                                                   description="enrolment")
        self.ctx.audit.append(actor.label, "node.enrol", "node", node.name)
        return Enrolled(node, api_key)

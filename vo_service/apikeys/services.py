"""API keys: how clients authenticate until single sign-on lands.

A key reads ``xos_<16 hex key id>_<43 url-safe secret>``; only the key id and the
SHA-256 of the secret are stored. The secret is shown once, at creation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AuthenticationRequired, InvalidTransition, NotFound, PermissionDenied
from ..nodes.models import Node
from ..timeutil import utcnow
from ..users.models import User
from .models import ApiKey

KEY_RE = re.compile(r"xos_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
USE_GRANULARITY = dt.timedelta(minutes=5)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def issue(self, actor: Actor, *, user: User | None = None, node: Node | None = None,
              description: str = "") -> tuple[ApiKey, str]:
        """Create a key for a user (themselves, or anyone by a service admin) or a node."""
        if node is not None or user is None or actor.user_id != user.id:
            self.ctx.authz.require_service_admin(actor)
        if user is not None and user.status != "active":
            raise InvalidTransition(f"user {user.username!r} is {user.status}")
        if not isinstance(description, str) or len(description) > 256:
            from ..errors import InvalidInput

            raise InvalidInput("description must be text of at most 256 characters")
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = ApiKey(key_id=key_id, secret_hash=_digest(secret), description=description,
                     user_id=user.id if user else None, node_id=node.id if node else None)
        self.session.add(key)
        self.session.flush()
        owner = f"user:{user.username}" if user else f"node:{node.name}"  # type: ignore[union-attr]
        self.ctx.audit.append(actor.label, "apikey.issue", "apikey", key_id,
                              after={"owner": owner, "description": description})
        return key, f"xos_{key_id}_{secret}"

    def revoke(self, actor: Actor, key_id: str) -> ApiKey:
        key = self.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id)) \
            if len(key_id) == 16 else None
        if key is None:
            raise NotFound(f"no API key {key_id[:20]!r}")
        if key.user_id is None or key.user_id != actor.user_id:
            self.ctx.authz.require_service_admin(actor)
        if key.revoked_at is not None:
            raise InvalidTransition(f"API key {key_id} is already revoked")
        key.revoked_at = utcnow()
        self.ctx.audit.append(actor.label, "apikey.revoke", "apikey", key_id)
        return key

    def authenticate(self, presented: str) -> Actor:
        """Turn a presented key into an Actor; any failure is the same 401."""
        match = KEY_RE.fullmatch(presented)
        if not match:
            raise AuthenticationRequired("malformed API key")
        key = self.session.scalar(select(ApiKey).where(ApiKey.key_id == match[1]))
        if key is None or not hmac.compare_digest(key.secret_hash, _digest(match[2])) \
                or key.revoked_at is not None:
            raise AuthenticationRequired("unknown or revoked API key")
        self._mark_used(key)
        if key.node_id is not None:
            node = self.session.get(Node, key.node_id)
            assert node is not None
            return Actor(label=f"node:{node.name}", node_id=node.id)
        user = self.session.get(User, key.user_id)
        if user is None or user.status != "active":
            raise PermissionDenied("this account is suspended or deleted")
        return Actor(label=f"user:{user.username}", user_id=user.id,
                     is_service_admin=user.is_service_admin)

    def _mark_used(self, key: ApiKey) -> None:
        now = utcnow()
        last = key.last_used_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        if last is None or now - last > USE_GRANULARITY:
            key.last_used_at = now

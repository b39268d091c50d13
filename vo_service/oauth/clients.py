"""Registering confidential OAuth clients (services that use client credentials)."""

from __future__ import annotations

import re

from sqlalchemy import exists, select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AlreadyExists, InvalidInput
from .models import OAuthClient
from .server import new_client_secret
from .tokens import digest

CLIENT_ID = re.compile(r"^[a-z][a-z0-9._-]{2,63}$")


class ClientService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def create(self, actor: Actor, client_id: str, name: str, audiences: list[str]) -> str:
        """Register a client-credentials client; return its secret (shown once)."""
        self.ctx.authz.require_service_admin(actor)
        if not CLIENT_ID.match(client_id):
            raise InvalidInput("a client id is 3 to 64 of a-z, 0-9, '.', '_', '-',"
                               " starting with a letter")
        if any(not a or len(a) > 253 or not a.isprintable() or " " in a for a in audiences):
            raise InvalidInput("an audience is 1 to 253 printable characters without spaces")
        if self.session.scalar(select(exists().where(OAuthClient.client_id == client_id))):
            raise AlreadyExists(f"client {client_id!r} exists")
        secret = new_client_secret()
        self.session.add(OAuthClient(client_id=client_id, secret_hash=digest(secret),
                                     name=name[:128], grant_types="client_credentials",
                                     scope="", audiences=" ".join(audiences)))
        self.session.flush()
        self.ctx.audit.append(actor.label, "oauth.client.create", "oauth_client", client_id,
                              after={"audiences": audiences})
        return secret

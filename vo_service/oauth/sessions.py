"""A user's logins (``xos-login`` sessions): what the portal lists and lets them end.

A login is a refresh-token family: the head of the family (its one unused, unrevoked
token) says when it was last renewed, for which client and audience, and until when it
can live. Ending it revokes the whole family; access tokens already issued expire on
their own within ACCESS_TOKEN_MINUTES.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update

from ..authz import Actor
from ..context import ServiceContext
from ..errors import NotFound
from ..timeutil import aware, utcnow
from ..users.models import User
from .models import RefreshToken


@dataclass(frozen=True)
class LoginSession:
    family: str
    client_id: str
    audience: str
    renewed_at: dt.datetime
    ends_at: dt.datetime


class LoginSessions:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def active(self, actor: Actor, user: User) -> list[LoginSession]:
        """The user's live logins, most recently renewed first."""
        self.ctx.authz.require_self_or_admin_of_user(actor, user.id)
        now = utcnow()
        rows = self.session.scalars(select(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None)).order_by(RefreshToken.issued_at.desc()))
        return [LoginSession(r.family, r.client_id, r.audience, aware(r.issued_at),
                             min(aware(r.expires_at), aware(r.family_expires_at)))
                for r in rows if aware(r.expires_at) > now]

    def end(self, actor: Actor, user: User, family: str) -> None:
        """Revoke the login ``family`` of ``user`` (NotFound if it is not theirs)."""
        self.ctx.authz.require_self_or_admin_of_user(actor, user.id)
        ended = self.session.scalars(update(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.family == family[:32],
            RefreshToken.revoked_at.is_(None)).values(revoked_at=utcnow())
            .returning(RefreshToken.id)).all()
        if not ended:
            raise NotFound("no such login")
        self.ctx.audit.append(actor.label, "login.ended", "user", user.username,
                              after={"family": family[:32]})

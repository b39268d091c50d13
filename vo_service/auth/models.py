from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow


class PasswordCredential(db.Model):  # type: ignore[name-defined,misc]
    """A user's VO password as an argon2id hash (the parameters ride in the hash)."""

    __tablename__ = "passwords"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LdapLink(db.Model):  # type: ignore[name-defined,misc]
    """A VO user who logs in with an institutional directory account."""

    __tablename__ = "ldap_links"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), primary_key=True)
    ldap_username: Mapped[str] = mapped_column(String(64), unique=True)
    linked_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoginThrottle(db.Model):  # type: ignore[name-defined,misc]
    """Failed logins per account ("user:<name>") and per client address ("addr:<ip>"),
    in a window; past the limit, attempts wait until ``blocked_until`` (never forever)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow
from ..users.models import NameType

MEMBERSHIP_STATUSES = ("pending", "active", "suspended", "expired", "removed")


class Membership(db.Model):  # type: ignore[name-defined,misc]
    """User x VO. Never deleted: a removed membership keeps the user resolvable (locked)
    on the VO's nodes, so that their files keep an owner's name."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "vo_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"))
    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"))
    # A copy of the user's name (names never change): member lists page by name through
    # an index of (vo, name) instead of joining and sorting every member of a large VO.
    username: Mapped[str] = mapped_column(NameType, server_default=text("''"))
    status: Mapped[str] = mapped_column(String(16))
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    approved_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(512), default="")
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class GroupMembership(db.Model):  # type: ignore[name-defined,misc]
    """Membership in a VO subgroup; the root group's members are the active members."""

    __tablename__ = "group_memberships"

    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), primary_key=True)


class RoleAssignment(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "role_assignments"

    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"), primary_key=True)


Index("ix_memberships_vo_username", Membership.vo_id, Membership.username)
Index("ix_memberships_vo_status_username", Membership.vo_id, Membership.status,
      Membership.username)
Index("ix_memberships_expiry", Membership.status, Membership.expires_on)
Index("ix_group_memberships_group", GroupMembership.group_id)

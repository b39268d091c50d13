from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow

#: Sorting and prefix search on names use byte order on PostgreSQL too.
NameType = String(32).with_variant(String(32, collation="C"), "postgresql")
EmailType = String(254).with_variant(String(254, collation="C"), "postgresql")

USER_STATUSES = ("active", "suspended", "deleted")


class User(db.Model):  # type: ignore[name-defined,misc]
    """A grid identity. Rows are never deleted: a deleted user keeps name and uid forever."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(NameType, unique=True)
    uid: Mapped[int] = mapped_column(Integer, unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(EmailType, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    is_service_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    @property
    def gid(self) -> int:
        """The user private group has gid = uid."""
        return self.uid


class UnixName(db.Model):  # type: ignore[name-defined,misc]
    """Registry of every Unix name handed out (users' private groups and VO groups share
    one namespace on a node). Names are never released."""

    __tablename__ = "unix_names"

    name: Mapped[str] = mapped_column(NameType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "user" or "group"
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))


Index("ix_users_status", User.status)

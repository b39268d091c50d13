from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow
from ..users.models import NameType

PathType = String(512).with_variant(String(512, collation="C"), "postgresql")


class VO(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "vos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(NameType, unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # VO policy: the longest XOS or SSH certificate its members may get, in hours.
    cert_hours: Mapped[int] = mapped_column(Integer, default=12, server_default="12")


class Group(db.Model):  # type: ignore[name-defined,misc]
    """A VO group; the VO itself is the root group (path ``/vo``, no parent).

    Deleting a group marks it deleted; its gid and Unix name stay retired."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    name: Mapped[str] = mapped_column(NameType)
    path: Mapped[str] = mapped_column(PathType, unique=True)
    unix_name: Mapped[str] = mapped_column(NameType, unique=True)
    gid: Mapped[int] = mapped_column(Integer, unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def is_root(self) -> bool:
        return self.parent_id is None


class Role(db.Model):  # type: ignore[name-defined,misc]
    """A VOMS-style role, carried as ``/vo/Role=name``."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("vo_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")


class VOAdmin(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "vo_admins"

    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), primary_key=True)


class GroupManager(db.Model):  # type: ignore[name-defined,misc]
    """May add and remove VO members in this group and the groups below it."""

    __tablename__ = "group_managers"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), primary_key=True)

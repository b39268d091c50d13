"""What the LDAP import manages: the memberships and group memberships it added.

Why a table: a sync removes only what the import itself brought in (members that an
admin added by hand are never touched), so the import must remember what it added."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow


class LdapManaged(db.Model):  # type: ignore[name-defined,misc]
    """User x group added by the import; the VO's root group stands for the membership."""

    __tablename__ = "ldap_import_managed"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), primary_key=True)
    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"), index=True)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

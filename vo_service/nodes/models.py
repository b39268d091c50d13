from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow


class Node(db.Model):  # type: ignore[name-defined,misc]
    """A registered host (resource). It only ever learns the accounts of its VOs."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    description: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_contact: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Revision at which the node's VO set last changed: a node that synced before it
    # must take a fresh snapshot, since whole VOs came or went.
    vos_changed_revision: Mapped[int] = mapped_column(BigInteger, default=0)


class NodeVO(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "node_vos"

    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"), primary_key=True, index=True)


class EnrolmentToken(db.Model):  # type: ignore[name-defined,misc]
    """A one-time token with which a new node enrols itself (stored as its SHA-256)."""

    __tablename__ = "enrolment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

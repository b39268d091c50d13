from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db


class AuditEvent(db.Model):  # type: ignore[name-defined,misc]
    """One append-only event. ``hash = sha256(prev_hash || canonical(event))``.

    The database refuses UPDATE and DELETE on this table (triggers in the migration)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    at: Mapped[str] = mapped_column(String(32), index=True)  # ISO 8601 UTC, sortable
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(600))
    vo_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(db.Model):  # type: ignore[name-defined,misc]
    """The chain head (one row, id 1). Locking it serialises appenders across replicas."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


# A VO's log, newest first, whole or filtered by one action or one actor: each an index
# walk that stops after a page, however rare the filter is (an action prefix is read as
# the action names it matches, see AuditService.page).
Index("ix_audit_events_vo_seq", AuditEvent.vo_id, AuditEvent.seq)
Index("ix_audit_events_vo_action_seq", AuditEvent.vo_id, AuditEvent.action, AuditEvent.seq)
Index("ix_audit_events_vo_actor_seq", AuditEvent.vo_id, AuditEvent.actor, AuditEvent.seq)

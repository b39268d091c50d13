"""Reading the audit log: service admins see all, VO admins their VO's events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import InvalidInput
from ..users.services import prefix_upper_bound
from ..vos.models import VO
from .models import AuditEvent


def event_record(e: AuditEvent) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action,
            "target_type": e.target_type, "target": e.target_id, "before": e.before,
            "after": e.after, "hash": e.hash}


class AuditService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def page(self, actor: Actor, vo: VO | None, after: int | None, limit: int | None,
             action: str | None = None, by: str | None = None
             ) -> tuple[list[AuditEvent], int | None]:
        """Newest first; ``after`` is the seq of the last event already seen. ``action``
        keeps the events whose action starts with it ("membership." or
        "membership.approve"), ``by`` those of one actor ("user:alice")."""
        for label, value in (("action", action), ("actor", by)):
            if value is not None and (len(value) > 64 or not value.isprintable()):
                raise InvalidInput(f"the {label} filter is not a usable text")
        if vo is None:
            self.ctx.authz.require_service_admin(actor)
        else:
            self.ctx.authz.require_vo_admin(actor, vo)
        size = self.ctx.page_size(limit)
        stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(size + 1)
        if vo is not None:
            stmt = stmt.where(AuditEvent.vo_id == vo.id)
        if after is not None:
            stmt = stmt.where(AuditEvent.seq < after)
        if action:
            stmt = stmt.where(AuditEvent.action >= action,
                              AuditEvent.action < prefix_upper_bound(action))
        if by:
            stmt = stmt.where(AuditEvent.actor == by)
        rows = list(self.ctx.session.scalars(stmt))
        return rows[:size], (rows[size - 1].seq if len(rows) > size else None)

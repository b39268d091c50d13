"""Reading the audit log: service admins see all, VO admins their VO's events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..authz import Actor
from ..context import ServiceContext
from ..vos.models import VO
from .models import AuditEvent


def event_record(e: AuditEvent) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action,
            "target_type": e.target_type, "target": e.target_id, "before": e.before,
            "after": e.after, "hash": e.hash}


class AuditService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def page(self, actor: Actor, vo: VO | None, after: int | None, limit: int | None
             ) -> tuple[list[AuditEvent], int | None]:
        """Newest first; ``after`` is the seq of the last event already seen."""
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
        rows = list(self.ctx.session.scalars(stmt))
        return rows[:size], (rows[size - 1].seq if len(rows) > size else None)

"""Reading the audit log: service admins see all, VO admins their VO's events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

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


# Distinct action names an action-prefix filter reads one by one (the services write
# a few dozen in all); beyond that the filter is one range condition.
ACTION_NAMES_MAX = 64


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
        if by:
            stmt = stmt.where(AuditEvent.actor == by)
        if not action:
            rows = list(self.ctx.session.scalars(stmt))
        elif vo is not None:
            rows = self._by_actions(stmt, vo, action, size + 1)
        else:
            rows = list(self.ctx.session.scalars(stmt.where(
                AuditEvent.action >= action, AuditEvent.action < prefix_upper_bound(action))))
        return rows[:size], (rows[size - 1].seq if len(rows) > size else None)

    def _by_actions(self, stmt: Select[Any], vo: VO, prefix: str, want: int
                    ) -> list[AuditEvent]:
        """A VO's events whose action starts with ``prefix``, newest first: the action
        names that match, read from the (vo, action, seq) index one seek each, then one
        index walk of at most ``want`` seqs per name, merged, and the newest loaded.

        Why not one range condition: the database then either walks the VO's whole log
        testing each row (a rare prefix) or sorts every match (a common one)."""
        names: list[str] = []
        upper = prefix_upper_bound(prefix)
        lowest = AuditEvent.action >= prefix
        while len(names) < ACTION_NAMES_MAX:
            name = self.ctx.session.scalar(
                select(AuditEvent.action).where(AuditEvent.vo_id == vo.id, lowest,
                                                AuditEvent.action < upper)
                .order_by(AuditEvent.action).limit(1))
            if name is None:
                break
            names.append(name)
            lowest = AuditEvent.action > name
        else:  # more names than expected: one range condition after all
            return list(self.ctx.session.scalars(
                stmt.where(AuditEvent.action >= prefix, AuditEvent.action < upper)))
        # The walks read seqs only (the index covers them); the page's rows load once.
        seqs = stmt.with_only_columns(AuditEvent.seq)
        newest = sorted((seq for name in names for seq in self.ctx.session.scalars(
            seqs.where(AuditEvent.action == name))), reverse=True)[:want]
        return list(self.ctx.session.scalars(
            select(AuditEvent).where(AuditEvent.seq.in_(newest))
            .order_by(AuditEvent.seq.desc()))) if newest else []

"""The global revision: one monotonic number bumped by every change to node accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..audit.chain import AuditLog
from ..numbering import advance_counter
from .models import AccountChange, Counter


@dataclass(frozen=True)
class Change:
    """One subject of the node account view (see AccountChange for the kinds)."""

    vo_id: int
    kind: str
    user_id: uuid.UUID | None = None
    group_id: int | None = None


class RevisionLog:
    def __init__(self, session: Session, audit: AuditLog | None = None) -> None:
        self.session = session
        self.audit = audit or AuditLog(session)

    def current(self) -> int:
        value = self.session.scalar(select(Counter.value).where(Counter.name == "revision"))
        return int(value or 0)

    def bump(self) -> int:
        """A new revision with no subject of its own (a node's VO set changed)."""
        self.audit.lock_head()  # the one lock order: audit head first
        return advance_counter(self.session, "revision", 1)

    def publish(self, changes: Iterable[Change]) -> int | None:
        """Bump the revision once and record ``changes`` under it; None if no change.

        Call it late in the transaction: it holds the revision row lock until commit."""
        rows = [
            {"vo_id": c.vo_id, "kind": c.kind, "user_id": c.user_id, "group_id": c.group_id}
            for c in dict.fromkeys(changes)
        ]
        if not rows:
            return None
        revision = self.bump()
        for row in rows:
            row["revision"] = revision
        self.session.execute(insert(AccountChange), rows)
        return revision

"""The hash-chained audit log: append, and verify naming the first broken link.

``hash(n) = sha256(hash(n-1) || canonical_json(event n))`` with ``hash(0) = 64 * "0"``.
Appenders lock the single ``audit_head`` row, so the chain stays linear across replicas.
A deleted or edited row breaks the chain at that row; a cut-off tail shows as a
mismatch with the head. An attacker who can rewrite the whole table *and* the head can
rebuild a consistent chain: export ``head`` to somewhere else (``xos-vo audit head``) to
anchor it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, scoped_session

from ..timeutil import utcnow
from .models import AuditEvent, AuditHead

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _event_body(e: AuditEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "target_type": e.target_type,
        "target_id": e.target_id,
        "vo_id": e.vo_id,
        "before": e.before,
        "after": e.after,
    }


def link_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


class AuditLog:
    """Appends events; its head row is also *the* write lock of the service.

    Every writing transaction takes the head lock before any other row lock (the number
    and revision counters call ``lock_head`` first), so locks are always taken in one
    order and replicas can never deadlock on them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_head(self) -> AuditHead:
        return self.session.execute(
            select(AuditHead)
            .where(AuditHead.id == 1)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()

    def append(
        self,
        actor: str,
        action: str,
        target_type: str,
        target_id: str,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        vo_id: int | None = None,
    ) -> AuditEvent:
        head = self.lock_head()
        event = AuditEvent(
            seq=head.seq + 1,
            at=utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            vo_id=vo_id,
            before=before,
            after=after,
            prev_hash=head.hash,
        )
        event.hash = link_hash(head.hash, _event_body(event))
        head.seq, head.hash = event.seq, event.hash
        self.session.add(event)
        return event


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events: int
    broken_seq: int | None = None
    reason: str = ""


def _walk(events: Iterable[AuditEvent]) -> Verdict | tuple[int, str]:
    """Check each link; return the first broken one, or (count, last hash)."""
    expected_seq, prev = 1, GENESIS
    for event in events:
        if event.seq != expected_seq:
            return Verdict(False, expected_seq - 1, expected_seq,
                           f"event {expected_seq} is missing (next stored is {event.seq})")
        if event.prev_hash != prev:
            return Verdict(False, expected_seq - 1, event.seq,
                           f"event {event.seq} does not point at the hash of event {event.seq - 1}")
        if link_hash(prev, _event_body(event)) != event.hash:
            return Verdict(False, expected_seq - 1, event.seq,
                           f"event {event.seq} was altered: its content does not match its hash")
        prev, expected_seq = event.hash, expected_seq + 1
    return expected_seq - 1, prev


def verify(session: Session | scoped_session[Any], batch: int = 5000) -> Verdict:
    """Walk the chain in order; name the first event whose link does not hold."""
    # populate_existing: read what is stored, never objects this session already holds.
    stmt = select(AuditEvent).order_by(AuditEvent.seq).execution_options(
        yield_per=batch, populate_existing=True)
    with closing(session.scalars(stmt)) as events:  # a server-side cursor on PostgreSQL
        walked = _walk(events)
    if isinstance(walked, Verdict):
        return walked
    count, prev = walked
    head = session.get(AuditHead, 1, populate_existing=True)
    if head is None or head.seq != count or head.hash != prev:
        return Verdict(False, count, count + 1,
                       f"the chain ends at event {count} but the head records event "
                       f"{head.seq if head else '?'}: events were cut off the end")
    return Verdict(True, count)

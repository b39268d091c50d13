"""The hash-chained audit log: every change recorded, tampering found and named."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from vo_service.audit.chain import GENESIS, link_hash, verify
from vo_service.audit.models import AuditEvent, AuditHead
from vo_service.cli import audit_verify
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.vos.services import VOService

DROP_GUARDS = {
    "sqlite": ["DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"],
    "postgresql": ["DROP TRIGGER audit_events_append_only ON audit_events"],
}


@pytest.fixture
def history(ctx, system, users):
    vos, ms = VOService(ctx), MembershipService(ctx)
    vo = vos.create(system, "atlas")
    alice = users.make("alice")
    ms.add(system, vo, alice)
    ms.transition(system, vo, alice, "suspend", reason="audit test")
    db.session.commit()
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.fixture
def unguarded(backend):
    """Lift the append-only triggers inside the test's transaction (rolled back after)."""
    for statement in DROP_GUARDS[backend]:
        db.session.execute(text(statement))


def test_every_change_is_chained_with_before_and_after(history):
    events = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    assert [e.action for e in events] == ["vo.create", "user.create", "membership.add",
                                          "membership.suspend"]
    assert events[0].prev_hash == GENESIS
    for prev, event in zip(events, events[1:], strict=False):
        assert event.prev_hash == prev.hash
    suspend = events[-1]
    assert suspend.actor == "cli:pytest"
    assert suspend.before["status"] == "active" and suspend.after["status"] == "suspended"
    assert suspend.after["reason"] == "audit test"
    head = db.session.get(AuditHead, 1)
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    assert verify(db.session).ok and verify(db.session).events == history


def test_the_database_refuses_to_edit_events(history):
    with pytest.raises(DatabaseError, match="append-only"), db.session.begin_nested():
        db.session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
    with pytest.raises(DatabaseError, match="append-only"), db.session.begin_nested():
        db.session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    assert verify(db.session).ok


def test_an_edited_event_is_named(history, unguarded):
    db.session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
    verdict = verify(db.session)
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "altered" in verdict.reason


def test_an_edited_event_with_recomputed_hash_breaks_the_next_link(history, unguarded):
    event = db.session.get(AuditEvent, 2)
    body = {"seq": 2, "at": event.at, "actor": "mallory", "action": event.action,
            "target_type": event.target_type, "target_id": event.target_id,
            "vo_id": event.vo_id, "before": event.before, "after": event.after}
    forged = link_hash(event.prev_hash, body)
    db.session.execute(text("UPDATE audit_events SET actor = 'mallory', hash = :h"
                            " WHERE seq = 2"), {"h": forged})
    verdict = verify(db.session)
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "does not point at" in verdict.reason


def test_a_deleted_event_is_named(history, unguarded):
    db.session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    verdict = verify(db.session)
    assert (verdict.ok, verdict.broken_seq) == (False, 2)
    assert "missing" in verdict.reason


def test_a_cut_off_tail_is_found(history, unguarded):
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": history})
    verdict = verify(db.session)
    assert (verdict.ok, verdict.broken_seq) == (False, history)
    assert "cut off" in verdict.reason


def test_verify_command_exit_codes(app, history, unguarded):
    runner = app.test_cli_runner()
    ok = runner.invoke(audit_verify)
    assert ok.exit_code == 0 and f"intact: {history} events" in ok.output
    db.session.execute(text("UPDATE audit_events SET action = 'x' WHERE seq = 2"))
    broken = runner.invoke(audit_verify)
    assert broken.exit_code == 1
    assert "BROKEN at event 2" in broken.output


@pytest.mark.parametrize("names_max", [64, 1])
def test_filtered_pages_are_those_of_a_plain_scan(ctx, system, users, monkeypatch,
                                                  names_max):
    """The audit filters read indexes (an action prefix as its action names, one index
    walk each; more names than ACTION_NAMES_MAX fall back to one range condition): page
    by page, they give exactly the VO's events a plain scan keeps."""
    from vo_service.audit import services as audit_services
    from vo_service.audit.services import AuditService
    from vo_service.authz import Actor

    monkeypatch.setattr(audit_services, "ACTION_NAMES_MAX", names_max)
    vos, ms = VOService(ctx), MembershipService(ctx)
    atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
    admin = Actor(label="user:root", is_service_admin=True)
    for i in range(6):
        user = users.make(f"user{i}")
        for vo in (atlas, cms):
            ms.add(system if i % 2 else admin, vo, user)
        ms.transition(admin, atlas, user, "suspend", reason="audit test")
        if i % 3 == 0:
            ms.transition(system, atlas, user, "reinstate")
    vos.create_group(admin, atlas, "/atlas/higgs")
    db.session.commit()
    every = sorted(db.session.scalars(select(AuditEvent).where(AuditEvent.vo_id == atlas.id)),
                   key=lambda e: e.seq, reverse=True)
    assert {e.action.split(".")[0] for e in every} >= {"membership", "group"}
    audit = AuditService(ctx)
    for action in (None, "membership.", "membership.suspend", "group.", "m", "z", "vo.x"):
        for by in (None, "user:root", system.label, "user:nobody"):
            expected = [e.seq for e in every if (not action or e.action.startswith(action))
                        and (not by or e.actor == by)]
            seen: list[int] = []
            after = None
            while True:
                rows, after = audit.page(system, atlas, after, 2, action, by)
                seen += [e.seq for e in rows]
                if after is None:
                    break
            assert seen == expected, (action, by)

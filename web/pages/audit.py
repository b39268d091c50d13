"""A VO admin's audit log: newest first, filtered by action and actor, each event's
changes shown field by field."""

from __future__ import annotations

from typing import Any

from flask import flash, render_template, request
from flask_login import current_user, login_required

from vo_service.audit.services import AuditService
from vo_service.errors import XosError

from ..portal import administered, blueprint, service_context, vo_tab


@blueprint.route("/vos/<vo>/audit")
@login_required
@vo_tab("Audit log", 90)
def audit(vo: str) -> str:
    ctx = service_context()
    target = administered(ctx, vo)
    action = (request.args.get("action") or "").strip()[:64] or None
    by = (request.args.get("actor") or "").strip()[:64] or None
    after = request.args.get("after", "")
    try:
        events, following = AuditService(ctx).page(
            current_user.actor, target, int(after) if after.isdigit() else None, None,
            action, by)
    except XosError as error:
        flash(error.detail, "error")
        events, following = [], None
    return render_template("portal/audit.html", vo=target,
                           events=[(e, difference(e.before, e.after)) for e in events],
                           following=following, action=action or "", actor=by or "")


def difference(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """What an event changed, field by field: (field, before, after) where they differ."""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    return [(key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)]

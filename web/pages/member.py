"""One member of a VO, for its admins: the membership's status (the members list's
operations, for one member), its expiry date, and the member's groups and roles."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from vo_service.context import ServiceContext
from vo_service.errors import InvalidInput, XosError
from vo_service.memberships.services import TRANSITIONS, MembershipService
from vo_service.timeutil import today
from vo_service.users.models import User
from vo_service.users.services import UserService
from vo_service.vos.models import VO
from vo_service.vos.services import VOService

from ..portal import administered, blueprint, commit_change, service_context
from .groups import PATH_MAX, ROLE_MAX
from .members import OPERATIONS

GROUP_ACTIONS = ("add-group", "remove-group")
ROLE_ACTIONS = ("assign-role", "revoke-role")
ACTIONS = (*OPERATIONS, "expiry", "clear-expiry", *GROUP_ACTIONS, *ROLE_ACTIONS)
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # \d would take other scripts' digits


class MemberForm(FlaskForm):  # type: ignore[misc]
    """One change to one membership; ``action`` says which and which field it reads."""

    action = HiddenField(validators=[DataRequired(), AnyOf(ACTIONS)])
    reason = StringField("Reason", validators=[Optional(), Length(max=500)])
    expires_on = StringField("Expires on", validators=[Optional(), Length(max=10)])
    group = StringField("Group", validators=[Optional(), Length(max=PATH_MAX)])
    role = StringField("Role", validators=[Optional(), Length(max=ROLE_MAX)])


def parse_date(text: str | None) -> dt.date:
    """A calendar date written YYYY-MM-DD, as a date input sends it."""
    text = (text or "").strip()
    if not DATE_RE.fullmatch(text):
        raise InvalidInput("the expiry date must be a date written YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{text} is not a date on the calendar") from None


@blueprint.route("/vos/<vo>/members/<user>", methods=["GET", "POST"])
@login_required
def vo_member(vo: str, user: str) -> Any:
    ctx = service_context()
    target = administered(ctx, vo)
    memberships = MembershipService(ctx)
    try:
        member = UserService(ctx).get(user)
        record = memberships.read(current_user.actor, target, member)
    except XosError as error:
        abort(error.status if error.status in (403, 404) else 404)
    form = MemberForm()
    if request.method == "POST":
        _apply(ctx, target, member, form)
        return redirect(url_for("portal.vo_member", vo=target.name, user=member.username))
    vos = VOService(ctx)
    held_groups = [g for g in record["groups"] if g != f"/{target.name}"]
    held_roles = [r.partition("/Role=")[2] for r in record["roles"]]
    return render_template(
        "portal/member.html", vo=target, member=member, m=record, form=form,
        operations=[op for op in OPERATIONS if record["status"] in TRANSITIONS[op][0]],
        held_groups=held_groups, held_roles=held_roles,
        other_groups=[g.path for g in vos.groups(target)
                      if not g.is_root and g.path not in held_groups],
        other_roles=[r.name for r in vos.roles(target) if r.name not in held_roles],
        tomorrow=(today() + dt.timedelta(days=1)).isoformat())


def _apply(ctx: ServiceContext, vo: VO, user: User, form: MemberForm) -> None:
    """Carry out one change, or nothing: the outcome is flashed."""
    if not form.validate_on_submit():
        problems = " ".join(f"{getattr(form, name).label.text}: {message}"
                            for name, messages in form.errors.items() for message in messages)
        flash(f"Nothing changed: {problems}", "error")
        return
    commit_change(lambda: _change(ctx, vo, user, form))


def _change(ctx: ServiceContext, vo: VO, user: User, form: MemberForm) -> str:
    actor, action = current_user.actor, form.action.data
    memberships, vos = MembershipService(ctx), VOService(ctx)
    if action in OPERATIONS:
        memberships.transition(actor, vo, user, action, form.reason.data or None)
        return f"{action.capitalize()}: {user.username}."
    if action == "expiry":
        day = parse_date(form.expires_on.data)
        memberships.set_expiry(actor, vo, user, day)
        return f"The membership of {user.username} now expires on {day.isoformat()}."
    if action == "clear-expiry":
        memberships.set_expiry(actor, vo, user, None)
        return f"The membership of {user.username} no longer expires."
    if action in GROUP_ACTIONS:
        if not form.group.data:
            raise InvalidInput("choose a group")
        group = vos.group(vo, form.group.data)
        if action == "add-group":
            memberships.add_to_group(actor, vo, group, user)
            return f"{user.username} added to {group.path}."
        memberships.remove_from_group(actor, vo, group, user)
        return f"{user.username} removed from {group.path} and the groups below it."
    if not form.role.data:
        raise InvalidInput("choose a role")
    role = vos.role(vo, form.role.data)
    memberships.set_role(actor, vo, user, role, action == "assign-role")
    fqan = f"/{vo.name}/Role={role.name}"
    return (f"{user.username} now holds {fqan}." if action == "assign-role"
            else f"{user.username} no longer holds {fqan}.")

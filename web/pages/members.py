"""A VO admin's members page: search, status filter, paging, and one operation on one or
many members at once, all or nothing."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectMultipleField, StringField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from vo_service.context import ServiceContext
from vo_service.errors import XosError
from vo_service.memberships.services import MembershipService
from vo_service.users.services import UserService
from vo_service.vos.models import VO

from ..portal import administered, blueprint, commit_change, service_context, vo_tab

OPERATIONS = ("approve", "reject", "suspend", "reinstate", "remove")
MAX_BULK = 500  # members changed by one form post


class MembersForm(FlaskForm):  # type: ignore[misc]
    """One operation on one or many members of a VO."""

    operation = HiddenField(validators=[DataRequired(), AnyOf(OPERATIONS)])
    users = SelectMultipleField(validators=[DataRequired()], validate_choice=False)
    reason = StringField("Reason", validators=[Optional(), Length(max=500)])


@blueprint.route("/vos/<vo>/members", methods=["GET", "POST"])
@login_required
@vo_tab("Members", 10)
def members(vo: str) -> Any:
    ctx = service_context()
    target = administered(ctx, vo)
    form = MembersForm()
    if request.method == "POST":
        _apply(ctx, target, form)
        kept: dict[str, Any] = {k: v for k, v in request.args.items()
                                if k in ("status", "q", "after")}
        return redirect(url_for("portal.members", vo=target.name, **kept))
    status = request.args.get("status") or None
    query = (request.args.get("q") or "").strip()[:32] or None
    try:
        rows, following = MembershipService(ctx).page(
            current_user.actor, target, status, query, request.args.get("after") or None)
    except XosError as error:
        flash(error.detail, "error")
        rows, following = [], None
    return render_template("portal/members.html", vo=target, rows=rows, following=following,
                           status=status, query=query or "", form=form,
                           operations=OPERATIONS)


def _apply(ctx: ServiceContext, vo: VO, form: MembersForm) -> None:
    if not form.validate_on_submit():
        flash("Choose members and an action.", "error")
        return
    names = list(dict.fromkeys(form.users.data))
    if len(names) > MAX_BULK:
        flash(f"At most {MAX_BULK} members at once.", "error")
        return
    memberships, users = MembershipService(ctx), UserService(ctx)

    def change() -> str:  # all or nothing
        for name in names:
            memberships.transition(current_user.actor, vo, users.get(name),
                                   form.operation.data, form.reason.data or None)
        return f"{form.operation.data.capitalize()}: {', '.join(names)}."

    commit_change(change)

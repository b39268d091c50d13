"""The service admin's page: create VOs, name VO admins, make node enrolment tokens
(each shown once)."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, render_template, request
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Optional

from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import XosError
from vo_service.nodes.enrolment import EnrolmentService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

from ..portal import blueprint, service_context


class CreateVOForm(FlaskForm):  # type: ignore[misc]
    name = StringField("New VO name", validators=[DataRequired(), Length(max=32)])
    description = StringField("Description", validators=[Optional(), Length(max=500)])


class VOAdminForm(FlaskForm):  # type: ignore[misc]
    vo = StringField("VO", validators=[DataRequired(), Length(max=32)])
    username = StringField("User", validators=[DataRequired(), Length(max=64)])


class EnrolmentForm(FlaskForm):  # type: ignore[misc]
    node = StringField("Node", validators=[DataRequired(), Length(max=253)])


@blueprint.route("/admin", methods=["GET", "POST"])
@login_required
def admin() -> Any:
    ctx = service_context()
    actor = current_user.actor
    if not actor.is_service_admin:
        abort(403)
    # distinct field names, one CSRF field: the posted "form" says which one was sent
    forms: dict[str, Any] = {"vo": CreateVOForm(), "admin": VOAdminForm(),
                             "enrol": EnrolmentForm()}
    token = None
    if request.method == "POST":
        which = request.form.get("form")
        form = forms.get(which or "")
        if form is None or not form.validate_on_submit():
            flash("That form was not complete.", "error")
        else:
            try:
                token = _admin_action(ctx, actor, which or "", form)
                db.session.commit()
            except XosError as error:
                db.session.rollback()
                flash(error.detail, "error")
    vos, following = VOService(ctx).page(request.args.get("after") or None)
    return render_template("portal/admin.html", forms=forms, vos=vos, following=following,
                           token=token)


def _admin_action(ctx: ServiceContext, actor: Any, which: str, form: Any) -> str | None:
    """Carry out one service-admin form; an enrolment token is returned to show once."""
    vos = VOService(ctx)
    if which == "vo":
        vo = vos.create(actor, form.name.data.strip().lower(), form.description.data or "")
        flash(f"VO {vo.name} created.", "info")
    elif which == "admin":
        vo = vos.get(form.vo.data.strip().lower())
        user = UserService(ctx).get(form.username.data.strip().lower())
        vos.set_admin(actor, vo, user, True)
        flash(f"{user.username} now administers {vo.name}.", "info")
    else:
        node = NodeService(ctx).get(form.node.data.strip().lower())
        token, expires = EnrolmentService(ctx).issue(
            actor, node, current_app.config["ENROLMENT_TOKEN_HOURS"])
        flash(f"An enrolment token for {node.name}, valid until {expires:%Y-%m-%d %H:%M}"
              " UTC. It is shown once: copy it to the node now.", "info")
        return token
    return None

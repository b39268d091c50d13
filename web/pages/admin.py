"""The service admin's pages: VOs and their admins (create a VO, name or remove a VO
admin), and nodes (register a node, change the VOs it serves, make its one-time
enrolment token, shown once)."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional

from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.errors import XosError
from vo_service.nodes.enrolment import EnrolmentService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

from ..portal import blueprint, commit_change, service_context

VO_LIST_MAX = 2048  # characters of a comma-separated VO list


class CreateVOForm(FlaskForm):  # type: ignore[misc]
    name = StringField("New VO name", validators=[DataRequired(), Length(max=32)])
    description = StringField("Description", validators=[Optional(), Length(max=500)])


class VOAdminForm(FlaskForm):  # type: ignore[misc]
    vo = StringField("VO", validators=[DataRequired(), Length(max=32)])
    username = StringField("User", validators=[DataRequired(), Length(max=64)])


class RemoveVOAdminForm(FlaskForm):  # type: ignore[misc]
    vo = HiddenField(validators=[DataRequired(), Length(max=32)])
    username = HiddenField(validators=[DataRequired(), Length(max=64)])


class RegisterNodeForm(FlaskForm):  # type: ignore[misc]
    node = StringField("Node name", validators=[DataRequired(), Length(max=253)])
    description = StringField("Description", validators=[Optional(), Length(max=512)])
    vos = StringField("VOs it serves", validators=[Optional(), Length(max=VO_LIST_MAX)])


class NodeVOsForm(FlaskForm):  # type: ignore[misc]
    node = HiddenField(validators=[DataRequired(), Length(max=253)])
    vos = StringField("VOs", validators=[Optional(), Length(max=VO_LIST_MAX)])


class EnrolmentForm(FlaskForm):  # type: ignore[misc]
    node = StringField("Node", validators=[DataRequired(), Length(max=253)])


def _service_admin() -> tuple[ServiceContext, Actor]:
    actor = current_user.actor
    if not actor.is_service_admin:
        abort(403)
    return service_context(), actor


def _vo_names(text: str | None) -> list[str]:
    """``"atlas, cms"`` as ["atlas", "cms"]; the service checks that each VO exists."""
    return list(dict.fromkeys(n.strip().lower() for n in (text or "").split(",") if n.strip()))


def _carry_out(forms: dict[str, Any], action: Any) -> Any:
    """Validate the posted form (the hidden ``form`` field names it: several forms, one
    CSRF field each) and run ``action(which, form)`` through ``commit_change``; its result."""
    which = request.form.get("form") or ""
    form = forms.get(which)
    if form is None or not form.validate_on_submit():
        flash("That form was not complete.", "error")
        return None
    result: list[Any] = []
    commit_change(lambda: result.append(action(which, form)))
    return result[0] if result else None


# -- VOs and their admins -------------------------------------------------------------------
@blueprint.route("/admin", methods=["GET", "POST"])
@login_required
def admin() -> Any:
    ctx, actor = _service_admin()
    vos = VOService(ctx)
    forms: dict[str, Any] = {"vo": CreateVOForm(), "admin": VOAdminForm(),
                             "unadmin": RemoveVOAdminForm()}

    def act(which: str, form: Any) -> None:
        vo = vos.get(form.vo.data.strip().lower()) if which != "vo" else None
        if vo is None:
            created = vos.create(actor, form.name.data.strip().lower(),
                                 form.description.data or "")
            flash(f"VO {created.name} created.", "info")
            return
        user = UserService(ctx).get(form.username.data.strip().lower())
        vos.set_admin(actor, vo, user, which == "admin")
        done = "now administers" if which == "admin" else "no longer administers"
        flash(f"{user.username} {done} {vo.name}.", "info")

    if request.method == "POST":
        _carry_out(forms, act)
        return redirect(url_for("portal.admin", after=request.args.get("after") or None))
    page, following = vos.page(request.args.get("after") or None)
    admins = vos.admins_of(page)
    return render_template("portal/admin.html", forms=forms, following=following,
                           vos=[(vo, admins[vo.id]) for vo in page])


# -- nodes ------------------------------------------------------------------------------------
@blueprint.route("/admin/nodes", methods=["GET", "POST"])
@login_required
def admin_nodes() -> Any:
    ctx, actor = _service_admin()
    nodes = NodeService(ctx)
    forms: dict[str, Any] = {"register": RegisterNodeForm(), "vos": NodeVOsForm(),
                             "enrol": EnrolmentForm()}

    def act(which: str, form: Any) -> str | None:
        if which == "register":
            node = nodes.register(actor, form.node.data.strip().lower(),
                                  form.description.data or "", _vo_names(form.vos.data))
            flash(f"Node {node.name} registered: make its enrolment token below.", "info")
            return None
        node = nodes.get(form.node.data.strip().lower())
        if which == "vos":
            nodes.set_vos(actor, node, _vo_names(form.vos.data))
            flash(f"{node.name} now serves: {', '.join(_vo_names(form.vos.data)) or 'no VO'}."
                  " It takes a fresh snapshot at its next sync.", "info")
            return None
        token, expires = EnrolmentService(ctx).issue(
            actor, node, current_app.config["ENROLMENT_TOKEN_HOURS"])
        flash(f"An enrolment token for {node.name}, valid until {expires:%Y-%m-%d %H:%M}"
              " UTC. It is shown once: copy it to the node now.", "info")
        return token

    token = None
    if request.method == "POST":
        token = _carry_out(forms, act)
        if token is None:  # after-post redirect; a token is shown once, in this answer
            return redirect(url_for("portal.admin_nodes"))
        forms = {which: type(form)(formdata=None) for which, form in forms.items()}
    try:
        rows, following = nodes.page(actor, None, request.args.get("after") or None)
    except XosError as error:
        abort(error.status)
    return render_template("portal/admin_nodes.html", forms=forms, token=token,
                           nodes=[nodes.record(n) for n in rows], following=following)


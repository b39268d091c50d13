"""A user's own pages: signing in and out, their memberships, asking to join a VO, and
the ``xos-login`` logins they can end."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from vo_service.auth.passwords import Login
from vo_service.db import db
from vo_service.errors import XosError
from vo_service.memberships.services import MembershipService
from vo_service.oauth.sessions import LoginSessions
from vo_service.vos.services import VOService

from ..portal import blueprint, commit_change, safe_next, service_context
from ..session import PortalUser


class SignInForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class SignOutForm(FlaskForm):  # type: ignore[misc]
    """Signing out is a POST with a CSRF token: a link elsewhere cannot sign you out."""


class JoinForm(FlaskForm):  # type: ignore[misc]
    vo = StringField("VO", validators=[DataRequired(), Length(max=32)])
    reason = StringField("Why you need it", validators=[Optional(), Length(max=500)])


class EndSessionForm(FlaskForm):  # type: ignore[misc]
    family = HiddenField(validators=[DataRequired(), Length(max=32)])


# -- signing in and out -------------------------------------------------------------------
@blueprint.route("/")
def index() -> Response:
    return redirect(url_for("portal.home" if current_user.is_authenticated
                            else "portal.signin"))


@blueprint.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    form = SignInForm()
    if not form.validate_on_submit():
        return render_template("portal/signin.html", form=form), \
            400 if request.method == "POST" else 200
    try:
        user = Login(service_context(), current_app.config).authenticate(
            form.username.data, form.password.data, request.remote_addr or "unknown")
    except XosError as error:
        db.session.rollback()
        flash(error.detail, "error")
        return render_template("portal/signin.html", form=form), error.status
    login_user(PortalUser(user))
    return redirect(safe_next(request.args.get("next")))


@blueprint.post("/signout")
def signout() -> Response:
    if not SignOutForm().validate_on_submit():
        abort(400)
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("portal.signin"))


# -- the user's own page ------------------------------------------------------------------
@blueprint.route("/home")
@login_required
def home() -> str:
    ctx, me = service_context(), current_user.user
    memberships = MembershipService(ctx).of_user(current_user.actor, me)
    held = MembershipService(ctx).holdings(me)
    administered = [vo.name for vo in VOService(ctx).administered_by(me)]
    return render_template("portal/home.html", me=me, memberships=memberships,
                           groups=[g for vo in held.vos for g in held.groups[vo]],
                           roles=[r for vo in held.vos for r in held.roles[vo]],
                           administered=administered, join=JoinForm(),
                           managed=VOService(ctx).managed_groups(me))


@blueprint.post("/join")
@login_required
def join() -> Response:
    form = JoinForm()
    if form.validate_on_submit():
        ctx = service_context()

        def change() -> str:
            vo = VOService(ctx).get(form.vo.data.strip().lower())
            MembershipService(ctx).request(current_user.actor, vo, current_user.user,
                                           form.reason.data or None)
            return f"Your request to join {vo.name} is waiting for its VO admins."

        commit_change(change)
    else:
        flash("Name the VO you want to join.", "error")
    return redirect(url_for("portal.home"))


# -- the user's logins ------------------------------------------------------------------
@blueprint.route("/sessions", methods=["GET", "POST"])
@login_required
def sessions() -> Any:
    logins = LoginSessions(service_context())
    form = EndSessionForm()
    if request.method == "POST":
        if form.validate_on_submit():
            def change() -> str:
                logins.end(current_user.actor, current_user.user, form.family.data)
                return "That login is ended: its device must sign in again."

            commit_change(change)
        else:
            flash("That request was not valid.", "error")
        return redirect(url_for("portal.sessions"))
    return render_template("portal/sessions.html", form=form,
                           logins=logins.active(current_user.actor, current_user.user))

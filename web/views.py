"""The portal's pages. Each handler reads the signed-in user, calls the domain services
with that user as the actor (they enforce who may do what), and renders a template;
what a user typed is escaped by Jinja's autoescaping, never marked safe."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from vo_service.audit.services import AuditService
from vo_service.auth.passwords import Login
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import XosError
from vo_service.memberships.services import MembershipService
from vo_service.nodes.enrolment import EnrolmentService
from vo_service.nodes.services import NodeService
from vo_service.oauth.sessions import LoginSessions
from vo_service.users.services import UserService
from vo_service.vos.models import VO, VOAdmin
from vo_service.vos.services import VOService

from .forms import (
    OPERATIONS,
    CreateVOForm,
    EndSessionForm,
    EnrolmentForm,
    JoinForm,
    MembersForm,
    SignInForm,
    SignOutForm,
    VOAdminForm,
)
from .security import portal_headers
from .session import PortalUser

blueprint = Blueprint("portal", __name__, template_folder="templates",
                      static_folder="static", static_url_path="/portal/static")
blueprint.after_request(portal_headers)
MAX_BULK = 500  # members changed by one form post


def _ctx() -> ServiceContext:
    return ServiceContext.build(db.session, current_app.config)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: ``?next=https://evil.example`` must not redirect away."""
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("portal.home")


@blueprint.app_context_processor
def _layout() -> dict[str, Any]:
    return {"signout_form": SignOutForm() if current_user.is_authenticated else None}


def _administered(ctx: ServiceContext, name: str) -> VO:
    """The VO ``name`` if the signed-in user administers it; 404 or 403 otherwise."""
    try:
        vo = VOService(ctx).get(name)
        ctx.authz.require_vo_admin(current_user.actor, vo)
    except XosError as error:
        abort(error.status if error.status in (403, 404) else 404)
    return vo


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
        user = Login(_ctx(), current_app.config).authenticate(
            form.username.data, form.password.data, request.remote_addr or "unknown")
    except XosError as error:
        db.session.rollback()
        flash(error.detail, "error")
        return render_template("portal/signin.html", form=form), error.status
    login_user(PortalUser(user))
    return redirect(_safe_next(request.args.get("next")))


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
    ctx, me = _ctx(), current_user.user
    memberships = MembershipService(ctx).of_user(current_user.actor, me)
    held = MembershipService(ctx).holdings(me)
    administered = list(db.session.scalars(
        select(VO.name).join(VOAdmin, VOAdmin.vo_id == VO.id)
        .where(VOAdmin.user_id == me.id).order_by(VO.name)))
    return render_template("portal/home.html", me=me, memberships=memberships,
                           groups=[g for vo in held.vos for g in held.groups[vo]],
                           roles=[r for vo in held.vos for r in held.roles[vo]],
                           administered=administered, join=JoinForm())


@blueprint.post("/join")
@login_required
def join() -> Response:
    form = JoinForm()
    if form.validate_on_submit():
        ctx = _ctx()
        try:
            vo = VOService(ctx).get(form.vo.data.strip().lower())
            MembershipService(ctx).request(current_user.actor, vo, current_user.user,
                                           form.reason.data or None)
            db.session.commit()
            flash(f"Your request to join {vo.name} is waiting for its VO admins.", "info")
        except XosError as error:
            db.session.rollback()
            flash(error.detail, "error")
    else:
        flash("Name the VO you want to join.", "error")
    return redirect(url_for("portal.home"))


# -- a VO admin's members page ------------------------------------------------------------
@blueprint.route("/vos/<vo>/members", methods=["GET", "POST"])
@login_required
def members(vo: str) -> Any:
    ctx = _ctx()
    target = _administered(ctx, vo)
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
    try:
        for name in names:
            memberships.transition(current_user.actor, vo, users.get(name),
                                   form.operation.data, form.reason.data or None)
        db.session.commit()
    except XosError as error:
        db.session.rollback()  # all or nothing
        flash(f"Nothing changed: {error.detail}", "error")
        return
    flash(f"{form.operation.data.capitalize()}: {', '.join(names)}.", "info")


# -- the user's logins ------------------------------------------------------------------
@blueprint.route("/sessions", methods=["GET", "POST"])
@login_required
def sessions() -> Any:
    logins = LoginSessions(_ctx())
    form = EndSessionForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                logins.end(current_user.actor, current_user.user, form.family.data)
                db.session.commit()
                flash("That login is ended: its device must sign in again.", "info")
            except XosError as error:
                db.session.rollback()
                flash(error.detail, "error")
        else:
            flash("That request was not valid.", "error")
        return redirect(url_for("portal.sessions"))
    return render_template("portal/sessions.html", form=form,
                           logins=logins.active(current_user.actor, current_user.user))


# -- a VO admin's audit log ---------------------------------------------------------------
@blueprint.route("/vos/<vo>/audit")
@login_required
def audit(vo: str) -> str:
    ctx = _ctx()
    target = _administered(ctx, vo)
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
                           events=[(e, _difference(e.before, e.after)) for e in events],
                           following=following, action=action or "", actor=by or "")


def _difference(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """What an event changed, field by field: (field, before, after) where they differ."""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    return [(key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)]


# -- a VO admin's view of the VO's nodes ----------------------------------------------------
@blueprint.route("/vos/<vo>/nodes")
@login_required
def vo_nodes(vo: str) -> str:
    ctx = _ctx()
    nodes = NodeService(ctx)
    try:
        target = VOService(ctx).get(vo)
        rows, following = nodes.page(current_user.actor, target,
                                     request.args.get("after") or None)
    except XosError as error:
        abort(error.status if error.status in (403, 404) else 404)
    return render_template("portal/nodes.html", vo=target,
                           nodes=[nodes.record(n) for n in rows], following=following)


# -- the service admin's page ---------------------------------------------------------------
@blueprint.route("/admin", methods=["GET", "POST"])
@login_required
def admin() -> Any:
    ctx = _ctx()
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

"""A VO's groups and roles: the group tree, creating and deleting groups, creating roles
(VO admins), and one group's page: its members and managers. A group's managers who
do not administer the VO may open the pages of the groups they manage and add or remove
members there; the services decide who may do what."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from vo_service.context import ServiceContext
from vo_service.errors import PermissionDenied, XosError
from vo_service.memberships.services import MembershipService
from vo_service.names import UNIX_NAME_MAX
from vo_service.users.services import UserService
from vo_service.vos.models import VO, Group
from vo_service.vos.services import DESCRIPTION_MAX, VOService

from ..portal import administered, blueprint, commit_change, service_context, vo_tab

#: a group path's Unix name is at most 32 characters, so a longer path cannot be valid
PATH_MAX = 2 * UNIX_NAME_MAX + 2
ROLE_MAX = 64
GROUP_ACTIONS = ("add", "remove", "add-manager", "remove-manager")


class CreateGroupForm(FlaskForm):  # type: ignore[misc]
    path = StringField("Path", validators=[DataRequired(), Length(max=PATH_MAX)])
    description = TextAreaField("Description",
                                validators=[Optional(), Length(max=DESCRIPTION_MAX)])


class CreateRoleForm(FlaskForm):  # type: ignore[misc]
    role = StringField("Role name", validators=[DataRequired(), Length(max=ROLE_MAX)])
    role_description = TextAreaField("Description",
                                     validators=[Optional(), Length(max=DESCRIPTION_MAX)])


class DeleteGroupForm(FlaskForm):  # type: ignore[misc]
    """Deleting a group takes its subgroups with it: the box must be ticked."""

    target = HiddenField(validators=[DataRequired(), Length(max=PATH_MAX)])
    confirm = BooleanField("Yes, delete this group and every group below it",
                           validators=[DataRequired()])


class GroupActionForm(FlaskForm):  # type: ignore[misc]
    """Add or remove one member or manager of a group, by user name."""

    action = HiddenField(validators=[DataRequired(), AnyOf(GROUP_ACTIONS)])
    username = StringField("User name", validators=[DataRequired(), Length(max=UNIX_NAME_MAX)])


def group_url(path: str) -> str:
    """The portal page of a group path (``/atlas/analysis``)."""
    vo, _, rest = path[1:].partition("/")
    if not rest:
        return url_for("portal.vo_group_root", vo=vo)
    return url_for("portal.vo_group", vo=vo, group=rest)


blueprint.add_app_template_global(group_url)


def _errors(form: FlaskForm) -> str:
    return " ".join(f"{getattr(form, name).label.text}: {message}"
                    for name, messages in form.errors.items() for message in messages)


# -- the VO's groups and roles ---------------------------------------------------------------
@blueprint.route("/vos/<vo>/groups", methods=["GET", "POST"])
@login_required
@vo_tab("Groups & roles", 20)
def vo_groups(vo: str) -> Any:
    ctx = service_context()
    target = administered(ctx, vo)
    forms: dict[str, Any] = {"group": CreateGroupForm(), "role": CreateRoleForm(),
                             "delete": DeleteGroupForm()}
    status = 200
    if request.method == "POST":
        which = request.form.get("form", "")
        status = _vo_post(ctx, target, which, forms.get(which))
        if status == 200:
            return redirect(url_for("portal.vo_groups", vo=target.name))
        if which == "delete" and (back := _live_group(ctx, target, request.form.get("target"))):
            return redirect(group_url(back.path))  # back to where it was confirmed
    vos = VOService(ctx)
    groups = vos.groups(target)
    if not forms["group"].path.data:
        forms["group"].path.data = f"/{target.name}/"
    return render_template("portal/groups.html", vo=target, groups=groups,
                           counts=vos.active_member_counts(target), roles=vos.roles(target),
                           forms=forms), status


def _live_group(ctx: ServiceContext, vo: VO, path: str | None) -> Group | None:
    try:
        return VOService(ctx).group(vo, path or "")
    except XosError:
        return None


def _vo_post(ctx: ServiceContext, vo: VO, which: str, form: Any) -> int:
    """Validate and carry out one VO admin form: 200 when done, else the error status
    (the outcome is flashed either way)."""
    if form is None or not form.validate_on_submit():
        if which == "delete" and set(form.errors) == {"confirm"}:
            flash("Nothing changed: tick the box to confirm the deletion.", "error")
        else:
            flash(f"Nothing changed: {_errors(form) if form else 'unknown form'}.", "error")
        return 400
    vos, actor = VOService(ctx), current_user.actor

    def change() -> str:
        if which == "group":
            group = vos.create_group(actor, vo, form.path.data.strip(),
                                     form.description.data or "")
            return (f"Group {group.path} created (Unix group {group.unix_name}, "
                    f"gid {group.gid}).")
        if which == "role":
            role = vos.create_role(actor, vo, form.role.data.strip(),
                                   form.role_description.data or "")
            return f"Role /{vo.name}/Role={role.name} created."
        group = vos.delete_group(actor, vo, form.target.data)
        return f"Group {group.path} and the groups below it are deleted; their gids stay" \
               " retired."

    error = commit_change(change)
    if error is None:
        return 200
    return error.status if 400 <= error.status < 500 else 400


# -- one group -------------------------------------------------------------------------------
@blueprint.route("/vos/<vo>/groups/<path:group>", methods=["GET", "POST"])
@login_required
def vo_group(vo: str, group: str) -> Any:
    return _group_page(vo, f"/{vo}/{group}")


@blueprint.route("/vos/<vo>/root-group", methods=["GET", "POST"])
@login_required
def vo_group_root(vo: str) -> Any:
    return _group_page(vo, f"/{vo}")


def _group_page(vo: str, path: str) -> Any:
    ctx = service_context()
    vos, actor = VOService(ctx), current_user.actor
    try:
        target = vos.get(vo)
        group = vos.group(target, path)
    except XosError:
        abort(404)
    try:
        ctx.authz.require_group_manager(actor, target, group)
    except PermissionDenied:
        abort(403)
    form = GroupActionForm()
    if request.method == "POST":
        _group_action(ctx, target, group, form)
        return redirect(group_url(group.path))
    is_admin = ctx.authz.is_vo_admin(actor, target)
    try:
        rows, following = MembershipService(ctx).group_page(
            actor, target, group, request.args.get("after") or None)
    except XosError as error:
        flash(error.detail, "error")
        rows, following = [], None
    below = [g for g in vos.groups(target) if g.path.startswith(group.path + "/")]
    return render_template("portal/group.html", vo=target, group=group, rows=rows,
                           following=following, managers=vos.managers(group),
                           subgroups=below, is_admin=is_admin, form=form,
                           delete=DeleteGroupForm(target=group.path))


def _group_action(ctx: ServiceContext, vo: VO, group: Group, form: GroupActionForm) -> None:
    """Add or remove one member or manager; a refusal by the services is a 403."""
    if not form.validate_on_submit():
        flash(f"Nothing changed: {_errors(form) or 'that request was not valid'}.", "error")
        return
    actor, action = current_user.actor, form.action.data
    vos, memberships = VOService(ctx), MembershipService(ctx)

    def change() -> str:
        user = UserService(ctx).get(form.username.data.strip().lower())
        if action == "add":
            memberships.add_to_group(actor, vo, group, user)
            return f"{user.username} added to {group.path}."
        if action == "remove":
            memberships.remove_from_group(actor, vo, group, user)
            return f"{user.username} removed from {group.path} and the groups below it."
        vos.set_manager(actor, vo, group, user, action == "add-manager")
        return (f"{user.username} now manages {group.path}." if action == "add-manager"
                else f"{user.username} no longer manages {group.path}.")

    commit_change(change, denied_is_403=True)


def depth(group: Group) -> int:
    """How deep a group sits below its VO (the root is 0), capped for indentation."""
    return min(group.path.count("/") - 1, 8)


blueprint.add_app_template_filter(depth, "depth")

"""A VO admin imports the VO's users and groups from the institutional directory: a form
for the mapping, a preview of the plan, then an import of exactly that plan.

"Exactly": the preview carries the plan's fingerprint; the import recomputes the plan and
applies it only when the fingerprint is the same. When the directory or the VO changed in
between, nothing is applied and the page shows the new preview to check instead."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms.validators import AnyOf, Length, Optional

from vo_service.db import db
from vo_service.errors import XosError
from vo_service.ldapimport import (
    ImportSpec,
    Outcome,
    Plan,
    apply_plan,
    build_spec,
    parse_mapping,
    preview,
)
from vo_service.ldapimport.spec import MAPPINGS_MAX
from vo_service.vos.models import VO

from ..portal import administered, blueprint, service_context, vo_tab

ROWS_SHOWN = 500  # rows of one preview table; the counts always cover everything
# User steps applied by one request (about 20-50 a second): a bigger import goes in
# parts, each answered well inside a proxy's or gunicorn's timeout; the CLI has no cap.
STEPS_PER_REQUEST = 250


class LdapImportForm(FlaskForm):  # type: ignore[misc]
    """The import's inputs; ``fingerprint`` is the previewed plan's."""

    members_group = StringField("Members group (DN)", validators=[Optional(), Length(max=1024)])
    members_filter = StringField("or members filter", validators=[Optional(), Length(max=1024)])
    mapping = TextAreaField("Group mapping, one per line: directory group DN=/vo/group",
                            validators=[Optional(), Length(max=MAPPINGS_MAX * 1100)])
    link_existing = BooleanField("Link existing VO users of the same name")
    remove_missing = BooleanField("Remove imported members the directory no longer lists")
    fingerprint = HiddenField(validators=[Optional(), Length(max=64)])
    action = HiddenField(validators=[AnyOf(("preview", "import"))])

    def spec(self, vo: VO) -> ImportSpec:
        lines = [line.strip() for line in (self.mapping.data or "").splitlines()]
        return build_spec(vo.name, parse_mapping([line for line in lines if line]),
                          members_group=(self.members_group.data or "").strip() or None,
                          members_filter=(self.members_filter.data or "").strip() or None,
                          link_existing=bool(self.link_existing.data),
                          remove_missing=bool(self.remove_missing.data))


@blueprint.route("/vos/<vo>/ldap-import", methods=["GET", "POST"])
@login_required
@vo_tab("LDAP import", 70)
def ldap_import(vo: str) -> Any:
    ctx = service_context()
    target = administered(ctx, vo)
    form = LdapImportForm()
    configured = bool(current_app.config.get("LDAP_URL"))
    plan: Plan | None = None
    if configured and form.is_submitted():
        if not form.validate():
            flash("Nothing changed: the form was incomplete or has expired; try again.",
                  "error")
            return redirect(url_for("portal.ldap_import", vo=target.name))
        try:
            plan = preview(ctx, current_user.actor, form.spec(target), current_app.config)
            if form.action.data == "import":
                if plan.fingerprint() == form.fingerprint.data:
                    outcome = apply_plan(ctx, current_user.actor, plan,
                                         limit=STEPS_PER_REQUEST)
                    db.session.commit()
                    _report(plan, outcome)
                    if not outcome.left:
                        return redirect(url_for("portal.ldap_import", vo=target.name))
                    plan = preview(ctx, current_user.actor, form.spec(target),
                                   current_app.config)
                else:
                    flash("Nothing imported: the directory or the VO changed since the "
                          "preview. Here is the new preview; check it and import again.",
                          "error")
        except XosError as error:
            db.session.rollback()
            flash(f"Nothing changed: {error.detail}", "error")
            plan = None
        else:
            db.session.rollback()  # a preview changes nothing
        form.fingerprint.data = plan.fingerprint() if plan else ""
    return render_template("portal/ldap_import.html", vo=target, form=form, plan=plan,
                           configured=configured, shown=ROWS_SHOWN)


def _report(plan: Plan, outcome: Outcome) -> None:
    c = plan.counts
    if outcome.left:
        flash(f"Imported into {plan.vo}: {outcome.applied} changes, the first part. "
              f"{outcome.left} user changes are left: they are in the preview below; "
              "press Import again to go on (or run xos-vo ldap import, which does it all "
              "at once).", "info")
    else:
        flash(f"Imported into {plan.vo}: {outcome.applied} changes — {c['users_created']} "
              f"users created, {c['users_linked']} linked, {c['memberships_added']} "
              f"memberships and {c['group_memberships_added']} group memberships added, "
              f"{c['groups_created']} groups created, "
              f"{c['memberships_removed'] + c['group_memberships_removed']} removals.",
              "info")
    for name, why in outcome.failed[:20]:
        flash(f"Not imported: {name}: {why}", "error")
    if len(outcome.failed) > 20:
        flash(f"… and {len(outcome.failed) - 20} more not imported (see the audit log).",
              "error")

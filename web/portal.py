"""What every portal page shares: the blueprint, the service context for this request,
the check that the signed-in user administers a VO, and the VO pages' tabs.

Each module in ``web.pages`` holds one feature, its forms and its routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, url_for
from flask_login import current_user

from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import PermissionDenied, XosError
from vo_service.vos.models import VO
from vo_service.vos.services import VOService

from .security import portal_headers

blueprint = Blueprint("portal", __name__, template_folder="templates",
                      static_folder="static", static_url_path="/portal/static")
blueprint.after_request(portal_headers)


@dataclass(frozen=True, slots=True)
class VOTab:
    """One tab of a VO admin's pages: its endpoint, label and place (lowest first)."""

    endpoint: str
    label: str
    order: int


VO_TABS: list[VOTab] = []


def vo_tab(label: str, order: int) -> Any:
    """Decorator: list this view (taking ``vo``) among the VO admin's tabs."""
    def register(view: Any) -> Any:
        VO_TABS.append(VOTab(f"portal.{view.__name__}", label, order))
        VO_TABS.sort(key=lambda tab: tab.order)
        return view
    return register


def service_context() -> ServiceContext:
    return ServiceContext.build(db.session, current_app.config)


def commit_change(change: Callable[[], str | None], *,
                  denied_is_403: bool = False) -> XosError | None:
    """Run one change through the services and commit it, flashing its message; or roll
    back everything it did and flash "Nothing changed: <why>". Returns that error.

    ``denied_is_403``: a refusal by the services answers 403 instead (pages some users
    may open but not change)."""
    try:
        done = change()
        db.session.commit()
    except XosError as error:
        db.session.rollback()
        if denied_is_403 and isinstance(error, PermissionDenied):
            abort(403)
        flash(f"Nothing changed: {error.detail}", "error")
        return error
    if done:
        flash(done, "info")
    return None


def safe_next(target: str | None) -> str:
    """Only a path on this site: ``?next=https://evil.example`` must not redirect away."""
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("portal.home")


def administered(ctx: ServiceContext, name: str) -> VO:
    """The VO ``name`` if the signed-in user administers it; 404 or 403 otherwise."""
    try:
        vo = VOService(ctx).get(name)
        ctx.authz.require_vo_admin(current_user.actor, vo)
    except XosError as error:
        abort(error.status if error.status in (403, 404) else 404)
    return vo


@blueprint.app_context_processor
def _layout() -> dict[str, Any]:
    from .pages.account import SignOutForm

    # formdata=None: the form only carries its CSRF token, and must not read the body
    # (on an error page for a body over MAX_CONTENT_LENGTH, reading it raises again)
    return {"signout_form": SignOutForm(formdata=None) if current_user.is_authenticated
            else None,
            "vo_tabs": VO_TABS}

"""The VO portal: server-rendered pages for users and VO admins (a Flask blueprint).

It calls the VO service's domain services (``vo_service.*.services``) with the signed-in
user as the actor, exactly as the API does, so the portal can do nothing the user could
not do through the API. Modules:

- ``session``: sign-in with Flask-Login (VO password or linked institutional LDAP, the
  same throttled check as the OAuth password grant);
- ``portal``: the blueprint and what every page shares (the request's service context,
  the VO-admin check, the VO pages' tabs);
- ``pages``: one module per feature with its Flask-WTF forms (CSRF on every one) and
  its routes;
- ``security``: the headers every portal answer carries (a CSP without inline script or
  style, no framing, HSTS behind TLS).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from . import pages, portal, session  # noqa: F401  (pages registers the routes)

    session.init_app(app)
    app.register_blueprint(portal.blueprint)

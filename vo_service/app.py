"""The app factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import config as config_module
from . import db as db_module


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the VO service: defaults, then XOS_* environment, then instance/xos.cfg,
    then ``test_config``. The database defaults to SQLite in the instance folder."""
    app = Flask(__name__, instance_relative_config=True,
                instance_path=os.environ.get("XOS_INSTANCE_PATH"))
    app.config.from_mapping(config_module.DEFAULTS)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(
        app.instance_path, "xos.sqlite3")
    app.config.from_prefixed_env("XOS")
    if test_config is None:
        app.config.from_pyfile("xos.cfg", silent=True)
    else:
        app.config.from_mapping(test_config)
    config_module.validate(app.config)
    if app.config["TRUSTED_PROXIES"]:
        # Behind N trusted TLS proxies: take the client address, scheme and host from
        # the headers they set (login throttling per address needs the real client).
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops)
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)

    db_module.init_app(app)
    from . import api, cli
    from .oauth import views as oauth_views
    from .pki import authority

    authority.init_app(app)
    oauth_views.init_app(app)

    api.init_app(app)
    cli.init_app(app)
    import web  # the portal: server-rendered pages over the same domain services

    web.init_app(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

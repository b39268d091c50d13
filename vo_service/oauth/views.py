"""HTTP face of the OpenID Connect provider: discovery, JWKS, the token, device,
introspection and revocation endpoints (answers in OAuth's own error format), userinfo,
and the page where a user approves a device login."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..context import ServiceContext
from ..db import db
from ..errors import XosError
from ..memberships.services import MembershipService
from ..timeutil import aware, utcnow
from ..users.models import User
from .models import DeviceAuthorization
from .server import SCOPES, Server, tokens

blueprint = Blueprint("oauth", __name__)
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def _server() -> Server:
    server: Server = current_app.extensions["xos_oauth"]
    return server


def _issuer() -> str:
    return str(current_app.config["PUBLIC_URL"]).rstrip("/")


@blueprint.get("/.well-known/openid-configuration")
def discovery() -> Response:
    base = _issuer()
    return jsonify({
        "issuer": base,
        "jwks_uri": f"{base}/oauth/jwks",
        "token_endpoint": f"{base}/oauth/token",
        "device_authorization_endpoint": f"{base}/oauth/device_authorization",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "grant_types_supported": ["password", "refresh_token", "client_credentials",
                                  "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types_supported": ["token"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic",
                                                  "client_secret_post"],
        "scopes_supported": list(SCOPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "preferred_username",
                             "name", "email", "groups", "roles"],
    })


@blueprint.get("/oauth/jwks")
def jwks() -> Response:
    document = tokens().keys.jwks()
    db.session.commit()
    response = jsonify(document)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.post("/oauth/token")
def token() -> Response:
    response = _server().create_token_response()
    db.session.commit()
    return response


@blueprint.post("/oauth/device_authorization")
def device_authorization() -> Response:
    return _server().create_endpoint_response("device_authorization")


@blueprint.post("/oauth/introspect")
def introspect() -> Response:
    return _server().create_endpoint_response("introspection")


@blueprint.post("/oauth/revoke")
def revoke() -> Response:
    return _server().create_endpoint_response("revocation")


@blueprint.route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo() -> Any:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential:
        return _bearer_error("invalid_request", "send 'Authorization: Bearer <token>'")
    try:
        actor = tokens().actor(credential.strip())
    except XosError as error:
        return _bearer_error("invalid_token", error.detail)
    user = db.session.get(User, actor.user_id)
    if user is None:
        return _bearer_error("invalid_token", "the token's user does not exist")
    holdings = MembershipService(tokens().ctx).holdings(user)
    return jsonify({"sub": str(user.id), "preferred_username": user.username,
                    "name": user.display_name, "email": user.email,
                    "groups": [g for vo in holdings.vos for g in holdings.groups[vo]],
                    "roles": [r for vo in holdings.vos for r in holdings.roles[vo]]})


def _bearer_error(code: str, description: str) -> Response:
    response = jsonify({"error": code, "error_description": description})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = f'Bearer error="{code}"'
    return response


# -- the device approval page ----------------------------------------------------------
class DeviceForm(FlaskForm):  # type: ignore[misc]
    user_code = StringField("Code shown by xos-login", validators=[DataRequired(),
                                                                   Length(max=16)])
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


def normalize_user_code(text: str) -> str:
    letters = "".join(c for c in text.upper() if c.isalpha())
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else text.strip().upper()


@blueprint.route("/device", methods=["GET", "POST"])
def device() -> Any:
    from ..auth.passwords import Login

    form = DeviceForm(data={"user_code": request.args.get("user_code", "")[:16]}
                      if request.method == "GET" else None)
    if request.method == "GET" or not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("device.html", form=form, message=None, ok=False), status
    approve = request.form.get("decision") != "deny"
    code = normalize_user_code(form.user_code.data)
    row = db.session.scalar(select(DeviceAuthorization).where(
        DeviceAuthorization.user_code == code)) if USER_CODE.match(code) else None
    if row is None or row.decision != "pending" or aware(row.expires_at) <= utcnow():
        return render_template("device.html", form=form, ok=False,
                               message="That code is unknown, used or expired. Start"
                                       " 'xos-login' again."), 400
    ctx = ServiceContext.build(db.session, current_app.config)
    try:
        user = Login(ctx, current_app.config).authenticate(
            form.username.data, form.password.data, request.remote_addr or "unknown")
    except XosError as error:
        db.session.rollback()
        return render_template("device.html", form=form, ok=False,
                               message=error.detail), error.status
    row.decision, row.user_id = ("approved" if approve else "denied"), user.id
    ctx.audit.append(f"user:{user.username}", f"device.{row.decision}", "device_login",
                     row.user_code, after={"client_id": row.client_id})
    db.session.commit()
    message = (f"Approved: xos-login on your device is now signed in as {user.username}."
               if approve else "Denied: the device login was refused.")
    return render_template("device.html", form=None, ok=True, message=message)


@blueprint.after_request
def security_headers(response: Response) -> Response:
    """The device page takes passwords: no framing, no scripts, forms post here only."""
    response.headers["Cache-Control"] = "no-store"
    if request.endpoint == "oauth.device":
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app: Flask) -> None:
    from . import server

    server.init_app(app)
    app.register_blueprint(blueprint)

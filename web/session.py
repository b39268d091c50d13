"""Who is signed in to the portal: Flask-Login over the VO service's users.

The session cookie holds the user's id and a per-sign-in nonce; an account that is no
longer active is signed out at its next request. Cookies are HttpOnly, SameSite=Lax, and
Secure whenever the service's public URL is https.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from flask_login import LoginManager, UserMixin

from vo_service.authz import Actor
from vo_service.db import db
from vo_service.users.models import User


class PortalUser(UserMixin):  # type: ignore[misc]
    """The signed-in user as Flask-Login sees it (the row is re-read every request)."""

    def __init__(self, user: User) -> None:
        self.user = user

    def get_id(self) -> str:
        return str(self.user.id)

    @property
    def actor(self) -> Actor:
        return Actor(label=f"user:{self.user.username}", user_id=self.user.id,
                     is_service_admin=self.user.is_service_admin)


login_manager = LoginManager()
login_manager.login_view = "portal.signin"
login_manager.login_message = "Please sign in to see that page."
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id: str) -> PortalUser | None:
    try:
        user = db.session.get(User, uuid.UUID(user_id))
    except ValueError:
        return None
    if user is None or user.status != "active":
        return None
    return PortalUser(user)


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    secure = str(app.config.get("PUBLIC_URL", "")).startswith("https://")
    defaults: dict[str, Any] = {"SESSION_COOKIE_HTTPONLY": True,
                                "SESSION_COOKIE_SAMESITE": "Lax",
                                "SESSION_COOKIE_SECURE": secure,
                                "REMEMBER_COOKIE_HTTPONLY": True,
                                "REMEMBER_COOKIE_SECURE": secure}
    for key, value in defaults.items():
        app.config.setdefault(key, value)

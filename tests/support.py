"""Helpers shared by test modules (import them from here, not from conftest: pytest may
have imported another folder's conftest under that name)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import scoped_session, sessionmaker

from vo_service import create_app
from vo_service.authz import Actor
from vo_service.db import db
from vo_service.users.models import User

CA_PASSPHRASE = "test CA passphrase"
SECRET_KEY = "test secret key for CSRF tokens, 32+ characters"


def make_app(url: str, **config: Any) -> Flask:
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, **config})


@contextmanager
def rolled_back(app: Flask) -> Iterator[sa.Connection]:
    """Inside ``app``'s context, bind ``db.session`` to one connection whose outer
    transaction is rolled back at the end; the services' commits become SAVEPOINTs."""
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        original = db.session
        db.session = scoped_session(sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint"))
        try:
            yield connection
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()
            db.engine.dispose()


def actor_for(user: User) -> Actor:
    return Actor(label=f"user:{user.username}", user_id=user.id,
                 is_service_admin=user.is_service_admin)

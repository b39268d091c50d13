"""The database handle, created unbound and bound by the app factory.

SQLite is the zero-setup default; PostgreSQL carries several service replicas.
Python's sqlite3 driver opens transactions lazily and not for SELECT, which breaks
SAVEPOINT and read consistency; the listeners below hand transaction control back to
SQLAlchemy (the recipe from SQLAlchemy's SQLite dialect documentation).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE: take the write lock at once, so concurrent writers wait (busy_timeout)
    # instead of failing when a read snapshot cannot be upgraded to a write.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def configure_engine(engine: Engine) -> None:
    """Install the SQLite transaction listeners; PostgreSQL needs nothing."""
    if engine.dialect.name == "sqlite" and not getattr(engine, "_xos_configured", False):
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        engine._xos_configured = True  # type: ignore[attr-defined]


def init_app(app: Flask) -> None:
    import os

    from . import models  # noqa: F401  (every table in the metadata, for Alembic too)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"),
                     render_as_batch=True, compare_type=True)
    with app.app_context():
        configure_engine(db.engine)

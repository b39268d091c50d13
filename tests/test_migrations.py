"""The migrations build exactly the models' schema, with its seed rows and the audit
table's append-only guard, and they run down to nothing and up again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy.exc import DatabaseError
from support import make_app

import vo_service.models  # noqa: F401  (every table in db.metadata)
from vo_service.audit.chain import GENESIS, verify
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db, migrate
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

TABLES = {t.name for t in db.metadata.sorted_tables}


@pytest.fixture
def fresh_url(backend: str, tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of ``backend`` of this test's own, dropped afterwards."""
    if backend == "sqlite":
        yield "sqlite:///" + str(tmp_path / "migrations.sqlite3")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create("xos_migrations")
    try:
        yield url
    finally:
        server.drop(url)


def run_migration(url: str, direction: str, revision: str) -> None:
    app = make_app(url)
    with app.app_context():
        getattr(flask_migrate, direction)(revision=revision)
        db.engine.dispose()


def head_revision() -> str:
    """The newest migration (inside an app context)."""
    script = ScriptDirectory.from_config(migrate.get_config())
    head = script.get_current_head()
    assert head is not None
    return head


def schema_diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={
        "compare_type": True, "compare_server_default": True})
    return compare_metadata(context, db.metadata)


def seeds(connection: sa.Connection) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    counters = dict(connection.execute(sa.text("SELECT name, value FROM counters")).all())
    head = [tuple(r) for r in connection.execute(
        sa.text("SELECT id, seq, hash FROM audit_head ORDER BY id"))]
    return counters, head


def audit_rows(url: str) -> list[tuple[Any, ...]]:
    """Every stored audit row, read on a connection of its own."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                sa.text("SELECT * FROM audit_events ORDER BY seq"))]
    finally:
        engine.dispose()


def guard_objects(connection: sa.Connection) -> set[str]:
    """The names of the database objects that make audit_events append-only."""
    if connection.dialect.name == "sqlite":
        rows = connection.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    else:
        rows = connection.execute(sa.text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            " UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'xos_%'"))
    return {r[0] for r in rows}


def make_history(app: Flask) -> None:
    """Real rows in most tables, through the services: a user, a VO with a group."""
    ctx = ServiceContext.build(db.session, app.config)
    system = Actor.system("pytest")
    UserService(ctx).create(system, "alice", "Alice")
    vos = VOService(ctx)
    vos.create_group(system, vos.create(system, "atlas"), "/atlas/analysis")
    db.session.commit()


def test_migrated_schema_matches_the_models(fresh_url):
    run_migration(fresh_url, "upgrade", "head")
    app = make_app(fresh_url)
    with app.app_context(), db.engine.connect() as conn:
        assert schema_diff(conn) == []
        assert set(sa.inspect(conn).get_table_names()) == TABLES | {"alembic_version"}
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    with app.app_context():
        db.engine.dispose()


def test_a_changed_model_shows_in_the_diff(fresh_url):
    """The comparison above can fail: a column the migrations lack is reported."""
    run_migration(fresh_url, "upgrade", "head")
    app = make_app(fresh_url)
    with app.app_context(), db.engine.connect() as conn:
        conn.execute(sa.text("ALTER TABLE nodes ADD COLUMN stray INTEGER"))
        diff = schema_diff(conn)
        conn.rollback()
        assert [(d[0], d[3].name) for d in diff] == [("remove_column", "stray")]
    with app.app_context():
        db.engine.dispose()


def test_seed_rows_exist(fresh_url):
    run_migration(fresh_url, "upgrade", "head")
    app = make_app(fresh_url)
    with app.app_context():
        with db.engine.connect() as conn:
            assert seeds(conn) == ({"uid": None, "gid": None, "revision": None, "revocations": 0},
                                   [(1, 0, GENESIS)])
        # and the services start from them: first numbers at the bottom of each range
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        user = UserService(ctx).create(system, "alice", "Alice")
        vo = VOService(ctx).create(system, "atlas")
        db.session.commit()
        assert user.uid == app.config["UID_MIN"]
        assert VOService(ctx).root_group(vo).gid == app.config["GID_MIN"]
        assert ctx.revisions.current() == 1
        assert verify(db.session).ok and verify(db.session).events == 2
        db.session.remove()
        db.engine.dispose()


UPDATES_AND_DELETES = [
    "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1",
    "UPDATE audit_events SET after = NULL, hash = prev_hash",
    "DELETE FROM audit_events WHERE seq = 2",
    "DELETE FROM audit_events",
]


def test_the_database_refuses_update_and_delete_of_audit_events(fresh_url):
    run_migration(fresh_url, "upgrade", "head")
    app = make_app(fresh_url)
    with app.app_context():
        make_history(app)
        stored = audit_rows(fresh_url)
        assert [r[0] for r in stored] == [1, 2, 3]
        for statement in UPDATES_AND_DELETES:
            # a plain connection of its own, not the services' session: the database
            # itself must refuse, whoever asks
            with db.engine.connect() as conn:
                with pytest.raises(DatabaseError, match="audit_events is append-only"):
                    conn.execute(sa.text(statement))
                conn.rollback()
            assert audit_rows(fresh_url) == stored, statement
        # appending still works, and the chain is whole
        UserService(ServiceContext.build(db.session, app.config)).create(
            Actor.system("pytest"), "bob", "Bob")
        db.session.commit()
        assert audit_rows(fresh_url)[:3] == stored
        verdict = verify(db.session)
        assert verdict.ok and verdict.events == 4
        db.session.remove()
        db.engine.dispose()


def test_downgrade_to_base_and_upgrade_again(fresh_url):
    run_migration(fresh_url, "upgrade", "head")
    app = make_app(fresh_url)
    with app.app_context():
        make_history(app)  # downgrading must cope with rows, audit rows included
        with db.engine.connect() as conn:
            assert guard_objects(conn)
        db.session.remove()
        db.engine.dispose()

    run_migration(fresh_url, "downgrade", "base")
    with app.app_context():
        with db.engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
            assert MigrationContext.configure(conn).get_current_revision() is None
            assert guard_objects(conn) == set()
        db.engine.dispose()

    run_migration(fresh_url, "upgrade", "head")
    with app.app_context():
        with db.engine.connect() as conn:
            assert schema_diff(conn) == []
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
            assert seeds(conn) == ({"uid": None, "gid": None, "revision": None, "revocations": 0},
                                   [(1, 0, GENESIS)])
            assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 0
        # the rebuilt schema works and guards its audit table again
        make_history(app)
        with db.engine.connect() as conn:
            with pytest.raises(DatabaseError, match="audit_events is append-only"):
                conn.execute(sa.text("DELETE FROM audit_events"))
            conn.rollback()
        verdict = verify(db.session)
        assert verdict.ok and verdict.events == 3
        db.session.remove()
        db.engine.dispose()

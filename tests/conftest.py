"""Fixtures: every database test runs on SQLite and on a real PostgreSQL server.

Each backend gets a fresh database for the session, built by the real migrations; each
test runs inside an outer transaction that is rolled back (the services' commits become
SAVEPOINT releases), so tests never see each other's rows. ``--backends sqlite`` runs
one backend only; without ``XOS_TEST_PG_URL`` (set by scripts/test.sh) PostgreSQL tests
are skipped with a reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url
from support import CA_PASSPHRASE, SECRET_KEY, make_app, rolled_back

from ca.directory import CADirectory
from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.users.models import User
from vo_service.users.services import UserService

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backends", default=",".join(BACKENDS),
                     help="comma-separated database backends to test (sqlite,postgresql)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = [b for b in metafunc.config.getoption("--backends").split(",") if b]
        metafunc.parametrize("backend", chosen, scope="session")


# -- databases ------------------------------------------------------------------------
class PostgresServer:
    """Creates and drops throwaway databases on the server named by XOS_TEST_PG_URL."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def create(self, prefix: str = "xos_test") -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("XOS_TEST_PG_URL")
    if not url:
        pytest.skip("XOS_TEST_PG_URL is not set; run scripts/test.sh for PostgreSQL tests")
    server = PostgresServer(url)
    yield server
    server.engine.dispose()


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database of ``backend`` with the schema built by the migrations."""
    if backend == "sqlite":
        url = "sqlite:///" + str(tmp_path_factory.mktemp("sqlite") / "xos.sqlite3")
        server = None
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create()
    app = make_app(url)
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    yield url
    if server is not None:
        server.drop(url)





@pytest.fixture(scope="session", autouse=True)
def instance_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app's instance folder lives in pytest's temporary tree, not in the repo, with
    a CA made by ``xos-ca``'s own code in its default place (``<instance>/ca``)."""
    saved = {k: os.environ.get(k)
             for k in ("XOS_INSTANCE_PATH", "XOS_CA_PASSPHRASE", "XOS_SECRET_KEY")}
    path = tmp_path_factory.mktemp("instance")
    os.environ["XOS_INSTANCE_PATH"] = str(path)
    os.environ["XOS_CA_PASSPHRASE"] = CA_PASSPHRASE
    os.environ["XOS_SECRET_KEY"] = SECRET_KEY
    CADirectory.init(path / "ca", "Pytest Grid", CA_PASSPHRASE.encode())
    yield str(path)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value





@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """The app, its session bound to one connection whose transaction is rolled back."""
    app = make_app(database_url)
    with rolled_back(app):
        yield app


# -- services and users ---------------------------------------------------------------
@pytest.fixture
def ctx(app: Flask) -> ServiceContext:
    return ServiceContext.build(db.session, app.config)


@pytest.fixture
def system() -> Actor:
    return Actor.system("pytest")





class Users:
    """Factory for users and their API keys."""

    def __init__(self, ctx: ServiceContext, system: Actor) -> None:
        self.ctx, self.system = ctx, system
        self.count = 0

    def make(self, username: str | None = None, **fields: Any) -> User:
        self.count += 1
        username = username or f"user{self.count}"
        fields.setdefault("display_name", username.capitalize())
        user = UserService(self.ctx).create(self.system, username, **fields)
        db.session.commit()
        return user

    def key(self, user: User) -> str:
        _, secret = ApiKeyService(self.ctx).issue(self.system, user=user)
        db.session.commit()
        return secret


@pytest.fixture
def users(ctx: ServiceContext, system: Actor) -> Users:
    return Users(ctx, system)


class Api:
    """Calls the API as a given API key and returns (status, JSON body)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def call(self, method: str, path: str, key: str | None, json: Any = None,
             **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        response = self.client.open("/api/v1" + path, method=method, headers=headers,
                                    json=json, **kwargs)
        return response.status_code, response.get_json(silent=True)


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client)


@pytest.fixture
def admin_key(users: Users) -> str:
    return users.key(users.make("sysop", is_service_admin=True))

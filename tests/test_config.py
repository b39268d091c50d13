"""Configuration: number ranges are validated at start-up, layers are honoured, and a
configured range is what the allocator hands out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import SECRET_KEY, make_app, rolled_back

from vo_service import create_app
from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.config import DEFAULTS, FORBIDDEN_NUMBERS, validate
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import ConfigurationError, NumbersExhausted
from vo_service.numbering import NumberRange
from vo_service.sync.revisions import RevisionLog
from vo_service.users.services import UserService
from vo_service.vos.services import VOService


def config(**overrides: Any) -> dict[str, Any]:
    return {**DEFAULTS, "SECRET_KEY": SECRET_KEY, **overrides}


# -- config.validate ------------------------------------------------------------------
def test_defaults_are_valid_and_as_documented():
    with pytest.raises(ConfigurationError, match="SECRET_KEY must be set"):
        validate(DEFAULTS)  # the one default that is not usable: a secret must be given
    validate(config())
    assert (DEFAULTS["UID_MIN"], DEFAULTS["UID_MAX"]) == (200_000, 399_999)
    assert (DEFAULTS["GID_MIN"], DEFAULTS["GID_MAX"]) == (400_000, 499_999)


@pytest.mark.parametrize(("uid", "gid"), [
    ((1000, 1000), (1001, 1001)),
    ((1000, 61183), (65520, 65533)),
    ((66000, 524287), (1879048192, 2**31 - 1)),
    ((1879048192, 2**31 - 1), (1000, 61183)),
])
def test_ranges_in_the_gaps_are_accepted(uid, gid):
    validate(config(UID_MIN=uid[0], UID_MAX=uid[1], GID_MIN=gid[0], GID_MAX=gid[1]))


@pytest.mark.parametrize(("low", "high", "conflict"), [
    (0, 0, "0-999 (system accounts)"),
    (0, 5000, "0-999 (system accounts)"),
    (999, 5000, "0-999 (system accounts)"),
    (500, 500, "0-999 (system accounts)"),
    (60000, 61184, "61184-65519 (systemd dynamic users)"),
    (61184, 61184, "61184-65519 (systemd dynamic users)"),
    (65519, 65533, "61184-65519 (systemd dynamic users)"),
    (65534, 65534, "65534-65535 (nobody and (uid_t)-1)"),
    (65535, 70000, "65534-65535 (nobody and (uid_t)-1)"),
    (65520, 65534, "65534-65535 (nobody and (uid_t)-1)"),
    (500000, 524288, "524288-1879048191 (systemd container ranges)"),
    (524288, 600000, "524288-1879048191 (systemd container ranges)"),
    (1879048191, 1879048191, "524288-1879048191 (systemd container ranges)"),
    (2**31, 2**31, "2147483648-4294967295 (numbers at or above 2^31)"),
    (1879048192, 2**31, "2147483648-4294967295 (numbers at or above 2^31)"),
    (2**32 - 1, 2**32 - 1, "2147483648-4294967295 (numbers at or above 2^31)"),
    (1000, 2**40, "61184-65519 (systemd dynamic users)"),
])
@pytest.mark.parametrize("which", ["UID", "GID"])
def test_ranges_touching_forbidden_numbers_are_refused(which, low, high, conflict):
    other = "GID" if which == "UID" else "UID"
    # the other range sits in a harmless gap, so only `which` can be at fault
    settings = config(**{f"{which}_MIN": low, f"{which}_MAX": high,
                         f"{other}_MIN": 1879048192, f"{other}_MAX": 1879048192})
    with pytest.raises(ConfigurationError,
                       match=rf"^{which} range {low}-{high} overlaps {re.escape(conflict)}$"):
        validate(settings)


def test_every_forbidden_block_is_documented_in_the_table():
    blocks = {(start, end) for start, end, _ in FORBIDDEN_NUMBERS}
    assert blocks == {(0, 999), (61184, 65519), (65534, 65535), (524288, 1879048191),
                      (2**31, 2**32 - 1)}


@pytest.mark.parametrize(("low", "high"), [(-100, -1), (-1, -1), (2**32, 2**32),
                                           (2**40, 2**41)])
def test_ranges_beyond_32_bit_or_negative_are_refused(low, high):
    with pytest.raises(ConfigurationError, match=rf"^UID range {low}-{high} is outside"
                                                 r" 1000-2147483647$"):
        validate(config(UID_MIN=low, UID_MAX=high))


@pytest.mark.parametrize(("uid", "gid"), [
    ((200_000, 399_999), (300_000, 499_999)),
    ((200_000, 399_999), (399_999, 499_999)),
    ((200_000, 399_999), (100_000, 200_000)),
    ((200_000, 399_999), (250_000, 260_000)),
    ((300_000, 300_000), (100_000, 499_999)),
])
def test_overlapping_uid_and_gid_ranges_are_refused(uid, gid):
    with pytest.raises(ConfigurationError, match=r"^the UID and GID ranges overlap; user private"
                                                 r" groups \(gid = uid\) would clash"):
        validate(config(UID_MIN=uid[0], UID_MAX=uid[1], GID_MIN=gid[0], GID_MAX=gid[1]))


def test_adjacent_uid_and_gid_ranges_are_accepted():
    validate(config(UID_MIN=200_000, UID_MAX=399_999, GID_MIN=400_000, GID_MAX=400_000))
    validate(config(UID_MIN=400_001, UID_MAX=499_999, GID_MIN=200_000, GID_MAX=400_000))


@pytest.mark.parametrize("which", ["UID", "GID"])
def test_min_above_max_is_refused(which):
    low, high = DEFAULTS[f"{which}_MIN"], DEFAULTS[f"{which}_MAX"]
    with pytest.raises(ConfigurationError,
                       match=rf"^{which}_MIN \({high}\) is above {which}_MAX \({low}\)$"):
        validate(config(**{f"{which}_MIN": high, f"{which}_MAX": low}))


@pytest.mark.parametrize("key", ["UID_MIN", "UID_MAX", "GID_MIN", "GID_MAX"])
@pytest.mark.parametrize("value", ["300000", 300000.0, None, True, False, [300000], "abc"])
def test_non_integers_are_refused(key, value):
    with pytest.raises(ConfigurationError,
                       match=rf"^{key[:3]}_MIN and {key[:3]}_MAX must be integers$"):
        validate(config(**{key: value}))


# -- create_app -----------------------------------------------------------------------
def sqlite_url(tmp_path) -> str:
    return "sqlite:///" + str(tmp_path / "config-test.sqlite3")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"UID_MIN": 0}, r"UID range 0-399999 overlaps 0-999"),
    ({"GID_MIN": 60000, "GID_MAX": 70000}, r"GID range 60000-70000 overlaps 61184-65519"),
    ({"GID_MIN": 300000}, r"the UID and GID ranges overlap"),
    ({"UID_MAX": 100}, r"UID_MIN \(200000\) is above UID_MAX \(100\)"),
    ({"UID_MIN": "200000"}, r"UID_MIN and UID_MAX must be integers"),
    ({"CERT_USER_MAX_HOURS": 0}, r"CERT_USER_MAX_HOURS must be a whole number from 1"),
    ({"CERT_NODE_DAYS": "30"}, r"CERT_NODE_DAYS must be a whole number"),
    ({"CRL_VALIDITY_HOURS": True}, r"CRL_VALIDITY_HOURS must be a whole number"),
    ({"PUBLIC_URL": "ftp://vo.example"}, r"PUBLIC_URL must be an http"),
    ({"PUBLIC_URL": "https://vo.example/\nX-Evil: 1"}, r"PUBLIC_URL must be an http"),
])
def test_create_app_refuses_to_start(tmp_path, overrides, message):
    with pytest.raises(ConfigurationError, match=message):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": sqlite_url(tmp_path),
                    **overrides})


def test_environment_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("XOS_UID_MIN", "300000")
    monkeypatch.setenv("XOS_UID_MAX", "300009")
    monkeypatch.setenv("XOS_GID_MIN", "410000")
    monkeypatch.setenv("XOS_GID_MAX", "410009")
    monkeypatch.setenv("XOS_RESERVED_NAMES", '["scratch"]')
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": sqlite_url(tmp_path)})
    assert (app.config["UID_MIN"], app.config["UID_MAX"]) == (300000, 300009)
    assert (app.config["GID_MIN"], app.config["GID_MAX"]) == (410000, 410009)
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        assert ctx.numbers.uids == NumberRange(300000, 300009)
        assert ctx.numbers.gids == NumberRange(410000, 410009)
        assert ctx.reserved_names == {"scratch"}
        db.session.remove()
        db.engine.dispose()


def test_test_config_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XOS_UID_MIN", "300000")
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": sqlite_url(tmp_path),
                      "UID_MIN": 250000})
    assert app.config["UID_MIN"] == 250000


@pytest.mark.parametrize(("env", "message"), [
    ({"XOS_UID_MIN": "500"}, r"UID range 500-399999 overlaps 0-999 \(system accounts\)"),
    ({"XOS_UID_MIN": "abc"}, r"UID_MIN and UID_MAX must be integers"),
    ({"XOS_GID_MAX": "600000"}, r"GID range 400000-600000 overlaps 524288-1879048191"),
    ({"XOS_GID_MIN": "100000", "XOS_GID_MAX": "250000"}, r"the UID and GID ranges overlap"),
])
def test_bad_environment_refuses_to_start(tmp_path, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": sqlite_url(tmp_path)})


def test_instance_file_is_validated(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "xos.cfg").write_text("UID_MIN = 65000\nUID_MAX = 66000\n")
    monkeypatch.setenv("XOS_INSTANCE_PATH", str(instance))
    with pytest.raises(ConfigurationError, match=r"UID range 65000-66000 overlaps 61184-65519"):
        create_app()
    (instance / "xos.cfg").write_text("UID_MIN = 300000\nUID_MAX = 300100\n")
    app = create_app()
    assert (app.config["UID_MIN"], app.config["UID_MAX"]) == (300000, 300100)


# -- a narrow configured range is enforced ---------------------------------------------
@pytest.fixture
def narrow_app(database_url: str) -> Iterator[Flask]:
    """One uid and one gid only; the session is rolled back like conftest's ``app``."""
    app = make_app(database_url, UID_MIN=300000, UID_MAX=300000, GID_MIN=400000,
                   GID_MAX=400000)
    with rolled_back(app):
        yield app


def state() -> tuple[dict[str, int], int, dict[str, int | None]]:
    session = db.session
    counts = {t.name: session.scalar(sa.select(sa.func.count()).select_from(t))
              for t in db.metadata.sorted_tables}
    counters = dict(session.execute(sa.text("SELECT name, value FROM counters")).all())
    return counts, RevisionLog(session).current(), counters


def test_narrow_range_is_enforced(narrow_app):
    ctx = ServiceContext.build(db.session, narrow_app.config)
    system = Actor.system("pytest")
    admin = UserService(ctx).create(system, "sysop", "Sysop", is_service_admin=True)
    _, key = ApiKeyService(ctx).issue(system, user=admin)
    db.session.commit()
    assert (admin.uid, admin.gid) == (300000, 300000)
    client = narrow_app.test_client()
    headers = {"Authorization": f"Bearer {key}"}

    before = state()
    response = client.post("/api/v1/users", headers=headers,
                           json={"username": "second", "display_name": "Second"})
    assert response.status_code == 507, response.get_json()
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["title"] == "Number range exhausted"
    assert re.fullmatch(r"no uid left in 300000-300000; widen the range", problem["detail"])
    assert state() == before

    # an explicit uid must lie in the configured range, not merely in the default one
    response = client.post("/api/v1/users", headers=headers,
                           json={"username": "second", "display_name": "Second",
                                 "uid": 300001})
    assert response.status_code == 422
    assert re.search(r"uid 300001 is outside the configured range 300000-300000",
                     response.get_json()["detail"])
    assert state() == before

    response = client.post("/api/v1/vos", headers=headers, json={"name": "atlas"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["group"]["gid"] == 400000
    after_vo = state()
    assert after_vo != before

    for path, body in (("/api/v1/vos", {"name": "cms"}),
                       ("/api/v1/vos/atlas/groups", {"path": "/atlas/analysis"})):
        response = client.post(path, headers=headers, json=body)
        assert response.status_code == 507, response.get_json()
        assert response.get_json()["detail"] == "no gid left in 400000-400000; widen the range"
        assert state() == after_vo

    with pytest.raises(NumbersExhausted, match=r"^no uid left in 300000-300000"):
        UserService(ctx).create(system, "third", "Third")
    db.session.rollback()
    with pytest.raises(NumbersExhausted, match=r"^no gid left in 400000-400000"):
        VOService(ctx).create(system, "lhcb")
    db.session.rollback()
    assert state() == after_vo

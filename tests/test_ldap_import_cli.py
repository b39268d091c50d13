"""``xos-vo ldap preview`` and ``xos-vo ldap import`` through click's CliRunner, against a
real slapd (tests/ldap_import_directory.py): the summary, the progress bar, a sync that
changes nothing, and readable errors with a failing exit code that change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from e2e.slapd import Slapd, free_port
from flask import Flask
from ldap_import_directory import group_dn, loaded_directory, mapping, settings

from vo_service.audit.models import AuditEvent
from vo_service.db import db
from vo_service.users.models import User


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    with loaded_directory() as server:
        yield server


@pytest.fixture
def xos_vo(app: Flask, directory: Slapd) -> Any:
    """Runs ``xos-vo`` with the directory configured; returns (exit code, output)."""
    app.config.update(settings(directory))
    runner = app.test_cli_runner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(args=list(args))
        return result.exit_code, result.output
    run("vo", "create", "atlas")
    return run


def options(server: Slapd) -> list[str]:
    out = ["atlas", "--members-group", group_dn(server, "atlas-members")]
    for dn, path in mapping(server):
        out += ["--map", f"{dn}={path}"]
    return out


def counts() -> tuple[int, int]:
    return (db.session.scalar(sa.select(sa.func.count()).select_from(User)) or 0,
            db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0)


def test_preview_prints_the_plan_and_changes_nothing(xos_vo, directory):
    before = counts()
    code, out = xos_vo("ldap", "preview", *options(directory))
    assert code == 0, out
    assert out.startswith("VO atlas: 7 users to create, 0 to link, 7 memberships to add, "
                          "6 group memberships to add, 3 groups to create")
    assert "group    /atlas/analysis" in out
    assert 'create   alice "Alice Liddell" <alice@example.org> add +/atlas/analysis ' \
        '+/atlas/prod' in out
    assert "skipped  star* uid=star*,ou=people" in out
    assert "\x07" not in out and "\u202e" not in out  # nothing that drives a terminal
    assert counts() == before


def test_import_shows_progress_then_a_sync_changes_nothing(xos_vo, directory):
    code, out = xos_vo("ldap", "import", *options(directory), "--batch", "2")
    assert code == 0, out
    assert "Importing" in out and "applied 10 of 10 changes" in out
    names = set(db.session.scalars(sa.select(User.username)))
    assert {"alice", "bob", "carol", "dave", "erin", "frank", "grace"} <= names
    before = counts()
    code, out = xos_vo("ldap", "import", *options(directory))
    assert code == 0 and "applied 0 of 0 changes" in out and "7 unchanged" in out
    assert counts() == before


@pytest.mark.parametrize(("args", "message"), [
    (["atlas", "--members-group", "not a dn"], "is not a DN"),
    (["atlas"], "one directory group or one filter"),
    (["atlas", "--members-filter", "(uid=*))(|(uid=*"], "one parenthesised LDAP filter"),
    (["atlas", "--members-filter", "(uid=*)", "--map", "cn=a,dc=x"], "a mapping looks like"),
    (["atlas", "--members-filter", "(uid=*)", "--map", "cn=a,dc=x=/cms/a"],
     "not a group of VO 'atlas'"),
    (["nosuchvo", "--members-filter", "(uid=*)"], "no VO 'nosuchvo'"),
])
def test_bad_input_is_a_readable_error_that_changes_nothing(xos_vo, args, message):
    before = counts()
    for command in ("preview", "import"):
        code, out = xos_vo("ldap", command, *args)
        assert code != 0 and message in out and "Traceback" not in out, out
    assert counts() == before


def test_an_unreachable_directory_or_none_is_a_readable_error(app, xos_vo, directory):
    before = counts()
    app.config["LDAP_URL"] = f"ldap://127.0.0.1:{free_port()}"
    app.config["LDAP_TIMEOUT"] = 1
    code, out = xos_vo("ldap", "import", *options(directory))
    assert code == 1 and "Error: cannot open a TLS connection to the directory" in out
    app.config["LDAP_URL"] = None
    code, out = xos_vo("ldap", "preview", *options(directory))
    assert code == 1 and "no institutional directory is configured" in out
    app.config.update(settings(directory), LDAP_PAGE_SIZE=0)
    code, out = xos_vo("ldap", "preview", *options(directory))
    assert code == 1 and "LDAP_PAGE_SIZE" in out
    assert counts() == before

"""Signing in to the portal with an institutional LDAP password, against a real slapd
(tests/e2e/slapd.py): a linked account signs in with its directory password (and no
longer with a VO password), a wrong password or a filter-shaped name is refused without
a session, and a directory that cannot be reached is a readable error, not a sign-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e.slapd import Slapd, free_port, missing_tools
from flask import Flask
from portal_support import PASSWORD, seeded_portal, sign_in

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.users.services import UserService

DIRECTORY_PASSWORD = "directory pässword ✓"


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"slapd is not installed (missing {', '.join(missing)})")
    with Slapd() as server:
        server.add_user("a.liddell", DIRECTORY_PASSWORD, "Alice Liddell", "alice@example.org")
        yield server


def _directory(server: Slapd, url: str | None = None) -> dict[str, Any]:
    return {"LDAP_URL": url or server.url, "LDAP_CA_FILE": server.ca_cert_path,
            "LDAP_BASE_DN": server.base_dn, "LDAP_TIMEOUT": 2}


def _link_alice(app: Flask) -> None:
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        alice = UserService(ctx).get("alice")
        PasswordService(ctx).link_ldap(Actor.system("pytest"), alice, "a.liddell")
        db.session.commit()


@pytest.fixture
def ldap_portal(slapd: Slapd) -> Iterator[Flask]:
    with seeded_portal(**_directory(slapd)) as app:
        _link_alice(app)
        yield app


def _signed_in(client: Any) -> bool:
    return client.get("/home").status_code == 200


def test_linked_account_signs_in_with_the_directory_password(ldap_portal: Flask,
                                                             slapd: Slapd) -> None:
    client = ldap_portal.test_client()
    answer = sign_in(client, "alice", DIRECTORY_PASSWORD)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/home")
    assert _signed_in(client)
    assert f'BIND dn="{slapd.user_dn("a.liddell")}"' in slapd.log_text()


@pytest.mark.parametrize("password", [PASSWORD, "wrong", DIRECTORY_PASSWORD.upper()])
def test_other_passwords_are_refused(ldap_portal: Flask, password: str) -> None:
    """Once linked, the directory decides: the old VO password no longer signs in."""
    client = ldap_portal.test_client()
    answer = sign_in(client, "alice", password)
    assert answer.status_code == 401
    assert b"wrong username or password" in answer.data
    assert not _signed_in(client)


@pytest.mark.parametrize("name", ["alice)(uid=*", "*", "a.liddell", "alice\x00"])
def test_filter_shaped_and_directory_names_do_not_sign_in(ldap_portal: Flask, slapd: Slapd,
                                                          name: str) -> None:
    """The portal takes the VO username; a directory name or a filter is not one, and
    reaches no search."""
    searches_before = slapd.log_text().count(" SRCH ")
    client = ldap_portal.test_client()
    answer = sign_in(client, name, DIRECTORY_PASSWORD)
    assert answer.status_code in (400, 401)
    assert not _signed_in(client)
    assert slapd.log_text().count(" SRCH ") == searches_before


def test_unreachable_directory_is_a_readable_error(slapd: Slapd) -> None:
    with seeded_portal(**_directory(slapd, f"ldap://127.0.0.1:{free_port()}")) as app:
        _link_alice(app)
        client = app.test_client()
        answer = sign_in(client, "alice", DIRECTORY_PASSWORD)
        assert answer.status_code == 502
        assert b"cannot open a TLS connection to the directory" in answer.data
        assert b"<html" in answer.data  # the portal's page, not an API problem
        assert not _signed_in(client)
        # a VO user without a link still signs in with the VO password meanwhile
        other = app.test_client()
        assert sign_in(other, "bob").status_code == 302 and _signed_in(other)
